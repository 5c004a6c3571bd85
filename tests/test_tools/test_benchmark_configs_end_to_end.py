"""tools/test.py end to end on the benchmark configs (COCO, LVIS minival, ODinW-13, RefCOCO, Flickr30k) on CPU.

Each test runs a config that inherits a benchmark config and only swaps its model for an untrained tiny FIBER
(``configs/_base_/models/fiber_tiny.py``, merged so that the benchmark's ``test_cfg`` and the v3
``i2t_query_norm`` stay), in a temporary directory holding tiny data at exactly the paths the benchmark config
reads (``data/coco/...``, ``data/odinw/...``, ``data/flickr30k_entities/...``, read from the loaded config).

The images are thin strips (12 x 320 px): the benchmark pipeline resizes the short side to 800 unless the long side
would pass 1333, so a strip becomes 50 x 1333 instead of 800 x 1200 - a twelfth of the pixels - without touching
the config. The head's ``bias0`` is 0 so that the untrained model scores ~0.5 (above the 0.05 threshold) and detects.
"""
import functools
import json
import os
import os.path as osp
import pickle
import re
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from .conftest import REPO_ROOT, TOOLS, free_port, read_test_metrics, run_tool

BENCHMARKS = {
    'coco': 'configs/coco/fiber_b_coco_zero_shot.py',
    'lvis': 'configs/lvis/fiber_b_lvis_minival_fixed_ap.py',
    'odinw': 'configs/odinw/fiber_b_odinw13.py',
    'refcoco': 'configs/refcoco/fiber_b_v3_refcoco.py',
    'flickr': 'configs/flickr30k/fiber_b_flickr30k_val.py',
}
TINY_MODEL = REPO_ROOT / 'configs' / '_base_' / 'models' / 'fiber_tiny.py'
FIBER_B_MODEL = REPO_ROOT / 'configs' / '_base_' / 'models' / 'fiber_b.py'
STRIP = (12, 320)  # (height, width) of every test image: network input 50 x 1333 (padded 64 x 1344)
LVIS_PROMPTS = 31  # 1203 names, 40 per prompt

# file name, [(category name, (x, y, w, h)), ...]: small boxes and, so that the untrained detector (whose boxes
# span the strip's height) gets some AP to compare, boxes across most of the strip (medium: area >= 32^2); none
# large (>= 96^2), where COCO reports -1
COCO_IMAGES = [
    ('000000000139.jpg', [('person', (10, 1, 18, 10)), ('car', (60, 2, 30, 9)), ('dining table', (0, 0, 320, 12)),
                          ('tv', (20, 0, 280, 12)), ('chair', (0, 0, 200, 12)), ('potted plant', (120, 0, 200, 12))]),
    ('000000000285.jpg', [('dog', (150, 3, 30, 8)), ('bear', (40, 0, 260, 12)), ('bench', (0, 0, 320, 12)),
                          ('kite', (100, 0, 220, 12))]),
    ('000000000632.jpg', [('person', (200, 2, 12, 9)), ('bicycle', (250, 1, 40, 10)), ('bed', (0, 0, 320, 12)),
                          ('book', (30, 0, 250, 12)), ('clock', (150, 0, 170, 12)), ('vase', (0, 0, 180, 12))]),
]
REFCOCO_EXPRESSIONS = {  # split -> [(image index, caption, box)]; wide boxes, as the untrained detector's
    'refcoco_val': [(0, 'the red block on the left', (0, 0, 200, 12)), (1, 'blue square right', (100, 0, 220, 12))],
    'refcoco_testA': [(0, 'man in red shirt', (10, 0, 250, 12)), (1, 'person on the right', (160, 0, 160, 12))],
    'refcoco_testB': [(1, 'the car next to the blue one', (0, 0, 320, 12)),
                      (0, 'green box in the middle', (60, 1, 200, 11))],
}
FLICKR_SENTENCES = [  # (image index, caption, [(phrase, [box, ...]), ...]); phrases are found in the caption
    (0, 'A man in a red shirt rides a horse next to a black dog .',
     [('A man', [(10, 1, 30, 10)]), ('a horse', [(60, 0, 200, 12)]), ('a black dog', [(200, 2, 40, 9)])]),
    (0, 'Two people play frisbee in the park .',
     [('Two people', [(10, 1, 30, 10), (200, 2, 40, 9)]), ('frisbee', [(120, 3, 12, 6)])]),
    (1, 'A white dog runs on the beach .', [('A white dog', [(100, 1, 60, 10)]), ('the beach', [(0, 6, 320, 6)])]),
]
COLOURS = [(220, 30, 30), (30, 60, 220), (40, 200, 60), (230, 220, 20), (200, 40, 200), (20, 200, 210)]


