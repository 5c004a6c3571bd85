"""The Python steps of ``gpu_check.py``, each run in the driver's process and returning summary lines, and the
worker of its two-process DDP step (``python -m torch.distributed.run ... gpu_check_steps.py ddp-worker``).

Every step works on ``cuda`` (what it is for) and on ``cpu`` (how the suite tests it); what a CPU cannot run
(MMEngine's AMP optimizer wrapper) is reported as SKIP with the reason.
"""
import argparse
import datetime
import json
import math
import os
import os.path as osp
import sys
import time
from typing import Dict, List, NamedTuple, Optional

import torch

HERE = osp.dirname(osp.abspath(__file__))
REPO_ROOT = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, HERE)
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
TOY_CONFIG = osp.join(REPO_ROOT, 'configs', 'toy', 'fiber_toy.py')
AMP_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}


class Line(NamedTuple):
    """One summary line: ``STATUS name: key figures``."""
    status: str  # PASS, FAIL or SKIP
    name: str
    key: str

    def __str__(self) -> str:
        return f'{self.status} {self.name}: {self.key}'


# ------------------------------------------------------------------------------------------------------ env
REQUIRED = ('torch', 'mmengine', 'mmcv', 'mmdet', 'transformers', 'tokenizers', 'pycocotools', 'lvis', 'cv2')


def step_env(device: str) -> List[Line]:
    """Versions, the GPU, and whether everything the other steps import is there (a FAIL names what is
    missing and stops the check)."""
    import importlib
    found, missing = {}, []
    for name in REQUIRED:
        try:
            found[name] = getattr(importlib.import_module(name), '__version__', '?')
        except Exception as e:  # noqa: BLE001 - an import that fails for any reason is reported by name
            missing.append(f'{name} ({type(e).__name__}: {str(e)[:80]})')
    problems = list(missing)
    detail = []
    if torch.device(device).type == 'cuda':
        if not torch.cuda.is_available():
            problems.append(f'torch {torch.__version__} sees no CUDA device')
        else:
            detail.append(f'{torch.cuda.get_device_name(torch.device(device))} x{torch.cuda.device_count()}, '
                          f'CUDA {torch.version.cuda}')
    if 'mmcv' in found:
        try:
            from mmcv.ops import get_compiling_cuda_version
            ops_cuda = get_compiling_cuda_version()
            detail.append(f'mmcv ops CUDA {ops_cuda}')
            if torch.device(device).type == 'cuda' and ops_cuda in ('not available', ''):
                problems.append('mmcv was built without CUDA ops (rebuild: MMCV_WITH_OPS=1 FORCE_CUDA=1)')
        except ImportError as e:
            problems.append(f'mmcv has no compiled ops (mmcv-lite?): {e}')
    if not problems:
        try:
            import fiber_mmdet  # noqa: F401
        except Exception as e:  # noqa: BLE001
            problems.append(f'fiber_mmdet does not import: {type(e).__name__}: {e}')
    versions = ', '.join(f'{k} {v}' for k, v in found.items())
    if problems:
        return [Line('FAIL', 'env', 'missing or unusable: ' + '; '.join(problems) + f' (found: {versions})')]
    return [Line('PASS', 'env', f'{versions}; ' + ', '.join(detail))]


# ------------------------------------------------------------------------------------------------------ tf32
def step_tf32(device: str) -> List[Line]:
    """TF32 off (as for every parity step), and proven off: float32 matmul and convolution against float64."""
    from reference_parity import disable_tf32, relative_error
    disable_tf32(device)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(512, 512, generator=g), torch.randn(512, 512, generator=g)
    x, w = torch.randn(2, 64, 32, 32, generator=g), torch.randn(64, 64, 3, 3, generator=g)
    mm = relative_error((a.to(device) @ b.to(device)), a.double() @ b.double())
    conv = relative_error(torch.nn.functional.conv2d(x.to(device), w.to(device), padding=1),
                torch.nn.functional.conv2d(x.double(), w.double(), padding=1))
    ok = mm < 1e-5 and conv < 1e-5
    return [Line('PASS' if ok else 'FAIL', 'tf32_off',
                 f'float32 vs float64: matmul {mm:.1e}, conv {conv:.1e} (limit 1e-5; TF32 gives ~1e-3)')]


