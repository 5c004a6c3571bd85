"""Fixtures for the web demo's tests: a toy FIBER checkpoint (random weights), ``demo/gradio_demo.py`` serving it
on 127.0.0.1, and headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by Selenium."""
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, Iterator, Optional, Sequence

import pytest

from ..test_tools.conftest import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT_S = 180
MAX_BOXES = 8  # few boxes, so that the page's table is short


@pytest.fixture(scope='module')
def toy_demo_model(tmp_path_factory) -> SimpleNamespace:
    """``config``, ``checkpoint`` and a toy ``image`` (PNG) for a toy FIBER with random weights (seed 0): its boxes
    are arbitrary but deterministic, which is all a test of the page needs."""
    import torch
    from mmengine.config import Config
    from mmdet.registry import MODELS
    from fiber_mmdet.datasets.synthetic_shapes import generate_toy_dataset

    root = tmp_path_factory.mktemp('gradio_demo')
    data = root / 'toy_shapes'
    generate_toy_dataset(str(data), seed=0, num_train_od=8, num_train_od_attr=4, num_train_vg=8, num_val=2,
                         num_grounding=2)
    # configs/toy/fiber_toy.py on this data: its paths are relative to data_root, which the config's derived
    # values (tokenizer, annotation files) have already read, so each is set here
    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'toy' / 'fiber_toy.py'))
    cfg.model.language_model.tokenizer = str(data / 'tokenizer')
    cfg.model.test_cfg.update(max_per_img=MAX_BOXES, score_thr=0.0)  # random weights score low: keep every box
    for dataset in cfg.test_dataloader.dataset.datasets:
        dataset.data_root = str(data) + '/'
    config = root / 'fiber_toy_demo.py'
    cfg.dump(str(config))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    checkpoint = root / 'fiber_toy_random.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': {'classes': tuple(cfg.classes)}}},
               str(checkpoint))
    image = sorted((data / 'images' / 'val').glob('*.png'))[0]
    return SimpleNamespace(config=str(config), checkpoint=str(checkpoint), image=str(image), root=root)


def _get(url: str, timeout: float) -> int:
    """HTTP status of ``url``, never through a proxy (the test talks to 127.0.0.1 only)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        return response.status


@contextmanager
def serve_demo(model: SimpleNamespace, name: str, args: Sequence[str] = (),
               env: Optional[Dict[str, str]] = None) -> Iterator[SimpleNamespace]:
    """``python demo/gradio_demo.py CONFIG CKPT --port P *args`` as a user runs it, with Gradio's files under
    ``model.root / name``; yields ``url`` (no trailing slash), ``process``, ``log`` (path of its output) and
    ``upload_dir``; stopped (then killed) at the end."""
    port = free_port()
    url = f'http://127.0.0.1:{port}'
    upload_dir = model.root / name / 'gradio_cache'
    upload_dir.mkdir(parents=True)
    full_env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''),
                    OMP_NUM_THREADS='1', GRADIO_ANALYTICS_ENABLED='False', GRADIO_TEMP_DIR=str(upload_dir))
    full_env.update(env or {})
    log_path = model.root / name / 'server.log'
    with open(log_path, 'w') as log:
        server = subprocess.Popen(
            [sys.executable, 'demo/gradio_demo.py', model.config, model.checkpoint, '--port', str(port), '--device',
             'cpu', *args], cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                raise AssertionError(f'demo/gradio_demo.py exited ({server.returncode}) before serving:\n'
                                     f'{log_path.read_text()[-6000:]}')
            try:
                if _get(url + '/', timeout=2) == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f'demo/gradio_demo.py did not serve {url} within {SERVER_START_TIMEOUT_S} s:\n'
                                     f'{log_path.read_text()[-6000:]}')
            time.sleep(0.5)
        yield SimpleNamespace(url=url, process=server, log=log_path, upload_dir=upload_dir)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)


@pytest.fixture(scope='module')
def demo_url(toy_demo_model) -> Iterator[str]:
    """The demo with its default settings, for the browser."""
    with serve_demo(toy_demo_model, 'default') as server:
        yield server.url + '/'


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    """Headless Chromium under Selenium, kept offline: every host name but 127.0.0.1 fails to resolve."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which('chromium'), shutil.which('chromedriver')
    assert chromium and driver_path, (
        "the web demo test needs Debian's chromium and chromium-driver packages (make test installs them: "
        'apt-get install -y chromium chromium-driver)')
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
                     '--window-size=1400,1800', '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
                     f'--user-data-dir={tmp_path_factory.mktemp("chromium_profile")}'):
        options.add_argument(argument)
    options.set_capability('goog:loggingPrefs', {'performance': 'ALL'})  # the page's requests, for the tests
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
