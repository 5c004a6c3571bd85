"""The web demo shared with colleagues, driven over HTTP with Gradio's own protocol (what the page does): requests
sent at once each get the answer they get alone, through one queue that tells each its place and refuses what it
cannot hold; a failing request fails alone; no file of the server can be read; oversized uploads and images are
refused with a message; uploads are deleted after a while; the server's memory does not grow with the requests.

The server runs with ``GRADIO_DEFAULT_CONCURRENCY_LIMIT=8``, as an operator's environment may set: the model's
event must still run one request at a time."""
import io
import struct
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Iterator, Tuple

import httpx
import numpy as np
import pytest
from PIL import Image

from .conftest import serve_demo
from .gradio_http import API, EventResult, client, fn_index, join_queue, read_events, run_event, upload

MAX_QUEUE = 8  # more than the requests of the concurrency test
MAX_PIXELS = 1_000_000
MAX_FILE_SIZE_KB = 300
KEEP_FILES_S = 10
# (image index, mode, text, phrases): different images and prompts, one of each mode
CASES = [(0, 'classes', 'circle . square', ''), (1, 'classes', 'triangle', ''),
         (2, 'phrases', 'a red circle left of a blue square', 'a red circle; a blue square'),
         (3, 'referring expression', 'the red circle', ''), (4, 'classes', 'red . blue . green', '')]
MEMORY_REQUESTS = 150
MEMORY_WINDOW = (50, MEMORY_REQUESTS)  # RSS is compared between these request counts, after the warm-up
MEMORY_IMAGE_SIZE = (480, 360)  # a picture kept per request would add 100 x 0.5 MB over the window
MEMORY_GROWTH_MAX_MIB = 24.0  # measured: 2 to 12 MiB (malloc's arenas vary from run to run); a kept picture
# per request: +70 MiB


@pytest.fixture(scope='module')
def shared(toy_demo_model) -> Iterator[SimpleNamespace]:
    """The demo served with small limits; ``early`` is an upload made as it starts (for the expiry test)."""
    args = ['--max-queue', str(MAX_QUEUE), '--max-pixels', str(MAX_PIXELS), '--max-file-size',
            f'{MAX_FILE_SIZE_KB}kb', '--keep-files', str(KEEP_FILES_S)]
    with serve_demo(toy_demo_model, 'shared', args, env={'GRADIO_DEFAULT_CONCURRENCY_LIMIT': '8'}) as server:
        with client() as http:
            server.http = http
            server.index = fn_index(http, server.url, 'detect')
            server.early = upload(http, server.url, toy_demo_model.image)
            server.images = sorted(str(p) for p in (toy_demo_model.root / 'toy_shapes' / 'images').glob('*/*.png'))
            yield server


def detect(server: SimpleNamespace, http: httpx.Client, image: Any, mode: str, text: str,
           phrases: str = '') -> EventResult:
    """One request as the page sends it: ``image`` is a file to upload first, or a file record to send as is."""
    record = upload(http, server.url, image) if isinstance(image, str) else image
    return run_event(http, server.url, server.index, [record, mode, text, phrases, 0.0])


def shown(server: SimpleNamespace, http: httpx.Client, result: EventResult) -> Tuple[np.ndarray, list, str]:
    """The picture's pixels (fetched from its URL, as the page does), the table rows and the status line."""
    picture, table, status = result.data
    response = http.get(picture['url'])
    response.raise_for_status()
    return np.asarray(Image.open(io.BytesIO(response.content)).convert('RGB')), table['data'], status


