"""``--cfg-options data_root=...``: move every path of a config that lives under its data root.

A config's top-level ``data_root`` is only a variable: by the time ``--cfg-options`` are merged, its value has
been copied into every dataset's ``data_root`` and every evaluator's ``ann_file``, so overriding the variable
alone changes nothing. :func:`repoint_data_root` rewrites each string of the config that equals the old root or
starts with it.
"""
from typing import Any

from mmengine.config import Config


def _rewrite(value: Any, old: str, new: str, counter: list) -> Any:
    if isinstance(value, str) and value.startswith(old):
        counter[0] += 1
        return new + value[len(old):]
    if isinstance(value, dict):
        return type(value)({k: _rewrite(v, old, new, counter) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return type(value)(_rewrite(v, old, new, counter) for v in value)
    return value


def repoint_data_root(cfg: Config, new_root: str) -> int:
    """Replace the config's ``data_root`` prefix by ``new_root`` in every string value (in place).

    Returns:
        int: how many values changed (the ``data_root`` key itself included).

    Raises:
        KeyError: the config has no top-level ``data_root`` to re-point.
    """
    old = cfg.get('data_root')
    if not isinstance(old, str) or not old:
        raise KeyError('--cfg-options data_root=...: this config has no top-level data_root; set the dataset '
                       'paths themselves (e.g. train_dataloader.dataset.data_root=...)')
    new = new_root if new_root.endswith('/') or not old.endswith('/') else new_root + '/'
    counter = [0]
    for key in list(cfg.keys()):
        cfg[key] = _rewrite(cfg[key], old, new, counter)
    return counter[0]
