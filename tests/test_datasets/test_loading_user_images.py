"""The shared image decoder (fiber_mmdet.utils.image_io) and the loaders built on it, on files written here with
Pillow as cameras, scanners and editors write them."""
import glob
import os.path as osp
import struct
import time
import zlib

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.dataset import Compose
from PIL import Image

from fiber_mmdet.datasets.transforms import (CheckedLoadImageFromFile, ImageLoadError, pipeline_orientation,
                                             with_user_image_loader)
from fiber_mmdet.utils.image_io import check_image_pixels, image_pixel_limit, load_user_image
from ..conftest import REPO_ROOT

ORIENTATION = 0x0112  # the EXIF tag


def picture(height: int = 24, width: int = 40) -> np.ndarray:
    """A deterministic RGB test picture ``(H, W, 3)`` uint8 with distinct rows and columns."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows * 9 % 256, cols * 5 % 256, (rows * cols) % 256], axis=2).astype(np.uint8)


def save(array_or_image, path, **kwargs) -> str:
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    image.save(path, **kwargs)
    return str(path)


def exif(orientation: int) -> Image.Exif:
    tags = Image.Exif()
    tags[ORIENTATION] = orientation
    return tags


def bgr(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., ::-1]


@pytest.mark.parametrize('name, kwargs', [('a.png', {}), ('a.PNG', {}), ('a.bmp', {}), ('a.tiff', {}),
                                          ('a.TIF', dict(compression='tiff_lzw')), ('a.webp', dict(lossless=True))])
def test_lossless_formats_decode_to_the_same_pixels(tmp_path, name, kwargs):
    rgb = picture()
    path = save(rgb, tmp_path / name, **kwargs)
    np.testing.assert_array_equal(load_user_image(path), bgr(rgb))
    np.testing.assert_array_equal(load_user_image(path, channel_order='rgb'), rgb)


def test_jpeg_rgb_greyscale_and_cmyk(tmp_path):
    rgb = picture()
    reference = load_user_image(save(rgb, tmp_path / 'rgb.JPG', quality=95)).astype(int)
    cmyk = load_user_image(save(Image.fromarray(rgb).convert('CMYK'), tmp_path / 'cmyk.jpg', quality=95))
    assert cmyk.shape == (24, 40, 3) and cmyk.dtype == np.uint8
    assert np.abs(cmyk.astype(int) - reference).mean() < 8  # the same picture, not inverted or black
    grey = load_user_image(save(Image.fromarray(rgb).convert('L'), tmp_path / 'grey.jpeg', quality=95))
    assert grey.shape == (24, 40, 3) and (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    """A 16-bit PNG holding v * 257: Pillow's own conversion clips it at 255 (a white picture), here it is v."""
    grey = picture()[..., 0]
    path = save(Image.fromarray(grey.astype(np.uint16) * 257), tmp_path / 'scan16.png')
    assert Image.open(path).mode == 'I;16'
    assert (np.asarray(Image.open(path).convert('RGB')) == 255).mean() > 0.9  # what mmcv's pillow path reads
    np.testing.assert_array_equal(load_user_image(path), np.repeat(grey[..., None], 3, axis=2))


def test_palette_png_and_gif(tmp_path):
    palette = Image.fromarray(picture()).convert('P', palette=Image.Palette.ADAPTIVE, colors=16)
    expected = np.asarray(palette.convert('RGB'))
    for name in ('p.png', 'p.gif'):
        np.testing.assert_array_equal(load_user_image(save(palette, tmp_path / name), channel_order='rgb'),
                                      expected)


def test_transparency_is_composited_on_white(tmp_path):
    rgb = picture()
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, :10] = 0  # transparent: the colour stored under it must not show
    alpha[:, 10:20] = 128
    path = save(np.dstack([rgb, alpha]), tmp_path / 'logo.png')
    out = load_user_image(path, channel_order='rgb').astype(int)
    assert (out[:, :10] == 255).all()
    np.testing.assert_array_equal(out[:, 20:], rgb[:, 20:])
    np.testing.assert_allclose(out[:, 10:20], (rgb[:, 10:20].astype(int) * 128 + 255 * 127) / 255, atol=1)
    grey_alpha = Image.fromarray(np.dstack([rgb[..., 0], alpha]), 'LA')
    out = load_user_image(save(grey_alpha, tmp_path / 'la.png'), channel_order='rgb')
    assert (out[:, :10] == 255).all() and (out[:, 20:, 0] == rgb[:, 20:, 0]).all()
    palette = Image.fromarray(rgb).convert('P', palette=Image.Palette.ADAPTIVE, colors=8)
    index = np.asarray(palette)[0, 0]
    out = load_user_image(save(palette, tmp_path / 'pt.png', transparency=int(index)), channel_order='rgb')
    assert (out[np.asarray(palette) == index] == 255).all()


