"""The graph of a model with FIBER's deformable DyHead (the tiny FIBER) equals PyTorch at several input sizes."""
import numpy as np
import pytest
import torch
from mmengine.config import Config

from fiber_mmdet.runtime import ONNXFIBER
from fiber_mmdet.runtime.compare import compare_detections
from fiber_mmdet.runtime.preprocess import Prepared

from ..conftest import TOY_CONFIG


@pytest.fixture(scope='module')
def tiny_export(tiny_model_cfg, tmp_path_factory):
    from mmdet.registry import MODELS

    from fiber_mmdet.deployment import export_model
    cfg = Config(dict(model=tiny_model_cfg, test_pipeline=Config.fromfile(TOY_CONFIG).test_pipeline))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    assert model.bbox_head.head.use_dcn
    with torch.no_grad():
        model.bbox_head.head.bias0.zero_()  # every anchor scores about 0.5: many boxes
    out = str(tmp_path_factory.mktemp('tiny_onnx'))
    export_model(model, cfg, out)
    return model, out


@pytest.mark.parametrize('size', [(96, 160), (150, 100)])
def test_deformable_graph_equals_pytorch(tiny_export, size):
    from mmdet.structures import DetDataSample
    model, folder = tiny_export
    h, w = size
    pad_h, pad_w = -(-h // 32) * 32, -(-w // 32) * 32
    image = torch.zeros(1, 3, pad_h, pad_w)
    image[:, :, :h, :w] = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h))
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.),
                                         pad_shape=(pad_h, pad_w), batch_input_shape=(pad_h, pad_w)))
    sample.text = ['person', 'bicycle', 'car']
    with torch.no_grad():
        pred = model.predict(image, [sample])[0].pred_instances
    expected = dict(bboxes=pred.bboxes.tolist(), scores=pred.scores.tolist(), labels=pred.labels.tolist(),
                    label_names=list(pred.label_names))
    runtime = ONNXFIBER(folder)
    actual = runtime.predict([Prepared(image[0].numpy(), (h, w), (1.0, 1.0), (h, w))],
                             [runtime.planner.plan(['person', 'bicycle', 'car'])])[0]
    assert len(expected['scores']) > 10
    result = compare_detections(expected, actual)
    assert result.equal, result
    assert result.max_box_diff < 0.01 and result.max_score_diff < 1e-4
    assert np.isfinite(actual['scores']).all()
