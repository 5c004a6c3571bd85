"""The ODinW protocol driver: per-run configs, the run plan, resuming, the result table; and one real run on a
tiny downstream set (train, best checkpoint, test, result.json) that a second call does not repeat."""
import json
import os
import os.path as osp

import pytest
from mmengine.config import Config

from fiber_mmdet.engine.finetune_protocol import (build_run_config, child_environment, execute_run, general_copy,
                                                  plan_runs, resolve_gpus, run_protocol, summarize,
                                                  summary_markdown)


@pytest.fixture(scope='module')
def odinw13(repo_root):
    return Config.fromfile(osp.join(repo_root, 'configs', 'odinw', 'fiber_b_odinw13_finetune.py'))


def test_run_config_of_a_few_shot_run(odinw13, tmp_path):
    assert [general_copy(odinw13, k) for k in (1, 3, 5, 10, 0)] == [8, 4, 2, 1, 1]
    run = build_run_config(odinw13, 'Aquarium', 1, 30, str(tmp_path), 'ckpt.pth', processes=2)
    train = run.train_dataloader.dataset
    assert (train.type, train.times) == ('RepeatDataset', 8)
    inner = train.dataset
    assert (inner.type, inner.shots, inner.ann_file, inner.data_prefix.img) == (
        'FewShotCocoDataset', 1, 'train/annotations_without_background.json', 'train/')
    assert inner.metainfo.classes == ('fish', 'jellyfish', 'penguin', 'puffin', 'shark', 'starfish', 'stingray')
    assert inner.caption_prompt['penguin'] == dict(suffix=' , which is black and white')
    assert run.train_dataloader.batch_size == 2  # the global batch of 4 over 2 GPUs
    assert run.val_dataloader.dataset.ann_file == 'valid/annotations_without_background.json'
    assert run.test_dataloader.dataset.ann_file == 'test/annotations_without_background.json'
    assert run.test_evaluator.ann_file.endswith('Aquarium Combined.v2-raw-1024.coco/test/'
                                                'annotations_without_background.json')
    assert (run.randomness.seed, run.load_from, run.finetune_protocol) == (30, 'ckpt.pth', None)
    # EgoHands validates on its minival split, a Roboflow export keeps every split in one folder
    assert build_run_config(odinw13, 'EgoHands_generic', 0, 3, '.').val_dataloader.dataset.ann_file == \
        'mini_val/annotations_without_background.json'
    pistols = build_run_config(odinw13, 'pistols', 5, 3, '.')
    assert (pistols.train_dataloader.dataset.times, pistols.train_dataloader.dataset.dataset.ann_file) == (
        2, 'train_annotations_without_background.json')
    with pytest.raises(ValueError, match='does not divide over 3 GPUs'):
        build_run_config(odinw13, 'Aquarium', 1, 3, '.', processes=3)


def fake_result(run, value):
    os.makedirs(run.work_dir, exist_ok=True)
    result = dict(dataset=run.dataset, shots=run.shots, seed=run.seed, test={'coco/bbox_mAP': value})
    with open(osp.join(run.work_dir, 'result.json'), 'w') as f:
        json.dump(result, f)
    return result


def test_protocol_resumes_and_tabulates(odinw13, tmp_path):
    root = str(tmp_path)
    runs = plan_runs(['Aquarium', 'pothole'], [1, 0], [3, 30], root)
    assert [osp.relpath(r.work_dir, root) for r in runs[:3]] == [
        'Aquarium/1shot_seed3', 'Aquarium/1shot_seed30', 'Aquarium/full_seed3']
    values = {(r.dataset, r.shots, r.seed): v for r, v in zip(runs, [0.2, 0.3, 0.5, 0.7, 0.1, 0.1, 0.4, 0.4])}
    for run in runs[:3]:  # an interrupted protocol: three runs finished
        fake_result(run, values[run.dataset, run.shots, run.seed])
    executed = []

    def executor(cfg, run, checkpoint, devices, port):
        executed.append((run.dataset, run.shots, run.seed, devices))
        return fake_result(run, values[run.dataset, run.shots, run.seed])

    summary = run_protocol(odinw13, 'ckpt.pth', root, ['Aquarium', 'pothole'], [1, 0], [3, 30], executor=executor)
    assert sorted(executed) == sorted((r.dataset, r.shots, r.seed, None) for r in runs[3:])
    table = summary['datasets']
    assert table['Aquarium']['1-shot']['mean'] == pytest.approx(25.0)
    assert table['Aquarium']['1-shot']['std'] == pytest.approx(7.0710678)  # sample std of 20, 30
    assert table['pothole']['full']['mean'] == pytest.approx(40.0) and table['pothole']['full']['std'] == 0
    assert summary['average']['1-shot']['mean'] == pytest.approx((25.0 + 10.0) / 2)
    assert summary['average']['full']['mean'] == pytest.approx((60.0 + 40.0) / 2)
    markdown = open(osp.join(root, 'summary.md')).read()
    assert '| Aquarium | 25.0 ± 7.1 | 60.0 ± 14.1 |' in markdown and '**17.5**' in markdown
    assert json.load(open(osp.join(root, 'summary.json'))) == summary
    # everything finished: a second call runs nothing
    executed.clear()
    run_protocol(odinw13, 'ckpt.pth', root, ['Aquarium', 'pothole'], [1, 0], [3, 30], executor=executor)
    assert executed == []