# ----------------------------------------------------------------------------------------------- helpers
@functools.lru_cache()
def load_benchmark(name: str) -> Config:
    return Config.fromfile(str(REPO_ROOT / BENCHMARKS[name]))


def write_image(path: str, boxes: Sequence[Tuple[float, float, float, float]], seed: int) -> None:
    """A noisy grey strip with a coloured rectangle per xywh box (PNG or JPEG after the extension)."""
    height, width = STRIP
    rng = np.random.default_rng(seed)
    image = (np.full((height, width, 3), 70) + rng.integers(0, 30, (height, width, 3))).astype(np.uint8)
    for i, (x, y, w, h) in enumerate(boxes):
        image[int(y):int(y + h), int(x):int(x + w)] = COLOURS[(seed + i) % len(COLOURS)]
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(image).save(path)


def write_json(path: str, content: dict) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(content, f)


def dataset_paths(dataset: dict) -> Tuple[str, str]:
    """(annotation file, image folder) of a test dataset config, relative to the run directory."""
    root = dataset.get('data_root', '')
    return osp.join(root, dataset['ann_file']), osp.join(root, dataset['data_prefix']['img'])


def coco_box(x: float, y: float, w: float, h: float, ann_id: int, image_id: int, category_id: int) -> dict:
    return dict(id=ann_id, image_id=image_id, category_id=category_id, bbox=[x, y, w, h], area=w * h, iscrowd=0)


def model_overrides(tiny: dict, base: dict) -> dict:
    """What the tiny model config changes in FIBER-B's model, as a dict to merge into a benchmark's model.

    Keys equal in both (``i2t_query_norm``, ``test_cfg``...) are left out so the benchmark's values stay; a dict
    replacing a non-dict (``arch='base'``) gets ``_delete_``.
    """
    out = {}
    for key, value in tiny.items():
        if isinstance(value, dict):
            value = dict(value)
            if isinstance(base.get(key), dict):
                sub = model_overrides(value, base[key])
                if sub:
                    out[key] = sub
            elif key in base:
                out[key] = dict(_delete_=True, **value)
            else:
                out[key] = value
        elif key not in base or base[key] != value:
            out[key] = value
    return out


def plain(value):
    """ConfigDict / tuples-of-lists -> plain Python values whose repr is a valid config expression."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


def run_expecting_failure(args: List[str], cwd: str) -> Tuple[int, str]:
    """Run a tool that must fail; returns (exit code, output tail) from ``run_tool``'s error."""
    with pytest.raises(AssertionError) as error:
        run_tool(args, cwd=cwd)
    message = str(error.value)
    code = re.search(r' exited (-?\d+):\n', message)
    assert code, message
    return int(code.group(1)), message


def load_predictions(path: str) -> List[dict]:
    with open(path, 'rb') as f:
        return pickle.load(f)


def check_unit_interval(metrics: Dict[str, float], keys: Sequence[str], allow_missing_gt: bool = False) -> None:
    for key in keys:
        assert key in metrics, (key, sorted(metrics))
        value = metrics[key]
        if allow_missing_gt and value == -1:
            continue
        assert 0.0 <= value <= 1.0, (key, value)


def benchmark_texts() -> List[str]:
    """Every prompt and caption the tests feed the model: the tokenizer is trained on them."""
    from mmdet.datasets import CocoDataset, LVISV1Dataset

    from fiber_mmdet.utils import build_class_prompt
    lvis = list(LVISV1Dataset.METAINFO['classes'])
    texts = [build_class_prompt(CocoDataset.METAINFO['classes'], clean=True)[0]]
    texts += [build_class_prompt(lvis[s:s + 40], clean=True)[0] for s in range(0, len(lvis), 40)]
    odinw = load_benchmark('odinw')
    for dataset in odinw.test_dataloader.dataset.datasets:
        texts.append(build_class_prompt(dataset.metainfo.classes, dataset.get('caption_prompt'), clean=True)[0])
    texts += [caption for expressions in REFCOCO_EXPRESSIONS.values() for _, caption, _ in expressions]
    texts += [caption for _, caption, _ in FLICKR_SENTENCES]
    return texts