@pytest.mark.parametrize('height, width', [(1, 1), (3, 5), (2000, 20), (20, 2000)])
def test_tiny_and_elongated_images_keep_their_shape(tmp_path, height, width):
    rgb = picture(height, width)
    np.testing.assert_array_equal(load_user_image(save(rgb, tmp_path / 'x.png')), bgr(rgb))


# stored pixels -> displayed pixels for the EXIF orientations (TIFF/EXIF 2.3, tag 0x0112)
DISPLAYED = {
    3: lambda a: np.rot90(a, 2),
    6: lambda a: np.rot90(a, -1),  # "the 0th row is the visual right side": turn 90 degrees clockwise
    8: lambda a: np.rot90(a, 1),
    2: lambda a: a[:, ::-1],
}


@pytest.mark.parametrize('orientation', sorted(DISPLAYED))
@pytest.mark.parametrize('ext', ['png', 'jpg'])
def test_exif_orientation_gives_the_picture_a_viewer_shows(tmp_path, orientation, ext):
    stored = picture()
    path = save(stored, tmp_path / f'phone.{ext}', exif=exif(orientation), **({'quality': 100} if ext == 'jpg' else {}))
    shown = load_user_image(path, channel_order='rgb')
    as_stored = load_user_image(path, channel_order='rgb', orientation='stored')
    assert shown.shape == DISPLAYED[orientation](stored).shape
    np.testing.assert_array_equal(shown, DISPLAYED[orientation](as_stored))
    if ext == 'png':
        np.testing.assert_array_equal(as_stored, stored)
    loaded = CheckedLoadImageFromFile()(dict(img_path=path))
    np.testing.assert_array_equal(loaded['img'], bgr(shown))
    assert loaded['ori_shape'] == shown.shape[:2]
    ignoring = CheckedLoadImageFromFile(color_type='color_ignore_orientation')(dict(img_path=path))
    np.testing.assert_array_equal(ignoring['img'], bgr(as_stored))


