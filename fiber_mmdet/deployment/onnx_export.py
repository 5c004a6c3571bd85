"""Export a FIBER checkpoint to an ONNX folder that runs without torch or mmcv (:mod:`fiber_mmdet.runtime`).

The folder holds ``fiber.onnx``, the tokenizer files and ``fiber_onnx.json``: the pre-processing (resize rule,
mean / std, channel order, size divisor), the token budget, the post-processing settings of ``test_cfg`` and, for
a fixed-vocabulary graph, its prompts.
"""
import json
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config

from ..datasets.transforms.loading import ORIENTATION_OF_COLOR_TYPE
from ..runtime.metadata import GRAPH_FILE, METADATA_FILE, ExportError
from ..utils import PromptError
from .onnx_graph import FIBERFixedVocabularyGraph, FIBERGraph

OPSET = 17


def preprocessing_settings(cfg: Config) -> dict:
    """What the runtime must do to an image before the graph, read from the config's test pipeline and data
    preprocessor; a pipeline the runtime does not reproduce is an :class:`ExportError` naming the transform."""
    pipeline = cfg.get('test_pipeline', None) or cfg.test_dataloader.dataset.get('pipeline', None)
    if pipeline is None:
        raise ExportError('the config has no test_pipeline (nor test_dataloader.dataset.pipeline)')
    settings = dict(decode_backend='cv2', orientation='exif', resize=None)
    for t in pipeline:
        kind = t['type'] if isinstance(t['type'], str) else t['type'].__name__
        if kind in ('LoadImageFromFile', 'CheckedLoadImageFromFile', 'LoadImageFromNDArray'):
            settings['decode_backend'] = t.get('imdecode_backend', 'cv2')
            color_type = t.get('color_type', 'color')
            if color_type not in ORIENTATION_OF_COLOR_TYPE:
                raise ExportError(f'test pipeline {kind} color_type={color_type!r}: the runtime decodes colour '
                                  f'images ({", ".join(ORIENTATION_OF_COLOR_TYPE)})')
            settings['orientation'] = ORIENTATION_OF_COLOR_TYPE[color_type]
        elif kind == 'ShortSideResize':
            short = t.get('short_sides', (800, ))
            short = [short] if isinstance(short, int) else list(short)
            if len(short) != 1:
                raise ExportError(f'test pipeline ShortSideResize has several short sides {short}: a test pipeline '
                                  'resizes deterministically')
            if t.get('backend', 'pillow') != 'pillow' or t.get('interpolation', 'bilinear') != 'bilinear':
                raise ExportError('the runtime resizes with Pillow bilinear, as ShortSideResize does by default; '
                                  f'the test pipeline asks for {t.get("backend")} {t.get("interpolation")}')
            settings['resize'] = dict(rule='fiber_short_side', short_side=int(short[0]),
                                      max_long_side=int(t.get('max_long_side', 1333)))
        elif kind in ('LoadAnnotations', 'PackDetInputs'):
            continue
        else:
            raise ExportError(f'test pipeline transform {kind!r} is not reproduced by the ONNX runtime (it knows '
                              'LoadImageFromFile, ShortSideResize, LoadAnnotations, PackDetInputs)')
    if settings['resize'] is None:
        raise ExportError('the test pipeline has no ShortSideResize: the runtime would not know the input size')
    pre = cfg.model.data_preprocessor
    settings.update(mean=[float(v) for v in pre.mean], std=[float(v) for v in pre.std],
                    channel_order='rgb' if pre.get('bgr_to_rgb', False) else 'bgr',
                    size_divisor=int(pre.get('pad_size_divisor', 1)), pad_value=float(pre.get('pad_value', 0)))
    return settings


