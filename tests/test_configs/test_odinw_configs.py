"""ODinW-13 / ODinW-35 zero-shot configs: the dataset table, the two benchmark runs and the 35 one-dataset configs."""
import glob
import json
import os.path as osp

import pytest
from mmengine.config import Config

from fiber_mmdet.utils.prompts import build_class_prompt

DATASET_HELP = 'docs/datasets.md, section "Evaluation data", ODinW'

# ODinW-13: the 13 datasets (with their variants) and GLIP's odinw_13 override names.
SPEC_ODINW13 = {
    'AerialMaritimeDrone_large': ('AerialMaritimeDrone/large/', ('boat', 'car', 'dock', 'jetski', 'lift')),
    'Aquarium': ('Aquarium/Aquarium Combined.v2-raw-1024.coco/',
                 ('fish', 'jellyfish', 'penguin', 'puffin', 'shark', 'starfish', 'stingray')),
    'CottontailRabbits': ('CottontailRabbits/', ('Cottontail-Rabbit', )),
    'EgoHands_generic': ('EgoHands/generic/', ('hand', )),
    'NorthAmericaMushrooms': ('NorthAmericaMushrooms/North American Mushrooms.v1-416x416.coco/',
                              ('CoW', 'chanterelle')),
    'Packages': ('Packages/Raw/', ('package', )),
    'PascalVOC': ('PascalVOC/', None),  # 20 VOC names, checked separately
    'pistols': ('pistols/export/', ('pistol', )),
    'pothole': ('pothole/', ('pothole', )),
    'Raccoon': ('Raccoon/Raccoon.v2-raw.coco/', ('raccoon', )),
    'ShellfishOpenImages': ('ShellfishOpenImages/raw/', ('Crab', 'Lobster', 'Shrimp')),
    'thermalDogsAndPeople': ('thermalDogsAndPeople/', ('dog', 'person')),
    'VehiclesOpenImages': ('VehiclesOpenImages/416x416/', ('Ambulance', 'Bus', 'Car', 'Motorcycle', 'Truck')),
}
# GLIP configs/odinw_35/*.yaml evaluate DATASETS.TEST = minival for these (odinw_13 agrees for EgoHands, Vehicles).
MINIVAL = {'DroneControl', 'EgoHands_generic', 'EgoHands_specific', 'OxfordPets_by_breed', 'OxfordPets_by_species',
           'PKLot', 'UnoCards', 'VehiclesOpenImages', 'brackishUnderwater', 'openPoetryVision', 'websiteScreenshots'}
# The original's test captions (GLIP inference.py create_queries_and_maps with USE_CAPTION_PROMPT).
PROMPTED_CAPTIONS = {
    'Aquarium': ' fish. jellyfish. penguin , which is black and white. puffin with orange beaks . shark. starfish. '
                'stingray which is flat and round',
    'EgoHands_generic': ' hand of a person',
    'Packages': 'there is a package on the porch',
    'pothole': 'there are some holes on the road',
}


@pytest.fixture(scope='module')
def odinw_dir(repo_root):
    return osp.join(repo_root, 'configs', 'odinw')


@pytest.fixture(scope='module')
def table(odinw_dir):
    return Config.fromfile(osp.join(odinw_dir, '_base_', 'odinw_datasets.py'))


@pytest.fixture(scope='module')
def benchmarks(odinw_dir):
    return {n: Config.fromfile(osp.join(odinw_dir, f'fiber_b_{n}.py')) for n in ('odinw13', 'odinw35')}


@pytest.fixture(scope='module')
def singles(odinw_dir):
    files = sorted(glob.glob(osp.join(odinw_dir, 'single', '*.py')))
    return {osp.basename(f)[len('fiber_b_'):-len('.py')]: (f, Config.fromfile(f)) for f in files}


