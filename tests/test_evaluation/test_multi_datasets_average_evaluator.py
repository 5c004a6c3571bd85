"""MultiDatasetsAverageEvaluator: per-dataset COCO AP over an mmdet ConcatDataset plus the ODinW-style average."""
import json

import pytest
from mmengine.registry import init_default_scope

from mmdet.datasets import CocoDataset, ConcatDataset
from mmdet.registry import EVALUATOR

from fiber_mmdet.evaluation import CocoPlusOneMetric, MultiDatasetsAverageEvaluator


def _coco_json(path, classes, boxes_per_image):
    images, annotations = [], []
    for img_id, boxes in enumerate(boxes_per_image, start=1):
        images.append(dict(id=img_id, file_name=f'{img_id}.jpg', width=100, height=100))
        for x, y, w, h, cat in boxes:
            annotations.append(
                dict(id=len(annotations) + 1, image_id=img_id, category_id=cat, bbox=[x, y, w, h], area=w * h,
                     iscrowd=0))
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(classes)]
    path.write_text(json.dumps(dict(images=images, annotations=annotations, categories=categories)))
    return str(path)


def test_average_over_two_datasets(tmp_path, make_sample):
    init_default_scope('mmdet')
    fish = _coco_json(tmp_path / 'fish.json', ['fish', 'shark'], [[(10, 10, 20, 20, 1)], [(50, 40, 30, 10, 2)]])
    hand = _coco_json(tmp_path / 'hand.json', ['hand'], [[(10, 10, 20, 20, 1), (60, 60, 20, 20, 1)]])
    datasets = [
        CocoDataset(ann_file=ann, metainfo=dict(classes=classes), data_prefix=dict(img=''), pipeline=[],
                    test_mode=True) for ann, classes in ((fish, ('fish', 'shark')), (hand, ('hand', )))
    ]
    concat = ConcatDataset(datasets)

    evaluator = EVALUATOR.build(
        dict(
            type='MultiDatasetsAverageEvaluator',
            metrics=[dict(type='CocoPlusOneMetric', ann_file=fish), dict(type='CocoPlusOneMetric', ann_file=hand)],
            dataset_prefixes=['Aquarium', 'EgoHands'],
            average_prefix='odinw'))
    assert isinstance(evaluator, MultiDatasetsAverageEvaluator)
    evaluator.dataset_meta = concat.metainfo

    # FIBER's "+1" convention: the box covering pixels 10..29 is GT [10, 10, 20, 20] exactly.
    samples = [
        make_sample(1, [[10, 10, 29, 29]], [0.9], [0]),  # Aquarium: both found -> AP 1
        make_sample(2, [[50, 40, 79, 49]], [0.8], [1]),
        make_sample(1, [[60, 60, 79, 79]], [0.7], [0]),  # EgoHands: 1 of 2 hands, precision 1 -> AP 51/101
    ]
    evaluator.process(samples)
    results = evaluator.evaluate(len(concat))

    assert results['Aquarium/coco/bbox_mAP'] == pytest.approx(1.0, abs=1e-12)
    assert results['EgoHands/coco/bbox_mAP'] == pytest.approx(51 / 101, abs=1e-12)
    assert results['odinw/bbox_mAP'] == pytest.approx((1.0 + 51 / 101) / 2, abs=1e-12)
    assert list(results)[-1] == 'odinw/bbox_mAP'


def test_average_warns_about_a_missing_dataset():
    evaluator = MultiDatasetsAverageEvaluator(metrics=[], dataset_prefixes=[])
    evaluator.dataset_prefixes = ['A', 'B', 'C']
    with pytest.warns(UserWarning, match='missing for 1 of 3'):
        averages = evaluator.average({'A/coco/bbox_mAP': 0.2, 'B/coco/bbox_mAP': 0.4, 'C/coco/bbox_mAP_50': 1.0})
    assert averages == {'average/bbox_mAP': pytest.approx(0.3)}


def test_rejects_mismatched_arguments():
    with pytest.raises(ValueError, match='1 dataset prefixes'):
        MultiDatasetsAverageEvaluator(metrics=[], dataset_prefixes=['A'])
    with pytest.raises(ValueError, match='also a dataset prefix'):
        MultiDatasetsAverageEvaluator(
            metrics=[CocoPlusOneMetric()], dataset_prefixes=['average'], average_prefix='average')
