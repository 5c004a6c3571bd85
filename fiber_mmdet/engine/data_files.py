"""Check, before a run starts, that the annotation files and image folders a config points at exist.

Without this a missing file surfaces as a ``FileNotFoundError`` deep inside a dataset's ``load_data_list`` (or,
for an evaluator's ``ann_file``, only after the whole test set has run), without a word on where the file comes
from. :func:`check_data_files` lists every missing path of the loaders and evaluators a run will build, each with
what it is, and the config's ``dataset_help`` (the docs section or the converter that makes it).
"""
import os.path as osp
from typing import Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from mmengine.config import Config

DEFAULT_HELP = ('docs/datasets.md, section "Evaluation data" (benchmarks) or tools/dataset_converters/README.md '
                '(training)')
# dataset wrappers whose inner datasets hold the files
_WRAPPED_KEYS = ('datasets', 'dataset')


def _local(path: str) -> bool:
    return '://' not in path


def _join(root: Optional[str], path: str) -> str:
    return path if not root or osp.isabs(path) else osp.join(root, path)


def dataset_paths(dataset: Mapping, where: str) -> Iterator[Tuple[str, str, bool]]:
    """Local files (and folders) a dataset config reads: ``(path, description, is_dir)``.

    Follows mmengine's rules: ``ann_file``, ``data_prefix`` values and ODVG's ``label_map_file`` are relative to
    ``data_root`` unless absolute. Wrappers (``ConcatDataset``, ``RepeatDataset``...) are entered.
    """
    for key in _WRAPPED_KEYS:
        inner = dataset.get(key)
        if isinstance(inner, Mapping):
            yield from dataset_paths(inner, where)
        elif isinstance(inner, Sequence) and not isinstance(inner, str):
            for i, d in enumerate(inner):
                if isinstance(d, Mapping):
                    yield from dataset_paths(d, f'{where}[{i}]')
    kind = f'{where} ({dataset.get("type", "dataset")})'
    root = dataset.get('data_root')
    if dataset.get('ann_file'):
        yield _join(root, dataset['ann_file']), f'annotation file of {kind}', False
    if dataset.get('label_map_file'):
        yield _join(root, dataset['label_map_file']), f'label map of {kind}', False
    for name, prefix in (dataset.get('data_prefix') or {}).items():
        if isinstance(prefix, str):
            yield _join(root, prefix) if prefix or root else '.', f'{name} folder of {kind}', True


def evaluator_paths(evaluator: Union[Mapping, Sequence, None], where: str) -> Iterator[Tuple[str, str, bool]]:
    """``ann_file`` of every metric of an evaluator config (entering ``metrics`` lists)."""
    if isinstance(evaluator, Sequence) and not isinstance(evaluator, str):
        for i, e in enumerate(evaluator):
            yield from evaluator_paths(e, f'{where}[{i}]')
        return
    if not isinstance(evaluator, Mapping):
        return
    if 'metrics' in evaluator:
        yield from evaluator_paths(evaluator['metrics'], f'{where}.metrics')
    if evaluator.get('ann_file'):
        yield evaluator['ann_file'], f'annotation file of {where} ({evaluator.get("type", "metric")})', False


def _help_for(path: str, dataset_help: Union[str, Mapping, None]) -> str:
    if isinstance(dataset_help, Mapping):
        for fragment, text in dataset_help.items():
            if fragment in path:
                return text
        return dataset_help.get('default', DEFAULT_HELP)
    return dataset_help or DEFAULT_HELP


def check_data_files(cfg: Config, phases: Sequence[str]) -> None:
    """Raise one ``FileNotFoundError`` naming every missing file or folder of the given phases.

    Args:
        cfg (Config): the run's config. ``cfg.dataset_help`` (optional) says where the data comes from: a string,
            or ``{path fragment: hint}`` (first fragment found in the missing path wins; ``'default'`` otherwise).
        phases (Sequence[str]): any of ``'train'``, ``'val'``, ``'test'``: their ``<phase>_dataloader.dataset``
            and (val/test) ``<phase>_evaluator`` are checked; with ``'train'`` also ``load_from`` (the weights a
            training starts from) unless the run resumes.

    Raises:
        FileNotFoundError: lists each missing path with what it is and where it comes from.
    """
    found: List[Tuple[str, str, bool]] = []
    if 'train' in phases and cfg.get('load_from') and not cfg.get('resume', False):
        found.append((cfg.load_from, 'checkpoint to start from (load_from)', False))
    for phase in phases:
        loader = cfg.get(f'{phase}_dataloader')
        if isinstance(loader, Mapping) and isinstance(loader.get('dataset'), Mapping):
            found += dataset_paths(loader['dataset'], f'{phase}_dataloader.dataset')
        if phase != 'train':
            found += evaluator_paths(cfg.get(f'{phase}_evaluator'), f'{phase}_evaluator')
    missing, seen = [], set()
    for path, what, is_dir in found:
        if path in seen or not _local(path):
            continue
        seen.add(path)
        if not (osp.isdir(path) if is_dir else osp.isfile(path)):
            missing.append(f'  {path}  ({what}; see {_help_for(path, cfg.get("dataset_help"))})')
    if missing:
        raise FileNotFoundError(f'{len(missing)} data path(s) of this config do not exist:\n' + '\n'.join(missing)
                                + '\nPut the data there, or point the config at it (--cfg-options ...data_root=...).')
