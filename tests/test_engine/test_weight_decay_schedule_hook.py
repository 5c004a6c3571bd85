import pytest

from mmdet.registry import HOOKS

from fiber_mmdet.engine import WeightDecayScheduleHook

from .conftest import RecordHook, build_toy_runner


def test_pretraining_switch_points():
    """FIBER pre-training: LR milestones 536k/712k, weight decay 0.01 drops at 0.667 x each."""
    hook = HOOKS.build(dict(type='WeightDecayScheduleHook', milestones=[536000, 712000]))
    assert hook.switch_points == [357512.0, 474904.0]
    expected = {
        0: 0.01,
        357511: 0.01,
        357512: 0.01 * 0.1,
        357513: 0.01 * 0.1,
        474903: 0.01 * 0.1,
        474904: 0.01 * 0.1 * 0.1,
        800000: 0.01 * 0.1 * 0.1,
    }
    for iteration, weight_decay in expected.items():
        assert hook.weight_decay_at(0.01, iteration) == weight_decay, iteration


def test_fractional_switch_point_rounds_up():
    hook = WeightDecayScheduleHook(milestones=[300, 400], gamma=0.5, fraction=0.667)
    # 0.667 * 300 = 200.1 -> first iteration with the lower decay is 201; 0.667 * 400 = 266.8 -> 267
    assert [hook.num_drops(i) for i in (200, 201, 266, 267)] == [0, 1, 1, 2]
    assert hook.weight_decay_at(0.05, 267) == pytest.approx(0.0125)


@pytest.mark.parametrize('kwargs', [dict(milestones=[]), dict(milestones=[5, 3]), dict(milestones=[3], fraction=0)])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        WeightDecayScheduleHook(**kwargs)


def test_applied_to_every_group_in_a_runner(tmp_path, registered_engine):
    record = RecordHook()
    build_toy_runner(str(tmp_path), 'wd_schedule', max_iters=8, record=record).train()
    # milestones [6, 9] x 0.667 -> switch points 4.002 and 6.003: iterations 0-4 at 0.1, 5-6 at 0.01, 7- at 0.001;
    # the bias groups stay at 0
    assert sorted(record.records) == list(range(8))
    for iteration, values in record.records.items():
        decayed = 0.1 if iteration <= 4 else 0.01 if iteration <= 6 else 0.001
        assert sorted(set(values['weight_decay'])) == pytest.approx([0.0, decayed], rel=1e-12), iteration
