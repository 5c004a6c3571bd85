"""transformers RoBERTa weight files (a hub name such as ``roberta-base``, or a folder) -> ``FusedRobertaModel`` keys.

The files are read directly (``model.safetensors`` or ``pytorch_model.bin``, single or sharded) rather than through
``RobertaModel.from_pretrained``, which fills weights missing from the file with random values and only warns
about the ones it does not use: here every key of the file is loaded or dropped with its reason, and a RoBERTa
weight the file lacks is an error.
"""
import json
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, NamedTuple, Tuple

import torch
from torch import Tensor

# why a key of the file is not loaded (the values of RobertaConversion.dropped)
MLM_HEAD = 'masked-language-model head, not used by FIBER'
POOLER = 'sentence pooler, not used by FIBER (it reads the token states)'
TASK_HEAD = 'task head, not used by FIBER'
RECOMPUTED = 'buffer recomputed from the token ids'

# in the order transformers prefers them
_WEIGHT_FILES = ('model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin',
                 'pytorch_model.bin.index.json')
# prefixes of RoBERTa's task models (RobertaForMaskedLM, ...ForSequenceClassification) around the base model
_BASE_PREFIX = 'roberta.'
_DROPPED = ((r'^lm_head\.', MLM_HEAD), (r'^pooler\.', POOLER), (r'^(classifier|qa_outputs)\.', TASK_HEAD),
            (r'^embeddings\.(position_ids|token_type_ids)$', RECOMPUTED))


class RobertaConversion(NamedTuple):
    """Converted weights (``FusedRobertaModel`` names) and the file keys left out, each with its reason."""
    state_dict: 'OrderedDict[str, Tensor]'
    dropped: Dict[str, str]


def _weight_files_in(folder: str) -> List[str]:
    for name in _WEIGHT_FILES:
        path = osp.join(folder, name)
        if osp.isfile(path):
            return _expand_index(path, lambda shard: osp.join(folder, shard))
    raise FileNotFoundError(f'no RoBERTa weights in {folder} (looked for {", ".join(_WEIGHT_FILES)}); a folder '
                            "written by transformers' save_pretrained has one of them")


def _expand_index(path: str, locate) -> List[str]:
    """The shard files of a ``*.index.json`` (``weight_map`` values), else ``[path]``."""
    if not path.endswith('.index.json'):
        return [path]
    with open(path, encoding='utf-8') as f:
        shards = sorted(set(json.load(f)['weight_map'].values()))
    return [locate(shard) for shard in shards]


def _weight_files_on_hub(name: str) -> List[str]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError
    for filename in _WEIGHT_FILES:
        try:
            path = hf_hub_download(name, filename)
        except EntryNotFoundError:
            continue
        return _expand_index(path, lambda shard: hf_hub_download(name, shard))
    raise FileNotFoundError(f'{name} has none of {", ".join(_WEIGHT_FILES)}')


def read_weight_files(name: str) -> Tuple[Dict[str, Tensor], List[str]]:
    """Every tensor of a transformers model's weight files, and the files read.

    Args:
        name: a folder (``save_pretrained`` output) or a hub name (downloaded, or taken from the local cache).
    """
    files = _weight_files_in(name) if osp.isdir(name) else _weight_files_on_hub(name)
    state: Dict[str, Tensor] = {}
    for path in files:
        if path.endswith('.safetensors'):
            from safetensors.torch import load_file
            state.update(load_file(path))
        else:
            state.update(torch.load(path, map_location='cpu', weights_only=True))
    return state, files


def convert_roberta_state_dict(state: Mapping[str, Tensor]) -> RobertaConversion:
    """Map a RoBERTa (or RoBERTa task model) state dict onto ``FusedRobertaModel`` keys.

    ``roberta.`` prefixes go, old ``LayerNorm.gamma`` / ``beta`` names become ``weight`` / ``bias``; the heads, the
    pooler and recomputed buffers are dropped with their reason. Every other key is kept: the caller checks them
    against the model, so a key the model does not have is reported there, by name.
    """
    out: 'OrderedDict[str, Tensor]' = OrderedDict()
    dropped: Dict[str, str] = {}
    for key, value in state.items():
        new = key[len(_BASE_PREFIX):] if key.startswith(_BASE_PREFIX) else key
        reason = next((why for pattern, why in _DROPPED if re.search(pattern, new)), None)
        if reason is not None:
            dropped[key] = reason
            continue
        new = re.sub(r'LayerNorm\.gamma$', 'LayerNorm.weight', re.sub(r'LayerNorm\.beta$', 'LayerNorm.bias', new))
        out[new] = value
    return RobertaConversion(out, dropped)
