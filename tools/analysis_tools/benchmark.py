"""FIBER speed, memory and FLOP rate on one image: evaluation (predict, one prompt) and a training step.

Usage:
    python tools/analysis_tools/benchmark.py CONFIG [--size 800 1333] [--device cpu|cuda] [--amp bf16|fp16]
        [--threads N] [--repeat 3] [--boxes 5] [--with-cp] [--phases eval,train] [--json OUT]
        [--text-config roberta-base|none] [--tokenizer DIR] [--prompt "person. car. dog"] [--cfg-options K=V ...]

The model is built from CONFIG with random weights. ``--text-config roberta-base`` builds the language model
with roberta-base's sizes WITHOUT downloading anything; with ``--text-config none`` the config's language model
is used as it is. The tokenizer is the config's, or with ``--tokenizer DIR`` a local one.

Printed (and written to ``--json``), per phase:

* ``seconds``: median over ``--repeat`` calls after one warm-up (``cpu_seconds``: the process's CPU time per
  call, all threads; on a loaded machine seconds x threads > cpu_seconds). ``eval`` = ``model.predict`` (forward and
  post-processing) with one prompt under ``no_grad``; ``train`` = ``model.loss`` + ``backward`` with ``--boxes``
  ground-truth boxes (``zero_grad`` included, no optimizer step).
* memory. CUDA: the allocator's peak during the phase (``max_memory_allocated`` after a reset), and
  ``peak_reserved_mib``. CPU: every phase runs in its own process (unless ``--same-process``), so the
  process's peak resident memory (``ru_maxrss``) is that phase's alone: ``peak_rss_mib`` includes the
  libraries (~0.8 GiB for torch + mmdet) and the weights; ``model_rss_mib`` is the resident memory once the
  model is built, and ``phase_mib = peak_rss_mib - model_rss_mib`` what the phase itself added (activations,
  gradients, allocator slack: glibc keeps freed small blocks, so RSS is an upper bound on live tensors).
* ``gflop``: FLOPs of one more call, made after the memory readout (``--no-flops`` skips it), counted by
  ``torch.utils.flop_counter.FlopCounterMode``: the FLOPs executed, each once (recomputation, e.g.
  ``--with-cp``, included). The CPU fused attention kernels, which the counter does not see, are added from
  their shapes; a deformable convolution's matrix product is seen by the counter (its dense equivalent is added
  only for a kernel that hides it, see ``FlopCount``). ``gflop_per_s`` = gflop / seconds.
* ``gemm_gflop_per_s``: a dense 2048 x 2048 (GPU: 8192 x 8192) matmul timed in the same process, same threads and
  dtype (``--amp``'s on GPU); ``of_gemm`` = gflop_per_s / gemm_gflop_per_s.

``--amp``: autocast to bf16/fp16 (the deformable convolutions and the losses stay float32 inside the model,
as the original's AMP). ``--with-cp``: activation checkpointing in the backbone (``with_cp``) and the head
tower (``use_checkpoint``; mmdet's tower checkpoints only its early-fusion modules, which FIBER has none of,
so in effect the backbone), as FIBER's fine-tuning recipes.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

import torch
from mmengine.config import DictAction

ROBERTA_BASE = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                    bos_token_id=0, eos_token_id=2, hidden_act='gelu', layer_norm_eps=1e-5)
PHASES = ('eval', 'train')


def build_parser(description: str = 'FIBER speed, memory and FLOP rate on one image') -> argparse.ArgumentParser:
    """The options of this benchmark (other benchmarks add theirs to it)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument('config')
    p.add_argument('--size', type=int, nargs=2, default=[800, 1333], metavar=('H', 'W'))
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--boxes', type=int, default=5, help='ground-truth boxes of the training step')
    p.add_argument('--phases', default='eval,train', help='comma-separated: eval, train')
    p.add_argument('--no-backward', action='store_true', help='same as --phases eval')
    p.add_argument('--text-config', default='roberta-base', choices=['roberta-base', 'none'])
    p.add_argument('--tokenizer', default=None, help='tokenizer name or directory (default: the config\'s)')
    p.add_argument('--prompt', default='person. bicycle. car. motorcycle. airplane. bus. train. truck. boat')
    p.add_argument('--amp', nargs='?', const='bf16', default='none', choices=['none', 'bf16', 'fp16'],
                   help='autocast dtype (bare --amp: bf16)')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    p.add_argument('--with-cp', action='store_true', help='activation checkpointing (backbone and head)')
    p.add_argument('--no-flops', action='store_true', help='skip the FLOP count (one more call per phase)')
    p.add_argument('--json', default=None, metavar='OUT', help='write the figures to this JSON file')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='override config keys, e.g. model.train_cfg.trim_text_padding=False')
    p.add_argument('--same-process', action='store_true',
                   help='CPU: run the phases in this process (peak RSS then covers all earlier phases)')
    p.add_argument('--child', default=None, help=argparse.SUPPRESS)  # internal: run one phase, print JSON
    return p


