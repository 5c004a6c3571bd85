"""Faults injected end to end through tools/train.py and tools/test.py on the toy config and tiny toy data."""
import json
import os
import os.path as osp
import re

import pytest
import torch

from .conftest import REPO_ROOT, TOOLS, TOY_CONFIG, checkpoints_in, corrupt_copy, run_tool_status, toy_options


def _metrics_json(work_dir: str) -> dict:
    runs = [d for d in os.listdir(work_dir) if osp.isdir(osp.join(work_dir, d))]
    assert len(runs) == 1, runs
    with open(osp.join(work_dir, runs[0], runs[0] + '.json')) as f:
        return json.load(f)


def test_nan_losses_are_skipped_then_stop_training_and_no_checkpoint_is_non_finite(toy_root, tmp_path):
    """A learning rate of 1e6 makes the loss NaN within a few steps. Each such step is skipped and named in the
    log, 3 in a row stop training with an error, and every checkpoint written holds finite weights."""
    work_dir = str(tmp_path / 'nan')
    rc, out = run_tool_status([str(TOOLS / 'train.py'), TOY_CONFIG, '--work-dir', work_dir] + toy_options(
        toy_root, **{'optim_wrapper.optimizer.lr': 1e6, 'train_cfg.max_iters': 30,
                     'default_hooks.non_finite.max_consecutive_skips': 3}), str(REPO_ROOT))
    assert rc != 0, out[-3000:]
    assert 'NonFiniteTrainingError' in out, out[-3000:]
    skipped = re.findall(r'iteration (\d+): step skipped \(non-finite loss\)', out)
    assert len(skipped) >= 3, out[-3000:]
    assert '3 consecutive steps skipped' in out or 'refusing to save' in out
    for path in checkpoints_in(work_dir):
        state = torch.load(path, map_location='cpu')['state_dict']
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        assert not bad, (path, bad[:5])


def test_truncated_checkpoint_is_named(toy_root, toy_checkpoint, tmp_path):
    truncated = str(tmp_path / 'truncated.pth')
    with open(toy_checkpoint, 'rb') as f:
        data = f.read()
    with open(truncated, 'wb') as f:
        f.write(data[:len(data) // 2])
    rc, out = run_tool_status([str(TOOLS / 'test.py'), TOY_CONFIG, truncated, '--work-dir', str(tmp_path / 'w')]
                              + toy_options(toy_root), str(REPO_ROOT))
    assert rc != 0
    assert f'{truncated}: ' in out and 'truncated' in out, out[-3000:]


def test_checkpoint_of_another_model_is_rejected_by_mmdets_own_test_tool(toy_cfg, tmp_path):
    """mmdet's tools/test.py (which loads with strict=False and knows nothing of fiber_mmdet beyond the config's
    custom_imports) stops on a checkpoint of another model, naming its keys."""
    import mmdet
    wrong = str(tmp_path / 'random.pth')
    torch.save(dict(state_dict={'conv.weight': torch.randn(4, 3, 3, 3), 'fc.bias': torch.zeros(4)}), wrong)
    config = str(tmp_path / 'toy.py')
    toy_cfg.dump(config)
    mmdet_test = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'test.py')
    rc, out = run_tool_status([mmdet_test, config, wrong, '--work-dir', str(tmp_path / 'w')], str(REPO_ROOT))
    assert rc != 0
    assert 'CheckpointMismatchError' in out and "'conv.weight'" in out, out[-3000:]
    assert 'not a fiber_mmdet FIBER checkpoint' in out


def test_corrupt_evaluation_image_is_counted_and_the_rest_evaluated(toy_root, toy_checkpoint, tmp_path):
    """tools/test.py with ``test_cfg.on_bad_sample=skip`` (the strict default is tested in test_bad_samples.py on
    the same toy datasets, without the tool's start-up)."""
    root, bad = corrupt_copy(toy_root, tmp_path, 'val')
    work_dir = str(tmp_path / 'tolerant')
    rc, out = run_tool_status([str(TOOLS / 'test.py'), TOY_CONFIG, toy_checkpoint, '--work-dir', work_dir]
                              + toy_options(root, **{
        'test_cfg.on_bad_sample': 'skip'}), str(REPO_ROOT))
    assert rc == 0, out[-3000:]
    metrics = _metrics_json(work_dir)
    assert metrics['bad_samples/skipped'] == 1
    # the rest of the split is evaluated (the grounding set; the untrained model's COCO results are empty)
    assert 'novel_grounding/flickr30k/Recall@1_all' in metrics
    assert f'{bad} (img_id 1, ' in out and re.search(r'1 of \d+ samples were skipped', out), out[-3000:]


def test_data_root_override_reaches_every_dataset(tmp_path):
    """`--cfg-options data_root=...` moves every dataset and evaluator path (the missing-path listing shows
    the new root, none of the old)."""
    elsewhere = str(tmp_path / 'elsewhere') + '/'
    rc, out = run_tool_status([str(TOOLS / 'test.py'), TOY_CONFIG, 'unused.pth', '--work-dir', str(tmp_path / 'w'),
                               '--cfg-options', f'data_root={elsewhere}'], str(REPO_ROOT))
    assert rc != 0
    assert elsewhere + 'annotations/val_coco.json' in out and elsewhere + 'annotations/grounding_val.json' in out
    assert 'data/toy_shapes/' not in out, out[-3000:]