def test_table_names_order_and_odinw13_subset(table):
    names = [entry['name'] for entry in table.odinw['table']]
    assert len(names) == 35 and len(set(names)) == 35
    assert table.odinw['odinw35_names'] == names
    assert list(table.odinw['odinw35_datasets']) == names and list(table.odinw['odinw35_metrics']) == names
    assert len(table.odinw['odinw13_names']) == 13 and set(table.odinw['odinw13_names']) == set(SPEC_ODINW13)
    assert table.odinw['odinw13_names'] == [n for n in names if n in SPEC_ODINW13]  # table order
    names13 = table.odinw['odinw13_names']
    assert list(table.odinw['odinw13_datasets']) == names13 and list(table.odinw['odinw13_metrics']) == names13
    # GLIP odinw_35/_all.json order: ASCII sort of the yaml names (upper case first)
    assert names[:4] == ['AerialMaritimeDrone_large', 'AerialMaritimeDrone_tiled', 'AmericanSignLanguageLetters',
                         'Aquarium'] and names[-1] == 'websiteScreenshots'


@pytest.mark.parametrize('bench', ['odinw13', 'odinw35'])
def test_benchmark_config_concatenates_the_table(table, benchmarks, bench):
    cfg = benchmarks[bench]
    names = table.odinw[f'{bench}_names']
    dataset = cfg.test_dataloader.dataset
    # base skeleton keys deleted; one shared pipeline (what DetInferencer reads) instead of one per dataset
    assert set(dataset) == {'type', 'pipeline', 'datasets'} and dataset.type == 'SharedPipelineConcatDataset'
    assert len(dataset.datasets) == len(names) == int(bench[len('odinw'):])
    singles = [table.odinw[f'{bench}_datasets'][n] for n in names]
    assert all(s.pipeline == dataset.pipeline for s in singles)
    assert dataset.datasets == [{k: v for k, v in s.items() if k != 'pipeline'} for s in singles]
    ev = cfg.test_evaluator
    assert ev.type == 'MultiDatasetsAverageEvaluator'
    assert ev.dataset_prefixes == names and len(set(ev.dataset_prefixes)) == len(names)
    assert ev.metrics == [table.odinw[f'{bench}_metrics'][n] for n in names]
    assert tuple(ev.average_keys) == ('bbox_mAP', 'bbox_mAP_50') and ev.average_prefix == bench
    assert cfg.test_dataloader.batch_size == 1 and cfg.dataset_help == DATASET_HELP
    assert cfg.odinw is None  # the table stays out of the final config (MMEngine prints and dumps it)


def test_single_configs_match_the_table(table, singles):
    assert sorted(singles) == sorted(table.odinw['odinw35_names'])  # one file per dataset, named after it
    for name, (path, cfg) in singles.items():
        with open(path) as f:
            lines = f.read().splitlines()
        assert 3 <= len(lines) <= 5 and lines[0].startswith('# ') and name in lines[0], path
        assert cfg.test_dataloader.dataset == table.odinw['odinw35_datasets'][name], path
        assert cfg.test_evaluator == table.odinw['odinw35_metrics'][name], path
        assert cfg.test_dataloader.batch_size == 1 and cfg.dataset_help == DATASET_HELP, path


@pytest.mark.parametrize('bench', ['odinw13', 'odinw35'])
def test_dataset_and_metric_fields(table, bench):
    splits = {entry['name']: entry['split'] for entry in table.odinw['table']}
    for name in table.odinw[f'{bench}_names']:
        ds, metric = table.odinw[f'{bench}_datasets'][name], table.odinw[f'{bench}_metrics'][name]
        assert ds.type == 'CocoDataset' and ds.test_mode and ds.return_classes
        assert ds.pipeline == table.test_pipeline
        classes = ds.metainfo.classes
        assert isinstance(classes, tuple) and classes and len(set(classes)) == len(classes), name
        assert ds.data_root.startswith('data/odinw/') and ds.data_root.endswith('/')
        assert metric.type == 'CocoPlusOneMetric'
        assert metric.ann_file == ds.data_root + ds.ann_file and metric.ann_file.startswith(ds.data_root)
        # split -> files: valid/ or mini_val/, or the one-folder Roboflow "export" layout
        assert splits[name] == ('minival' if name in MINIVAL else 'val'), name
        if ds.data_root.endswith('export/'):
            assert ds.data_prefix.img == '' and ds.ann_file == 'val_annotations_without_background.json', name
        else:
            folder = 'mini_val/' if name in MINIVAL else 'valid/'
            assert ds.data_prefix.img == folder and ds.ann_file.startswith(folder), name
            assert ds.ann_file.endswith('annotations_without_background.json'), name
    assert splits['EgoHands_generic'] == splits['VehiclesOpenImages'] == 'minival'
    ego_hands = table.odinw['odinw35_datasets']['EgoHands_generic']
    assert ego_hands.ann_file == 'mini_val/annotations_without_background.json'