def parse_args(argv: Optional[List[str]] = None, parser: Optional[argparse.ArgumentParser] = None
               ) -> argparse.Namespace:
    p = parser or build_parser()
    args = p.parse_args(argv)
    args.phases = ['eval'] if args.no_backward else [s for s in args.phases.split(',') if s]
    unknown = sorted(set(args.phases) - set(PHASES))
    if unknown:
        p.error(f'unknown phase(s) {unknown}; choose from {PHASES}')
    return args


# ---------------------------------------------------------------------------------------------------- memory
def rss_mib() -> float:
    """Current resident memory of this process (Linux)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def cuda_device(device: str) -> Optional[torch.device]:
    """The CUDA device named by ``--device`` ('cuda' → the current one, 'cuda:1' → index 1), None for others.

    Passed to every ``torch.cuda`` call that reads or waits on a device: without it ``synchronize`` and the
    memory statistics act on the current device (cuda:0), not the one the model runs on."""
    parsed = torch.device(device)
    return parsed if parsed.type == 'cuda' else None


def select_device(device: str) -> None:
    """Make ``cuda:N`` the current CUDA device, so that what the model, the Runner and mmdet create on 'cuda'
    lands on the device given (nothing for 'cuda', which is the current one already, or other devices)."""
    cuda = cuda_device(device)
    if cuda is not None and cuda.index is not None and torch.cuda.is_available():
        torch.cuda.set_device(cuda)


def peak_memory_mib(device: str) -> float:
    """CUDA allocator peak on GPU; the process's peak resident memory on CPU."""
    cuda = cuda_device(device)
    if cuda is not None:
        return torch.cuda.max_memory_allocated(cuda) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset_peak_memory(device: str) -> None:
    """Start a new CUDA allocator peak on ``device`` (CPU: nothing, each phase has its own process)."""
    cuda = cuda_device(device)
    if cuda is not None:
        torch.cuda.reset_peak_memory_stats(cuda)


# ---------------------------------------------------------------------------------------------------- timing
def synchronize(device: str) -> None:
    """Wait for the kernels queued on ``device`` (CUDA only)."""
    cuda = cuda_device(device)
    if cuda is not None:
        torch.cuda.synchronize(cuda)


def timed(fn: Callable[[], None], device: str, repeat: int, cpu_time: bool = False):
    """Median wall seconds of ``repeat`` calls (the caller runs the warm-up); with ``cpu_time`` also the median
    CPU seconds of this process per call (all threads: on a shared machine, wall time / CPU time shows how
    much of the threads' time the process got)."""
    times, cpu = [], []
    for _ in range(max(repeat, 1)):
        synchronize(device)
        t, c = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return (statistics.median(times), statistics.median(cpu)) if cpu_time else statistics.median(times)