# ----------------------------------------------------------------------------------------------- model
@pytest.fixture(scope='session')
def tiny_fiber(tmp_path_factory):
    """An untrained tiny FIBER checkpoint (head ``bias0`` = 0) and the model overrides for the test configs."""
    from mmdet.registry import MODELS

    from fiber_mmdet.utils import train_roberta_tokenizer
    root = tmp_path_factory.mktemp('tiny_fiber')
    texts = benchmark_texts()
    tokenizer = train_roberta_tokenizer(texts, str(root / 'tokenizer'), vocab_size=1000)
    tiny = Config.fromfile(str(TINY_MODEL)).model
    tiny.language_model.tokenizer = tokenizer
    overrides = model_overrides(plain(tiny.to_dict()), plain(Config.fromfile(str(FIBER_B_MODEL)).model.to_dict()))
    overrides = {k: overrides[k] for k in ('backbone', 'language_model', 'neck', 'bbox_head')}
    assert 'i2t_query_norm' not in overrides['backbone'] and 'test_cfg' not in overrides

    torch.manual_seed(0)
    model = MODELS.build(tiny)
    model.init_weights()
    state_dict = model.state_dict()
    assert state_dict['bbox_head.head.bias0'].numel() == 1
    state_dict['bbox_head.head.bias0'] = torch.zeros_like(state_dict['bbox_head.head.bias0'])
    checkpoint = str(root / 'tiny_fiber.pth')
    torch.save({'state_dict': state_dict, 'meta': {}}, checkpoint)
    # the RefCOCO configs build FIBER v3 (i2t_query_norm): its checkpoint has the query LayerNorms too (a v2 one is
    # rejected at load). Same weights as the v2 one, LayerNorms at their init (1, 0).
    tiny.backbone.i2t_query_norm = True
    v3_state = MODELS.build(tiny).state_dict()
    v3_state.update(state_dict)
    checkpoint_v3 = str(root / 'tiny_fiber_v3.pth')
    torch.save({'state_dict': v3_state, 'meta': {}}, checkpoint_v3)
    # 40 cleaned LVIS names fit one prompt of the model's 256 tokens
    lvis_prompts = [t for t in texts if t.count('. ') == 39]
    assert len(lvis_prompts) == LVIS_PROMPTS - 1
    assert max(len(model.language_model.tokenizer(t)['input_ids']) for t in lvis_prompts) <= 256
    return dict(checkpoint=checkpoint, checkpoint_v3=checkpoint_v3, overrides=overrides)


def write_test_config(run_dir: Path, benchmark: str, overrides: dict) -> str:
    path = run_dir / f'tiny_{benchmark}.py'
    path.write_text(f'_base_ = {str(REPO_ROOT / BENCHMARKS[benchmark])!r}\n'
                    f'model = {overrides!r}\n'
                    'test_dataloader = dict(num_workers=0, persistent_workers=False)\n')
    return str(path)


def run_test_tool(run_dir: Path, config: str, checkpoint: str) -> dict:
    """``python tools/test.py CONFIG CKPT --work-dir WD --out WD/preds.pkl`` in ``run_dir``."""
    work_dir = str(run_dir / 'work_dir')
    out = osp.join(work_dir, 'preds.pkl')
    log = run_tool([str(TOOLS / 'test.py'), config, checkpoint, '--work-dir', work_dir, '--out', out],
                   cwd=str(run_dir))
    return dict(dir=run_dir, config=config, work_dir=work_dir, out=out, log=log)


# ----------------------------------------------------------------------------------------------- data
def write_coco(run_dir: Path) -> dict:
    """COCO val2017 (all 80 categories, COCO's own ids) at the config's paths; returns its description."""
    from mmdet.datasets import CocoDataset
    cfg = load_benchmark('coco')
    ann_file, img_dir = dataset_paths(cfg.test_dataloader.dataset)
    assert osp.normpath(cfg.test_evaluator.ann_file) == osp.normpath(ann_file)
    classes = CocoDataset.METAINFO['classes']
    coco_ids = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
    assert len(coco_ids) == len(classes) == 80
    cat_id = dict(zip(classes, coco_ids))
    images, annotations = [], []
    for index, (file_name, objects) in enumerate(COCO_IMAGES):
        image_id = int(file_name.split('.')[0])
        write_image(str(run_dir / img_dir / file_name), [box for _, box in objects], seed=index)
        images.append(dict(id=image_id, file_name=file_name, height=STRIP[0], width=STRIP[1]))
        for name, box in objects:
            annotations.append(coco_box(*box, len(annotations) + 1, image_id, cat_id[name]))
    categories = [dict(id=i, name=name, supercategory='thing') for name, i in cat_id.items()]
    write_json(str(run_dir / ann_file), dict(images=images, annotations=annotations, categories=categories))
    return dict(ann_file=str(run_dir / ann_file), cat_ids=coco_ids)


