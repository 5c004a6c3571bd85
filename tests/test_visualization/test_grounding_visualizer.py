"""GroundingLocalVisualizer: names and colours per phrase for detection, phrase grounding and expressions."""
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from mmdet.structures import DetDataSample
from fiber_mmdet.visualization import GroundingLocalVisualizer, gt_label_names


def _sample(labels, meta, pred_names=None, pred_labels=None) -> DetDataSample:
    sample = DetDataSample(metainfo=meta)
    n = len(labels)
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[4. + 10 * i, 4., 30. + 10 * i, 40.] for i in range(n)]),
                                       labels=torch.tensor(labels))
    if pred_names is not None:
        m = len(pred_names)
        sample.pred_instances = InstanceData(
            bboxes=torch.tensor([[8. + 12 * i, 10., 50. + 12 * i, 60.] for i in range(m)]),
            labels=torch.tensor(pred_labels), scores=torch.linspace(0.9, 0.5, m), label_names=list(pred_names))
    return sample


def test_gt_names_for_each_benchmark_format():
    flickr = _sample([7, 7, 7], dict(text='a man rides a horse', phrases=['a man', 'a horse'], phrase_ids=[0, 1, 1]))
    assert gt_label_names(flickr, None) == ['a man', 'a horse', 'a horse']
    refexp = _sample([3], dict(text='the horse on the left', tokens_positive=-1))
    assert gt_label_names(refexp, None) == ['the horse on the left']
    detection = _sample([1, 0], dict(text=('cat', 'dog')))
    assert gt_label_names(detection, ('x', 'y')) == ['dog', 'cat']
    assert gt_label_names(_sample([1], {}), ('x', 'y')) == ['y']
    assert gt_label_names(_sample([5], {}), ('x', 'y')) is None  # a label the classes do not cover


def test_draws_gt_and_predictions_side_by_side_with_labels_past_the_palette():
    visualizer = GroundingLocalVisualizer(name='test_grounding_vis')
    visualizer.dataset_meta = dict(classes=('a', 'b'), palette=[(255, 0, 0), (0, 255, 0)])
    # prediction labels up to 1202 (an LVIS prompt): mmdet's palette lookup would fail past its 2 colours
    names = [f'name{i}' for i in range(5)]
    sample = _sample([0, 1], dict(text='whatever', phrases=['p0', 'p1'], phrase_ids=[0, 1]), names,
                     [1202, 3, 900, 7, 0])
    image = np.full((80, 120, 3), 128, np.uint8)
    visualizer.add_datasample('x', image, sample, draw_gt=True, draw_pred=True, pred_score_thr=0.0)
    drawn = visualizer.get_image()
    assert drawn.shape == (80, 240, 3)
    assert (drawn[:, :120] != 128).any() and (drawn[:, 120:] != 128).any()
    assert visualizer.dataset_meta['palette'] == [(255, 0, 0), (0, 255, 0)]  # restored


def test_same_phrase_same_colour_on_both_sides():
    visualizer = GroundingLocalVisualizer(name='test_grounding_vis_colours', line_width=2, alpha=1.0)
    visualizer.dataset_meta = dict(palette=[(255, 0, 0), (0, 0, 255)])
    sample = _sample([0], dict(phrases=['a horse'], phrase_ids=[0]), ['a horse'], [5])
    image = np.zeros((80, 120, 3), np.uint8)
    visualizer.add_datasample('x', image, sample, pred_score_thr=0.0)
    drawn = visualizer.get_image()
    gt_box_edge = drawn[20, 4:6]  # left edge of the GT box at x=4
    pred_box_edge = drawn[30, 120 + 8:120 + 10]  # left edge of the prediction at x=8
    assert (gt_box_edge[:, 0] > 200).all() and (pred_box_edge[:, 0] > 200).all()  # both the first colour (red)
    assert (gt_box_edge[:, 2] < 50).all() and (pred_box_edge[:, 2] < 50).all()
