"""A web page to try FIBER on your own images: upload a picture, type class names or a sentence, see the boxes.

Install the extra and launch (the page is served on http://127.0.0.1:7860 unless told otherwise)::

    pip install -e .[demo]
    python demo/gradio_demo.py configs/toy/fiber_toy.py work_dirs/quickstart/iter_1900.pth
    python demo/gradio_demo.py CONFIG CKPT --device cuda --host 0.0.0.0 --port 8080

Shared with colleagues (``--host 0.0.0.0``, which prints a warning that the page is reachable from the network),
the requests of everyone go through one queue to the one model, one at a time (the model, its text cache and the
drawing are shared, so two requests at once would cross their results); the page shows each waiting user their
place in the queue, and the step of the running request. At most ``--max-queue`` requests wait; beyond that a
request is refused at once. A bad request (image, prompt) gets its own message and leaves the others alone.
The page reads no file of the server: the image must come as an upload (a server path sent through the API is
refused); uploads over ``--max-file-size`` or images over ``--max-pixels`` are refused, and the uploads and
result pictures are deleted from Gradio's cache ``--keep-files`` seconds after they were written.

Three modes, as :class:`~fiber_mmdet.apis.FIBERInferencer` takes them:

* **classes**: class names separated by ``.`` (``circle . red square``), each one a label;
* **phrases**: a caption, and in the second box the phrases of it to ground, separated by ``;`` or new lines;
* **referring expression**: the whole text names one object; the page shows the best box.

The page shows the picture with the boxes scoring above the threshold and their phrase names (a picture larger
than 2048 pixels is drawn shrunk to that), and a table of the same boxes (phrase, score, x1, y1, x2, y2 in the
uploaded image's pixels). A prompt or an image that cannot be used is reported in the page (the message of
:class:`~fiber_mmdet.utils.PromptError` or of the image error).
"""
import argparse
import asyncio
import contextlib
import ipaddress
import os
import os.path as osp
import re
import sys
from typing import Any, AsyncIterator, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a source checkout

os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')  # the page must work offline and phone home to no one
import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from mmdet.structures import DetDataSample  # noqa: E402

from fiber_mmdet.apis import FIBERInferencer  # noqa: E402
from fiber_mmdet.utils import PromptError  # noqa: E402
from fiber_mmdet.utils.image_io import (ImageLoadError, check_image_pixels, image_pixel_limit,  # noqa: E402
                                        open_user_image, pil_to_rgb)

MODES = ('classes', 'phrases', 'referring expression')
TABLE_HEADERS = ['phrase', 'score', 'x1', 'y1', 'x2', 'y2']
SCORE_DECIMALS = 3
BOX_DECIMALS = 1
# the one event that runs the model: its queue lets one request at a time through, whatever Gradio's default
# (GRADIO_DEFAULT_CONCURRENCY_LIMIT can raise that one)
MODEL_CONCURRENCY_ID = 'model'
API_NAME = 'detect'
# the web page's limits (command-line defaults)
MAX_QUEUE = 16  # requests waiting behind the running one; more are refused at once ("Queue is full")
MAX_FILE_SIZE = '25mb'  # an upload larger than this is refused before it is stored
MAX_PIXELS = 40_000_000  # decoded RGB ~120 MB, its drawing ~160 MB more: a 48-megapixel camera photo is refused
KEEP_FILES_S = 3600  # uploads and result pictures are deleted from Gradio's cache after this
DISPLAY_MAX_SIDE = 2048  # the result picture's longer side at most (pixels); the table keeps full-size boxes
FORGET_EVENTS_EVERY_S = 5.0  # how often the records of finished requests are dropped (see forget_finished_events)
Row = List[Any]


def split_phrases(phrases: str) -> List[str]:
    """``'a red circle; a blue square'`` or one phrase per line -> the non-empty phrases, stripped."""
    return [p.strip() for p in re.split(r'[;\n]', phrases or '') if p.strip()]