# ------------------------------------------------------------------------------------------------------ dcn
def step_dcn(device: str) -> List[Line]:
    """The head's deformable convolution on ``device`` (CUDA: mmcv's kernel) against the vectorised CPU one in
    float64, forward and all gradients; and its FLOPs counted once by ``benchmark.FlopCount``."""
    from benchmark import FlopCount
    from reference_parity import relative_error

    from fiber_mmdet.models.layers.deform_conv_cpu import modulated_deform_conv2d_cpu
    from fiber_mmdet.models.layers.fp32_deform_conv import FP32ModulatedDeformConv2d
    torch.manual_seed(0)
    conv = FP32ModulatedDeformConv2d(16, 16, 3, padding=1, deform_groups=1, bias=True).to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 12, 20, generator=g)
    offset = torch.randn(2, 18, 12, 20, generator=g) * 2  # non-integer positions, some outside the map
    mask = torch.rand(2, 9, 12, 20, generator=g)
    leaves = [t.detach().to(device).requires_grad_() for t in (x, offset, mask)]
    out = conv(*leaves)
    out.square().sum().backward()
    ref_leaves = [t.detach().double().requires_grad_() for t in (x, offset, mask)]
    weight = conv.weight.detach().double().cpu().requires_grad_()
    bias = conv.bias.detach().double().cpu().requires_grad_()
    ref = modulated_deform_conv2d_cpu(*ref_leaves, weight, bias, 1, 1, 1, 1, 1)
    ref.square().sum().backward()
    errs = dict(out=relative_error(out, ref), x=relative_error(leaves[0].grad, ref_leaves[0].grad),
                offset=relative_error(leaves[1].grad, ref_leaves[1].grad),
                mask=relative_error(leaves[2].grad, ref_leaves[2].grad),
                weight=relative_error(conv.weight.grad, weight.grad))
    worst = max(errs.values())
    with torch.no_grad(), FlopCount(conv, backward=False) as flops:
        conv(*[t.detach() for t in leaves])
    dense = FlopCount.dense_flops(conv, out)
    ok = worst < 1e-4 and flops.total == dense
    figures = ', '.join(f'{k} {v:.1e}' for k, v in errs.items())
    return [Line('PASS' if ok else 'FAIL', 'deform_conv',
                 f'vs float64 CPU: {figures} (limit 1e-4); FLOPs counted {flops.total} = dense {dense}: '
                 f'{flops.total == dense}')]


# ------------------------------------------------------------------------------------------------------ parity
def step_parity(device: str) -> List[Line]:
    """The stored fixture (CPU float32 outputs) reproduced on ``device`` in float32, TF32 off."""
    import gpu_parity
    from reference_parity import disable_tf32
    missing = gpu_parity.missing_files()
    if missing:
        return [Line('FAIL', 'parity_fp32', f'fixture {gpu_parity.FIXTURE_DIR} lacks {missing} '
                     '(python tools/analysis_tools/make_gpu_parity_fixture.py writes it)')]
    disable_tf32(device)
    report = gpu_parity.check(device)
    report.print()
    failed = [r[0] for r in report.rows if not r[3]]
    dets = [r[1] for r in report.rows if r[0].startswith('detections')]
    worst = gpu_parity.worst_relative_error(report)
    return [Line('FAIL' if failed else 'PASS', 'parity_fp32',
                 f'worst rel err {worst:.1e} (limit {gpu_parity.FEATURE_RTOL:.0e}) over {len(report.rows)} checks; '
                 f'detections {"; ".join(dets)}' + (f'; FAILED: {failed[:6]}' if failed else ''))]


