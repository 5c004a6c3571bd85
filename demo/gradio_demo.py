"""A web page to try FIBER on your own images: upload a picture, type class names or a sentence, see the boxes.

Install the extra and launch (the page is served on http://127.0.0.1:7860 unless told otherwise)::

    pip install -e .[demo]
    python demo/gradio_demo.py configs/toy/fiber_toy.py work_dirs/quickstart/iter_1200.pth
    python demo/gradio_demo.py CONFIG CKPT --device cuda --host 0.0.0.0 --port 8080

Three modes, as :class:`~fiber_mmdet.apis.FIBERInferencer` takes them:

* **classes**: class names separated by ``.`` (``circle . red square``), each one a label;
* **phrases**: a caption, and in the second box the phrases of it to ground, separated by ``;`` or new lines;
* **referring expression**: the whole text names one object; the page shows the best box.

The page shows the picture with the boxes scoring above the threshold and their phrase names, and a table of
the same boxes (phrase, score, x1, y1, x2, y2 in the uploaded image's pixels). A prompt or an image that cannot be
used is reported in the page (the message of :class:`~fiber_mmdet.utils.PromptError` or of the image error).
"""
import argparse
import os
import os.path as osp
import re
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a source checkout

os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')  # the page must work offline and phone home to no one
import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from fiber_mmdet.apis import FIBERInferencer  # noqa: E402
from fiber_mmdet.utils import PromptError  # noqa: E402

MODES = ('classes', 'phrases', 'referring expression')
TABLE_HEADERS = ['phrase', 'score', 'x1', 'y1', 'x2', 'y2']
SCORE_DECIMALS = 3
BOX_DECIMALS = 1
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


def uploaded_image(upload: Optional[Dict[str, Any]]) -> str:
    """The path of Gradio's copy of the upload, checked to be a picture.

    The page's event runs with ``preprocess=False``: ``upload`` is Gradio's file record (``path``, ``orig_name``),
    so that an unreadable file is reported here by its name instead of by Gradio's processing error, and the
    file is passed on unchanged.

    Raises:
        gr.Error: no upload, or a file PIL cannot identify.
    """
    if not upload or not upload.get('path'):
        raise gr.Error('upload an image first', duration=None)
    name = upload.get('orig_name') or osp.basename(upload['path'])
    try:
        with Image.open(upload['path']) as image:
            image.verify()
    except (OSError, SyntaxError) as e:  # PIL: UnidentifiedImageError is an OSError; broken chunks a SyntaxError
        raise gr.Error(f'{name} cannot be read as an image ({type(e).__name__}): upload a PNG, JPEG, BMP or '
                       'WebP picture', duration=None) from e
    return upload['path']


class GroundingDemo:
    """The page's one action: image path + prompt + threshold -> picture, table rows, status line."""

    def __init__(self, inferencer: FIBERInferencer) -> None:
        self.inferencer = inferencer

    def __call__(self, upload: Optional[Dict[str, Any]], mode: str, text: str, phrases: str,
                 score_thr: float) -> Tuple[np.ndarray, List[Row], str]:
        """Run the model; any prompt or image error is raised as :class:`gr.Error` with its message.

        Args:
            upload: Gradio's record of the uploaded file (see :func:`uploaded_image`); the model gets its path,
                so that it reads the picture as its test pipeline reads any file (mmdet treats arrays as BGR for
                the model but RGB for drawing).
            mode: one of :data:`MODES`.
            text: class names, a caption or an expression.
            phrases: the phrases to ground, for the "phrases" mode.
            score_thr: boxes scoring this or less are neither drawn nor listed.

        Returns:
            tuple: RGB picture with the boxes (H, W, 3) uint8, table rows, a one-line summary.
        """
        image_path = uploaded_image(upload)
        try:
            kwargs = prompt_kwargs(mode, text, phrases)
            sample = self.inferencer(image_path, return_datasamples=True, **kwargs)['predictions'][0]
        except (PromptError, OSError) as e:  # OSError: FIBERInferencer's ImageLoadError and unreadable files
            raise gr.Error(str(e), duration=None) from e
        if mode == 'referring expression' and len(sample.pred_instances):
            # an expression names one object: its best box is the answer, the one box drawn and listed
            best = int(sample.pred_instances.scores.argmax())
            sample.pred_instances = sample.pred_instances[best:best + 1]
        # the inferencer's own drawing and prediction dict, on the (possibly trimmed) sample
        picture = self.inferencer.visualize([image_path], [sample], return_vis=True, pred_score_thr=score_thr,
                                            no_save_vis=True)[0]
        rows = box_rows(self.inferencer.pred2dict(sample), score_thr)
        prompt = f'{mode} "{kwargs["texts"]}"'
        if rows:
            status = f'{prompt}: {len(rows)} box(es) scoring above {score_thr:.2f}.'
        else:
            status = f'{prompt}: no box scores above {score_thr:.2f}; lower the score threshold.'
        return picture, rows, status


def build_page(demo: GroundingDemo, title: str = 'FIBER: detect and ground text in your images') -> gr.Blocks:
    """The Gradio page; elements the browser test looks for carry an ``elem_id``."""
    with gr.Blocks(title=title, analytics_enabled=False) as page:
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
        cleared = run.click(lambda: (None, [], ''), outputs=outputs, queue=False)
        cleared.then(demo, inputs, outputs, preprocess=False)
    return page


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N (default: %(default)s)')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to serve on; 0.0.0.0 for other machines (default: %(default)s)')
    parser.add_argument('--port', type=int, default=7860, help='port (default: %(default)s)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    inferencer = FIBERInferencer(model=args.config, weights=args.checkpoint, device=args.device,
                                 show_progress=False)
    page = build_page(GroundingDemo(inferencer))
    page.launch(server_name=args.host, server_port=args.port, share=False, show_error=True, inbrowser=False)


if __name__ == '__main__':
    main()