def write_lvis(run_dir: Path) -> dict:
    """LVIS v1 minival: the 1203 categories with LVIS' fields, 2 images found through ``coco_url``."""
    from mmdet.datasets import LVISV1Dataset
    cfg = load_benchmark('lvis')
    dataset = cfg.test_dataloader.dataset
    ann_file, img_dir = dataset_paths(dataset)
    assert osp.normpath(cfg.test_evaluator.ann_file) == osp.normpath(ann_file)
    classes = LVISV1Dataset.METAINFO['classes']
    assert len(classes) == 1203
    categories = [
        {'id': i + 1, 'name': name, 'synset': f'{name}.n.01', 'synonyms': [name], 'def': f'test category {name}',
         'frequency': 'rcf'[i % 3], 'image_count': 1 + i % 7, 'instance_count': 2 + i % 11}
        for i, name in enumerate(classes)
    ]
    # (split folder of coco_url, image id, [(category id, xywh)]); categories of all three frequencies
    entries = [('train2017', 2127, [(1, (10, 1, 60, 10)), (5, (150, 2, 40, 9)), (3, (0, 0, 320, 12))]),
               ('val2017', 139, [(12, (30, 0, 250, 12)), (1, (200, 2, 20, 8))])]
    images, annotations = [], []
    for index, (split, image_id, objects) in enumerate(entries):
        file_name = f'{image_id:012d}.jpg'
        write_image(str(run_dir / img_dir / split / file_name), [box for _, box in objects], seed=10 + index)
        images.append(dict(id=image_id, height=STRIP[0], width=STRIP[1], license=1, file_name=file_name,
                           coco_url=f'http://images.cocodataset.org/{split}/{file_name}',
                           flickr_url=f'http://farm.staticflickr.com/{file_name}', date_captured='2013-11-14',
                           not_exhaustive_category_ids=[2], neg_category_ids=[4, 6, 7, 8, 9]))
        for category_id, (x, y, w, h) in objects:
            ann = coco_box(x, y, w, h, len(annotations) + 1, image_id, category_id)
            del ann['iscrowd']
            ann['segmentation'] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
            annotations.append(ann)
    write_json(str(run_dir / ann_file), dict(info={}, licenses=[], images=images, annotations=annotations,
                                             categories=categories))
    return dict(num_images=len(images))


def write_odinw(run_dir: Path) -> dict:
    """Each ODinW-13 dataset: its annotation file (its classes as categories 1..n) and one image."""
    cfg = load_benchmark('odinw')
    datasets = cfg.test_dataloader.dataset.datasets
    metrics = cfg.test_evaluator.metrics
    names = list(cfg.test_evaluator.dataset_prefixes)
    assert len(datasets) == len(metrics) == len(names) == 13
    for index, (dataset, metric) in enumerate(zip(datasets, metrics)):
        ann_file, img_dir = dataset_paths(dataset)
        assert osp.normpath(metric.ann_file) == osp.normpath(ann_file)
        classes = dataset.metainfo.classes
        boxes = [(10 * index, 0, 200, 12), (200, 2, 100, 9)][:1 + index % 2]
        file_name = f'{names[index]}_0001_jpg.rf.{index:04x}.jpg'
        write_image(str(run_dir / img_dir / file_name), boxes, seed=20 + index)
        image_id = 7 + index
        annotations = [coco_box(*box, k + 1, image_id, 1 + (index + k) % len(classes)) for k, box in enumerate(boxes)]
        categories = [dict(id=i + 1, name=name, supercategory='objects') for i, name in enumerate(classes)]
        write_json(str(run_dir / ann_file),
                   dict(images=[dict(id=image_id, file_name=file_name, height=STRIP[0], width=STRIP[1])],
                        annotations=annotations, categories=categories))
    return dict(names=names, average_prefix=cfg.test_evaluator.average_prefix,
                average_keys=list(cfg.test_evaluator.average_keys))