def prompt_kwargs(mode: str, text: str, phrases: str = '') -> Dict[str, Any]:
    """The :class:`FIBERInferencer` text arguments for one of :data:`MODES`.

    Raises:
        PromptError: empty text, no phrase in "phrases" mode, no class name in "classes" mode, unknown mode.
    """
    text = (text or '').strip()
    if mode not in MODES:
        raise PromptError(f'unknown mode {mode!r}: choose one of {", ".join(MODES)}')
    if not text:
        what = {'classes': "class names separated by '.' (e.g. 'circle . square')",
                'phrases': 'a caption (e.g. "a red circle left of a blue square")',
                'referring expression': 'an expression naming one object (e.g. "the red circle")'}[mode]
        raise PromptError(f'the prompt is empty: type {what}')
    if mode == 'classes':
        if not [name for name in text.split('.') if name.strip()]:
            raise PromptError(f"{text!r} has no class name: separate class names with '.' (e.g. 'circle . square')")
        return dict(texts=text, custom_entities=True)
    if mode == 'phrases':
        wanted = split_phrases(phrases)
        if not wanted:
            raise PromptError("phrases mode: list the phrases of the caption to ground, separated by ';' or new "
                              'lines (e.g. "a red circle; a blue square")')
        return dict(texts=text, tokens_positive=wanted)
    return dict(texts=text, tokens_positive=-1)


def box_rows(prediction: Dict[str, list], score_thr: float) -> List[Row]:
    """Table rows ``[phrase, score, x1, y1, x2, y2]`` (xyxy, input-image pixels) of the boxes scoring more than
    ``score_thr`` (the rule of mmdet's visualizer, so the table lists the boxes the picture shows), in the
    inferencer's order. Scores are rounded to :data:`SCORE_DECIMALS`, coordinates to :data:`BOX_DECIMALS`."""
    names = prediction.get('label_names') or [str(label) for label in prediction['labels']]
    return [[name.strip(), round(float(score), SCORE_DECIMALS), *(round(float(v), BOX_DECIMALS) for v in box)]
            for name, score, box in zip(names, prediction['scores'], prediction['bboxes']) if score > score_thr]


