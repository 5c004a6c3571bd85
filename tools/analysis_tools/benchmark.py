"""Time one FIBER forward (and forward + backward) on one image, and report peak memory.

Usage:
    python tools/analysis_tools/benchmark.py CONFIG [--size 800 1333] [--device cpu|cuda] [--repeat 3]
        [--no-backward] [--text-config roberta-base] [--prompt "person. car. dog"] [--amp]

The model is built from CONFIG with random weights. ``--text-config roberta-base`` builds the language model
with roberta-base's sizes WITHOUT downloading anything (use it where the hub is unreachable); with
``--text-config none`` the config's language model is used as it is. The tokenizer is the config's, or with
``--tokenizer DIR`` a local one. Prints seconds per call (median over ``--repeat`` after one warm-up) and the
peak memory: CUDA allocator peak on GPU, the process's peak resident memory on CPU.
"""
import argparse
import resource
import statistics
import sys
import time

import torch
from mmengine.config import Config

ROBERTA_BASE = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                    bos_token_id=0, eos_token_id=2, hidden_act='gelu', layer_norm_eps=1e-5)


def parse_args():
    p = argparse.ArgumentParser(description='FIBER speed and memory on one image')
    p.add_argument('config')
    p.add_argument('--size', type=int, nargs=2, default=[800, 1333], metavar=('H', 'W'))
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--no-backward', action='store_true')
    p.add_argument('--text-config', default='roberta-base', choices=['roberta-base', 'none'])
    p.add_argument('--tokenizer', default=None, help='tokenizer name or directory (default: the config\'s)')
    p.add_argument('--prompt', default='person. bicycle. car. motorcycle. airplane. bus. train. truck. boat')
    p.add_argument('--amp', action='store_true', help='bf16 autocast (GPU)')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    return p.parse_args()


def peak_memory_mib(device: str) -> float:
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(fn, device: str, repeat: int):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        if device.startswith('cuda'):
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.startswith('cuda'):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    from mmengine.structures import InstanceData

    import fiber_mmdet  # noqa: F401
    register_all_modules()
    cfg = Config.fromfile(args.config)
    lm = cfg.model.language_model
    if args.text_config == 'roberta-base':
        lm.update(name=None, config=ROBERTA_BASE, load_pretrained=False)
    if args.tokenizer:
        lm.tokenizer = args.tokenizer
    if lm.get('tokenizer') is None and lm.get('name') is None:
        print('no tokenizer: pass --tokenizer DIR (a RoBERTa-style tokenizer directory)', file=sys.stderr)
        return 2
    # random weights from the constructors: init_weights() would only change the values, not the cost
    model = MODELS.build(cfg.model).to(args.device)
    H, W = args.size
    img = torch.randn(1, 3, (H + 31) // 32 * 32, (W + 31) // 32 * 32, device=args.device)
    names = [n for n in args.prompt.split('. ') if n]
    sample = DetDataSample(metainfo=dict(img_shape=(H, W), ori_shape=(H, W), pad_shape=tuple(img.shape[-2:]),
                                         batch_input_shape=tuple(img.shape[-2:]), scale_factor=(1., 1.)))
    sample.text = names
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[0.1 * W, 0.1 * H, 0.5 * W, 0.6 * H], [0.4 * W, 0.3 * H, 0.9 * W, 0.9 * H]],
                            device=args.device), labels=torch.tensor([0, 1 % len(names)], device=args.device))
    autocast = torch.autocast(device_type='cuda' if args.device.startswith('cuda') else 'cpu',
                              dtype=torch.bfloat16, enabled=args.amp)

    def forward():
        model.eval()
        with torch.no_grad(), autocast:
            model.predict(img, [sample])

    def forward_backward():
        model.train()
        model.zero_grad(set_to_none=True)
        with autocast:
            losses = model.loss(img, [sample])
        sum(losses.values()).backward()

    n_params = sum(p.numel() for p in model.parameters())
    print(f'config: {args.config}  params: {n_params:,}  image: {H}x{W} (padded {tuple(img.shape[-2:])})  '
          f'device: {args.device}  threads: {torch.get_num_threads()}  amp: {args.amp}')
    t_fwd = timed(forward, args.device, args.repeat)
    print(f'forward (predict, 1 prompt): {t_fwd:.3f} s   peak memory {peak_memory_mib(args.device):.0f} MiB')
    if not args.no_backward:
        if args.device.startswith('cuda'):
            torch.cuda.reset_peak_memory_stats()
        t_bwd = timed(forward_backward, args.device, args.repeat)
        print(f'forward+backward (loss):     {t_bwd:.3f} s   peak memory {peak_memory_mib(args.device):.0f} MiB')
    return 0


if __name__ == '__main__':
    sys.exit(main())