def write_refcoco(run_dir: Path) -> dict:
    """MDETR's RefCOCO val / testA / testB files (one expression per image entry) and two train2014 images."""
    cfg = load_benchmark('refcoco')
    datasets = cfg.test_dataloader.dataset.datasets
    splits = list(cfg.test_evaluator.dataset_prefixes)
    assert splits == list(REFCOCO_EXPRESSIONS)
    image_names = ['COCO_train2014_000000581857.jpg', 'COCO_train2014_000000000073.jpg']
    files = {}
    for split, dataset, metric in zip(splits, datasets, cfg.test_evaluator.metrics):
        ann_file, img_dir = dataset_paths(dataset)
        assert osp.normpath(metric.ann_file) == osp.normpath(ann_file)
        images, annotations = [], []
        for entry_id, (image_index, caption, box) in enumerate(REFCOCO_EXPRESSIONS[split]):
            images.append(dict(file_name=image_names[image_index], height=STRIP[0], width=STRIP[1], id=entry_id,
                               original_id=int(image_names[image_index][-10:-4]), caption=caption,
                               dataset_name='refcoco', tokens_negative=[[0, len(caption)]]))
            ann = coco_box(*box, entry_id, entry_id, 1)
            ann.update(original_id=1000 + entry_id, tokens_positive=[[0, len(caption)]])
            annotations.append(ann)
        write_json(str(run_dir / ann_file), dict(info={}, licenses=[], images=images, annotations=annotations,
                                                 categories=[dict(supercategory='person', id=1, name='person')]))
        files[split] = str(run_dir / ann_file)
    for index, name in enumerate(image_names):
        boxes = [box for expressions in REFCOCO_EXPRESSIONS.values() for i, _, box in expressions if i == index]
        write_image(str(run_dir / img_dir / name), boxes, seed=40 + index)
    return dict(splits=splits, files=files)


def write_flickr(run_dir: Path) -> dict:
    """MDETR's separate-GT Flickr30k Entities val file (sizes as strings, as in MDETR's files) and 2 images."""
    cfg = load_benchmark('flickr')
    ann_file, img_dir = dataset_paths(cfg.test_dataloader.dataset)
    image_names = ['1000092795.jpg', '10002456.jpg']
    images, annotations = [], []
    for entry_id, (image_index, caption, phrases) in enumerate(FLICKR_SENTENCES):
        spans = []
        for phrase_id, (phrase, boxes) in enumerate(phrases):
            start = caption.index(phrase)
            spans.append([[start, start + len(phrase)]])
            for box in boxes:
                ann = coco_box(*box, len(annotations), entry_id, 1)
                ann.update(tokens_positive=[[start, start + len(phrase)]], phrase_ids=phrase_id)
                annotations.append(ann)
        sentence_id = sum(1 for i, _, _ in FLICKR_SENTENCES[:entry_id] if i == image_index)
        images.append(dict(file_name=image_names[image_index], height=str(STRIP[0]), width=str(STRIP[1]),
                           id=entry_id, caption=caption, dataset_name='flickr', tokens_negative=[[0, len(caption)]],
                           sentence_id=sentence_id, original_img_id=int(image_names[image_index][:-4]),
                           tokens_positive_eval=spans))
    write_json(str(run_dir / ann_file), dict(info={}, licenses=[], images=images, annotations=annotations,
                                             categories=[dict(supercategory='object', id=1, name='object')]))
    for index, name in enumerate(image_names):
        boxes = [b for i, _, phrases in FLICKR_SENTENCES if i == index for _, bs in phrases for b in bs]
        write_image(str(run_dir / img_dir / name), boxes, seed=50 + index)
    return dict(num_entries=len(images), num_phrases=[len(p) for _, _, p in FLICKR_SENTENCES])


# ----------------------------------------------------------------------------------------------- tool runs
def _single_run(tmp_path_factory, tiny_fiber, benchmark: str, write_data) -> dict:
    run_dir = tmp_path_factory.mktemp(benchmark)
    data = write_data(run_dir)
    config = write_test_config(run_dir, benchmark, tiny_fiber['overrides'])
    run = run_test_tool(run_dir, config, tiny_fiber['checkpoint_v3' if benchmark == 'refcoco' else 'checkpoint'])
    run.update(data=data, metrics=read_test_metrics(run['work_dir']), preds=load_predictions(run['out']))
    return run