def is_inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies under it, links and ``..`` resolved."""
    path, folder = osp.realpath(path), osp.realpath(folder)
    return osp.commonpath([path, folder]) == folder


def uploaded_image(upload: Optional[Dict[str, Any]], max_pixels: Optional[int] = MAX_PIXELS) -> str:
    """The path of Gradio's copy of the upload, checked to be an upload and a picture of at most ``max_pixels``.

    The page's event runs with ``preprocess=False``: ``upload`` is Gradio's file record (``path``, ``orig_name``),
    so that an unreadable file is reported here by its name instead of by Gradio's processing error, and the
    file is passed on unchanged. Gradio checks that a record marked as a file was uploaded, but passes on a
    record without that mark (``{"path": "/etc/passwd"}`` sent through the API) as it is: the path must lie in
    Gradio's upload folder, so that no other file of the server is read (nor its existence told).

    Raises:
        gr.Error: no upload, a path outside the upload folder, an upload deleted since, a file PIL cannot
            identify or decode, or an image over ``max_pixels`` (read from its header, before any decoding).
    """
    if not upload or not upload.get('path'):
        raise gr.Error('upload an image first', duration=None)
    path = str(upload['path'])
    name = osp.basename(str(upload.get('orig_name') or path))
    if not is_inside(path, gr.utils.get_upload_folder()):
        raise gr.Error(f'{name}: the image must be uploaded with the page; files of the server are not read',
                       duration=None)
    if not osp.isfile(path):
        raise gr.Error(f'{name}: this upload is no longer on the server (uploads are deleted after a while): '
                       'upload the image again', duration=None)
    try:
        width, height = check_image_pixels(path, name=name)  # the header only
    except ImageLoadError as e:
        if isinstance(e.__cause__, Image.DecompressionBombError):
            raise gr.Error(f'{name} is too large to decode (over {image_pixel_limit() / 1e6:.0f} megapixels, '
                           'refused as a possible decompression bomb): upload a smaller copy', duration=None) from e
        raise gr.Error(f'{name} cannot be read as an image ({e}): upload a PNG, JPEG, BMP or WebP picture',
                       duration=None) from e
    if max_pixels is not None and width * height > max_pixels:
        raise gr.Error(f'{name} is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels), over the '
                       f'{max_pixels / 1e6:g} megapixels this page takes: upload a smaller copy', duration=None)
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, SyntaxError) as e:  # PIL: UnidentifiedImageError is an OSError; broken chunks a SyntaxError
        raise gr.Error(f'{name} cannot be read as an image ({type(e).__name__}): upload a PNG, JPEG, BMP or '
                       'WebP picture', duration=None) from e
    return path


class GroundingDemo:
    """The page's one action: image path + prompt + threshold -> picture, table rows, status line.

    It holds nothing between requests; the model it calls is shared, so the page runs it one request at a time
    (see :func:`build_page`)."""

    def __init__(self, inferencer: FIBERInferencer, max_pixels: Optional[int] = MAX_PIXELS) -> None:
        self.inferencer = inferencer
        self.max_pixels = max_pixels

    def __call__(self, upload: Optional[Dict[str, Any]], mode: str, text: str, phrases: str, score_thr: float,
                 progress: gr.Progress = gr.Progress()) -> Tuple[np.ndarray, List[Row], str]:
        """Run the model; any prompt or image error is raised as :class:`gr.Error` with its message.

        Args:
            upload: Gradio's record of the uploaded file (see :func:`uploaded_image`); the model gets its path,
                so that it reads the picture as its test pipeline reads any file (mmdet treats arrays as BGR for
                the model but RGB for drawing).
            mode: one of :data:`MODES`.
            text: class names, a caption or an expression.
            phrases: the phrases to ground, for the "phrases" mode.
            score_thr: boxes scoring this or less are neither drawn nor listed.
            progress: Gradio's progress bar, given by Gradio: the page shows each step.

        Returns:
            tuple: RGB picture with the boxes (H, W, 3) uint8, table rows, a one-line summary.
        """
        progress(0.0, desc='checking the image and the prompt')
        image_path = uploaded_image(upload, self.max_pixels)
        try:
            kwargs = prompt_kwargs(mode, text, phrases)
            progress(0.1, desc='running the model')
            sample = self.inferencer(image_path, return_datasamples=True, **kwargs)['predictions'][0]
        except (PromptError, OSError) as e:  # OSError: FIBERInferencer's ImageLoadError and unreadable files
            raise gr.Error(str(e), duration=None) from e
        progress(0.8, desc='drawing the boxes')
        if mode == 'referring expression' and len(sample.pred_instances):
            # an expression names one object: its best box is the answer, the one box drawn and listed
            best = int(sample.pred_instances.scores.argmax())
            sample.pred_instances = sample.pred_instances[best:best + 1]
        picture = self.draw(image_path, sample, score_thr)
        rows = box_rows(self.inferencer.pred2dict(sample), score_thr)  # in the uploaded image's pixels
        prompt = f'{mode} "{kwargs["texts"]}"'
        if rows:
            status = f'{prompt}: {len(rows)} box(es) scoring above {score_thr:.2f}.'
        else:
            status = f'{prompt}: no box scores above {score_thr:.2f}; lower the score threshold.'
        return picture, rows, status


    def draw(self, image_path: str, sample: DetDataSample, score_thr: float) -> np.ndarray:
        """The inferencer's own drawing of ``sample`` (RGB, (H, W, 3) uint8), on the picture shrunk to
        :data:`DISPLAY_MAX_SIDE` pixels at most (the boxes with it) when it is larger: drawn at full size, a
        12-megapixel photo takes 1.5 GB more memory and its PNG is sent to the browser whole."""
        width, height = check_image_pixels(image_path)
        scale = DISPLAY_MAX_SIDE / max(width, height)
        if scale >= 1:
            return self.inferencer.visualize([image_path], [sample], return_vis=True, pred_score_thr=score_thr,
                                             no_save_vis=True)[0]
        with open_user_image(image_path) as stored:
            upright = pil_to_rgb(stored)  # as the model saw it (EXIF orientation, 16-bit, transparency)
            size = (max(1, round(upright.width * scale)), max(1, round(upright.height * scale)))
            small = np.asarray(upright.resize(size, Image.BILINEAR))
        shrunk, instances = sample.clone(), sample.pred_instances.clone()  # clones share fields, not the boxes set
        instances.bboxes = instances.bboxes * scale
        shrunk.pred_instances = instances
        return self.inferencer.visualize([small], [shrunk], return_vis=True, pred_score_thr=score_thr,
                                         no_save_vis=True)[0]


def build_page(demo: GroundingDemo, title: str = 'FIBER: detect and ground text in your images',
               max_queue: int = MAX_QUEUE, keep_files_s: int = KEEP_FILES_S) -> gr.Blocks:
    """The Gradio page, with its queue: the model's event runs one request at a time, at most ``max_queue``
    requests wait behind it (more are refused at once), and the files of the requests (uploads, result pictures)
    are deleted from Gradio's cache ``keep_files_s`` seconds after they were written (checked as often).
    Elements the browser test looks for carry an ``elem_id``."""
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(keep_files_s, keep_files_s)) as page:
        gr.Markdown(f'## {title}')
        with gr.Row():
            with gr.Column():
                image = gr.Image(label='image', type='filepath', sources=['upload', 'clipboard'],
                                 elem_id='input-image')
                mode = gr.Radio(list(MODES), value=MODES[0], label='mode', elem_id='mode')
                text = gr.Textbox(label='text', elem_id='text', lines=2,
                                  placeholder="classes: 'circle . square'; phrases: a caption; "
                                  "referring expression: 'the red circle'")
                phrases = gr.Textbox(label="phrases to ground (phrases mode; separated by ';' or new lines)",
                                     elem_id='phrases', lines=2, placeholder='a red circle; a blue square')
                score_thr = gr.Slider(0.0, 1.0, value=0.3, step=0.01, label='score threshold',
                                      elem_id='score-thr')
                run = gr.Button('Detect', variant='primary', elem_id='run')
            with gr.Column():
                picture = gr.Image(label='result', type='numpy', format='png', interactive=False,
                                   elem_id='result-image')
                table = gr.Dataframe(headers=TABLE_HEADERS, datatype=['str'] + ['number'] * 5,
                                     interactive=False, label='boxes (xyxy, pixels)', elem_id='boxes')
                status = gr.Markdown(elem_id='status')
        inputs = [image, mode, text, phrases, score_thr]
        outputs = [picture, table, status]
        # empty the outputs first, so that an error never leaves the previous image's boxes on the page
        cleared = run.click(lambda: (None, [], ''), outputs=outputs, queue=False, api_visibility='private')
        cleared.then(demo, inputs, outputs, preprocess=False, api_name=API_NAME, concurrency_limit=1,
                     concurrency_id=MODEL_CONCURRENCY_ID)
    page.queue(default_concurrency_limit=1, max_size=max_queue)
    return page


# Gradio 6.17's queue keeps a record of every request it has served (the request itself with its payload, its
# task, its analytics row), about 35 kB each, for the life of the server (gradio issue #11602, fixed in releases
# that need huggingface-hub >= 1.0, which the pinned transformers refuses). The page drops those of finished
# requests itself; the names below are the queue's attributes it relies on, checked when the server starts.
QUEUE_RECORDS = ('event_ids_to_events', 'event_queue_per_concurrency_id', 'active_jobs', 'pending_event_ids_session',
                 'event_analytics', 'event_count_at_last_cache', '_asyncio_tasks')


def check_queue_records(queue: Any) -> None:
    """Raise if Gradio's queue lacks an attribute :func:`forget_finished_events` uses (another Gradio release)."""
    missing = [name for name in QUEUE_RECORDS if not hasattr(queue, name)]
    if missing:
        raise RuntimeError(f'gradio {gr.__version__}: its queue has no {", ".join(missing)}; the web demo drops the '
                           'records of finished requests through them (see QUEUE_RECORDS in demo/gradio_demo.py)')


