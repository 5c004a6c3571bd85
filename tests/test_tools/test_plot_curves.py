"""tools/analysis_tools/plot_curves.py on scalars.json files written by MMEngine's own LocalVisBackend."""
import os

import pytest

from .conftest import load_tool


def _tool():
    return load_tool('analysis_tools/plot_curves.py')


def _write_run(work_dir, timestamp, validations):
    """A work directory as tools/train.py leaves it: losses every iteration, metrics at each validation."""
    from mmengine.visualization import LocalVisBackend
    backend = LocalVisBackend(save_dir=str(work_dir / timestamp / 'vis_data'))
    for step in range(1, 401):
        backend.add_scalars({'loss': 1.0 / step, 'lr': 1e-3}, step=step)
        if step in validations:
            backend.add_scalars(validations[step], step=step)
    backend.close()
    return work_dir / timestamp / 'vis_data' / 'scalars.json'


def test_plots_the_validations_of_each_run(tmp_path, capsys):
    import matplotlib.image
    a = {200: {'shapes/coco/bbox_mAP_50': 0.3, 'novel/Recall@1': 0.4},
         400: {'shapes/coco/bbox_mAP_50': 0.5, 'novel/Recall@1': 0.6}}
    old = _write_run(tmp_path / 'a', '20260101_000000', {400: {'shapes/coco/bbox_mAP_50': 0.9, 'novel/Recall@1': 0.9}})
    os.utime(old, (1, 1))  # an earlier run in the same work directory: the newest one is read
    _write_run(tmp_path / 'a', '20260102_000000', a)
    b = _write_run(tmp_path / 'b', '20260101_000000', {400: {'shapes/coco/bbox_mAP_50': 0.2, 'novel/Recall@1': 0.7}})
    out = tmp_path / 'curves.png'
    runs = _tool().main([f"{tmp_path / 'a'}=first", str(b), '--keys', 'shapes/coco/bbox_mAP_50', 'novel/Recall@1',
                         '--titles', 'AP50', 'grounding', '--targets', '0.9', '0.8', '--out', str(out)])
    assert runs['first'] == {'shapes/coco/bbox_mAP_50': [(200, 0.3), (400, 0.5)], 'novel/Recall@1': [(200, 0.4), (400, 0.6)]}
    assert runs[str(b)]['novel/Recall@1'] == [(400, 0.7)]
    picture = matplotlib.image.imread(str(out))
    assert picture.shape[1] > picture.shape[0] > 300  # two panels side by side
    assert '2 run(s) x 2 metric(s)' in capsys.readouterr().out


def test_a_metric_the_run_never_logged_names_the_file_and_what_it_has(tmp_path):
    scalars = _write_run(tmp_path / 'a', '20260101_000000', {200: {'shapes/coco/bbox_mAP_50': 0.3}})
    with pytest.raises(KeyError, match=r"scalars.json: no record holds \['novel/Recall@1'\]; its metrics: "
                                       r"\['shapes/coco/bbox_mAP_50'\]"):
        _tool().main([str(tmp_path / 'a'), '--keys', 'novel/Recall@1', '--out', str(tmp_path / 'x.png')])
    no_val = _write_run(tmp_path / 'b', '20260101_000000', {})
    with pytest.raises(KeyError, match='none \\(no validation ran\\)'):
        _tool().read_curves(str(no_val), ['shapes/coco/bbox_mAP_50'])
    with pytest.raises(FileNotFoundError, match='is it a tools/train.py work directory'):
        _tool().scalars_file(str(tmp_path))
    assert _tool().scalars_file(str(scalars)) == str(scalars)
    with pytest.raises(SystemExit):
        _tool().main([str(scalars), '--keys', 'a', 'b', '--titles', 'one', '--out', str(tmp_path / 'x.png')])
    with pytest.raises(SystemExit):
        _tool().main([str(scalars), '--keys', 'a', '--targets', '1', '2', '--out', str(tmp_path / 'x.png')])
