"""Time per image with many prompts (LVIS: 1203 names in chunks of 40 = 31 prompts) and with one prompt, for the
plain path (every prompt runs the whole model, as the original), the cached path (the text-free image part once
per image, the text-free text part once per prompt across images, then one (image, prompt) pair per forward:
``prompt_batch_size=1``) and the batched path (the same, with ``--prompt-batch-size`` pairs per forward through the
fused blocks, neck and head).

Usage:
    python tools/analysis_tools/benchmark_prompts.py CONFIG [--size 800 1333] [--classes 1203] [--chunk 40]
        [--images 2] [--plain-images 1] [--paths plain,cached,batched] [--prompt-batch-size 8]
        [--device cpu|cuda] [--tokenizer DIR]

The model is built from CONFIG with random weights (FIBER-B's language model with roberta-base's sizes, nothing
downloaded, as ``benchmark.py``). Class names are synthetic (``"category 17"``); captions are padded to the
model's ``max_tokens`` (256 for FIBER-B), so the cost of a prompt does not depend on its words. Without
``--tokenizer`` a byte-level BPE tokenizer is trained on the names (offline). The cached and batched paths first
predict a 64 x 64 image, which fills the prompt cache (the cached text does not depend on the image), then
``--images`` different images at the measured size; their time per image is the mean (the steady state of a
dataset evaluation). The plain path keeps nothing between images: its time per image is the mean over
``--plain-images`` images (default 1: on a CPU one FIBER-B image with 31 prompts takes tens of minutes). The
detections of the images two paths both ran are compared (labels exact, scores within 1e-5). Peak memory is the
process's so far (CPU: the resident set, which never goes down; CUDA: reset before each path). The process CPU
seconds beside the wall-clock time tell how much of it other jobs on a shared machine took.
"""
import argparse
import os.path as osp
import sys
import tempfile
import time

import torch
from mmengine.config import Config

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from benchmark import (ROBERTA_BASE, peak_memory_mib, reset_peak_memory, select_device,  # noqa: E402
                       synchronize)


def parse_args():
    p = argparse.ArgumentParser(description='FIBER time per image with many prompts: plain, cached and batched')
    p.add_argument('config')
    p.add_argument('--size', type=int, nargs=2, default=[800, 1333], metavar=('H', 'W'))
    p.add_argument('--classes', type=int, default=1203, help='number of class names (LVIS v1: 1203)')
    p.add_argument('--chunk', type=int, default=40, help='names per prompt (LVIS protocol: 40)')
    p.add_argument('--images', type=int, default=1, help='images of the cached and batched paths after the warm-up')
    p.add_argument('--plain-images', type=int, default=1, help='images of the plain path (>= 1)')
    p.add_argument('--paths', default='plain,cached,batched',
                   help='comma-separated, run in this order: plain, cached, batched')
    p.add_argument('--prompt-batch-size', type=int, default=None,
                   help="(image, prompt) pairs per forward of the batched path (default: the config's, or 8)")
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--tokenizer', default=None, help='tokenizer directory (default: trained on the names)')
    p.add_argument('--text-config', default='roberta-base', choices=['roberta-base', 'none'])
    p.add_argument('--settings', default='many,single', help='comma-separated: many (the chunked class list), '
                   'single (one prompt)')
    p.add_argument('--score-thr', type=float, default=0.0,
                   help='random weights score every box ~0.01, under the 0.05 of the protocol: 0 keeps the '
                   'candidates, so that NMS runs (an upper bound on post-processing) and the paths are compared')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    return p.parse_args()


