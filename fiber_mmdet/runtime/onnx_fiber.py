"""FIBER from an exported folder with onnxruntime, tokenizers, numpy and Pillow only."""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..utils.prompt_plan import Prompt, PromptPlanner
from ..utils.image_prompts import prompts_per_image
from ..utils.lru_cache import LRUCache
from ..utils.prompts import PromptError
from .metadata import GRAPH_FILE, TOKENIZER_FILE, DeploymentError, load_metadata
from .postprocess import class_scores_from_tokens, detections
from .preprocess import Prepared, batch, prepare, read_image


def _no_dataset_names(text: str) -> None:
    """``'$: coco'`` names a dataset's class list, which lives in mmdet: refused here rather than run as a
    class called '$: coco'."""
    if text.strip().startswith('$:'):
        raise PromptError(f'{text!r}: dataset class lists come with mmdet, which the runtime does not need; export '
                          f"a graph with them folded in (export_onnx.py --texts {text!r}) or give the names")
    return None


class ONNXFIBER:
    """Run an exported FIBER (``tools/deployment/export_onnx.py``) on images with text prompts.

    The prompts take the forms of :class:`~fiber_mmdet.apis.FIBERInferencer`: class names (``'cat . dog'`` with
    ``custom_entities=True``, or a list of names; long lists are split into several prompts, never truncated),
    a caption with the phrases to ground (``tokens_positive=['a man', 'a horse']`` or their spans), or a referring
    expression (``tokens_positive=-1``); ``texts`` as a list gives each image its own prompt
    (:func:`~fiber_mmdet.utils.image_prompts.prompts_per_image`). A fixed-vocabulary export takes no text.

    Args:
        folder: what the export wrote (``fiber.onnx``, ``fiber_onnx.json``, the tokenizer files).
        providers: onnxruntime execution providers; default the CPU.
        threads: intra-op threads of the CPU provider (None: onnxruntime's default).
        max_pixels: images over this many pixels are refused before decoding (None: the default limit of
            :func:`~fiber_mmdet.utils.image_io.image_pixel_limit`).

    Example:
        >>> model = ONNXFIBER('work_dirs/fiber_onnx')
        >>> result = model(['a.jpg', 'b.jpg'], texts='cat . dog', custom_entities=True)[0]
        >>> result['label_names'][:2], result['bboxes'][:2]
    """

    def __init__(self, folder: str, providers: Optional[Sequence[str]] = None, threads: Optional[int] = None,
                 max_pixels: Optional[int] = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer
        self.meta = load_metadata(folder)
        self.folder = folder
        self.max_pixels = max_pixels
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(osp.join(folder, GRAPH_FILE), options,
                                            providers=list(providers or ['CPUExecutionProvider']))
        self.tokenizer = Tokenizer.from_file(osp.join(folder, TOKENIZER_FILE))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.max_tokens = self.meta['max_tokens']
        self.planner = PromptPlanner(self.tokenizer.encode, lambda c: len(self.tokenizer.encode(c).ids),
                                     self.max_tokens, self.meta.get('chunked_size', -1))
        # planned prompts by text: splitting a long class list tokenises many candidate captions (LVIS' 1203
        # names: ~0.6 s), so a list used call after call is planned once, as the PyTorch model keeps it
        self.plans = LRUCache(64)
        self.fixed_prompts = None
        if self.meta.get('prompts'):
            self.fixed_prompts = [Prompt(p['caption'], {}, p['label_offset'], p['entities'])
                                  for p in self.meta['prompts']]

    @property
    def fixed_vocabulary(self) -> bool:
        return self.fixed_prompts is not None

    # ------------------------------------------------------------------ prompts
    def _per_image_prompts(self, n: int, texts, tokens_positive, custom_entities: bool) -> List[List[Prompt]]:
        if self.fixed_vocabulary:
            if texts is not None or tokens_positive is not None:
                raise DeploymentError(
                    f'{self.folder} was exported with its vocabulary folded in ({self.meta["texts"]!r}): it takes '
                    'no text. Export without --texts for a graph that grounds any text.')
            return [self.fixed_prompts] * n
        return [self.plans.get(repr(p), lambda p=p: self.planner.plan(p.text, p.tokens_positive, p.custom_entities))
                for p in prompts_per_image(n, texts, custom_entities, tokens_positive, expand=_no_dataset_names)]

    def encode(self, captions: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
        """(len, max_tokens) int64 token ids (padded) and attention mask of captions that fit the budget."""
        ids = np.full((len(captions), self.max_tokens), self.meta['pad_token_id'], dtype=np.int64)
        mask = np.zeros((len(captions), self.max_tokens), dtype=np.int64)
        for row, caption in enumerate(captions):
            tokens = self.tokenizer.encode(caption).ids
            if len(tokens) > self.max_tokens:
                raise PromptError(f'{caption[:60]!r} needs {len(tokens)} tokens; the graph reads at most '
                                  f'{self.max_tokens}')
            ids[row, :len(tokens)] = tokens
            mask[row, :len(tokens)] = 1
        return ids, mask

    # ------------------------------------------------------------------ running
    def _run_free_text(self, prepared: List[Prepared], prompts: List[List[Prompt]], batch_size: int):
        pairs = [(i, j) for i, image_prompts in enumerate(prompts) for j in range(len(image_prompts))]
        outputs: Dict[Tuple[int, int], tuple] = {}
        by_shape: Dict[tuple, List[Tuple[int, int]]] = {}
        for pair in pairs:  # only images of one padded size stack
            by_shape.setdefault(prepared[pair[0]].tensor.shape, []).append(pair)
        for group in by_shape.values():
            for k in range(0, len(group), batch_size):
                run = group[k:k + batch_size]
                images, img_hw = batch([prepared[i] for i, _ in run])
                ids, mask = self.encode([prompts[i][j].caption for i, j in run])
                boxes, token_scores, ctr, level_sizes = self.session.run(
                    None, dict(image=images, img_hw=img_hw, input_ids=ids, attention_mask=mask))
                for row, (i, j) in enumerate(run):
                    scores = class_scores_from_tokens(token_scores[row], prompts[i][j].label_to_tokens)
                    outputs[i, j] = (boxes[row], scores, ctr[row], level_sizes)
        return outputs

    def _run_fixed(self, prepared: List[Prepared], batch_size: int):
        outputs: Dict[Tuple[int, int], tuple] = {}
        by_shape: Dict[tuple, List[int]] = {}
        for i, p in enumerate(prepared):
            by_shape.setdefault(p.tensor.shape, []).append(i)
        for group in by_shape.values():
            for k in range(0, len(group), batch_size):
                run = group[k:k + batch_size]
                images, img_hw = batch([prepared[i] for i in run])
                boxes, scores, ctr, level_sizes = self.session.run(None, dict(image=images, img_hw=img_hw))
                for row, i in enumerate(run):
                    for j, prompt in enumerate(self.fixed_prompts):
                        outputs[i, j] = (boxes[row, j], scores[row, j, :, :len(prompt.entities)], ctr[row, j],
                                         level_sizes)
        return outputs

    def predict(self, prepared: List[Prepared], prompts: List[List[Prompt]], batch_size: int = 1) -> List[dict]:
        """Detections of prepared images (:func:`~fiber_mmdet.runtime.preprocess.prepare`), each with its planned
        prompts (one list per image; ignored by a fixed-vocabulary graph)."""
        if self.fixed_vocabulary:
            prompts = [self.fixed_prompts] * len(prepared)
            outputs = self._run_fixed(prepared, batch_size)
        else:
            outputs = self._run_free_text(prepared, prompts, batch_size)
        results = []
        for i, image_prompts in enumerate(prompts):
            parts = [detections(*outputs[i, j], prepared[i].scale_factor, self.meta['postprocess'])
                     for j in range(len(image_prompts))]
            names = [name for p in image_prompts for name in p.entities]
            labels = np.concatenate([d.labels + p.label_offset for d, p in zip(parts, image_prompts)])
            results.append(dict(
                bboxes=np.concatenate([d.bboxes for d in parts]).tolist(),
                scores=np.concatenate([d.scores for d in parts]).tolist(),
                labels=labels.tolist(),
                label_names=[names[int(l)] for l in labels]))
        return results

    def __call__(self, inputs, texts=None, tokens_positive=None, custom_entities: bool = False,
                 batch_size: int = 1) -> List[dict]:
        """Detections per image: ``bboxes`` (xyxy, original-image pixels), ``scores``, ``labels`` (0-based into
        the image's class / phrase list), ``label_names``, best first within each prompt.

        Args:
            inputs: an image (path, PIL image, (H, W, 3) uint8 RGB array) or a list of them.
            texts, tokens_positive, custom_entities: the prompt(s), see the class docstring.
            batch_size: (image, prompt) pairs per graph run; images of one padded size run together.
        """
        single = not isinstance(inputs, (list, tuple))
        inputs = [inputs] if single else list(inputs)
        prompts = self._per_image_prompts(len(inputs), texts, tokens_positive, custom_entities)
        fixed = self.meta.get('fixed_shape')
        orientation = self.meta['preprocess'].get('orientation', 'exif')
        prepared = [prepare(read_image(x, orientation, self.max_pixels), self.meta['preprocess'], fixed)
                    for x in inputs]
        return self.predict(prepared, prompts, batch_size)
