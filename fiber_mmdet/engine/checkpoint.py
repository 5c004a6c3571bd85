"""Loading MMEngine Runner checkpoints with torch >= 2.6 (``torch.load`` defaults to ``weights_only=True``).

MMEngine 0.10.7 calls ``torch.load`` without ``weights_only`` (``mmengine/runner/checkpoint.py``), so on
torch >= 2.6 a checkpoint written by a Runner -- ``message_hub`` holds ``HistoryBuffer`` objects with numpy
arrays and numpy scalars -- fails with ``UnpicklingError: Weights only load failed``, which breaks ``--resume``
and ``tools/test.py`` on our own checkpoints (upstream: open-mmlab/mmengine PR 1650). Instead of switching the
weights-only unpickler off (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which also works) we allow-list exactly the
globals such a checkpoint references.
"""
import os
import pickle
import zipfile
from typing import Any, Callable, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

# numpy pickles its arrays and scalars through these; numpy 1.x wrote them under ``numpy.core``,
# numpy 2.x under ``numpy._core``.
_NUMPY_MULTIARRAY_NAMES = ('numpy.core.multiarray', 'numpy._core.multiarray')
# dtype classes whose instances may appear in a checkpoint (no object or void dtypes).
_NUMPY_DTYPE_CLASSES = (
    'BoolDType', 'Int8DType', 'Int16DType', 'Int32DType', 'Int64DType', 'UInt8DType', 'UInt16DType', 'UInt32DType',
    'UInt64DType', 'Float16DType', 'Float32DType', 'Float64DType', 'LongDType', 'ULongDType', 'LongLongDType',
    'ULongLongDType', 'IntDType', 'UIntDType', 'ShortDType', 'UShortDType', 'ByteDType', 'UByteDType', 'StrDType')
# ``HistoryBuffer`` keeps its statistics functions in the instance; pickle stores each as
# ``getattr(HistoryBuffer, 'mean')`` (protocol 2 cannot name a method directly).
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """Stands in for ``builtins.getattr`` while unpickling: resolves HistoryBuffer statistics methods only."""
    if obj is HistoryBuffer and (name in _HISTORY_BUFFER_METHODS or name in HistoryBuffer._statistics_methods):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'fiber_mmdet allows getattr only for HistoryBuffer statistics methods while loading a checkpoint, '
        f'got getattr({obj!r}, {name!r})')


def checkpoint_safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """The globals a Runner checkpoint needs, in the form ``torch.serialization.add_safe_globals`` takes."""
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    safe: List[Union[Callable, Tuple[Callable, str]]] = [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        (_history_buffer_getattr, 'builtins.getattr'),
    ]
    for module in _NUMPY_MULTIARRAY_NAMES:
        safe.append((multiarray._reconstruct, f'{module}._reconstruct'))
        safe.append((multiarray.scalar, f'{module}.scalar'))
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25
    if dtypes is not None:
        safe.extend(getattr(dtypes, name) for name in _NUMPY_DTYPE_CLASSES if hasattr(dtypes, name))
    return safe


def register_checkpoint_safe_globals() -> bool:
    """Allow ``torch.load(weights_only=True)`` to read MMEngine Runner checkpoints; process-wide, idempotent.

    Covers what a Runner checkpoint holds besides tensors: ``message_hub`` (``HistoryBuffer`` with numpy
    arrays, numpy scalars such as ``eta``), ``param_schedulers`` (``collections.Counter``, already allowed
    by torch), optimizer and EMA state. ``builtins.getattr`` is mapped to a function that only resolves
    ``HistoryBuffer``'s statistics methods, so it cannot reach anything else.

    Returns:
        bool: False if this torch has no weights-only allow-list (torch < 2.4), where nothing is needed.
    """
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:
        return False
    add_safe_globals(checkpoint_safe_globals())
    return True


def check_checkpoint_file(path: str) -> None:
    """Fail early, naming ``path``, when a local checkpoint file is missing, empty or truncated (torch's own
    error, "PytorchStreamReader failed reading zip archive", names no file). Remote paths are left to MMEngine.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is empty, or a zip archive (torch's format) without its end (a cut-off copy).
    """
    if '://' in path:
        return
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} does not exist')
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError(f'{path}: the checkpoint file is empty (0 bytes)')
    with open(path, 'rb') as f:
        is_zip = f.read(4) == b'PK\x03\x04'
    if is_zip and not zipfile.is_zipfile(path):
        raise ValueError(f'{path}: the checkpoint is truncated ({size} bytes; the end of its zip archive is '
                         'missing): copy or download it again')