def main() -> int:
    args = parse_args()
    if args.images < 1 or args.plain_images < 1:
        print('--images and --plain-images must be at least 1', file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    select_device(args.device)
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules

    import fiber_mmdet  # noqa: F401
    from fiber_mmdet.utils.tokenizer import train_roberta_tokenizer
    register_all_modules()

    names = [f'category {i}' for i in range(args.classes)]
    cfg = Config.fromfile(args.config)
    lm = cfg.model.language_model
    if args.text_config == 'roberta-base':
        lm.update(name=None, config=ROBERTA_BASE, load_pretrained=False)
    tmp = tempfile.TemporaryDirectory()
    if args.tokenizer is None:
        train_roberta_tokenizer(['. '.join(names)], tmp.name, vocab_size=2000)
        args.tokenizer = tmp.name
    lm.tokenizer = args.tokenizer
    cfg.model.test_cfg.chunked_size = args.chunk
    cfg.model.test_cfg.score_thr = args.score_thr
    model = MODELS.build(cfg.model).to(args.device).eval()
    H, W = args.size
    padded = ((H + 31) // 32 * 32, (W + 31) // 32 * 32)

    def sample(text, shape=(H, W), pad=padded):
        s = DetDataSample(metainfo=dict(img_shape=shape, ori_shape=shape, pad_shape=pad, batch_input_shape=pad,
                                        scale_factor=(1., 1.)))
        s.text = text
        return s

    images = [torch.randn(1, 3, *padded, generator=torch.Generator().manual_seed(i)).to(args.device)
              for i in range(max(args.images, args.plain_images))]
    print(f'config: {args.config}  params: {sum(p.numel() for p in model.parameters()):,}  image: {H}x{W}  '
          f'device: {args.device}  threads: {torch.get_num_threads()}  images: plain {args.plain_images}, '
          f'cached {args.images}')
    settings = dict(many=names, single=names[:args.chunk])
    batch_size = args.prompt_batch_size or cfg.model.test_cfg.get('prompt_batch_size', None) or 8
    path_cfgs = dict(plain=dict(reuse_text_free_features=False),
                     cached=dict(reuse_text_free_features=True, prompt_batch_size=1),
                     batched=dict(reuse_text_free_features=True, prompt_batch_size=batch_size))
    paths = args.paths.split(',')
    unknown = [p for p in paths if p not in path_cfgs]
    if unknown:
        print(f'--paths: unknown {unknown}; choose from {list(path_cfgs)}', file=sys.stderr)
        return 2
    print(f'batched path: {batch_size} (image, prompt) pairs per forward', flush=True)
    for setting in args.settings.split(','):
        text = settings[setting]
        num_prompts = len(model.test_prompts(sample(text)))
        per_path = {}
        for path in paths:
            model.test_cfg.update(path_cfgs[path])
            model.eval()  # also empties the prompt cache
            reset_peak_memory(args.device)
            if path != 'plain':  # fill the prompt cache on a small image
                with torch.no_grad():
                    model.predict(torch.zeros(1, 3, 64, 64, device=args.device), [sample(text, (64, 64), (64, 64))])
            times, cpu_times, preds = [], [], []
            for img in images[:args.plain_images if path == 'plain' else args.images]:
                synchronize(args.device)
                t, c = time.perf_counter(), time.process_time()
                with torch.no_grad():
                    preds.append(model.predict(img, [sample(text)])[0].pred_instances)
                synchronize(args.device)
                times.append(time.perf_counter() - t)
                cpu_times.append(time.process_time() - c)
            per_path[path] = (sum(times) / len(times), preds)
            print(f'[{setting}: {len(text)} names, {num_prompts} prompt(s)] {path:7s}: {per_path[path][0]:8.2f} s per '
                  f'image ({", ".join(f"{x:.2f}" for x in times)}; process CPU {sum(cpu_times) / len(cpu_times):.1f} s)'
                  f'  peak memory {peak_memory_mib(args.device):.0f} MiB', flush=True)
            for a in list(per_path)[:-1]:  # compared as soon as both ran, in case a later path is cut short
                (ta, pa), (tb, pb) = per_path[a], per_path[path]
                same = all(torch.equal(x.labels, y.labels) and torch.allclose(x.scores, y.scores, atol=1e-5)
                           for x, y in zip(pa, pb))
                # random weights score all boxes alike (near-ties ~1e-7 apart), so float noise of another batch
                # shape can swap which near-tied box NMS keeps: the sorted scores tell noise from a real change
                gap = max((x.scores.sort().values - y.scores.sort().values).abs().max().item()
                          if len(x) == len(y) else float('inf') for x, y in zip(pa, pb))
                print(f'[{setting}] {a} / {path} = {ta / tb:.2f}x; detections agree: {same} (sorted scores differ '
                      f'by at most {gap:.1e})', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
