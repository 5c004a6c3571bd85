"""Data-parallel FIBER head loss: every rank runs the same collectives whatever its ATSS positives, so a rank
whose images have no positive (no box, or boxes too small for any anchor centre) neither hangs the job nor
shifts the other ranks' all-reduces; its losses and the others' use the means over ranks."""
import copy

import pytest
import torch
import torch.distributed as dist
from mmengine.structures import InstanceData

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from fiber_mmdet.models.dense_heads import fiber_head
from ..test_engine.dist_helpers import run_on_ranks

SIZE = 64
NUM_TOKENS = 8


def _head(tiny_model_cfg):
    torch.manual_seed(0)
    cfg = copy.deepcopy(tiny_model_cfg.bbox_head)
    cfg.update(use_dcn=False, num_dyhead_blocks=1, num_tokens=NUM_TOKENS, train_cfg=tiny_model_cfg.train_cfg)
    return MODELS.build(cfg)


def _batch(head, boxes, seed):
    """Features of a 64x64 image (5 levels, strides 8-128), its text and a sample with ``boxes`` (N, 4)."""
    g = torch.Generator().manual_seed(seed)
    c = head.in_channels
    feats = tuple(torch.randn(1, c, s, s, generator=g) for s in (8, 4, 2, 1, 1))
    language = dict(hidden=torch.randn(1, NUM_TOKENS, head.head.lang_dim, generator=g),
                    embedded=torch.randn(1, NUM_TOKENS, head.head.lang_dim, generator=g),
                    masks=torch.ones(1, NUM_TOKENS, dtype=torch.long))
    sample = DetDataSample(metainfo=dict(img_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE),
                                         batch_input_shape=(SIZE, SIZE)))
    positive = torch.zeros(len(boxes), NUM_TOKENS)
    positive[:, 1] = 1
    sample.gt_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                       labels=torch.zeros(len(boxes), dtype=torch.long), positive_maps=positive)
    return feats, language, [sample]


def _rank_loss(rank, world_size, head, batches):
    """One rank's losses, then one more all-reduce as DDP's gradient synchronisation would do: it only sums
    to ``world_size`` when both ranks ran the same collectives before it."""
    losses = head.loss(*batches[rank])
    done = torch.ones(3)
    dist.all_reduce(done)
    return {k: v.item() for k, v in losses.items()}, done.tolist()


class _Recorder:
    """Keeps the values the head all-reduces (identity in a single process): #positives, centerness sum."""

    def __init__(self, reduce_mean):
        self.reduce_mean, self.values = reduce_mean, []

    def __call__(self, tensor):
        self.values.append(float(tensor))
        return self.reduce_mean(tensor)


@pytest.mark.parametrize('rank1_boxes', [[], [[2., 2., 3., 3.]]], ids=['no_box', 'box_without_positive'])
def test_rank_without_positives_neither_hangs_nor_desynchronises(tiny_model_cfg, monkeypatch, rank1_boxes):
    head = _head(tiny_model_cfg)
    batches = [_batch(head, [[8., 8., 40., 40.]], seed=1), _batch(head, rank1_boxes, seed=2)]

    # each rank's batch alone (world size 1), recording its own normalisers
    single, counts = [], []
    for batch in batches:
        recorder = _Recorder(fiber_head.reduce_mean)
        monkeypatch.setattr(fiber_head, 'reduce_mean', recorder)
        single.append({k: v.item() for k, v in head.loss(*batch).items()})
        counts.append(recorder.values)
        monkeypatch.undo()
    (pos0, ctr0), pos1, ctr1 = counts[0], counts[1][0], 0.  # no positive: an empty centerness sum
    assert pos0 > 0 and ctr0 > 0 and pos1 == 0  # the case under test: only rank 0 has positives
    assert single[1]['loss_bbox'] == 0 and single[1]['loss_centerness'] == 0

    ranks = run_on_ranks(_rank_loss, 2, args=(head, batches), timeout=60)

    mean_pos, mean_ctr = max((pos0 + pos1) / 2, 1.), (ctr0 + ctr1) / 2
    for rank, ((losses, done), alone, pos) in enumerate(zip(ranks, single, (pos0, pos1))):
        assert done == [2., 2., 2.], (rank, done)
        assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), (rank, losses)
        # the formula: sums over this rank's anchors divided by the means over ranks
        rescale = max(pos, 1.) / mean_pos
        assert losses['loss_cls'] == pytest.approx(alone['loss_cls'] * rescale, rel=1e-5)
        assert losses['loss_centerness'] == pytest.approx(alone['loss_centerness'] * rescale, rel=1e-5, abs=1e-7)
        expected_bbox = alone['loss_bbox'] * (ctr0 if rank == 0 else 0.) / mean_ctr
        assert losses['loss_bbox'] == pytest.approx(expected_bbox, rel=1e-5, abs=1e-7)
    assert ranks[0][0]['loss_bbox'] > 0 and ranks[1][0]['loss_bbox'] == 0