# ------------------------------------------------------------------------------------------------------ autocast
def step_autocast_predict(device: str, amps=('fp16', 'bf16')) -> List[Line]:
    """``model.predict`` of the fixture model under autocast against float32: boxes present and finite, the
    float32 detections found again (same label, IoU >= 0.8), head logits close."""
    import gpu_parity
    from mmdet.structures.bbox import bbox_overlaps
    from reference_parity import relative_error
    lines = []
    ref = gpu_parity.load_reference()
    inputs = ref['inputs']
    model = gpu_parity.build_model(device=device)
    images = inputs['images'].to(device)
    with torch.no_grad():
        fp32 = [s.pred_instances for s in model.predict(images, gpu_parity.data_samples(inputs, device, False),
                                                        rescale=False)]
        head32 = model._forward(images, gpu_parity.data_samples(inputs, device, False))[0]
    for amp in amps:
        try:
            with torch.no_grad(), torch.autocast(torch.device(device).type, dtype=AMP_DTYPES[amp]):
                preds = [s.pred_instances for s in
                         model.predict(images, gpu_parity.data_samples(inputs, device, False), rescale=False)]
                head = model._forward(images, gpu_parity.data_samples(inputs, device, False))[0]
        except Exception as e:  # noqa: BLE001 - reported as this line's failure, the other lines still run
            lines.append(Line('FAIL', f'predict_{amp}', f'{type(e).__name__}: {str(e)[:300]}'))
            continue
        counts, found, total, finite = [], 0, 0, True
        for p, r in zip(preds, fp32):
            counts.append(len(p))
            finite &= bool(torch.isfinite(p.bboxes).all() and torch.isfinite(p.scores).all())
            finite &= p.bboxes.dtype == torch.float32 and p.scores.dtype == torch.float32
            if len(p) and len(r):
                iou = bbox_overlaps(r.bboxes.float(), p.bboxes.float())
                iou[r.labels[:, None] != p.labels[None, :]] = 0
                found += int((iou.max(dim=1).values >= 0.8).sum())
            total += len(r)
        logit_err = max(relative_error(a, b) for a, b in zip(head, head32))
        share = found / max(total, 1)
        ok = min(counts) > 0 and finite and share >= 0.8 and logit_err < 0.05
        lines.append(Line('PASS' if ok else 'FAIL', f'predict_{amp}',
                          f'boxes {counts} (fp32 {[len(r) for r in fp32]}), fp32 detections found {found}/{total} '
                          f'(limit 80%), float32 finite outputs {finite}, logits rel err {logit_err:.1e} '
                          '(limit 5e-2)'))
    return lines


# ------------------------------------------------------------------------------------------------------ training
def toy_data(root: str) -> str:
    """A toy dataset of a few images under ``root`` (written once), with the parity fixture's tokenizer in
    its ``tokenizer/`` (any RoBERTa-style tokenizer of under 1000 tokens fits the toy model; a copy saves
    training one)."""
    import shutil

    import gpu_parity

    from fiber_mmdet.datasets import generate_toy_dataset
    data = osp.join(root, 'toy_shapes')
    if not osp.isfile(osp.join(data, 'annotations', 'meta.json')):
        generate_toy_dataset(data, seed=0, num_train_od=4, num_train_od_attr=2, num_train_vg=4, num_val=1,
                             num_grounding=1, with_tokenizer=False)
        shutil.copytree(osp.join(gpu_parity.FIXTURE_DIR, 'tokenizer'), osp.join(data, 'tokenizer'))
    return data + '/'


def toy_train_cfg(data_root: str, work_dir: str, amp: Optional[str], iters: int, name: str):
    """``configs/toy/fiber_toy.py`` for ``iters`` training iterations on ``data_root``, no validation, with the
    head's deformable convolutions on, NonFiniteGuardHook (the default hooks'), an EMA (NonFiniteSkipEMAHook,
    as the FIBER-B recipes) and, with ``amp``, MMEngine's AMP through NonFiniteSkipAmpOptimWrapper with a
    dynamic loss scale (what ``tools/train.py --amp`` sets)."""
    from mmengine.config import Config

    from fiber_mmdet.engine.data_root import override_data_root
    cfg = Config.fromfile(TOY_CONFIG)
    override_data_root(cfg, 'data_root', data_root)
    cfg.merge_from_dict({
        'work_dir': work_dir, 'experiment_name': name, 'train_cfg.max_iters': iters, 'train_cfg.val_interval': 10**6,
        'train_dataloader.batch_size': 2, 'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False, 'model.bbox_head.use_dcn': True,
        # a full DyHead block (offsets come from its attention branch only when the FPN and the tower have the
        # same width; the toy config's 64 -> 128 block has none for the deformable convolution)
        'model.bbox_head.feat_channels': 64,
        'default_hooks.logger.interval': 1, 'default_hooks.checkpoint.interval': iters,
        'log_processor.window_size': 1})
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.custom_hooks = list(cfg.custom_hooks) + [
        dict(type='NonFiniteSkipEMAHook', momentum=0.1, update_buffers=True, priority=49)]
    if amp:
        cfg.optim_wrapper.update(type='NonFiniteSkipAmpOptimWrapper', loss_scale='dynamic', dtype=amp_name(amp))
    return cfg


