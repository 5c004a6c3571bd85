"""The web demo in a real browser: headless Chromium uploads a toy image, submits a prompt in each mode, and the
page's picture and table are FIBERInferencer's own results for that image and prompt; bad input shows a message."""
import base64
import io
import json
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Iterator, List
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from .conftest import MAX_BOXES

WAIT_S = 60
SCORE_THR = 0.0  # random weights: any box the model returns is shown
# (mode, text, phrases, the FIBERInferencer arguments the page must pass for them)
CASES = [
    ('classes', 'circle . square', '', dict(texts='circle . square', custom_entities=True)),
    ('phrases', 'a red circle left of a blue square', 'a red circle; a blue square',
     dict(texts='a red circle left of a blue square', tokens_positive=['a red circle', 'a blue square'])),
    ('referring expression', 'the red circle', '', dict(texts='the red circle', tokens_positive=-1)),
]


@contextmanager
def torch_threads(num: int) -> Iterator[None]:
    """The server runs with one thread (OMP_NUM_THREADS=1); the reference does too, for the same float sums."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope='module')
def reference(toy_demo_model) -> List[SimpleNamespace]:
    """What the page must show for each case, from FIBERInferencer called directly on the same checkpoint, image
    and prompt: ``rows`` (phrase, score, x1, y1, x2, y2) of the boxes scoring above the threshold and the
    ``picture``; for a referring expression only its best box (the inferencer draws only that one: its picture
    equals the one of the boxes scoring above the runner-up, although several score above the threshold)."""
    from fiber_mmdet.apis import FIBERInferencer
    inferencer = FIBERInferencer(model=toy_demo_model.config, weights=toy_demo_model.checkpoint, device='cpu',
                                 show_progress=False)
    expected = []
    with torch_threads(1):
        for mode, _, _, kwargs in CASES:
            out = inferencer(toy_demo_model.image, pred_score_thr=SCORE_THR, return_vis=True, **kwargs)
            pred = out['predictions'][0]
            assert 1 < len(pred['scores']) <= MAX_BOXES
            rows = [(name.strip(), score, *box)  # a cell shows no edge spaces
                    for name, score, box in zip(pred['label_names'], pred['scores'], pred['bboxes'])
                    if score > SCORE_THR]  # mmdet's visualizer draws the boxes scoring above the threshold
            picture = out['visualization'][0]
            if mode == 'referring expression':
                best, runner_up = sorted(pred['scores'], reverse=True)[:2]
                assert best > runner_up > SCORE_THR
                rows = [max(rows, key=lambda row: row[1])]
                best_only = inferencer(toy_demo_model.image, pred_score_thr=runner_up, return_vis=True,
                                       **kwargs)['visualization'][0]
                np.testing.assert_array_equal(picture, best_only)  # one box drawn, not all above the threshold
            expected.append(SimpleNamespace(rows=rows, picture=picture))
    return expected


# --- the page, as a user drives it ---------------------------------------------------------------------------

def wait_for(browser, condition, what: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(browser, WAIT_S).until(condition)
    except TimeoutException:
        raise AssertionError(f'waited {WAIT_S} s for {what}; toasts on the page: {toasts(browser)}, status: '
                             f'{status(browser)!r}')


def css(browser, selector: str):
    from selenium.webdriver.common.by import By
    return browser.find_elements(By.CSS_SELECTOR, selector)


def open_page(browser, url: str) -> None:
    browser.get(url)
    wait_for(browser, lambda b: css(b, '#input-image input[type=file]') and css(b, '#run'), 'the page to load')


def upload(browser, path: str) -> None:
    css(browser, '#input-image input[type=file]')[0].send_keys(path)
    wait_for(browser, lambda b: css(b, '#input-image img'), f'the upload of {path} to show')


def type_into(browser, selector: str, text: str) -> None:
    from selenium.webdriver.common.keys import Keys
    box = css(browser, selector)[0]
    box.send_keys(Keys.CONTROL, 'a')
    box.send_keys(Keys.DELETE)
    if text:
        box.send_keys(text)


def set_score_threshold(browser, value: float) -> None:
    from selenium.webdriver.common.keys import Keys
    type_into(browser, '#score-thr input[type=number]', f'{value:g}')
    css(browser, '#score-thr input[type=number]')[0].send_keys(Keys.TAB)
    wait_for(browser, lambda b: float(css(b, '#score-thr input[type=range]')[0].get_attribute('value')) == value,
             f'the score threshold slider to read {value}')


def choose_mode(browser, mode: str) -> None:
    from selenium.webdriver.common.by import By
    [label] = [el for el in css(browser, '#mode label') if el.text.strip() == mode]
    label.find_element(By.CSS_SELECTOR, 'input').click()


def submit(browser, mode: str, text: str, phrases: str) -> None:
    choose_mode(browser, mode)
    type_into(browser, '#text textarea', text)
    type_into(browser, '#phrases textarea', phrases)
    css(browser, '#run')[0].click()


def status(browser) -> str:
    found = css(browser, '#status')
    return found[0].text.strip() if found else ''


def toasts(browser) -> List[str]:
    return [el.text for el in css(browser, '[data-testid=toast-text]')]


def table_rows(browser) -> List[List[str]]:
    """The cells of the boxes table as shown (Gradio draws the rows in a virtual table)."""
    return browser.execute_script(
        "return [...document.querySelectorAll('#boxes .virtual-row')].map("
        "row => [...row.querySelectorAll('.body-cell')].map(cell => cell.innerText.trim()))")


def result_picture(browser) -> np.ndarray:
    """The result image's pixels, fetched by the page itself from the URL of its ``<img>``."""
    [img] = css(browser, '#result-image img')
    encoded = browser.execute_async_script(
        'const done = arguments[arguments.length - 1];'
        'fetch(arguments[0]).then(r => r.arrayBuffer()).then(buffer => {'
        "  let s = ''; new Uint8Array(buffer).forEach(c => { s += String.fromCharCode(c); }); done(btoa(s)); })"
        ".catch(e => done('failed: ' + e));", img.get_attribute('src'))
    assert not encoded.startswith('failed'), encoded
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert('RGB'))


