"""What running prompts on their own tokens (``test_cfg.trim_text_padding=True``) buys against FIBER's 256, per kind
of prompt, side by side in one process, with the detections of both checked equal.

Usage:
    python tools/analysis_tools/benchmark_text_length.py [CONFIG] [--size 512 512] [--threads 2] [--repeat 2] [--prompts NAME ...]

CONFIG (default: FIBER-B's model, ``configs/_base_/models/fiber_b.py``) is built with random weights, roberta-base's
text sizes and a tokenizer trained on the prompts below (whole words, as roberta-base tokenises them), the prior
bias at 0 so that boxes come out. Prompts: 5, 12 and 80 (COCO) class names, a referring expression, a Flickr30k
sentence with its phrases. Each runs ``model.predict`` on one random image, padded and trimmed in turn,
``--repeat`` times after a warm-up; the median is reported with the tokens the prompt needs, and whether every
detection of one run has its pair in the other (label, box within 1e-3 px, score within 1e-5).
"""
import argparse
import os.path as osp
import sys
import tempfile
from typing import List, Optional

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from benchmark import ROBERTA_BASE  # noqa: E402
from benchmark_onnx import round_robin_seconds  # noqa: E402

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SENTENCE = 'A man in a blue shirt is riding a brown horse next to a woman holding a small white dog .'


def prompts() -> dict:
    from mmdet.evaluation import get_classes
    coco = list(get_classes('coco'))
    return {
        '5 names': dict(text=coco[:5]),
        '12 names': dict(text=coco[:12]),
        '80 names (COCO)': dict(text=coco),
        'expression': dict(text='the man on the left in a red shirt', tokens_positive=-1),
        'Flickr30k sentence': dict(text=SENTENCE, tokens_positive=['A man', 'a blue shirt', 'a brown horse',
                                                                   'a woman', 'a small white dog']),
    }


def as_dict(pred) -> dict:
    return dict(bboxes=pred.bboxes.tolist(), scores=pred.scores.tolist(), labels=pred.labels.tolist(),
                label_names=list(pred.label_names))


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config', nargs='?', default=osp.join(REPO_ROOT, 'configs', '_base_', 'models', 'fiber_b.py'))
    p.add_argument('--size', type=int, nargs=2, default=[512, 512], metavar=('H', 'W'))
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--repeat', type=int, default=2)
    p.add_argument('--prompts', nargs='+', default=None, help='a subset of the prompt names')
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    from fiber_mmdet.runtime.compare import compare_detections
    from fiber_mmdet.utils import train_roberta_tokenizer
    register_all_modules()
    cases = prompts()
    words = ' '.join(' '.join(c['text']) if isinstance(c['text'], list) else c['text'] for c in cases.values())
    cfg = Config.fromfile(args.config)
    tokenizer = train_roberta_tokenizer([words] * 20, tempfile.mkdtemp(prefix='fiber_tokenizer_'), vocab_size=2000)
    cfg.model.language_model.update(name=None, config=ROBERTA_BASE, load_pretrained=False, tokenizer=tokenizer)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        model.bbox_head.head.bias0.zero_()
    h, w = args.size
    ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
    image = torch.zeros(1, 3, ph, pw)
    image[..., :h, :w] = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))

    def run(prompt: dict, trim: bool):
        model.test_cfg.trim_text_padding = trim
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.),
                                             pad_shape=(ph, pw), batch_input_shape=(ph, pw)))
        for key, value in prompt.items():
            setattr(sample, key, value)
        with torch.no_grad():
            return model.predict(image, [sample])[0].pred_instances

    print(f'config: {args.config}  image: {h}x{w}  threads: {args.threads}  repeat: {args.repeat}')
    print(f'{"prompt":<20} {"tokens":>14} {"256 tokens":>11} {"own tokens":>11} {"ratio":>6}  detections equal')
    for name, prompt in cases.items():
        if args.prompts and not any(name.startswith(n) for n in args.prompts):
            continue
        tokens = [len(model.language_model.tokenizer(p.caption)['input_ids']) for p in model.test_prompts(
            type('S', (), dict(get=lambda self, k, d=None: prompt.get(k, d)))())]
        seconds = round_robin_seconds({'padded': lambda: run(prompt, False), 'trimmed': lambda: run(prompt, True)},
                                      args.repeat, lambda: None)
        a, b = run(prompt, False), run(prompt, True)
        # paired by label, box and score: near-equal scores may come out in another order
        result = compare_detections(as_dict(a), as_dict(b), box_tol=1e-3, score_tol=1e-5)
        equal, box_diff, score_diff = result.equal and len(a.scores) > 0, result.max_box_diff, result.max_score_diff
        print(f'{name:<20} {"+".join(map(str, tokens)):>14} {seconds["padded"]:10.2f}s {seconds["trimmed"]:10.2f}s '
              f'{seconds["trimmed"] / seconds["padded"]:6.2f}  {equal} ({len(a.scores)}; boxes {box_diff:.1e} px, '
              f'scores {score_diff:.1e})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