def amp_name(amp: str) -> str:
    return {'fp16': 'float16', 'bf16': 'bfloat16'}[amp]


def train_outcome(runner, before: Dict[str, torch.Tensor]) -> Dict[str, object]:
    """What a finished toy run left: losses per iteration, skipped steps, EMA state, weight change."""
    from fiber_mmdet.engine import NonFiniteGuardHook
    from fiber_mmdet.engine.optimizers.non_finite_skip_optim_wrapper import step_guards
    losses = list(runner.message_hub.get_scalar('train/loss').data[0])
    guard = next(h for h in runner.hooks if isinstance(h, NonFiniteGuardHook))
    ema = next(h for h in runner.hooks if type(h).__name__ == 'NonFiniteSkipEMAHook')
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    changed = max((p.detach().float().cpu() - before[n]).abs().max().item() for n, p in model.named_parameters())
    ema_params = [p for p in ema.ema_model.parameters()]
    scales = [g.last_loss_scale for g in step_guards(runner.optim_wrapper) if getattr(g, 'last_loss_scale', None)]
    return dict(losses=[float(x) for x in losses], guard_skipped=list(guard.skipped),
                # AMP loss-scaler back-offs, which the guard logs apart from non-finite steps
                guard_backoffs=list(getattr(guard, 'scaler_backoffs', [])),
                loss_scale=scales[0][1] if scales else None,
                wrapper_skipped=sum(g.skipped_steps for g in step_guards(runner.optim_wrapper)),
                ema_steps=int(ema.ema_model.steps), ema_finite=all(bool(torch.isfinite(p).all()) for p in ema_params),
                weights_changed=changed, iters=runner.iter)


def train_iters(device: str) -> int:
    """Iterations of the training steps: on CUDA enough for an fp16 loss scaler that starts at 2**16 to back
    off a few times and still step; on a CPU (float32) 3, which is what a CPU can spare."""
    return 6 if torch.device(device).type == 'cuda' else 3


def step_train(device: str, work_root: str, amps=('fp16', 'bf16')) -> List[Line]:
    """Runner-level training of the toy model (deformable head) for a few iterations: with AMP (fp16, bf16) on
    CUDA, in float32 on a CPU (MMEngine's AMP wrapper needs CUDA; those lines are SKIPs there)."""
    from mmengine.runner import Runner
    is_cuda = torch.device(device).type == 'cuda'
    iters = train_iters(device)
    data_root = toy_data(work_root)
    lines = []
    runs = list(amps) if is_cuda else [None]
    if not is_cuda:
        lines += [Line('SKIP', f'train_amp_{amp}', 'MMEngine AmpOptimWrapper needs CUDA') for amp in amps]
    for amp in runs:
        name = f'train_amp_{amp}' if amp else 'train_fp32'
        try:
            cfg = toy_train_cfg(data_root, osp.join(work_root, name), amp, iters, name)
            runner = Runner.from_cfg(cfg)
            before = {n: p.detach().float().cpu().clone() for n, p in runner.model.named_parameters()}
            runner.train()
            r = train_outcome(runner, before)
        except Exception as e:  # noqa: BLE001 - reported as this line's failure
            lines.append(Line('FAIL', name, f'{type(e).__name__}: {str(e)[:300]}'))
            continue
        stepped = r['iters'] - r['wrapper_skipped']
        ok = (r['iters'] == iters and all(math.isfinite(x) for x in r['losses']) and stepped >= 1
              and r['ema_steps'] == stepped and r['ema_finite'] and r['weights_changed'] > 0
              and len(r['guard_skipped']) + len(r['guard_backoffs']) == r['wrapper_skipped'])
        scale = f'; loss scale {r["loss_scale"]:g}' if r['loss_scale'] is not None else ''
        lines.append(Line('PASS' if ok else 'FAIL', name,
                          f'{r["iters"]} iters, loss {" ".join(f"{x:.3f}" for x in r["losses"])}; skipped steps '
                          f'{r["wrapper_skipped"]} (guard hook logged non-finite {r["guard_skipped"]}, scaler '
                          f'back-offs {r["guard_backoffs"]}){scale}; EMA steps {r["ema_steps"]}, finite '
                          f'{r["ema_finite"]}; max weight change {r["weights_changed"]:.1e}'))
    return lines


