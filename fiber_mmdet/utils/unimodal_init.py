"""Start FIBER from public unimodal weights: a Swin Transformer for the image side, RoBERTa for the text side.

Configs ask for it with ``model.backbone.init_cfg=dict(type='Pretrained', checkpoint=SWIN)`` (applied by
``FusionSwinTransformer.init_weights``) and ``model.language_model.name=ROBERTA`` (a hub name or a folder, loaded
when ``FusedRoberta`` is built). Each load checks every tensor against the model and logs an :class:`InitReport`:
the weights loaded, the file's keys dropped (by name, with the reason) and the model's weights left newly
initialised (the fusion layers, by name).
"""
import os.path as osp
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping

from torch import Tensor, nn

from .checkpoint_fit import compare_state_dicts
from .fiber_checkpoint import unwrap_checkpoint
from .roberta_checkpoint import convert_roberta_state_dict, read_weight_files
from .swin_checkpoint_layouts import convert_swin_layout

# recomputed at construction, never in a checkpoint that another library wrote
_OWN_BUFFERS = ('relative_position_index', )


@dataclass
class InitReport:
    """What an initialisation from a unimodal checkpoint did.

    Attributes:
        source: the checkpoint (file, folder or hub name).
        layout: its key layout (``'official'``, ``'timm'``, ``'mmpretrain'``, ``'transformers'``).
        loaded: model keys whose values come from the file.
        dropped: file key -> why it is not loaded.
        new: model keys left as initialised (weights the file cannot have).
    """
    source: str
    layout: str
    loaded: List[str] = field(default_factory=list)
    dropped: Dict[str, str] = field(default_factory=dict)
    new: List[str] = field(default_factory=list)

    def summary(self, what: str) -> str:
        by_reason = defaultdict(list)
        for key, why in self.dropped.items():
            by_reason[why].append(key)
        dropped = '; '.join(f'{why}: {keys}' for why, keys in by_reason.items()) or 'none'
        return (f'{what}: {len(self.loaded)} tensors loaded from {self.source} ({self.layout} layout); '
                f'{len(self.dropped)} of its keys dropped ({dropped}); {len(self.new)} newly initialised: {self.new}')


def read_checkpoint_state(path: str) -> Dict[str, Tensor]:
    """The weights in a checkpoint file: ``.safetensors``, or anything MMEngine's ``CheckpointLoader`` reads (local
    ``.pth``, URLs); ``state_dict`` / ``model`` wrappers and ``module.`` prefixes are removed.

    Raises:
        FileNotFoundError: a local path that does not exist (named, with the config key it comes from).
    """
    if '://' not in path and not osp.isfile(path):
        raise FileNotFoundError(f'Swin checkpoint {path} (model.backbone.init_cfg.checkpoint) does not exist: '
                                'download Swin-B ImageNet-22k weights (README.md, section "Starting without a FIBER checkpoint")')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path)
    from mmengine.runner.checkpoint import CheckpointLoader
    ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    return dict(unwrap_checkpoint(ckpt))


def _check_fit(module: nn.Module, state: Mapping[str, Tensor], report: InitReport, what: str) -> InitReport:
    """Check every key and shape of ``state`` against ``module``; fill ``report.loaded`` / ``new``.

    Raises:
        ValueError: keys the module does not have, or tensors of another shape (named).
    """
    # only the module's own recomputed buffers may be absent; every key of the converted file must be a weight
    fit = compare_state_dicts(module.state_dict(), state, allowed_missing=tuple(f'{b}$' for b in _OWN_BUFFERS),
                              allowed_unexpected=())
    if fit.unexpected:
        raise ValueError(f'{report.source} has weights that {what} does not: {fit.unexpected[:10]}')
    if fit.mismatched:
        bad = [f'{k}: file {file_shape} vs model {model_shape}' for k, file_shape, model_shape in fit.mismatched]
        raise ValueError(f'{report.source} does not fit {what} (another model size or window size?): {bad[:5]}')
    report.loaded = list(state)
    report.new = fit.missing
    return report


def load_swin_pretrained(backbone: nn.Module, checkpoint: str, layout: str = 'auto') -> InitReport:
    """Load Swin classification weights (official, timm or mmpretrain layout) into a ``FusionSwinTransformer``.

    Only the image→text cross-attention of the fused blocks (``.i2t.``) and output norms the file lacks (a
    classifier keeps only the last stage's, ``norm3``) stay as initialised.

    Raises:
        ValueError: Swin weights missing from the file, file keys the backbone does not have, or tensors of
            another shape (named).
    """
    conversion = convert_swin_layout(read_checkpoint_state(checkpoint), len(backbone.stages), layout)
    report = InitReport(checkpoint, conversion.layout, dropped=dict(conversion.dropped))
    _check_fit(backbone, conversion.state_dict, report, 'the FusionSwinTransformer')
    missing = [k for k in report.new if '.i2t.' not in k and not re.match(r'norm\d+\.', k)]
    if missing:
        raise ValueError(f'{checkpoint} ({conversion.layout} layout) lacks {len(missing)} Swin weight(s) of the '
                         f'backbone: {missing[:10]}')
    backbone.load_state_dict(conversion.state_dict, strict=False)
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().info(report.summary('FusionSwinTransformer'))
    return report


def load_roberta_pretrained(text_model: nn.Module, name: str) -> InitReport:
    """Load transformers RoBERTa weights (hub name or folder) into a ``FusedRobertaModel``.

    Every RoBERTa weight of the model must be in the file; only the text→image cross-attention and its gates (the
    fused layers' ``crossattention_t2i`` / ``alpha_t2i``) stay as initialised.

    Raises:
        ValueError: RoBERTa weights missing from the file, or file keys the model does not have (named).
    """
    state, files = read_weight_files(name)
    conversion = convert_roberta_state_dict(state)
    report = InitReport(name, 'transformers', dropped=dict(conversion.dropped))
    _check_fit(text_model, conversion.state_dict, report, 'the FusedRoberta text model')
    missing = [k for k in report.new if 'crossattention_t2i' not in k and 'alpha_t2i' not in k]
    if missing:
        raise ValueError(f'{name} ({files}) lacks {len(missing)} RoBERTa weight(s) of the text model: {missing[:10]}')
    text_model.load_state_dict(conversion.state_dict, strict=False)
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().info(report.summary('FusedRoberta'))
    return report

