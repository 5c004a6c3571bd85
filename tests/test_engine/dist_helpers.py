"""Run a function on several CPU ranks (gloo on 127.0.0.1, forked processes) with a time limit, so that a hang
fails the test instead of hanging the suite."""
import datetime
import multiprocessing as mp
import os
import queue
import socket
import time
import traceback
from typing import Any, Callable, List, Sequence


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _rank_main(target: Callable, rank: int, world_size: int, port: int, args: Sequence, results,
               init: bool) -> None:
    import torch
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        if init:
            dist.init_process_group('gloo', rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=60))
        try:
            results.put((rank, True, target(rank, world_size, *args)))
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
    except BaseException:  # noqa: BLE001  (reported by the parent with the rank's traceback)
        results.put((rank, False, traceback.format_exc()))


def run_on_ranks(target: Callable, world_size: int, args: Sequence = (), timeout: float = 60,
                 init: bool = True) -> List[Any]:
    """``target(rank, world_size, *args)`` on ``world_size`` forked processes with a gloo process group (or, with
    ``init=False``, only torchrun's environment variables: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...);
    returns each rank's result (picklable), in rank order. A rank that fails re-raises its traceback here; ranks
    still running after ``timeout`` seconds are killed and the test fails."""
    ctx = mp.get_context('fork')  # the test process has torch imported already: a fork starts in milliseconds
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_rank_main, args=(target, rank, world_size, port, args, results, init),
                         daemon=True)
             for rank in range(world_size)]
    for proc in procs:
        proc.start()
    deadline = time.monotonic() + timeout
    collected, failed = {}, {}
    try:
        while len(collected) + len(failed) < world_size:
            try:
                rank, ok, value = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                missing = sorted(set(range(world_size)) - set(collected) - set(failed))
                failed.update({r: f'did not finish within {timeout} s' for r in missing})
                break
            (collected if ok else failed)[rank] = value
        if failed:  # every rank's error: the first to fail is often not the first to report
            raise AssertionError('\n'.join(f'rank {r} failed:\n{failed[r]}' for r in sorted(failed)))
    finally:
        for proc in procs:
            proc.join(timeout=max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
    return [collected[rank] for rank in range(world_size)]