def test_odinw13_follows_spec_and_renamed_datasets(table):
    for name, (folder, classes) in SPEC_ODINW13.items():
        ds = table.odinw['odinw13_datasets'][name]
        assert ds.data_root == 'data/odinw/' + folder, name
        if classes is not None:
            assert ds.metainfo.classes == classes, name
        # ODinW-13 names are the annotation files' own names: the unmodified json everywhere
        assert not osp.basename(ds.ann_file).startswith('new_'), name
    voc = table.odinw['odinw13_datasets']['PascalVOC'].metainfo.classes
    assert len(voc) == 20 and {'diningtable', 'pottedplant', 'tvmonitor'} <= set(voc)
    # ODinW-35 uses GLIP odinw_35's override names; where they are not the json's names, the rewritten json
    renamed = {n for n, ds in table.odinw['odinw35_datasets'].items() if ds.ann_file.startswith('valid/new_')}
    assert renamed == {'ChessPieces', 'CottontailRabbits', 'NorthAmericaMushrooms'}
    assert table.odinw['odinw35_datasets']['CottontailRabbits'].metainfo.classes == ('rabbit', )
    mushrooms = table.odinw['odinw35_datasets']['NorthAmericaMushrooms']
    assert mushrooms.metainfo.classes == ('flat mushroom', 'yellow mushroom')
    for name in set(SPEC_ODINW13) - {'CottontailRabbits', 'NorthAmericaMushrooms'}:
        assert table.odinw['odinw13_datasets'][name] == table.odinw['odinw35_datasets'][name], name


@pytest.mark.parametrize('bench', ['odinw13', 'odinw35'])
def test_caption_prompts_exactly_where_the_spec_names_them(table, bench):
    datasets = table.odinw[f'{bench}_datasets']
    prompted = {n for n, ds in datasets.items() if 'caption_prompt' in ds}
    assert prompted == set(PROMPTED_CAPTIONS)
    for name, caption in PROMPTED_CAPTIONS.items():
        ds = datasets[name]
        assert set(ds.caption_prompt) <= set(ds.metainfo.classes), name  # keyed by (uncleaned) class name
        assert build_class_prompt(ds.metainfo.classes, ds.caption_prompt)[0] == caption, name
    caption, spans = build_class_prompt(datasets['pothole'].metainfo.classes, datasets['pothole'].caption_prompt)
    assert [caption[b:e] for (b, e), in spans] == ['holes']  # the replaced name is the positive span


def _write_tiny_odinw_folder(root, classes):
    """An ODinW-style valid/ split: two PNGs and annotations_without_background.json with ``classes``."""
    from PIL import Image
    (root / 'valid').mkdir(parents=True)
    images = []
    for img_id, (name, size) in enumerate([('a.png', (40, 30)), ('b.png', (24, 36))], start=1):
        Image.new('RGB', size, (img_id * 60, 90, 30)).save(root / 'valid' / name)
        images.append(dict(id=img_id, file_name=name, width=size[0], height=size[1]))
    categories = [dict(id=i, name=c, supercategory='none') for i, c in enumerate(classes, start=1)]
    annotations = [  # image 1: the third class (or the only one), image 2: the last class
        dict(id=1, image_id=1, category_id=min(3, len(classes)), bbox=[2, 3, 10, 8], area=80, iscrowd=0),
        dict(id=2, image_id=2, category_id=len(classes), bbox=[1, 1, 5, 6], area=30, iscrowd=0),
    ]
    with open(root / 'valid' / 'annotations_without_background.json', 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)


