"""transformers RoBERTa weight files (a hub name such as ``roberta-base``, or a folder) -> ``FusedRobertaModel`` keys.

The weight files (``model.safetensors`` or ``pytorch_model.bin``, single or sharded) are found and read with
transformers' own file helpers rather than through
``RobertaModel.from_pretrained``, which fills weights missing from the file with random values and only warns
about the ones it does not use: here every key of the file is loaded or dropped with its reason, and a RoBERTa
weight the file lacks is an error.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, NamedTuple, Tuple

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


def read_weight_files(name: str) -> Tuple[Dict[str, Tensor], List[str]]:
    """Every tensor of a transformers model's weight files, and the files read, found as transformers finds them.

    Args:
        name: a folder (``save_pretrained`` output) or a hub name (downloaded, or taken from the local cache).
    """
    from transformers.modeling_utils import load_state_dict
    from transformers.utils import cached_file
    from transformers.utils.hub import get_checkpoint_shard_files
    for filename in _WEIGHT_FILES:
        path = cached_file(name, filename, _raise_exceptions_for_missing_entries=False)
        if path is None:
            continue
        files = get_checkpoint_shard_files(name, path)[0] if filename.endswith('.index.json') else [path]
        state: Dict[str, Tensor] = {}
        for file in files:
            state.update(load_state_dict(file, map_location='cpu'))
        return state, files
    raise FileNotFoundError(f'no RoBERTa weights in {name} (looked for {", ".join(_WEIGHT_FILES)}); a folder '
                            "written by transformers' save_pretrained has one of them")


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