# ------------------------------------------------------------------------------------------------------ DDP worker
def ddp_backend(device: str, world_size: int, gpus: int) -> str:
    """NCCL with one GPU per rank; gloo where ranks share a GPU (NCCL refuses two ranks on one device:
    'Duplicate GPU detected') or on the CPU. gloo all-reduces CUDA tensors through host memory."""
    if torch.device(device).type != 'cuda':
        return 'gloo'
    return 'nccl' if gpus >= world_size else 'gloo'


def ddp_worker(argv: Optional[List[str]] = None) -> int:
    """One rank of the DDP step (started by torchrun): a few toy iterations through the Runner with
    MMDistributedDataParallel, then the weights compared across ranks; rank 0 writes ``--result`` (JSON)."""
    p = argparse.ArgumentParser()
    p.add_argument('--device', required=True)
    p.add_argument('--data-root', required=True)
    p.add_argument('--work-dir', required=True)
    p.add_argument('--result', required=True)
    p.add_argument('--iters', type=int, required=True)
    p.add_argument('--amp', default=None, choices=['fp16', 'bf16'])
    args = p.parse_args(argv)
    import torch.distributed as dist
    from mmengine.runner import Runner

    import fiber_mmdet  # noqa: F401
    rank, local_rank, world = (int(os.environ[k]) for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE'))
    is_cuda = torch.device(args.device).type == 'cuda'
    gpus = torch.cuda.device_count() if is_cuda else 0
    backend = ddp_backend(args.device, world, gpus)
    if is_cuda:
        torch.cuda.set_device(local_rank % gpus)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=120))
    cfg = toy_train_cfg(args.data_root, args.work_dir, args.amp if is_cuda else None, args.iters, 'ddp')
    cfg.launcher = 'pytorch'
    cfg.env_cfg.dist_cfg = dict(backend=backend, timeout=120)
    # the Runner would pass device_ids=[LOCAL_RANK], which does not exist where ranks share a GPU
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=False,
                                 device_ids=[local_rank % gpus] if is_cuda else None)
    start = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    before = {n: p.detach().float().cpu().clone() for n, p in runner.model.module.named_parameters()}
    runner.train()
    outcome = train_outcome(runner, before)
    flat = torch.cat([p.detach().double().flatten() for p in runner.model.module.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    diff = max((g - gathered[0]).abs().max().item() for g in gathered)
    if rank == 0:
        with open(args.result, 'w') as f:
            json.dump(dict(outcome, backend=backend, world_size=world, gpus=gpus, rank_weight_diff=diff,
                           device=str(flat.device), seconds=time.perf_counter() - start), f)
    dist.destroy_process_group()
    return 0


def ddp_line(result_file: str, iters: int, returncode: int, tail: str) -> Line:
    """The summary line of a finished DDP run from rank 0's result file."""
    if returncode != 0 or not osp.isfile(result_file):
        return Line('FAIL', 'ddp_2proc', f'exit {returncode}: {tail[-300:]}')
    with open(result_file) as f:
        r = json.load(f)
    ok = (r['iters'] == iters and r['rank_weight_diff'] == 0 and all(math.isfinite(x) for x in r['losses'])
          and r['weights_changed'] > 0)
    where = f'{r["gpus"]} GPU(s)' if r['gpus'] else 'CPU'
    return Line('PASS' if ok else 'FAIL', f'ddp_2proc_{r["backend"]}',
                f'{r["world_size"]} ranks on {where}, {r["iters"]} iters, loss '
                f'{" ".join(f"{x:.3f}" for x in r["losses"])}, weights equal across ranks (max diff '
                f'{r["rank_weight_diff"]:.1e}), skipped steps {r["wrapper_skipped"]}, {r["seconds"]:.0f} s')


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == 'ddp-worker':
        sys.exit(ddp_worker(sys.argv[2:]))
    sys.exit('usage: gpu_check_steps.py ddp-worker ... (the steps run from gpu_check.py)')