def swin_trace_shape(window_sizes: Sequence[int], divisor: int, start: int = 320) -> Tuple[int, int]:
    """A padded input size at which every Swin stage pads both sides of its map to whole windows: tracing there
    records the pad-and-crop of every stage, so the graph is right at any other size too."""
    def pads_everywhere(size: int) -> bool:
        return all((size // (4 * 2**i)) % w != 0 for i, w in enumerate(window_sizes))

    sizes = [s for s in range(start, start + 64 * divisor, divisor) if pads_everywhere(s)]
    if len(sizes) < 2:
        raise ExportError(f'no input size near {start} pads every Swin stage (windows {list(window_sizes)}); '
                          'export with --shape H W')
    return sizes[0], sizes[1]


def _window_sizes(model) -> List[int]:
    return [stage.blocks[0].attn.window_size for stage in model.backbone.stages]


def build_model(config: str, checkpoint: str, cfg_options: Optional[dict] = None):
    """The FIBER model of ``config`` with ``checkpoint`` loaded, on the CPU, float32, eval mode; a checkpoint
    that does not fit the config is an :class:`ExportError` naming both."""
    from mmdet.apis import init_detector
    if not osp.isfile(checkpoint):
        raise ExportError(f'{checkpoint}: no such checkpoint file')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    try:
        model = init_detector(cfg, checkpoint, device='cpu')
    except Exception as e:  # CheckpointMismatchError and friends: say which pair failed
        raise ExportError(f'{checkpoint} does not load into the model of {config}: {type(e).__name__}: {e}') from e
    return cfg, model.float().eval()


def export_onnx(config: str, checkpoint: str, out_dir: str, texts=None, tokens_positive=None,
                custom_entities: bool = True, shape: Optional[Tuple[int, int]] = None,
                cfg_options: Optional[dict] = None, opset: int = OPSET, check: bool = True) -> str:
    """Write ``out_dir/fiber.onnx`` (+ tokenizer files and ``fiber_onnx.json``) for ``checkpoint`` and return the
    graph's path. See :func:`export_model` for the arguments; a checkpoint that does not fit ``config`` is an
    :class:`ExportError`."""
    cfg, model = build_model(config, checkpoint, cfg_options)
    return export_model(model, cfg, out_dir, texts, tokens_positive, custom_entities, shape, opset, check)


def export_model(model, cfg: Config, out_dir: str, texts=None, tokens_positive=None, custom_entities: bool = True,
                 shape: Optional[Tuple[int, int]] = None, opset: int = OPSET, check: bool = True) -> str:
    """Write ``out_dir/fiber.onnx`` (+ tokenizer files and ``fiber_onnx.json``) and return the graph's path.

    Args:
        model: the FIBER detector (moved to the CPU, float32, eval mode here).
        cfg: its config (test pipeline and data preprocessor are read for the runtime's pre-processing).
        out_dir: the folder to write (created).
        texts: None for a free-text graph (inputs: image, img_hw, input_ids, attention_mask); otherwise the
            prompt to fold in (class names ``'cat . dog'`` or ``'$: coco'``, a caption with ``tokens_positive``
            phrases, or an expression with ``tokens_positive=-1``): the graph then takes only the image.
        custom_entities: ``texts`` given as a string without ``tokens_positive`` is a class list.
        shape: (H, W) of a fixed-size graph (padded input size); None: any size (multiple of the size divisor).
        opset: ONNX opset (17 or newer).
        check: run ``onnx.checker`` on the result.
    """
    was_training = model.training
    model = model.cpu().float().eval()
    try:
        return _export(model, cfg, out_dir, texts, tokens_positive, custom_entities, shape, opset, check)
    finally:
        model.train(was_training)


def _export(model, cfg: Config, out_dir: str, texts, tokens_positive, custom_entities: bool,
            shape: Optional[Tuple[int, int]], opset: int, check: bool) -> str:
    import onnx
    pre = preprocessing_settings(cfg)
    divisor = pre['size_divisor']
    if shape is not None and any(s % divisor for s in shape):
        raise ExportError(f'--shape {shape[0]} {shape[1]}: both sides must be multiples of the size divisor {divisor}')
    nms = model.test_cfg.get('nms', dict(type='nms'))
    if nms.get('type', 'nms') != 'nms':
        raise ExportError(f"test_cfg.nms type {nms['type']!r}: the runtime runs mmcv's plain class-wise 'nms' only")
    lm = model.language_model
    os.makedirs(out_dir, exist_ok=True)
    tokenizer = lm.tokenizer
    tokenizer.save_pretrained(out_dir)
    if not osp.isfile(osp.join(out_dir, 'tokenizer.json')):
        raise ExportError(f'the tokenizer {lm.tokenizer.name_or_path!r} is not a fast tokenizer: no tokenizer.json to '
                          'deploy')
    trace_hw = tuple(shape) if shape else swin_trace_shape(_window_sizes(model), divisor)
    image = torch.zeros(2, 3, *trace_hw)
    img_hw = torch.tensor([list(trace_hw), [trace_hw[0] - divisor // 2, trace_hw[1] - divisor]])
    batch_axes = {0: 'batch'}
    image_axes = {0: 'batch'} if shape else {0: 'batch', 2: 'height', 3: 'width'}
    meta = dict(format='fiber_onnx', version=1, opset=opset, preprocess=pre, fixed_shape=list(shape) if shape else None,
                max_tokens=int(lm.max_tokens), pad_token_id=int(tokenizer.pad_token_id),
                postprocess=dict(score_thr=float(model.test_cfg.get('score_thr', 0.)),
                                 nms_pre=int(model.test_cfg.get('nms_pre', -1)),
                                 iou_threshold=float(nms['iou_threshold']), nms_offset=int(nms.get('offset', 0)),
                                 max_per_img=int(model.test_cfg.get('max_per_img', 100))),
                chunked_size=int(model.test_cfg.get('chunked_size', -1)), prompts=None)
    if texts is None:
        graph = FIBERGraph(model)
        tok = lm.tokenize(['a'] * 2)
        args = (image, img_hw, tok['input_ids'], tok['attention_mask'])
        inputs = ['image', 'img_hw', 'input_ids', 'attention_mask']
        outputs = ['boxes', 'token_scores', 'centerness', 'level_sizes']
        axes = dict(image=image_axes, img_hw=batch_axes, input_ids=batch_axes, attention_mask=batch_axes,
                    boxes={0: 'batch', 1: 'anchors'}, token_scores={0: 'batch', 1: 'anchors'},
                    centerness={0: 'batch', 1: 'anchors'})
    else:
        from ..apis.inferencer import dataset_class_names
        names = dataset_class_names(texts)
        if names is not None:
            texts, tokens_positive = list(names), None
        try:
            prompts = model.prompt_planner().plan(texts, tokens_positive, custom_entities)
        except PromptError as e:
            raise ExportError(f'--texts {texts!r}: {e}') from e
        tok = lm.tokenize([p.caption for p in prompts])
        label_tokens = [[p.label_to_tokens[j + 1] for j in range(len(p.entities))] for p in prompts]
        graph = FIBERFixedVocabularyGraph(model, tok['input_ids'], tok['attention_mask'], label_tokens)
        args = (image, img_hw)
        inputs = ['image', 'img_hw']
        outputs = ['boxes', 'class_scores', 'centerness', 'level_sizes']
        axes = dict(image=image_axes, img_hw=batch_axes, boxes={0: 'batch', 2: 'anchors'},
                    class_scores={0: 'batch', 2: 'anchors'}, centerness={0: 'batch', 2: 'anchors'})
        meta['prompts'] = [dict(caption=p.caption, label_offset=p.label_offset, entities=p.entities)
                           for p in prompts]
        meta['texts'] = texts if isinstance(texts, str) else list(texts)
    path = osp.join(out_dir, GRAPH_FILE)
    with torch.no_grad():
        torch.onnx.export(graph, args, path, dynamo=False, opset_version=opset, input_names=inputs,
                          output_names=outputs, dynamic_axes=axes, do_constant_folding=True)
    if check:
        onnx.checker.check_model(path)
    meta['inputs'], meta['outputs'] = inputs, outputs
    with open(osp.join(out_dir, METADATA_FILE), 'w') as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
    return path
