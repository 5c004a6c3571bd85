"""Distributed runs: ``--launcher pytorch`` on a machine without CUDA, and which evaluation samples are the
sampler's padding.

MMEngine 0.10.7 cannot start a distributed CPU run on its own: ``init_dist`` calls ``torch.cuda.set_device``
(``RuntimeError: Found no NVIDIA driver``) before ``init_process_group``, the default backend is ``nccl``, and
``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]`` to ``DistributedDataParallel``, which rejects
``device_ids`` for CPU modules. :func:`setup_cpu_distributed` handles the three before the Runner is built.

MMEngine's ``DefaultSampler`` (``round_up=True``, the evaluation default) gives every rank the same number of
samples by repeating the first ones at the end of the last round, so with a dataset size that the world size does
not divide, a few samples are evaluated twice. MMEngine's ``collect_results`` cuts them off for metrics that keep
one result per sample; whatever counts or writes per sample on each rank has to recognise them itself
(:func:`rank_sample_indices`).
"""
import datetime
from typing import List, NamedTuple, Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.dataset import DefaultSampler
from mmengine.logging import print_log
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler

from mmdet.registry import MODEL_WRAPPERS


def setup_cpu_distributed(cfg: Config) -> bool:
    """Prepare ``cfg`` and the process group for a CPU run under ``--launcher pytorch`` (torchrun).

    Does nothing (returns False) when ``cfg.launcher`` is ``'none'`` or CUDA is available. Otherwise it

    * switches ``env_cfg.dist_cfg.backend`` from ``nccl`` to ``gloo`` (another backend is kept as given),
    * initialises the default process group from torchrun's environment (``RANK``, ``WORLD_SIZE``,
      ``MASTER_ADDR``, ``MASTER_PORT``), honouring ``dist_cfg.timeout`` -- the Runner then skips its own
      ``init_dist``,
    * sets ``model_wrapper_cfg.device_ids=None`` for DDP-type wrappers (keeping ``find_unused_parameters``).

    Args:
        cfg (Config): The full config, with ``launcher`` already set from the command line.

    Returns:
        bool: Whether the CPU set-up was applied.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise NotImplementedError(f'distributed runs without CUDA are supported with --launcher pytorch '
                                  f'(torchrun), got --launcher {launcher}')

    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg['backend'] = 'gloo'
    if not torch_dist.is_initialized():
        kwargs = {}
        if dist_cfg.get('timeout') is not None:
            kwargs['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
        torch_dist.init_process_group(backend=dist_cfg['backend'], **kwargs)

    wrapper_cfg = cfg.get('model_wrapper_cfg', None)
    if wrapper_cfg is None:
        # what Runner.wrap_model builds by default, minus device_ids
        wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_type = wrapper_cfg.get('type', 'MMDistributedDataParallel')
    wrapper_cls = MODEL_WRAPPERS.get(wrapper_type) if isinstance(wrapper_type, str) else wrapper_type
    if wrapper_cls is not None and issubclass(wrapper_cls, DistributedDataParallel):
        wrapper_cfg['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper_cfg
    print_log(f'no CUDA: distributed run on CPU with backend {dist_cfg["backend"]!r}, '
              f'rank {torch_dist.get_rank()}/{torch_dist.get_world_size()}', logger='current')
    return True


class RankSample(NamedTuple):
    """A sample this rank evaluates: its index in the dataset, and whether it is a padded repeat (a copy of a
    sample that another rank, or this one, also evaluates)."""
    index: int
    padding: bool


def rank_sample_indices(dataloader) -> Optional[List[RankSample]]:
    """The samples this rank's ``dataloader`` yields, in order, with the padded repeats marked.

    Needs MMEngine's ``DefaultSampler`` batched in order (a plain ``BatchSampler``), as every evaluation config
    here uses; returns None otherwise (e.g. ``AspectRatioBatchSampler`` regroups samples). The ``k``-th sample of
    rank ``r`` is at position ``r + k * world_size`` of the sampler's padded list; positions from the dataset's
    length on are the repeats.

    Args:
        dataloader: A ``torch.utils.data.DataLoader``.

    Returns:
        list[RankSample] | None: One entry per sample of this rank.
    """
    sampler = getattr(dataloader, 'sampler', None)
    batch_sampler = getattr(dataloader, 'batch_sampler', None)
    if not isinstance(sampler, DefaultSampler) or type(batch_sampler) is not BatchSampler:
        return None
    size = len(sampler.dataset)
    return [RankSample(int(index), sampler.rank + k * sampler.world_size >= size)
            for k, index in enumerate(iter(sampler))]


def close_distributed() -> None:
    """Destroy the default process group, if any, before the interpreter exits: a gloo group left to the exit
    handlers can abort a rank after its work is done ('terminate called without an active exception'), which
    torchrun reports as that rank failing."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