def forget_finished_events(queue: Any) -> int:
    """Drop the queue's records of the requests that are neither waiting nor running nor owed their result
    message; returns how many. Runs on Gradio's event loop, between its own steps, so nothing changes under it."""
    waiting = {event._id for event_queue in queue.event_queue_per_concurrency_id.values()
               for event in event_queue.queue}
    running = {event._id for job in queue.active_jobs if job for event in job}
    undelivered = set().union(*queue.pending_event_ids_session.values())
    finished = [event_id for event_id in queue.event_ids_to_events
                if event_id not in waiting and event_id not in running and event_id not in undelivered]
    for event_id in finished:
        del queue.event_ids_to_events[event_id]
        queue.event_analytics.pop(event_id, None)
    for session in [session for session, ids in queue.pending_event_ids_session.items() if not ids]:
        del queue.pending_event_ids_session[session]
    queue.event_count_at_last_cache = min(queue.event_count_at_last_cache, len(queue.event_analytics))
    queue._asyncio_tasks = [task for task in queue._asyncio_tasks if not task.done()]
    return len(finished)


def forget_finished_events_periodically(every_s: float = FORGET_EVENTS_EVERY_S):
    """A lifespan for Gradio's app (``launch(app_kwargs={'lifespan': ...})``) that runs
    :func:`forget_finished_events` every ``every_s`` seconds while the server runs."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        queue = app.get_blocks()._queue
        check_queue_records(queue)

        async def loop() -> None:
            while True:
                await asyncio.sleep(every_s)
                forget_finished_events(queue)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()

    return lifespan


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N (default: %(default)s)')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to serve on; 0.0.0.0 for other machines (default: %(default)s)')
    parser.add_argument('--port', type=int, default=7860, help='port (default: %(default)s)')
    parser.add_argument('--max-queue', type=int, default=MAX_QUEUE,
                        help='requests waiting behind the running one, at most; more are refused at once '
                        '(default: %(default)s)')
    parser.add_argument('--max-file-size', default=MAX_FILE_SIZE,
                        help='largest upload, e.g. 25mb or 500kb (default: %(default)s)')
    parser.add_argument('--max-pixels', type=int, default=MAX_PIXELS,
                        help='largest image, width x height, read from its header before decoding '
                        '(default: %(default)s)')
    parser.add_argument('--keep-files', type=int, default=KEEP_FILES_S, metavar='SECONDS',
                        help='uploads and result pictures are deleted this long after they were written '
                        '(default: %(default)s)')
    args = parser.parse_args(argv)
    for name in ('max_queue', 'max_pixels', 'keep_files'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1, got {getattr(args, name)}')
    return args


def is_loopback(host: str) -> bool:
    """Whether serving on ``host`` keeps the page on this machine (``localhost``, 127.x.x.x, ::1)."""
    if host.strip().lower() == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host.strip('[]')).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def network_warning(host: str, port: int) -> Optional[str]:
    """The warning printed when the page is served beyond this machine; None for a loopback address."""
    if is_loopback(host):
        return None
    return (f'WARNING: serving on {host}:{port}: the page is reachable from the network. Anyone who can reach this '
            'host on that port can use it without logging in: upload images and run the model here (no file of '
            'the server is readable through the page). Serve on 127.0.0.1 (the default) to keep it to yourself.')


def launch(page: gr.Blocks, args: argparse.Namespace, **kwargs) -> Tuple[Any, str, str]:
    """Serve ``page`` as :func:`main` does (``kwargs``: more ``gr.Blocks.launch`` arguments); prints
    :func:`network_warning` first. Returns what ``launch`` returns: the app, the local and the share URL."""
    warning = network_warning(args.host, args.port)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    # No folder of the server is served (allowed_paths); the model's files are refused even if one were.
    # Gradio keeps the components' values of each session (~45 kB each, 10000 sessions by default); the page
    # keeps nothing from one request to the next, so the sessions of the requests in the queue are enough.
    return page.launch(server_name=args.host, server_port=args.port, share=False, show_error=True, inbrowser=False,
                       allowed_paths=[], blocked_paths=[osp.abspath(args.config), osp.abspath(args.checkpoint)],
                       max_file_size=args.max_file_size, state_session_capacity=2 * args.max_queue,
                       app_kwargs={'lifespan': forget_finished_events_periodically()}, **kwargs)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    inferencer = FIBERInferencer(model=args.config, weights=args.checkpoint, device=args.device,
                                 show_progress=False)
    page = build_page(GroundingDemo(inferencer, max_pixels=args.max_pixels), max_queue=args.max_queue,
                      keep_files_s=args.keep_files)
    launch(page, args)


if __name__ == '__main__':
    main()