@pytest.fixture(scope='module')
def coco_run(tmp_path_factory, tiny_fiber):
    return _single_run(tmp_path_factory, tiny_fiber, 'coco', write_coco)


@pytest.fixture(scope='module')
def lvis_run(tmp_path_factory, tiny_fiber):
    return _single_run(tmp_path_factory, tiny_fiber, 'lvis', write_lvis)


@pytest.fixture(scope='module')
def odinw_run(tmp_path_factory, tiny_fiber):
    return _single_run(tmp_path_factory, tiny_fiber, 'odinw', write_odinw)


@pytest.fixture(scope='module')
def refcoco_run(tmp_path_factory, tiny_fiber):
    return _single_run(tmp_path_factory, tiny_fiber, 'refcoco', write_refcoco)


@pytest.fixture(scope='module')
def flickr_run(tmp_path_factory, tiny_fiber):
    return _single_run(tmp_path_factory, tiny_fiber, 'flickr', write_flickr)


# ----------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize('name', sorted(BENCHMARKS))
def test_tiny_config_swaps_only_the_network(tiny_fiber, tmp_path, name):
    """The test configs keep each benchmark's data, evaluator, test_cfg and v3 ``i2t_query_norm``."""
    cfg = Config.fromfile(write_test_config(tmp_path, name, tiny_fiber['overrides']))
    original, tiny = load_benchmark(name), Config.fromfile(str(TINY_MODEL)).model
    assert cfg.model.test_cfg == original.model.test_cfg
    assert cfg.model.backbone.i2t_query_norm == original.model.backbone.i2t_query_norm == (name == 'refcoco')
    assert cfg.model.backbone.arch == tiny.backbone.arch and cfg.model.neck == tiny.neck
    assert cfg.model.language_model.config == tiny.language_model.config
    assert cfg.model.bbox_head.lang_dim == tiny.bbox_head.lang_dim
    assert cfg.test_evaluator == original.test_evaluator
    assert cfg.test_dataloader.dataset == original.test_dataloader.dataset
    assert cfg.test_dataloader.num_workers == 0 and not cfg.test_dataloader.persistent_workers
    if name == 'lvis':
        assert cfg.model.test_cfg.chunked_size == 40 and cfg.model.test_cfg.max_per_img == 300


COCO_KEYS = [f'coco/bbox_{k}' for k in ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l', 'AR@1', 'AR@10',
                                        'AR@100', 'AR_s@100', 'AR_m@100', 'AR_l@100')]


def test_coco_zero_shot_metrics_match_pycocotools_on_the_dumped_predictions(coco_run):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    metrics, preds = coco_run['metrics'], coco_run['preds']
    check_unit_interval(metrics, COCO_KEYS, allow_missing_gt=True)
    # no ground-truth box is large (>= 96^2): COCO reports -1 there; small and medium ones exist
    assert metrics['coco/bbox_mAP_l'] == -1 and metrics['coco/bbox_AR_l@100'] == -1
    assert metrics['coco/bbox_mAP_s'] >= 0 and metrics['coco/bbox_mAP_m'] >= 0

    gt = COCO(coco_run['data']['ann_file'])
    assert sorted(p['img_id'] for p in preds) == sorted(gt.getImgIds())
    cat_ids = coco_run['data']['cat_ids']
    detections = []
    for pred in preds:
        instances = pred['pred_instances']
        assert 0 < len(instances['scores']) <= 100  # bias0 = 0: the untrained head scores above 0.05
        assert instances['scores'].min() > 0.05
        for (x1, y1, x2, y2), score, label in zip(instances['bboxes'].tolist(), instances['scores'].tolist(),
                                                  instances['labels'].tolist()):
            detections.append(dict(image_id=pred['img_id'], category_id=cat_ids[label],
                                   bbox=[x1, y1, x2 - x1 + 1, y2 - y1 + 1], score=score))
    evaluation = COCOeval(gt, gt.loadRes(detections), 'bbox')
    evaluation.params.catIds = cat_ids
    evaluation.params.maxDets = [1, 10, 100]
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] > 0  # the comparison is not 0 == 0
    assert [metrics[k] for k in COCO_KEYS] == [float(v) for v in evaluation.stats]


