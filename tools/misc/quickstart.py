"""The embedded default, end to end on a CPU in about a minute: build the small FIBER, run it on a
generated sample image with a text prompt through MMDetection's inference API, print boxes and phrases.

Usage:
    python tools/misc/quickstart.py [--work-dir work_dirs/quickstart] [--prompt "red circle. blue square"]

The model has random weights (no checkpoint can be downloaded here): the printed boxes show the plumbing —
tokenizer, fused backbone, head, post-processing and label names — not learnt detections.
"""
import argparse
import os
import os.path as osp
import sys
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CAPTIONS = ['a red circle. a blue square. a green triangle. a yellow star',
            'the small red circle left of the big blue square', 'person. car. dog. bicycle']


def sample_image(path: str) -> None:
    from PIL import Image, ImageDraw
    img = Image.new('RGB', (320, 256), (235, 235, 235))
    draw = ImageDraw.Draw(img)
    draw.ellipse([40, 60, 130, 150], fill=(220, 30, 30))
    draw.rectangle([170, 90, 280, 200], fill=(30, 60, 220))
    img.save(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default=osp.join(REPO_ROOT, 'work_dirs', 'quickstart'))
    parser.add_argument('--prompt', default='red circle. blue square')
    args = parser.parse_args()
    t0 = time.time()
    import logging

    import torch
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmdet.apis import inference_detector
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from fiber_mmdet.utils import train_roberta_tokenizer
    os.makedirs(args.work_dir, exist_ok=True)
    tokenizer_dir = osp.join(args.work_dir, 'tokenizer')
    if not osp.isfile(osp.join(tokenizer_dir, 'tokenizer.json')):
        train_roberta_tokenizer(CAPTIONS * 20 + [args.prompt], tokenizer_dir, vocab_size=400)
    image = osp.join(args.work_dir, 'sample.png')
    sample_image(image)

    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', '_base_', 'models', 'fiber_tiny.py'))
    cfg.model.language_model.tokenizer = tokenizer_dir
    cfg.test_dataloader = dict(dataset=dict(pipeline=[
        dict(type='LoadImageFromFile', imdecode_backend='pillow'),
        dict(type='ShortSideResize', short_sides=(800,), max_long_side=1333),
        dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
                                              'text', 'custom_entities'))]))
    register_all_modules()
    MMLogger.get_current_instance().setLevel(logging.WARNING)  # init_weights() logs every parameter
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    # an untrained head scores every box about sigmoid(bias0) = 0.01: show the best candidates anyway
    model.bbox_head.test_cfg['score_thr'] = 0.0
    model.cfg = cfg  # inference_detector reads the test pipeline from here
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    result = inference_detector(model, image, text_prompt=args.prompt, custom_entities=True)
    pred = result.pred_instances
    print(f'small FIBER ({n_params:,} parameters, random weights) on {image}, prompt {args.prompt!r}:')
    for i in pred.scores.argsort(descending=True)[:5].tolist():
        box = ', '.join(f'{v:.1f}' for v in pred.bboxes[i].tolist())
        print(f'  {pred.label_names[i]:<12} score {pred.scores[i]:.3f}  box [{box}]')
    print(f'quickstart done in {time.time() - t0:.1f} s ({len(pred)} detections)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
