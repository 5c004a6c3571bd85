"""torch.compile on FIBER: the training loss and the prediction trace into few graphs (strings, target assignment
and post-processing are boundaries kept eager on purpose) and give eager mode's losses, gradients and detections.

Compiled with AOTAutograd's eager backend (``aot_eager``): the forward and backward graphs are traced as inductor
gets them, without the C++ code generation that takes minutes on a CPU."""
import copy

import pytest
import torch
from mmengine.structures import InstanceData

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample


class GraphRecorder:
    """A torch.compile backend that keeps the graphs it is given and runs them through ``aot_eager``."""

    def __init__(self) -> None:
        self.graphs = []

    def __call__(self, gm: torch.fx.GraphModule, example_inputs):
        self.graphs.append(gm)
        return torch._dynamo.lookup_backend('aot_eager')(gm, example_inputs)

    def ops(self) -> int:
        return sum(1 for gm in self.graphs for n in gm.graph.nodes if n.op == 'call_function')


@pytest.fixture(scope='module')
def model(tiny_model_cfg):
    cfg = copy.deepcopy(tiny_model_cfg)
    # dropout draws other random numbers in compiled code: without it both runs compute the same function
    cfg.backbone.drop_path_rate = 0.0
    cfg.language_model.config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cfg.neck.plugin.drop_prob = 0.0
    cfg.test_cfg.score_thr = 0.0
    torch.manual_seed(0)
    m = MODELS.build(cfg)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(('i2t.gate', 'alpha_t2i')):
                p.fill_(0.5)  # the text changes the image features
        m.bbox_head.head.bias0.zero_()  # every anchor scores about 0.5: many detections to compare
    return m


def _samples(with_boxes: bool):
    samples = []
    for text, boxes, labels in [(['person', 'bicycle', 'car'], [[10, 20, 80, 90], [60, 30, 120, 94]], [0, 2]),
                                (['dog', 'traffic light'], [[5, 5, 60, 90]], [1])]:
        sample = DetDataSample(metainfo=dict(img_shape=(96, 128), ori_shape=(96, 128), pad_shape=(96, 128),
                                             batch_input_shape=(96, 128), scale_factor=(1., 1.)))
        sample.text = text
        if with_boxes:
            sample.gt_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                                               labels=torch.tensor(labels))
        samples.append(sample)
    return samples


def _loss_and_grads(model, fn, image):
    model.zero_grad()
    losses = fn(image, _samples(True))
    sum(losses.values()).backward()
    return ({k: v.detach() for k, v in losses.items()},
            {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})


def test_compiled_loss_equals_eager_in_few_graphs(model):
    image = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    model.train()
    losses, grads = _loss_and_grads(model, model.loss, image)
    recorder = GraphRecorder()
    torch._dynamo.reset()
    compiled_losses, compiled_grads = _loss_and_grads(model, torch.compile(model.loss, backend=recorder), image)
    # the fused backbone, neck and head forward in one graph; the tokenizer before it and the target
    # assignment with the losses after it run eagerly
    assert 1 <= len(recorder.graphs) <= 2 and recorder.ops() > 500
    for key in losses:
        assert torch.allclose(losses[key], compiled_losses[key], rtol=1e-5, atol=1e-6), key
    assert grads.keys() == compiled_grads.keys()
    for name, grad in grads.items():
        error = (grad - compiled_grads[name]).abs().max().item()
        assert error <= 1e-4 * grad.abs().max().item() + 1e-7, name
    model.zero_grad()
    torch._dynamo.reset()


def test_compiled_predict_equals_eager(model):
    image = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        eager = [s.pred_instances for s in model.predict(image, _samples(False))]
        recorder = GraphRecorder()
        torch._dynamo.reset()
        compiled = [s.pred_instances for s in torch.compile(model.predict, backend=recorder)(image, _samples(False))]
    # compiled: the image-only backbone, then per prompt the fused part, the neck and the head; eager between
    # them: the prompts, the text cache and the post-processing (two images with two prompts here)
    assert 3 <= len(recorder.graphs) <= 10 and recorder.ops() > 300
    for a, b in zip(eager, compiled):
        assert len(a.scores) > 10
        assert a.labels.tolist() == b.labels.tolist() and list(a.label_names) == list(b.label_names)
        assert (a.bboxes - b.bboxes).abs().max() < 1e-3
        assert (a.scores - b.scores).abs().max() < 1e-5
    torch._dynamo.reset()