def requested_urls(browser) -> List[str]:
    """Every URL the browser asked for since the last call (Chrome's performance log)."""
    messages = (json.loads(entry['message'])['message'] for entry in browser.get_log('performance'))
    return [m['params']['request']['url'] for m in messages if m['method'] == 'Network.requestWillBeSent']


# --- the tests -------------------------------------------------------------------------------------------------

def test_page_shows_the_inferencers_boxes_in_each_mode(browser, demo_url, toy_demo_model, reference):
    upload_pixels = np.asarray(Image.open(toy_demo_model.image).convert('RGB'))
    open_page(browser, demo_url)
    upload(browser, toy_demo_model.image)
    set_score_threshold(browser, SCORE_THR)
    for (mode, text, phrases, kwargs), want in zip(CASES, reference):
        submit(browser, mode, text, phrases)
        done = f'{mode} "{text}": '
        wait_for(browser, lambda b: status(b).startswith(done) and css(b, '#result-image img'),
                 f'the result of {mode} {text!r}')
        rows = table_rows(browser)
        assert status(browser) == f'{done}{len(want.rows)} box(es) scoring above {SCORE_THR:.2f}.'
        assert [row[0] for row in rows] == [row[0] for row in want.rows], (mode, rows)
        shown = np.array([[float(v) for v in row[1:]] for row in rows])
        # the table rounds scores to 3 decimals and coordinates to 1
        np.testing.assert_allclose(shown[:, 0], [row[1] for row in want.rows], rtol=0, atol=5e-4 + 1e-6)
        np.testing.assert_allclose(shown[:, 1:], [row[2:] for row in want.rows], rtol=0, atol=0.05 + 1e-4)
        if isinstance(kwargs.get('tokens_positive'), list):  # phrase grounding: each box names a phrase asked for
            assert {row[0] for row in rows} <= set(kwargs['tokens_positive']), rows

        picture = result_picture(browser)
        assert picture.shape == upload_pixels.shape
        assert (picture != upload_pixels).any(axis=2).mean() > 0.01  # boxes and names are drawn over the upload
        np.testing.assert_array_equal(picture, want.picture)  # PNG: lossless

    # the page asks nothing of any other host (chrome://, data: and blob: URLs stay inside the browser)
    web = [urlsplit(url) for url in requested_urls(browser) if urlsplit(url).scheme in ('http', 'https', 'ws', 'wss')]
    assert web and all(url.netloc == urlsplit(demo_url).netloc for url in web), [url.geturl() for url in web]


def test_page_reports_bad_input(browser, demo_url, toy_demo_model, tmp_path):
    open_page(browser, demo_url)
    upload(browser, toy_demo_model.image)

    submit(browser, 'classes', '', '')
    wait_for(browser, lambda b: any('the prompt is empty' in t for t in toasts(b)), 'the empty-prompt message')
    assert not css(browser, '#result-image img') and status(browser) == ''

    submit(browser, 'phrases', 'a red circle left of a blue square', 'a red circle; a green star')
    wait_for(browser, lambda b: any('a green star' in t for t in toasts(b)), 'the missing-phrase message')
    assert not css(browser, '#result-image img') and status(browser) == ''

    not_an_image = tmp_path / 'notes.png'
    not_an_image.write_text('this is not a picture')
    upload_bad = str(not_an_image)
    css(browser, '#input-image input[type=file]')[0].send_keys(upload_bad)
    submit(browser, 'classes', 'circle', '')
    wait_for(browser, lambda b: any('notes.png cannot be read as an image' in t for t in toasts(b)),
             'the unreadable-image message')
    assert not css(browser, '#result-image img')