def gemm_gflop_per_s(device: str, dtype: torch.dtype, n: Optional[int] = None, repeat: int = 5) -> float:
    """Rate of a dense n x n matmul (the machine's practical peak for this dtype and thread count)."""
    n = n or (8192 if device.startswith('cuda') else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    seconds = timed(lambda: a @ b, device, repeat)
    return 2 * n**3 / seconds / 1e9


# ---------------------------------------------------------------------------------------------------- FLOPs
class FlopCount:
    """``FlopCounterMode`` plus what it cannot see: the CPU fused attention kernels (registered with torch's
    own SDPA formulas) and deformable convolutions whose kernel hides its matrix products from the counter.
    Use as a context manager around one call; ``total`` is the FLOP count.

    A deformable convolution costs its dense convolution's 2 * C_in/groups * k * k FLOPs per output value in
    the matrix product of its sampled columns (the bilinear sampling is not counted, as no elementwise work
    is). The vectorised CPU path of ``FP32ModulatedDeformConv2d`` runs that product as a torch ``matmul``, which
    the counter sees, forward and backward: adding the dense count too counted it twice. mmcv's extension
    (CUDA, or its CPU kernel) computes the products inside C++ where the counter sees none of them. So each
    deformable convolution's forward is bracketed by hooks that read what the counter saw inside it, and only
    the shortfall against the dense count is added (x 3 in training: backward = 2 x forward). FLOPs that really
    run twice (``--with-cp``'s recomputation) are counted as they run."""

    def __init__(self, model: torch.nn.Module, backward: bool) -> None:
        from torch.utils import flop_counter as fc
        aten = torch.ops.aten

        def forward_flops(q, k, v, *args, out_shape=None, **kwargs) -> int:
            return fc.sdpa_flop_count(q, k, v)

        def backward_flops(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
            return fc.sdpa_backward_flop_count(grad_out, q, k, v)

        mapping = {}
        if hasattr(aten, '_scaled_dot_product_flash_attention_for_cpu'):
            mapping[aten._scaled_dot_product_flash_attention_for_cpu] = forward_flops
            mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = backward_flops
        self.counter = fc.FlopCounterMode(display=False, custom_mapping=mapping)
        self.model = model
        self.backward = backward
        self.extra = 0
        self.handles = []
        self._seen_before: Dict[int, int] = {}

    @staticmethod
    def dense_flops(module: torch.nn.Module, output: torch.Tensor) -> int:
        """FLOPs of the dense convolution with ``module``'s shapes producing ``output``."""
        k = module.kernel_size[0] * module.kernel_size[1]
        return 2 * output.numel() * (module.in_channels // module.groups) * k

    def _deform_pre_hook(self, module, inputs) -> None:
        self._seen_before[id(module)] = self.counter.get_total_flops()

    def _deform_hook(self, module, inputs, output) -> None:
        seen = self.counter.get_total_flops() - self._seen_before.pop(id(module))
        missing = max(self.dense_flops(module, output) - seen, 0)
        self.extra += missing * (3 if self.backward else 1)

    def __enter__(self) -> 'FlopCount':
        from mmcv.ops import ModulatedDeformConv2d
        for m in self.model.modules():
            if isinstance(m, ModulatedDeformConv2d):
                self.handles.append(m.register_forward_pre_hook(self._deform_pre_hook))
                self.handles.append(m.register_forward_hook(self._deform_hook))
        self.counter.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.counter.__exit__(*exc)
        for h in self.handles:
            h.remove()

    @property
    def total(self) -> int:
        return self.counter.get_total_flops() + self.extra


# ---------------------------------------------------------------------------------------------------- model
def build(args: argparse.Namespace, model: Optional[torch.nn.Module] = None):
    """The model (``model`` when given), one image (1, 3, H', W') padded to 32 and its data sample (prompt
    classes, ``--boxes`` seeded random boxes)."""
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.structures import InstanceData

    import fiber_mmdet  # noqa: F401
    register_all_modules()
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    lm = cfg.model.language_model
    if args.text_config == 'roberta-base':
        lm.update(name=None, config=ROBERTA_BASE, load_pretrained=False)
    if args.tokenizer:
        lm.tokenizer = args.tokenizer
    if lm.get('tokenizer') is None and lm.get('name') is None:
        raise SystemExit('no tokenizer: pass --tokenizer DIR (a RoBERTa-style tokenizer directory)')
    if args.with_cp:
        cfg.model.backbone.with_cp = True
        cfg.model.bbox_head.use_checkpoint = True
    if model is None:
        torch.manual_seed(0)
        # random weights from the constructors: init_weights() would only change the values, not the cost
        model = MODELS.build(cfg.model).to(args.device)
    H, W = args.size
    img = torch.randn(1, 3, (H + 31) // 32 * 32, (W + 31) // 32 * 32, device=args.device)
    names = [n for n in args.prompt.split('. ') if n]
    sample = DetDataSample(metainfo=dict(img_shape=(H, W), ori_shape=(H, W), pad_shape=tuple(img.shape[-2:]),
                                         batch_input_shape=tuple(img.shape[-2:]), scale_factor=(1., 1.)))
    sample.text = names
    g = torch.Generator().manual_seed(0)
    corner = torch.rand(args.boxes, 2, generator=g) * 0.7
    extent = torch.rand(args.boxes, 2, generator=g) * 0.25 + 0.05
    boxes = torch.cat([corner, corner + extent], dim=1) * torch.tensor([W, H, W, H])
    sample.gt_instances = InstanceData(bboxes=boxes.to(args.device),
                                       labels=(torch.arange(args.boxes) % len(names)).to(args.device))
    return model, img, sample


def run_phase(args: argparse.Namespace, phase: str) -> Dict[str, float]:
    """Build the model and measure one phase in this process."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    select_device(device)
    model, img, sample = build(args)
    dtype = {'none': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}[args.amp]
    autocast = torch.autocast(device_type='cuda' if device.startswith('cuda') else 'cpu', dtype=dtype,
                              enabled=args.amp != 'none')

    def evaluate():
        model.eval()
        with torch.no_grad(), autocast:
            model.predict(img, [sample.clone()])

    def train_step():
        model.train()
        model.zero_grad(set_to_none=True)
        with autocast:
            losses = model.loss(img, [sample.clone()])
        sum(losses.values()).backward()

    fn = evaluate if phase == 'eval' else train_step
    synchronize(device)
    model_rss = rss_mib()
    reset_peak_memory(device)
    fn()  # warm-up
    seconds, cpu_seconds = timed(fn, device, args.repeat, cpu_time=True)
    result = dict(seconds=seconds, cpu_seconds=cpu_seconds)
    if device.startswith('cuda'):
        result.update(peak_mib=peak_memory_mib(device),
                      peak_reserved_mib=torch.cuda.max_memory_reserved(cuda) / 2**20)
    else:
        peak = peak_memory_mib(device)
        result.update(peak_rss_mib=peak, model_rss_mib=model_rss, phase_mib=peak - model_rss)
    if not args.no_flops:  # after the memory readout: the counter's bookkeeping must not count as the phase's
        with FlopCount(model, backward=phase == 'train') as flops:
            fn()
        gemm_dtype = dtype if device.startswith('cuda') else torch.float32
        result['gflop'] = flops.total / 1e9
        result['gemm_gflop_per_s'] = gemm_gflop_per_s(device, gemm_dtype)
        result['gflop_per_s'] = result['gflop'] / seconds
        result['of_gemm'] = result['gflop_per_s'] / result['gemm_gflop_per_s']
    result['params'] = sum(p.numel() for p in model.parameters())
    return result


def run_isolated(argv: List[str], phase: str) -> Dict[str, float]:
    """Run one phase in a fresh process (its peak RSS is then the phase's own) and read its JSON line."""
    cmd = [sys.executable, os.path.abspath(__file__)] + argv + ['--child', phase]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [l for l in proc.stdout.splitlines() if l.startswith('{')]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f'the {phase} phase failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n'
                         f'{proc.stderr[-4000:]}')
    return json.loads(lines[-1])


def table(rows: Dict[str, Dict[str, float]], device: str) -> str:
    mem = ['peak_mib', 'peak_reserved_mib'] if device.startswith('cuda') else ['peak_rss_mib', 'phase_mib']
    cols = ['seconds', 'cpu_seconds'] + mem
    if all('gflop' in r for r in rows.values()):
        cols += ['gflop', 'gflop_per_s', 'gemm_gflop_per_s', 'of_gemm']
    lines = [f'{"phase":<6} ' + ' '.join(f'{c:>16}' for c in cols)]
    for phase, r in rows.items():
        cells = [f'{r[c]:>16.3f}' if c in ('seconds', 'cpu_seconds', 'of_gemm') else f'{r[c]:>16.1f}' for c in cols]
        lines.append(f'{phase:<6} ' + ' '.join(cells))
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_phase(args, args.child)))
        return 0
    cuda = cuda_device(args.device)
    if cuda is not None and not torch.cuda.is_available():
        raise SystemExit(f'--device {args.device} but torch sees no CUDA device')
    if cuda is not None and cuda.index is not None and cuda.index >= torch.cuda.device_count():
        raise SystemExit(f'--device {args.device} but torch sees {torch.cuda.device_count()} CUDA device(s)')
    isolate = not args.device.startswith('cuda') and not args.same_process
    rows = {}
    for phase in args.phases:
        rows[phase] = run_isolated(argv, phase) if isolate else run_phase(args, phase)
    H, W = args.size
    info = dict(config=args.config, size=[H, W], device=args.device, amp=args.amp, with_cp=args.with_cp,
                boxes=args.boxes, repeat=args.repeat,
                threads=args.threads or torch.get_num_threads(), params=rows[args.phases[0]]['params'],
                memory=('cuda allocator peak per phase' if args.device.startswith('cuda') else
                        'peak RSS of a process per phase' if isolate else 'peak RSS of this process so far'))
    print(f'config: {args.config}  params: {info["params"]:,}  image: {H}x{W}  device: {args.device}  '
          f'threads: {info["threads"]}  amp: {args.amp}  with_cp: {args.with_cp}  boxes: {args.boxes}  '
          f'repeat: {args.repeat}  memory: {info["memory"]}')
    print(table(rows, args.device))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(dict(info, phases=rows), f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
