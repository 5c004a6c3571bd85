"""tools/train.py, tools/test.py and the torchrun scripts end to end on CPU (tiny ATSS, 4 images)."""
import os.path as osp
import pickle

import pytest
import torch

from .conftest import TOOLS, free_port, read_scalars, read_test_metrics, run_tool

LOSS_KEYS = ('loss', 'loss_cls', 'loss_bbox', 'loss_centerness', 'lr')


@pytest.fixture(scope='module')
def trained(tiny_config, tmp_path_factory):
    """4 iterations of tools/train.py, checkpoints at 2 and 4.

    Launched through ``dist_train.sh CONFIG 1`` (torchrun, ``--launcher pytorch``, one process) so that the
    CPU distributed path (gloo, DDP without device ids) is covered without paying for a second process.
    """
    work_dir = str(tmp_path_factory.mktemp('train'))
    log = run_tool([str(TOOLS / 'dist_train.sh'), tiny_config, '1', '--work-dir', work_dir], cwd=work_dir,
                   extra_env=dict(PORT=str(free_port())))
    assert "backend 'gloo', rank 0/1" in log
    return work_dir


@pytest.fixture(scope='module')
def tested(tiny_config, trained, tmp_path_factory):
    """tools/test.py on the trained checkpoint, in one process."""
    work_dir = str(tmp_path_factory.mktemp('test'))
    out = osp.join(work_dir, 'predictions.pkl')
    run_tool([str(TOOLS / 'test.py'), tiny_config, osp.join(trained, 'iter_4.pth'), '--work-dir', work_dir,
              '--out', out, '--show-dir', 'painted'], cwd=work_dir)
    return work_dir, out


def test_train_writes_runner_checkpoints(trained):
    checkpoint = torch.load(osp.join(trained, 'iter_4.pth'), map_location='cpu', weights_only=False)
    assert checkpoint['meta']['iter'] == 4
    assert {'message_hub', 'optimizer', 'param_schedulers', 'ema_state_dict'} <= set(checkpoint)
    # FIBER param groups from the config: base, base bias, "language" (here: neck, lr x 0.5), its biases
    groups = checkpoint['optimizer']['param_groups']
    assert sorted(g['initial_lr'] for g in groups) == pytest.approx([1e-3, 2e-3, 2e-3, 4e-3])
    # weight-decay schedule: milestone 3 x 0.667 -> from iteration 2.001 on, decay 0.01 -> 0.001
    assert sorted(g['weight_decay'] for g in groups) == pytest.approx([0.0, 0.0, 0.001, 0.001])
    # frozen stem and first stage are not optimised
    num_optimised = sum(len(g['params']) for g in groups)
    assert num_optimised < len(checkpoint['state_dict'])
    losses = [record for record in read_scalars(trained) if 'loss' in record]
    assert [record['iter'] for record in losses] == [1, 2, 3, 4]


def test_resume_from_checkpoint_continues_identically(tiny_config, trained, tmp_path):
    """tools/train.py (no launcher) resumes the run above from iteration 2 and reproduces iterations 3-4."""
    work_dir = str(tmp_path)
    run_tool([str(TOOLS / 'train.py'), tiny_config, '--work-dir', work_dir, '--resume',
              osp.join(trained, 'iter_2.pth')], cwd=work_dir)
    full = {r['iter']: r for r in read_scalars(trained) if 'loss' in r}
    resumed = {r['iter']: r for r in read_scalars(work_dir) if 'loss' in r}
    assert sorted(resumed) == [3, 4]
    for iteration, record in resumed.items():
        assert {k: record[k] for k in LOSS_KEYS} == {k: full[iteration][k] for k in LOSS_KEYS}, iteration
    final_full = torch.load(osp.join(trained, 'iter_4.pth'), weights_only=False)
    final_resumed = torch.load(osp.join(work_dir, 'iter_4.pth'), weights_only=False)
    for key in ('state_dict', 'ema_state_dict'):
        for name, value in final_full[key].items():
            assert torch.equal(value, final_resumed[key][name]), (key, name)