def test_coco_format_only_writes_plus_one_xywh_json(coco_run, tiny_fiber):
    run_dir = coco_run['dir']
    work_dir = str(run_dir / 'format_only')
    prefix = str(run_dir / 'formatted' / 'fiber_tiny')
    out = osp.join(work_dir, 'preds.pkl')
    run_tool([str(TOOLS / 'test.py'), coco_run['config'], tiny_fiber['checkpoint'], '--work-dir', work_dir,
              '--format-only', prefix, '--out', out], cwd=str(run_dir))
    assert osp.isfile(prefix + '.bbox.json')
    with open(prefix + '.bbox.json') as f:
        written = json.load(f)
    expected = []
    cat_ids = coco_run['data']['cat_ids']
    for pred in load_predictions(out):
        instances = pred['pred_instances']
        for (x1, y1, x2, y2), score, label in zip(instances['bboxes'].tolist(), instances['scores'].tolist(),
                                                  instances['labels'].tolist()):
            expected.append(dict(image_id=pred['img_id'], bbox=[x1, y1, x2 - x1 + 1, y2 - y1 + 1], score=score,
                                 category_id=cat_ids[label]))
    assert len(written) == len(expected) > 0
    assert written == expected
    # the same model on the same images as the evaluated run
    assert len(expected) == sum(len(p['pred_instances']['scores']) for p in coco_run['preds'])
    assert not any(key.startswith('coco/') for key in read_test_metrics(work_dir))  # nothing evaluated


def test_lvis_minival_fixed_ap_uses_31_prompts(lvis_run):
    metrics, preds = lvis_run['metrics'], lvis_run['preds']
    keys = [f'lvis_fixed_ap/{k}' for k in ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'APr', 'APc', 'APf', 'AR',
                                             'ARs', 'ARm', 'ARl')]
    check_unit_interval(metrics, keys, allow_missing_gt=True)
    assert f'1203 classes are predicted with {LVIS_PROMPTS} prompts' in lvis_run['log']
    assert len(preds) == lvis_run['data']['num_images'] == 2
    for pred in preds:
        labels = pred['pred_instances']['labels']
        assert 0 < len(labels) <= LVIS_PROMPTS * 300
        assert 0 <= int(labels.min()) and int(labels.max()) < 1203
    # detections of more than one prompt: labels beyond the first 40 names
    assert any(int(p['pred_instances']['labels'].max()) >= 40 for p in preds)


def test_odinw13_per_dataset_ap_and_mean(odinw_run):
    metrics, data = odinw_run['metrics'], odinw_run['data']
    assert data['average_prefix'] == 'odinw13' and len(data['names']) == 13
    for key in data['average_keys']:
        per_dataset = [f'{name}/coco/{key}' for name in data['names']]
        check_unit_interval(metrics, per_dataset)
        assert metrics[f'odinw13/{key}'] == float(np.mean([metrics[k] for k in per_dataset]))
    check_unit_interval(metrics, [f'{name}/coco/{k}' for name in data['names'] for k in ('bbox_mAP_75', 'bbox_AR@100')])
    preds = odinw_run['preds']
    assert len(preds) == 13  # one image per dataset, in dataset order
    assert [osp.basename(p['img_path']).split('_0001_jpg')[0] for p in preds] == data['names']
    assert all(len(p['pred_instances']['scores']) > 0 for p in preds)


def _refcoco_precision(run: dict, topk=(1, 5, 10)) -> Dict[str, float]:
    """P@k per split from the dumped predictions: the expression counts at k if one of its k best boxes (by score,
    ties by the larger box tuple, as the reference ranks) has generalized IoU >= 0.5 with its box."""
    from torchvision.ops import generalized_box_iou
    preds = iter(run['preds'])
    precision = {}
    for split in run['data']['splits']:
        with open(run['data']['files'][split]) as f:
            annotations = {a['image_id']: a for a in json.load(f)['annotations']}
        hits = {k: 0 for k in topk}
        for img_id in sorted(annotations):  # the dataset's order: the ConcatDataset's slice of this split
            pred = next(preds)
            assert pred['img_id'] == img_id
            boxes, scores = pred['pred_instances']['bboxes'], pred['pred_instances']['scores']
            assert len(scores) > 0  # score_thr 0: always a box
            ranked = sorted(range(len(scores)), key=lambda i: (scores[i].item(), tuple(boxes[i].tolist())),
                            reverse=True)
            x, y, w, h = annotations[img_id]['bbox']
            gious = generalized_box_iou(boxes[ranked], torch.tensor([[x, y, x + w, y + h]], dtype=boxes.dtype))[:, 0]
            for k in topk:
                hits[k] += int(gious[:k].max().item() >= 0.5)
        precision.update({f'{split}/refexp/refcoco_precision@{k}': hits[k] / len(annotations) for k in topk})
    assert next(preds, None) is None
    return precision


