"""What a deployment user gets wrong gets a message, never a wrong answer; and the runtime runs without torch."""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from fiber_mmdet.runtime import ONNXFIBER, DeploymentError, ExportError
from fiber_mmdet.utils import PromptError

from ..conftest import REPO_ROOT, TOY_CONFIG, val_images

# a process in which the training stack cannot be imported: what a machine with only the deploy extra has
UNAVAILABLE = ['torch', 'torchvision', 'mmcv', 'mmdet', 'mmengine', 'mmpretrain', 'transformers', 'cv2', 'pycocotools',
               'lvis', 'rich']
WITHOUT_TORCH = (f"import sys, runpy; sys.modules.update(dict.fromkeys({UNAVAILABLE!r})); sys.argv = sys.argv[1:]; "
                 "runpy.run_path(sys.argv[0], run_name='__main__')")


def test_fixed_size_graph_refuses_a_larger_image(onnx_exports, tmp_path):
    tall = tmp_path / 'tall.png'
    Image.new('RGB', (120, 400), (90, 90, 90)).save(tall)  # resizes to 256x144... portrait: 256 high > 160
    with pytest.raises(DeploymentError, match=r'exported for inputs of 160x256 .*--shape'):
        ONNXFIBER(onnx_exports['fixed'])(str(tall))


def test_fixed_vocabulary_graph_refuses_a_text(onnx_exports, toy_root):
    with pytest.raises(DeploymentError, match='vocabulary folded in'):
        ONNXFIBER(onnx_exports['fixed'])(val_images(toy_root)[0], texts='cat . dog', custom_entities=True)


def test_prompt_over_the_token_budget(onnx_exports, toy_root):
    long_expression = ' '.join(['the small red triangle left of a blue circle'] * 10)
    with pytest.raises(PromptError, match='at most 64'):
        ONNXFIBER(onnx_exports['free'])(val_images(toy_root)[0], texts=long_expression, tokens_positive=-1)


def test_missing_tokenizer_file(onnx_exports, tmp_path):
    copy = tmp_path / 'copy'
    shutil.copytree(onnx_exports['free'], copy)
    os.remove(copy / 'tokenizer.json')
    with pytest.raises(DeploymentError, match='missing tokenizer.json'):
        ONNXFIBER(str(copy))


def test_checkpoint_that_does_not_fit_the_config(toy_dir, toy_checkpoint, tmp_path):
    from fiber_mmdet.deployment import export_onnx
    with pytest.raises(ExportError, match=r'does not load into the model of .*fiber_toy\.py'):
        export_onnx(TOY_CONFIG, toy_checkpoint, str(tmp_path / 'out'),
                    cfg_options={'model.bbox_head.num_dyhead_blocks': 2})


def test_export_tool_rejects_a_shape_off_the_size_divisor(toy_dir, toy_checkpoint, tmp_path):
    result = subprocess.run(
        [sys.executable, osp.join(REPO_ROOT, 'tools', 'deployment', 'export_onnx.py'), TOY_CONFIG, toy_checkpoint,
         '--out', str(tmp_path / 'out'), '--shape', '150', '256'], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert 'multiples of the size divisor 32' in result.stderr


def test_onnx_demo_runs_without_torch(onnx_exports, toy_root, tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    for path in val_images(toy_root)[:2]:
        shutil.copy(path, folder / osp.basename(path).replace('.png', '.PNG'))
    (folder / 'broken.jpg').write_bytes(b'not an image')
    out = tmp_path / 'out'
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS='1')
    result = subprocess.run(
        [sys.executable, '-c', WITHOUT_TORCH, osp.join(REPO_ROOT, 'demo', 'onnx_demo.py'), str(folder),
         onnx_exports['free'], '--texts', 'circle . square', '-c', '--out-dir', str(out), '--batch-size', '2'],
        capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 1, result.stderr  # the broken image fails, the others are done
    assert 'broken.jpg' in result.stderr and '2 image(s) done' in result.stdout
    model = ONNXFIBER(onnx_exports['free'])
    for path in val_images(toy_root)[:2]:
        stem = osp.splitext(osp.basename(path))[0]
        with open(out / 'preds' / f'{stem}.json', encoding='utf-8') as f:
            saved = json.load(f)
        assert saved == model(path, texts='circle . square', custom_entities=True)[0]
        assert (out / 'vis' / f'{stem}.PNG').is_file()


def test_dataset_class_list_needs_an_export(onnx_exports, toy_root):
    with pytest.raises(PromptError, match=r"export_onnx.py --texts '\$: coco'"):
        ONNXFIBER(onnx_exports['free'])(val_images(toy_root)[0], texts='$: coco', custom_entities=True)


def test_an_nms_the_runtime_does_not_run_is_refused_at_export(toy_dir, toy_checkpoint, tmp_path):
    from fiber_mmdet.deployment import export_onnx
    with pytest.raises(ExportError, match="test_cfg.nms type 'soft_nms'"):
        export_onnx(TOY_CONFIG, toy_checkpoint, str(tmp_path / 'out'),
                    cfg_options={'model.test_cfg.nms.type': 'soft_nms'})