def test_failed_runs_are_reported_and_retried(odinw13, tmp_path):
    calls = []

    def executor(cfg, run, checkpoint, devices, port):
        calls.append(run.seed)
        if run.seed == 30 and calls.count(30) == 1:
            raise RuntimeError('out of memory')
        return fake_result(run, 0.5)

    with pytest.raises(RuntimeError, match='1 run.*failed(.|\n)*seed30: out of memory'):
        run_protocol(odinw13, 'c', str(tmp_path), ['Raccoon'], [1], [3, 30], executor=executor)
    summary = run_protocol(odinw13, 'c', str(tmp_path), ['Raccoon'], [1], [3, 30], executor=executor)
    assert sorted(calls) == [3, 30, 30] and summary['datasets']['Raccoon']['1-shot']['seeds'] == [3, 30]


def test_child_runs_use_the_callers_gpus():
    """A run's GPUs are positions among the GPUs the caller sees, never absolute indices."""
    caller = dict(CUDA_VISIBLE_DEVICES='2,3', HOME='/home/me')
    # the caller picked GPUs 2 and 3 and asks for one GPU per run: the runs get 2, then 3
    assert child_environment(caller, [0], device_count=2) == dict(CUDA_VISIBLE_DEVICES='2', HOME='/home/me')
    assert child_environment(caller, [1], device_count=2)['CUDA_VISIBLE_DEVICES'] == '3'
    assert child_environment(caller, [0, 1], device_count=2)['CUDA_VISIBLE_DEVICES'] == '2,3'
    assert child_environment(dict(CUDA_VISIBLE_DEVICES='GPU-ab12, GPU-cd34'), [1], 2)['CUDA_VISIBLE_DEVICES'] == \
        'GPU-cd34'
    with pytest.raises(ValueError, match=r"GPU\(s\) \[2\] requested .* only 2 are visible "
                       r"\(CUDA_VISIBLE_DEVICES='2,3'\)"):
        child_environment(caller, [2], device_count=2)
    # no caller setting: the indices of the GPUs the process sees
    assert child_environment({}, [2, 3], device_count=4)['CUDA_VISIBLE_DEVICES'] == '2,3'
    with pytest.raises(ValueError, match=r'only 1 are visible \(1 GPU\(s\) found\)'):
        child_environment({}, [1], device_count=1)
    # a CPU run sees no GPU
    assert child_environment(caller, None, device_count=2)['CUDA_VISIBLE_DEVICES'] == ''
    assert caller == dict(CUDA_VISIBLE_DEVICES='2,3', HOME='/home/me')  # the caller's environment is untouched


def test_gpus_default_to_the_visible_ones(repo_root):
    import importlib.util
    spec = importlib.util.spec_from_file_location('odinw_finetune', osp.join(repo_root, 'tools', 'odinw_finetune.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.parse_args(['CONFIG', 'CKPT']).gpus is None  # resolved at run time by resolve_gpus
    assert resolve_gpus(None, device_count=0, env={}) == 0  # a machine without GPUs: the CPU
    assert resolve_gpus(None, device_count=4, env={}) == 4
    assert resolve_gpus(None, device_count=1, env=dict(CUDA_VISIBLE_DEVICES='3')) == 1
    assert resolve_gpus(2, device_count=4, env={}) == 2
    with pytest.raises(ValueError, match=r"--gpus 2: this process sees 1 GPU\(s\) \(CUDA_VISIBLE_DEVICES='3'\)"):
        resolve_gpus(2, device_count=1, env=dict(CUDA_VISIBLE_DEVICES='3'))


def test_markdown_marks_missing_cells():
    summary = summarize([dict(dataset='A', shots=1, seed=3, test=dict(m=0.5))], 'm', ['A', 'B'], [1, 0])
    text = summary_markdown(summary, ['A', 'B'], [1, 0])
    assert '| B | — | — |' in text and '**50.0** (1 datasets)' in text


def test_one_real_run_on_the_toy_model(repo_root, tokenizer_dir, tmp_path):
    """tools/train.py + tools/test.py through execute_run: best checkpoint, test metrics, result.json; the
    protocol then skips the finished run."""
    from fiber_mmdet.datasets.synthetic_downstream import generate_toy_downstream
    data = str(tmp_path / 'data') + '/'
    generate_toy_downstream(data, seed=1, num_train=6, num_val=3, num_test=3)
    cfg = Config.fromfile(osp.join(repo_root, 'configs', 'toy', 'fiber_toy_few_shot.py'))
    cfg.finetune_protocol.datasets[0]['data_root'] = data
    cfg.model.language_model.tokenizer = tokenizer_dir
    cfg.train_cfg.max_epochs = 2
    runs = plan_runs(['toy_novel_shapes'], [1], [3], str(tmp_path / 'runs'))
    os.makedirs(runs[0].work_dir)
    open(osp.join(runs[0].work_dir, 'stale.log'), 'w').close()  # an interrupted run: started again
    result = execute_run(cfg, runs[0], None, None, 29650)
    assert not osp.exists(osp.join(runs[0].work_dir, 'stale.log'))
    assert result['validations'] == 2 and result['best_checkpoint'].startswith('best_coco_bbox_mAP_epoch_')
    assert 0.0 <= result['test']['coco/bbox_mAP_50'] <= 1.0
    assert json.load(open(osp.join(runs[0].work_dir, 'result.json'))) == result
    summary = run_protocol(cfg, None, str(tmp_path / 'runs'), ['toy_novel_shapes'], [1], [3],
                           executor=lambda *a: pytest.fail('a finished run ran again'))
    assert summary['datasets']['toy_novel_shapes']['1-shot']['values'] == [100 * result['test']['coco/bbox_mAP']]