def test_concurrent_requests_get_their_own_results(shared, tmp_path):
    not_an_image = tmp_path / 'notes.png'
    not_an_image.write_text('this is not a picture')
    requests = [(shared.images[i], mode, text, phrases) for i, mode, text, phrases in CASES]
    failing = {len(requests): (shared.images[5], 'classes', '', ''),  # empty prompt
               len(requests) + 1: (str(not_an_image), 'classes', 'circle', '')}
    alone = [shown(shared, shared.http, detect(shared, shared.http, *request)) for request in requests]

    results: Dict[int, EventResult] = {}
    start = threading.Barrier(len(requests) + len(failing))

    def colleague(i: int, request: tuple) -> None:
        with client() as http:
            record = upload(http, shared.url, request[0])
            start.wait()
            results[i] = detect(shared, http, record, *request[1:])

    threads = [threading.Thread(target=colleague, args=item)
               for item in [*enumerate(requests), *failing.items()]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == len(threads)

    for i, want in enumerate(alone):
        picture, rows, status = shown(shared, shared.http, results[i])
        assert (rows, status) == want[1:], (i, CASES[i])
        np.testing.assert_array_equal(picture, want[0])
        assert 'running the model' in results[i].progress, results[i].messages  # the step shown while it runs
    assert 'the prompt is empty' in results[len(requests)].error
    assert 'notes.png cannot be read as an image' in results[len(requests) + 1].error
    # they went through one queue, one at a time: those behind were told their place
    assert max(rank for result in results.values() for rank in result.ranks) >= 1


def test_a_full_queue_refuses_at_once(shared):
    record = upload(shared.http, shared.url, shared.images[0])
    data = [record, 'classes', 'circle', '', 0.0]
    answers = [join_queue(shared.http, shared.url, shared.index, data) for _ in range(4 * MAX_QUEUE)]
    refused = [response for _, response in answers if response.status_code != 200]
    assert refused, 'the queue took every request'
    assert all(r.status_code == 503 and 'Queue is full' in r.text for r in refused), [r.text for r in refused]
    accepted = [read_events(shared.http, shared.url, session) for session, response in answers
                if response.status_code == 200]
    assert len(accepted) >= MAX_QUEUE and all(result.success for result in accepted)


def test_no_file_of_the_server_is_readable(shared, toy_demo_model):
    http, url = shared.http, shared.url
    secrets = ['/etc/passwd', toy_demo_model.checkpoint, toy_demo_model.config,
               str(Path(__file__).resolve().parents[2] / 'demo' / 'gradio_demo.py')]
    passwd = Path('/etc/passwd').read_text()
    for path in secrets:
        for route in (f'{API}/file=', '/file=', f'{API}/file={shared.upload_dir}/../../'):
            response = http.get(f'{url}{route}{path}')
            assert response.status_code in (403, 404), (route, path, response.status_code)
            assert passwd[:20] not in response.text
    # an image input naming a file of the server instead of an upload: Gradio refuses a record marked as a file;
    # one without the mark reaches the page, which refuses it too (and so never tells whether the file exists)
    server_image = toy_demo_model.image
    for record in ({'path': server_image}, {'path': '/etc/passwd'}, {'path': toy_demo_model.checkpoint},
                   {'path': f'{shared.upload_dir}/../../{Path(server_image).relative_to(toy_demo_model.root)}'},
                   {'path': server_image, 'meta': {'_type': 'gradio.FileData'}}, server_image):
        result = run_event(http, url, shared.index, [record, 'classes', 'circle', '', 0.0])
        assert not result.success, record
        assert passwd[:20] not in result.error
        if isinstance(record, dict) and 'meta' not in record:
            assert 'the image must be uploaded with the page' in result.error, result.error


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` (8-bit RGB) and holds no pixels: a decompression bomb's
    header, a few dozen bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)) + \
        chunk(b'IEND', b'')


def test_oversized_uploads_and_images_are_refused(shared, tmp_path):
    big_file = tmp_path / 'big.png'
    big_file.write_bytes(np.random.default_rng(0).bytes((MAX_FILE_SIZE_KB + 100) * 1024))
    with open(big_file, 'rb') as f:
        response = shared.http.post(f'{shared.url}{API}/upload', files={'files': ('big.png', f)})
    assert response.status_code == 413, (response.status_code, response.text)

    large = tmp_path / 'large.png'
    Image.new('RGB', (1100, 1000), (30, 60, 90)).save(large)  # 1.1 megapixels, a few kB
    result = detect(shared, shared.http, str(large), 'classes', 'circle')
    assert 'large.png is 1100x1000 pixels (1.1 megapixels), over the 1 megapixels this page takes' in result.error

    bomb = tmp_path / 'bomb.png'
    bomb.write_bytes(png_header(30000, 30000))  # 900 megapixels: over Pillow's own limit too
    result = detect(shared, shared.http, str(bomb), 'classes', 'circle')
    assert 'bomb.png is too large to decode' in result.error, result.error

    ok = detect(shared, shared.http, shared.images[0], 'classes', 'circle')  # the server is unharmed
    assert ok.success


def test_a_large_picture_is_shown_shrunk(shared, toy_demo_model, tmp_path):
    """A picture over DISPLAY_MAX_SIDE is drawn shrunk (a 12-megapixel photo drawn whole takes 1.5 GB and is sent
    whole to the browser); the table keeps the boxes in the uploaded image's pixels."""
    from fiber_mmdet.apis import FIBERInferencer
    wide = tmp_path / 'wide.png'
    Image.open(toy_demo_model.image).resize((2400, 400), Image.NEAREST).save(wide)  # 0.96 megapixels
    picture, rows, _ = shown(shared, shared.http, detect(shared, shared.http, str(wide), 'classes', 'circle'))
    assert picture.shape == (341, 2048, 3)  # 2048 / 2400 of each side
    inferencer = FIBERInferencer(model=toy_demo_model.config, weights=toy_demo_model.checkpoint, device='cpu',
                                 show_progress=False)
    want = inferencer(str(wide), texts='circle', custom_entities=True)['predictions'][0]
    assert len(rows) == len(want['bboxes']) > 0
    np.testing.assert_allclose([row[2:] for row in rows], want['bboxes'], rtol=0, atol=0.05 + 1e-3)


def test_memory_does_not_grow_with_requests(shared, tmp_path):
    """RSS of the server over :data:`MEMORY_REQUESTS` requests, each in its own session (a colleague's page or
    client) with its upload, a few images and prompts over and over. Gradio's records of each request (35 kB)
    are below this test's resolution: ``test_gradio_queue_records`` counts them."""
    def rss_mib() -> float:
        status = Path(f'/proc/{shared.process.pid}/status').read_text()
        return int(status.split('VmRSS:')[1].split()[0]) / 1024

    images = []
    for i, image in enumerate(shared.images[:4]):
        images.append(str(tmp_path / f'{i}.png'))
        Image.open(image).resize(MEMORY_IMAGE_SIZE, Image.NEAREST).save(images[-1])
    prompts = ['circle . square', 'triangle', 'red . blue', 'square']
    rss: Dict[int, float] = {}
    for i in range(1, MEMORY_REQUESTS + 1):
        result = detect(shared, shared.http, images[i % 4], 'classes', prompts[i % 4])
        assert result.success, result.error
        if i in MEMORY_WINDOW:
            rss[i] = rss_mib()
    first, last = MEMORY_WINDOW
    growth = rss[last] - rss[first]
    print(f'server RSS after {first} requests {rss[first]:.1f} MiB, after {last} {rss[last]:.1f} MiB')
    assert growth < MEMORY_GROWTH_MAX_MIB, f'+{growth:.1f} MiB over {last - first} requests'


def test_uploads_are_deleted_after_a_while(shared):
    path = Path(shared.early['path'])
    deadline = time.monotonic() + 2 * KEEP_FILES_S + 10  # deleted between one and two periods after its upload
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not path.exists(), f'{path} was kept more than {2 * KEEP_FILES_S} s'
    result = detect(shared, shared.http, shared.early, 'classes', 'circle')
    assert 'this upload is no longer on the server' in result.error and 'upload the image again' in result.error
    assert 'reachable from the network' not in shared.log.read_text()  # served on 127.0.0.1: no warning