def test_refcoco_v3_precision_per_split(refcoco_run):
    metrics = refcoco_run['metrics']
    splits = refcoco_run['data']['splits']
    for split in splits:
        keys = [f'{split}/refexp/refcoco_precision@{k}' for k in (1, 5, 10)]
        check_unit_interval(metrics, keys)
        assert metrics[keys[0]] <= metrics[keys[1]] <= metrics[keys[2]]
    expected = _refcoco_precision(refcoco_run)
    assert {k: metrics[k] for k in expected} == expected
    assert sum(expected.values()) > 0  # the comparison is not only 0 == 0
    assert len(refcoco_run['preds']) == sum(len(e) for e in REFCOCO_EXPRESSIONS.values())


def test_flickr30k_val_recall(flickr_run):
    metrics, preds = flickr_run['metrics'], flickr_run['preds']
    keys = [f'flickr30k/{k}' for k in ('Recall@1_all', 'Recall@5_all', 'Recall@10_all', 'Upper_bound_all')]
    check_unit_interval(metrics, keys)
    assert [metrics[k] for k in keys] == sorted(metrics[k] for k in keys)
    assert len(preds) == flickr_run['data']['num_entries']
    for pred, num_phrases in zip(sorted(preds, key=lambda p: p['img_id']), flickr_run['data']['num_phrases']):
        labels = pred['pred_instances']['labels']
        assert 0 < len(labels) <= 100 and int(labels.max()) < num_phrases


def test_flickr30k_format_only_is_refused(tiny_fiber, tmp_path):
    config = write_test_config(tmp_path, 'flickr', tiny_fiber['overrides'])
    code, output = run_expecting_failure(
        [str(TOOLS / 'test.py'), config, tiny_fiber['checkpoint'], '--format-only', str(tmp_path / 'flickr')],
        cwd=str(tmp_path))
    assert code != 0
    assert '--format-only: Flickr30kRecallMetric has no prediction file format; use --out' in output


def test_missing_annotation_file_is_named_before_the_run(tiny_fiber, tmp_path):
    cfg = load_benchmark('coco')
    ann_file, img_dir = dataset_paths(cfg.test_dataloader.dataset)
    code, output = run_expecting_failure(
        [str(TOOLS / 'test.py'), str(REPO_ROOT / BENCHMARKS['coco']), tiny_fiber['checkpoint'], '--work-dir',
         str(tmp_path / 'work_dir')], cwd=str(tmp_path))
    assert code != 0
    assert 'FileNotFoundError' in output
    for path in (ann_file, img_dir):  # each missing path on its line, with where the data comes from
        line = next((line for line in output.splitlines() if path in line), None)
        assert line is not None, (path, output)
        assert 'docs/datasets.md, section "Evaluation data", COCO' in line, line
    assert 'annotation file of test_dataloader.dataset' in output


def test_dist_test_refcoco_matches_single_process(refcoco_run, tiny_fiber):
    run_dir = refcoco_run['dir']
    work_dir = str(run_dir / 'dist_work_dir')
    out = osp.join(work_dir, 'preds.pkl')
    log = run_tool([str(TOOLS / 'dist_test.sh'), refcoco_run['config'], tiny_fiber['checkpoint_v3'], '2',
                    '--work-dir', work_dir, '--out', out], cwd=str(run_dir), extra_env=dict(PORT=str(free_port())))
    assert "backend 'gloo', rank 0/2" in log
    single = refcoco_run['metrics']
    distributed = read_test_metrics(work_dir)
    keys = [k for k in single if '/refexp/' in k]
    assert len(keys) >= 3 * 3
    assert {k: distributed[k] for k in keys} == {k: single[k] for k in keys}
    dist_preds = load_predictions(out)
    assert [(p['img_path'], p['img_id']) for p in dist_preds] == \
           [(p['img_path'], p['img_id']) for p in refcoco_run['preds']]
    for dist_pred, single_pred in zip(dist_preds, refcoco_run['preds']):
        for key in ('bboxes', 'scores', 'labels'):
            torch.testing.assert_close(dist_pred['pred_instances'][key], single_pred['pred_instances'][key])
