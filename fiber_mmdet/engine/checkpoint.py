"""Runner checkpoints: loading them with torch >= 2.6, writing them atomically, and finding one to resume from.

Loading with torch >= 2.6 (``torch.load`` defaults to ``weights_only=True``):

MMEngine 0.10.7 calls ``torch.load`` without ``weights_only`` (``mmengine/runner/checkpoint.py``), so on
torch >= 2.6 a checkpoint written by a Runner -- ``message_hub`` holds ``HistoryBuffer`` objects with numpy
arrays and numpy scalars -- fails with ``UnpicklingError: Weights only load failed``, which breaks ``--resume``
and ``tools/test.py`` on our own checkpoints (upstream: open-mmlab/mmengine PR 1650). Instead of switching the
weights-only unpickler off (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which also works) we allow-list exactly the
globals such a checkpoint references.

Writing: :class:`AtomicLocalBackend` (MMEngine file backend ``'local_atomic'``) writes each file under a temporary
name in its folder, flushes and fsyncs it, then renames it over the final name, so a crash, a kill or a full disk
never leaves a partial checkpoint where ``--resume`` looks; a failed write raises :class:`CheckpointSaveError`
naming the file, the folder, the bytes needed and the bytes free.

Resuming: :func:`find_resumable_checkpoint` picks the newest checkpoint of a work_dir that loads, naming each
newer one it skipped and why.
"""
import errno
import glob
import os
import os.path as osp
import pickle
import re
import shutil
import zipfile
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.fileio import LocalBackend, register_backend
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


# ------------------------------------------------------------------------------------------------ writing
class CheckpointSaveError(OSError):
    """A checkpoint (or ``last_checkpoint``) could not be written; the file it would have replaced is intact."""


def _fsync_folder(folder: str) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either its old content or all of ``data``, never a part.

    The bytes go to ``.<name>.<pid>.tmp`` in the same folder (same file system: the rename is atomic), are
    flushed and fsynced, then ``os.replace`` puts the file under its name and the folder is fsynced.

    Raises:
        CheckpointSaveError: the write failed (errno kept); the temporary file is removed, ``path`` untouched.
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.{os.getpid()}.tmp')
    try:
        with open(tmp, 'wb') as f:
            view = memoryview(data)
            while view:  # os.write may write less than asked (and a full disk raises here)
                view = view[os.write(f.fileno(), view):]
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        if osp.exists(tmp):
            os.remove(tmp)
        raise CheckpointSaveError(error.errno, _save_failure(path, folder, len(data), error)) from error
    _fsync_folder(folder)


def _save_failure(path: str, folder: str, size: int, error: OSError) -> str:
    free = shutil.disk_usage(folder).free
    why = {errno.ENOSPC: 'no space left on device', errno.EDQUOT: 'disk quota exceeded',
           errno.EFBIG: 'file too large for this process or file system'}.get(error.errno, str(error))
    return (f'could not write {path}: {why} (needs {_mib(size)}, {_mib(free)} free in {folder}); '
            f'{"its previous version is kept" if osp.exists(path) else "no partial file is left"}')


def _mib(size: int) -> str:
    return f'{size / 2**20:.1f} MiB'


@register_backend('local_atomic')
class AtomicLocalBackend(LocalBackend):
    """MMEngine's local file backend whose ``put`` / ``put_text`` replace a file atomically (:func:`atomic_write`).

    Select it where a checkpoint is written: ``default_hooks.checkpoint.backend_args=dict(backend='local_atomic')``
    (:class:`~fiber_mmdet.engine.hooks.AtomicCheckpointHook` does this for local folders).
    """

    def put(self, obj: bytes, filepath: Union[str, 'os.PathLike']) -> None:
        atomic_write(str(filepath), obj)

    def put_text(self, obj: str, filepath: Union[str, 'os.PathLike'], encoding: str = 'utf-8') -> None:
        atomic_write(str(filepath), obj.encode(encoding))


# ----------------------------------------------------------------------------------------------- resuming
_STEP = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')


def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be resumed from, or None if it can.

    Checked: the file exists and is not empty; torch's zip archive is complete and every member's CRC matches
    (a copy cut short or a corrupted file); its pickle loads (memory-mapped: the tensors are not read) and holds
    ``meta`` and ``state_dict``.
    """
    try:
        check_checkpoint_file(path)
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            if bad is not None:
                return f'{bad} in the archive is corrupted (CRC mismatch)'
        checkpoint = torch.load(path, map_location='cpu', weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as error:  # noqa: BLE001  (any failure to read it is the reason reported)
        return f'{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ""}'.rstrip(': ')
    missing = [k for k in ('meta', 'state_dict') if not isinstance(checkpoint, dict) or k not in checkpoint]
    return f'not a Runner checkpoint (no {", ".join(missing)})' if missing else None


def resume_candidates(work_dir: str) -> List[str]:
    """The checkpoints of ``work_dir`` to try, newest first: the one ``last_checkpoint`` names, then every
    ``iter_<n>.pth`` / ``epoch_<n>.pth`` by decreasing ``n`` (then modification time)."""
    named = []
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer, encoding='utf-8') as f:
            target = f.read().strip()
        if target:
            named.append(target)
    found = [p for p in glob.glob(osp.join(work_dir, '*.pth')) if _STEP.match(osp.basename(p))]
    found.sort(key=lambda p: (int(_STEP.match(osp.basename(p)).group(1)), osp.getmtime(p)), reverse=True)
    seen = {osp.abspath(p) for p in named}
    return named + [p for p in found if osp.abspath(p) not in seen]


def find_resumable_checkpoint(work_dir: str, log: Callable[[str], None] = print) -> Optional[str]:
    """The newest checkpoint of ``work_dir`` that loads (see :func:`resume_candidates`), or None if it has none.

    Each newer checkpoint skipped is logged with the reason, and the one chosen.

    Raises:
        RuntimeError: ``work_dir`` has checkpoints but none loads; every one is named with its reason.
    """
    skipped = []
    for path in resume_candidates(work_dir):
        problem = checkpoint_problem(path)
        if problem is None:
            log(f'resuming from {path}' + (f' (skipped {len(skipped)} newer checkpoint(s) that do not load)'
                                           if skipped else ''))
            return path
        skipped.append(f'{path}: {problem}')
        log(f'skipping checkpoint {path}: {problem}')
    if skipped:
        raise RuntimeError(f'--resume: no checkpoint in {work_dir} can be read:\n  ' + '\n  '.join(skipped)
                           + '\nStart without --resume, or pass a good checkpoint with --resume PATH.')
    return None
