"""``--cfg-options data_root=...`` that reaches every path built from it.

A config's dataset and evaluator paths are built from ``data_root`` when the file is parsed
(``ann_file=data_root + 'annotations/...'``), so overriding the top-level ``data_root`` afterwards changes nothing
by itself and the run silently reads the old data. :func:`override_data_root` moves every string of the config
that starts with the old root to the new one (dataset roots, evaluator annotation files, tokenizer folders), or
says which keys to set when the config has no such paths.
"""
from typing import Any, Tuple

from mmengine.config import Config


def _move(value: Any, old: str, new: str) -> Tuple[Any, int]:
    if isinstance(value, str):
        return (new + value[len(old):], 1) if value.startswith(old) else (value, 0)
    if isinstance(value, dict):
        moved = 0
        for key in list(value.keys()):
            value[key], n = _move(value[key], old, new)
            moved += n
        return value, moved
    if isinstance(value, (list, tuple)):
        items = [_move(v, old, new) for v in value]
        out = [v for v, _ in items]
        return (out if isinstance(value, list) else type(value)(out)), sum(n for _, n in items)
    return value, 0


def override_data_root(cfg: Config, key: str, new_root: str) -> int:
    """Set the top-level root ``key`` (``data_root``, ``odinw_data_root``...) to ``new_root`` and move every path
    of the config that starts with its parsed value along, in place.

    Returns:
        int: how many config strings were changed.

    Raises:
        ValueError: the config has no such top-level string, or no path starts with it; the message names
            the root keys the config has, or says to set the dataset / evaluator keys themselves.
    """
    name = cfg.filename or 'the config'
    old_root = cfg.get(key, None)
    if not isinstance(old_root, str) or not old_root:
        roots = [k for k, v in cfg.items() if k.endswith('data_root') and isinstance(v, str)]
        hint = (f'its data roots are {roots}' if roots else 'set the paths themselves, e.g. '
                'train_dataloader.dataset.data_root, test_dataloader.dataset.data_root and test_evaluator.ann_file')
        raise ValueError(f'--cfg-options {key}={new_root}: {name} has no top-level {key} (string), so the '
                         f'override would change nothing; {hint}')
    if old_root.endswith('/') and not new_root.endswith('/'):
        new_root += '/'
    cfg_dict = cfg._cfg_dict
    moved = 0
    for entry in list(cfg_dict.keys()):
        if entry == key:
            continue
        cfg_dict[entry], n = _move(cfg_dict[entry], old_root, new_root)
        moved += n
    if moved == 0:
        raise ValueError(f'--cfg-options {key}={new_root}: no path of {name} starts with its '
                         f'{key} {old_root!r}, so the override would change nothing; set the dataset and '
                         'evaluator paths themselves (e.g. test_dataloader.dataset.data_root)')
    cfg_dict[key] = new_root
    return moved
