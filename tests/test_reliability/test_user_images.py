"""Images as users have them, through FIBERInferencer and demo/image_demo.py on the untrained toy model: a phone
photo with an EXIF orientation, 16-bit and transparent PNGs, other formats, tiny and elongated pictures, a
decompression bomb, a camera folder with upper-case extensions and hidden files."""
import copy
import importlib.util
import os
import os.path as osp
import time

import numpy as np
import pytest
import torch
from PIL import Image

from fiber_mmdet.apis import FIBERInferencer, ImageLoadError
from ..conftest import REPO_ROOT
from ..test_datasets.test_loading_user_images import exif, png_header

TEXTS = dict(texts='circle . square . cross', custom_entities=True)
BOX_TOLERANCE = 1e-3  # pixels


@pytest.fixture(scope='module')
def scoring_checkpoint(toy_cfg, tmp_path_factory) -> str:
    """The toy model at its initialisation with the head's ``bias0`` at 0, so every anchor scores about 0.5 and
    each picture gets boxes."""
    from mmdet.registry import MODELS
    torch.manual_seed(0)
    state_dict = MODELS.build(toy_cfg.model).state_dict()
    state_dict['bbox_head.head.bias0'] = torch.zeros_like(state_dict['bbox_head.head.bias0'])
    path = str(tmp_path_factory.mktemp('scoring') / 'toy.pth')
    torch.save({'state_dict': state_dict}, path)
    return path


@pytest.fixture(scope='module')
def inferencer(toy_cfg, scoring_checkpoint):
    return FIBERInferencer(model=copy.deepcopy(toy_cfg), weights=scoring_checkpoint, device='cpu',
                           show_progress=False)


@pytest.fixture(scope='module')
def toy_rgb(toy_root) -> np.ndarray:
    """A toy validation picture ``(H, W, 3)`` RGB, the same in every test."""
    folder = osp.join(toy_root, 'images', 'val')
    return np.asarray(Image.open(osp.join(folder, sorted(os.listdir(folder))[0])).convert('RGB'))


def predict(inferencer, paths) -> list:
    return inferencer(list(paths), **TEXTS)['predictions']


def assert_same_boxes(pred, reference, name):
    assert len(pred['bboxes']) == len(reference['bboxes']) > 0, name
    np.testing.assert_allclose(pred['bboxes'], reference['bboxes'], atol=BOX_TOLERANCE, err_msg=name)
    np.testing.assert_allclose(pred['scores'], reference['scores'], atol=1e-5, err_msg=name)


def test_phone_photo_boxes_are_in_the_picture_as_shown(inferencer, toy_rgb, toy_root, tmp_path):
    """Stored sideways with EXIF orientation 6 (turn clockwise to show): the same boxes as the upright file."""
    upright = str(tmp_path / 'upright.png')
    Image.fromarray(toy_rgb).save(upright)
    sideways = str(tmp_path / 'IMG_0001.PNG')
    Image.fromarray(np.rot90(toy_rgb, 1).copy()).save(sideways, exif=exif(6))
    reference, pred = predict(inferencer, [upright, sideways])
    assert_same_boxes(pred, reference, 'EXIF orientation 6')
    height, width = toy_rgb.shape[:2]
    boxes = np.asarray(pred['bboxes'])
    assert boxes[:, 2].max() <= width + BOX_TOLERANCE and boxes[:, 3].max() <= height + BOX_TOLERANCE