def png_header(width: int, height: int) -> bytes:
    """A PNG that is only its header (no pixel data): any attempt to decode it fails."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)) + \
        chunk(b'IEND', b'')


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    bomb = tmp_path / 'bomb.png'
    bomb.write_bytes(png_header(50000, 50000))
    start = time.perf_counter()
    for load in (lambda: load_user_image(str(bomb)), lambda: CheckedLoadImageFromFile()(dict(img_path=str(bomb))),
                 lambda: check_image_pixels(str(bomb))):
        with pytest.raises(ImageLoadError, match=f'{bomb}: 2500000000 pixels is over the limit of '
                                                 f'{image_pixel_limit()} pixels, so it is not decoded'):
            load()
    assert time.perf_counter() - start < 1.0
    # under Pillow's limit but over the one given: the message has the size from the header
    big = tmp_path / 'big.png'
    big.write_bytes(png_header(4000, 3000))
    assert check_image_pixels(str(big)) == (4000, 3000)
    with pytest.raises(ImageLoadError, match=f'{big}: 4000x3000 pixels \\(12000000\\) is over the limit of '
                                             '10000000 pixels'):
        load_user_image(str(big), max_pixels=10_000_000)
    with pytest.raises(ImageLoadError, match='over the limit of 10000000'):
        CheckedLoadImageFromFile(max_pixels=10_000_000)(dict(img_path=str(big)))
    with pytest.raises(ImageLoadError, match='over the limit'):
        check_image_pixels(Image.open(big), max_pixels=10_000_000)


def test_pixel_limit_follows_pillows_setting(tmp_path, monkeypatch):
    path = save(picture(), tmp_path / 'small.png')
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 400)  # 2 x 400 < 24 x 40
    assert image_pixel_limit() == 800
    with pytest.raises(ImageLoadError, match='over the limit of 800 pixels'):
        load_user_image(path)
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', None)
    assert image_pixel_limit() is None and load_user_image(path).shape == (24, 40, 3)


def test_unreadable_files_are_named(tmp_path):
    empty = tmp_path / 'empty.jpg'
    empty.write_bytes(b'')
    with pytest.raises(ImageLoadError, match=f'{empty}: cannot read this image \\(the file is empty'):
        load_user_image(str(empty))
    with pytest.raises(ImageLoadError, match='missing.png: no such file'):
        load_user_image(str(tmp_path / 'missing.png'))
    with pytest.raises(ValueError, match="color_type='grayscale' is not supported"):
        CheckedLoadImageFromFile(color_type='grayscale')


def test_inferencer_and_test_pipelines_get_the_shared_decoder(tmp_path):
    """What mmdet's DetInferencer builds from a test pipeline (InferencerLoader around mmcv's loader) and a
    dataset's test pipeline (mmcv's loader) decode a 16-bit PNG as the training loader does."""
    grey = picture()[..., 0]
    path = save(Image.fromarray(grey.astype(np.uint16) * 257), tmp_path / 'scan16.png')
    expected = np.repeat(grey[..., None], 3, axis=2)
    inferencer_pipeline = with_user_image_loader(Compose([dict(type='mmdet.InferencerLoader',
                                                               imdecode_backend='pillow')]))
    np.testing.assert_array_equal(inferencer_pipeline(path)['img'], expected)
    assert pipeline_orientation(inferencer_pipeline) == 'exif'
    array = np.zeros((5, 7, 3), np.uint8)
    assert inferencer_pipeline(array)['img'] is array  # arrays pass through as mmdet gives them
    test_pipeline = Compose([dict(type='LoadImageFromFile', imdecode_backend='pillow',
                                  color_type='color_ignore_orientation')])
    assert (test_pipeline(dict(img_path=path))['img'] == 255).mean() > 0.9  # mmcv's reading
    assert pipeline_orientation(test_pipeline) == 'stored'
    loader = with_user_image_loader(test_pipeline, max_pixels=900).transforms[0]
    assert isinstance(loader, CheckedLoadImageFromFile) and loader.orientation == 'stored'
    assert loader.max_pixels == 900 and loader.imdecode_backend == 'pillow'
    with pytest.raises(ImageLoadError, match='40x24 pixels \\(960\\) is over the limit of 900 pixels'):
        test_pipeline(dict(img_path=path))


def _loaders(node, found):
    if isinstance(node, dict):
        if node.get('type') in ('LoadImageFromFile', 'CheckedLoadImageFromFile', 'mmdet.LoadImageFromFile'):
            found.append(node.get('color_type', 'color'))
        for value in node.values():
            _loaders(value, found)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _loaders(value, found)
    return found


def test_configs_read_one_orientation_in_training_and_testing():
    """Every config's loaders (training, validation, test) agree on ``color_type``: annotations are matched to
    one orientation of the pixels."""
    checked = 0
    for path in sorted(glob.glob(osp.join(REPO_ROOT, 'configs', '**', '*.py'), recursive=True)):
        cfg = Config.fromfile(path).to_dict()
        orientations = set(_loaders([cfg.get(k) for k in ('train_dataloader', 'val_dataloader',
                                                          'test_dataloader')], []))
        assert len(orientations) <= 1, (path, orientations)
        checked += bool(orientations)
    assert checked >= 5


def test_annotation_drawn_on_the_other_orientation_is_named(tmp_path):
    """A sideways-stored photo (EXIF 6) whose annotation gives the stored size: the boxes were drawn on the stored
    pixels, so reading it as shown would train on boxes across the picture."""
    stored = picture()  # 24 x 40 (H x W) as stored; 40 x 24 as shown
    path = save(stored, tmp_path / 'IMG_0007.jpg', exif=exif(6))
    annotated_as_stored = dict(img_path=path, height=24, width=40)
    with pytest.raises(ImageLoadError, match="IMG_0007.jpg: read as 24x40 \\(color_type='color': EXIF orientation "
                                             "applied\\) but its annotation says 40x24.*set "
                                             "color_type='color_ignore_orientation'"):
        CheckedLoadImageFromFile()(dict(annotated_as_stored))
    loaded = CheckedLoadImageFromFile(color_type='color_ignore_orientation')(dict(annotated_as_stored))
    assert loaded['img_shape'] == (24, 40)
    assert CheckedLoadImageFromFile()(dict(img_path=path, height=40, width=24))['img_shape'] == (40, 24)
    with pytest.raises(ImageLoadError, match="set color_type='color'"):
        CheckedLoadImageFromFile(color_type='color_ignore_orientation')(dict(img_path=path, height=40, width=24))