def test_odinw_datasets_build_and_evaluate_on_tiny_folders(benchmarks, tmp_path):
    import torch

    import fiber_mmdet  # noqa: F401  (registers ShortSideResize, CocoPlusOneMetric, MultiDatasetsAverageEvaluator)
    from mmdet.registry import DATASETS, EVALUATOR
    from mmdet.utils import register_all_modules
    register_all_modules()

    cfg = benchmarks['odinw13']
    names = ['Aquarium', 'Packages']
    ds_cfgs, metric_cfgs = [], []
    for name in names:
        i = cfg.test_evaluator.dataset_prefixes.index(name)
        ds_cfg = cfg.test_dataloader.dataset.datasets[i].copy()
        ds_cfg.update(pipeline=cfg.test_dataloader.dataset.pipeline)
        _write_tiny_odinw_folder(tmp_path / name, ds_cfg.metainfo.classes)
        ds_cfg.update(data_root=str(tmp_path / name) + '/')
        ds_cfgs.append(ds_cfg)
        metric_cfgs.append(dict(cfg.test_evaluator.metrics[i], ann_file=ds_cfg.data_root + ds_cfg.ann_file))

    # one dataset: what the detector reads from each sample
    ds_cfg = ds_cfgs[0]
    classes = ds_cfg.metainfo.classes
    dataset = DATASETS.build(ds_cfg)
    assert len(dataset) == 2
    for idx, label in [(0, 2), (1, len(classes) - 1)]:
        sample = dataset[idx]['data_samples']
        assert tuple(sample.text) == classes and sample.custom_entities is True
        assert sample.caption_prompt == ds_cfg.caption_prompt and sample.caption_prompt['fish'] == {'prefix': ' '}
        assert sample.gt_instances.labels.tolist() == [label]  # json category -> label through the class name
    assert dataset[0]['data_samples'].img_path == str(tmp_path / 'Aquarium' / 'valid' / 'a.png')
    assert tuple(dataset[0]['inputs'].shape) == (3, 800, 1066)  # short side 800 (40x30 image)

    # the ODinW-13 run on two datasets: the config's concatenation + MultiDatasetsAverageEvaluator
    concat = DATASETS.build(dict(type='SharedPipelineConcatDataset', pipeline=cfg.test_dataloader.dataset.pipeline,
                                 datasets=[{k: v for k, v in d.items() if k != 'pipeline'} for d in ds_cfgs]))
    evaluator = EVALUATOR.build(dict(cfg.test_evaluator, metrics=metric_cfgs, dataset_prefixes=names))
    evaluator.dataset_meta = concat.metainfo
    for i in range(len(concat)):
        sample = concat[i]['data_samples']
        gt = sample.gt_instances
        keep = slice(0, 0) if (sample.text == ('package', ) and sample.img_id == 2) else slice(None)  # miss one box
        pred = dict(bboxes=(gt.bboxes.tensor - torch.tensor([0., 0., 1., 1.]))[keep],  # "+1" widths = the GT box
                    scores=torch.ones(len(gt.labels))[keep], labels=gt.labels[keep])
        evaluator.process([dict(img_id=sample.img_id, ori_shape=sample.ori_shape, pred_instances=pred)])
    results = evaluator.evaluate(len(concat))
    assert results['Aquarium/coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['Packages/coco/bbox_mAP'] == pytest.approx(51 / 101)  # recall 1/2 at precision 1
    assert results['odinw13/bbox_mAP'] == pytest.approx((1.0 + 51 / 101) / 2)
    assert 'odinw13/bbox_mAP_50' in results