def test_formats_give_the_boxes_of_the_same_picture(inferencer, toy_rgb, tmp_path):
    """Lossless files of one picture give one set of boxes; a 16-bit scan gives the boxes of its 8-bit copy, a
    transparent PNG those of the picture on white."""
    reference = str(tmp_path / 'reference.png')
    Image.fromarray(toy_rgb).save(reference)
    same = {}
    for name, kwargs in (('a.BMP', {}), ('a.tiff', {}), ('a.webp', dict(lossless=True)),
                         ('a.png', dict(format='PNG'))):
        same[name] = str(tmp_path / name)
        Image.fromarray(toy_rgb).save(same[name], **kwargs)
    grey = np.asarray(Image.fromarray(toy_rgb).convert('L'))
    grey8, grey16 = str(tmp_path / 'grey8.png'), str(tmp_path / 'grey16.png')
    Image.fromarray(grey).save(grey8)
    Image.fromarray(grey.astype(np.uint16) * 257).save(grey16)  # mode I;16
    on_white, transparent = str(tmp_path / 'on_white.png'), str(tmp_path / 'transparent.png')
    hidden = np.zeros(toy_rgb.shape[:2], bool)
    hidden[:, :toy_rgb.shape[1] // 3] = True
    Image.fromarray(np.where(hidden[..., None], 255, toy_rgb).astype(np.uint8)).save(on_white)
    # black under the transparent third, as editors often store it
    rgba = np.dstack([np.where(hidden[..., None], 0, toy_rgb), np.where(hidden, 0, 255)]).astype(np.uint8)
    Image.fromarray(rgba, 'RGBA').save(transparent)
    paths = [reference, *same.values(), grey8, grey16, on_white, transparent]
    preds = dict(zip(paths, predict(inferencer, paths)))
    for name, path in same.items():
        assert_same_boxes(preds[path], preds[reference], name)
    assert_same_boxes(preds[grey16], preds[grey8], '16-bit greyscale PNG')
    assert_same_boxes(preds[transparent], preds[on_white], 'RGBA PNG')


def test_jpeg_cmyk_and_palette_files_are_detected_on(inferencer, toy_rgb, tmp_path):
    paths = []
    for name, image in (('cmyk.jpg', Image.fromarray(toy_rgb).convert('CMYK')),
                        ('grey.JPG', Image.fromarray(toy_rgb).convert('L')),
                        ('palette.png', Image.fromarray(toy_rgb).convert('P', palette=Image.Palette.ADAPTIVE)),
                        ('anim.gif', Image.fromarray(toy_rgb).convert('P'))):
        paths.append(str(tmp_path / name))
        image.save(paths[-1])
    height, width = toy_rgb.shape[:2]
    for path, pred in zip(paths, predict(inferencer, paths)):
        boxes = np.asarray(pred['bboxes'])
        assert len(boxes) > 0 and np.isfinite(boxes).all(), path
        assert boxes[:, 2].max() <= width + BOX_TOLERANCE and boxes[:, 3].max() <= height + BOX_TOLERANCE, path


@pytest.mark.parametrize('width, height', [(1, 1), (5, 3), (20, 2000), (2000, 20)])
def test_tiny_and_elongated_pictures(inferencer, toy_rgb, tmp_path, width, height):
    path = str(tmp_path / f'{width}x{height}.png')
    Image.fromarray(toy_rgb).resize((width, height), Image.BILINEAR).save(path)
    boxes = np.asarray(predict(inferencer, [path])[0]['bboxes'])
    assert len(boxes) > 0 and np.isfinite(boxes).all()
    assert boxes.min() >= -BOX_TOLERANCE
    assert boxes[:, [0, 2]].max() <= width + BOX_TOLERANCE and boxes[:, [1, 3]].max() <= height + BOX_TOLERANCE


def test_decompression_bomb_is_refused_not_decoded(inferencer, tmp_path):
    bomb = tmp_path / 'bomb.png'
    bomb.write_bytes(png_header(50000, 50000))  # 57 bytes saying 2.5 gigapixels
    start = time.perf_counter()
    with pytest.raises(ImageLoadError, match=f'{bomb}: 2500000000 pixels is over the limit of 178956970'):
        predict(inferencer, [str(bomb)])
    assert time.perf_counter() - start < 2.0


def _image_demo():
    spec = importlib.util.spec_from_file_location('image_demo', osp.join(REPO_ROOT, 'demo', 'image_demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_takes_a_camera_folder(toy_cfg, scoring_checkpoint, toy_rgb, tmp_path, capsys):
    """Upper-case extensions are images; hidden files, a sub-folder and a text file are counted, not run on."""
    folder = tmp_path / 'DCIM'
    (folder / 'thumbs').mkdir(parents=True)
    Image.fromarray(toy_rgb).save(folder / 'IMG_0001.JPG')
    Image.fromarray(toy_rgb).save(folder / 'IMG_0002.PNG')
    Image.fromarray(np.rot90(toy_rgb, 1).copy()).save(folder / 'IMG_0003.jpeg', exif=exif(6))
    (folder / '._IMG_0001.JPG').write_bytes(b'\x00\x05\x16\x07')  # macOS metadata, not a picture
    (folder / '.DS_Store').write_bytes(b'\x00')
    (folder / 'notes.txt').write_text('holiday')
    out, config = tmp_path / 'out', str(tmp_path / 'toy.py')
    toy_cfg.dump(config)  # the toy config with its data and tokenizer paths moved to the test data
    status = _image_demo().main([str(folder), config, '--weights', scoring_checkpoint, '--out-dir', str(out),
                                 '--texts', 'circle . square', '-c'])
    printed = capsys.readouterr()
    assert status == 0, printed.err[-2000:]
    assert '3 image(s) done' in printed.out
    assert sorted(p.name for p in (out / 'preds').iterdir()) == ['IMG_0001.json', 'IMG_0002.json', 'IMG_0003.json']
    vis = Image.open(out / 'vis' / 'IMG_0003.jpeg')
    assert vis.size == (toy_rgb.shape[1], toy_rgb.shape[0])  # drawn on the picture as shown
    assert '4 entries left out: 2 hidden (.DS_Store, ._IMG_0001.JPG), 1 not an image (notes.txt), 1 folder ' \
        '(thumbs)' in printed.err


def test_drawn_picture_follows_the_configs_orientation(toy_cfg, scoring_checkpoint, toy_rgb, tmp_path):
    """A config that keeps the stored pixels (color_type='color_ignore_orientation') draws its boxes on the
    stored picture, the one the model saw, not on the EXIF-turned one."""
    sideways = str(tmp_path / 'IMG_0002.PNG')
    stored = np.rot90(toy_rgb, 1).copy()
    Image.fromarray(stored).save(sideways, exif=exif(6))
    for orientation, color_type, shape in (('exif', 'color', toy_rgb.shape),
                                           ('stored', 'color_ignore_orientation', stored.shape)):
        cfg = copy.deepcopy(toy_cfg)
        cfg.test_dataloader.dataset.pipeline[0]['color_type'] = color_type
        drawer = FIBERInferencer(model=cfg, weights=scoring_checkpoint, device='cpu', show_progress=False)
        out = drawer(sideways, return_vis=True, **TEXTS)
        assert out['visualization'][0].shape == shape, orientation