def test_test_tool_loads_own_checkpoint(tested):
    work_dir, out = tested
    metrics = read_test_metrics(work_dir)
    print('single-process metrics:', {k: v for k, v in metrics.items() if k.startswith('coco/')})
    assert 'coco/bbox_mAP' in metrics and metrics['coco/bbox_mAP'] >= 0
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 4
    assert all(len(p['pred_instances']['scores']) > 0 for p in predictions)
    painted = [p for p in _files_under(work_dir) if p.endswith('.jpg') and '/painted/' in p]
    assert len(painted) == 4


def test_dist_test_on_cpu_matches_single_process(tiny_config, trained, tested, tmp_path):
    work_dir = str(tmp_path)
    out = osp.join(work_dir, 'predictions.pkl')
    log = run_tool([str(TOOLS / 'dist_test.sh'), tiny_config, osp.join(trained, 'iter_4.pth'), '2',
                    '--work-dir', work_dir, '--out', out], cwd=work_dir, extra_env=dict(PORT=str(free_port())))
    assert "backend 'gloo', rank 0/2" in log
    single_dir, single_out = tested
    distributed_metrics, single_metrics = read_test_metrics(work_dir), read_test_metrics(single_dir)
    coco_keys = [k for k in single_metrics if k.startswith('coco/')]
    assert 'coco/bbox_mAP' in coco_keys and 'coco/bbox_mAP_50' in coco_keys
    assert {k: distributed_metrics[k] for k in coco_keys} == {k: single_metrics[k] for k in coco_keys}
    with open(out, 'rb') as f:
        distributed = pickle.load(f)
    with open(single_out, 'rb') as f:
        single = pickle.load(f)
    assert [p['img_id'] for p in distributed] == [p['img_id'] for p in single]
    for dist_pred, single_pred in zip(distributed, single):
        for key in ('bboxes', 'scores', 'labels'):
            torch.testing.assert_close(dist_pred['pred_instances'][key], single_pred['pred_instances'][key])


def test_dist_train_on_cpu(tiny_config, tmp_path):
    work_dir = str(tmp_path)
    log = run_tool([str(TOOLS / 'dist_train.sh'), tiny_config, '2', '--work-dir', work_dir, '--cfg-options',
                    'train_cfg.max_iters=2'], cwd=work_dir, extra_env=dict(PORT=str(free_port())))
    assert "backend 'gloo', rank 0/2" in log
    assert osp.exists(osp.join(work_dir, 'iter_2.pth'))


def _files_under(root):
    import os
    return [osp.join(d, f) for d, _, files in os.walk(root) for f in files]


def test_test_tool_compiled_gives_the_same_predictions(tiny_config, trained, tested, tmp_path):
    """``tools/test.py --compile`` compiles the model's test step (here with AOTAutograd's eager backend, which
    traces the graphs as inductor gets them) and predicts what the eager run predicted."""
    work_dir = str(tmp_path)
    out = osp.join(work_dir, 'predictions.pkl')
    log = run_tool([str(TOOLS / 'test.py'), tiny_config, osp.join(trained, 'iter_4.pth'), '--work-dir', work_dir,
                    '--out', out, '--compile', '--cfg-options', 'compile.backend=aot_eager'], cwd=work_dir)
    assert "val_step and test_step compiled with torch.compile({'backend': 'aot_eager'})" in log
    with open(tested[1], 'rb') as f:
        eager = pickle.load(f)
    with open(out, 'rb') as f:
        compiled = pickle.load(f)
    assert len(compiled) == len(eager) == 4
    for a, b in zip(eager, compiled):
        assert a['pred_instances']['labels'].tolist() == b['pred_instances']['labels'].tolist()
        assert torch.allclose(a['pred_instances']['bboxes'], b['pred_instances']['bboxes'], atol=1e-3)
        assert torch.allclose(a['pred_instances']['scores'], b['pred_instances']['scores'], atol=1e-5)
