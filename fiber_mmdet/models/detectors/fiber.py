"""The FIBER detector: fusion-in-the-backbone vision-language ATSS."""
from typing import List, NamedTuple, Optional, Tuple

import torch
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet.models.detectors.single_stage import SingleStageDetector
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from ...utils import PromptError, build_class_prompt, build_positive_map
from ...utils.checkpoint_fit import check_checkpoint_fits
from ...utils.grounding_prompts import check_class_names, split_class_names
from ...utils.lru_cache import LRUCache
from ...utils.prompt_plan import Prompt, PromptPlanner
from ..backbones.fusion_swin import SwinState
from ..utils.tuning_modes import add_prompt_offset, freeze_all_but, get_tuning_mode, new_prompt_offset
from .padded_shape_groups import PaddedShapeGroup, padded_shape_groups
from .prompt_batching import prompt_batches, stack_texts


class TextCacheKey(NamedTuple):
    """Key of the text-free text cache: the caption and what else its states depend on (the weights aside).

    Attributes:
        caption (str): the prompt.
        device (str): where the states were computed (``'cpu'``, ``'cuda:0'``).
        weights_dtype (torch.dtype): the language model's parameter dtype.
        autocast_dtype (torch.dtype, optional): the autocast dtype on that device, None outside autocast.
        trimmed (bool): the states were computed on the caption's own tokens (``test_cfg.trim_text_padding``).
    """
    caption: str
    device: str
    weights_dtype: torch.dtype
    autocast_dtype: Optional[torch.dtype]
    trimmed: bool = False


@MODELS.register_module()
class FIBER(SingleStageDetector):
    """FIBER (fine-grained stage): a fusion Swin backbone and a fused RoBERTa that exchange information inside
    the backbone, an FPN, and a language-aware DyHead whose class logits are box–token dot products.

    The detector orchestrates; the text pieces live in the language model (tokenizer, layers) and in
    :mod:`fiber_mmdet.utils` (prompts, positive maps).

    Data samples carry the text as in mmdet's grounding datasets:

    * detection: ``text`` = list of class names (``return_classes=True``), optional ``caption_prompt``;
      at test time long class lists are split into prompts that fit (or ``test_cfg.chunked_size`` names each);
    * grounding (training): ``text`` = caption string and ``tokens_positive`` = {gt label: [[beg, end], ...]};
    * phrase grounding (test): ``tokens_positive`` = per phrase, the phrase string (found in the caption) or
      its span list; label i = phrase i;
    * class names as one string: ``text='cat . remote control'`` with ``custom_entities=True``;
    * referring expressions: ``tokens_positive == -1``: the whole expression is label 0.

    At test time nothing that does not depend on the other modality is recomputed (``test_cfg``
    ``reuse_text_free_features``, default True): the text-free image part (patch embedding and the blocks
    before the first fused one) runs once per image whatever the number of prompts, and the text-free text part
    (embeddings and the layers before the first fused one) once per prompt, kept for later images in a
    least-recently-used cache of ``text_cache_size`` entries (default 64), one per prompt, device, parameter
    dtype and autocast dtype (cleared whenever the model switches between train and eval mode or loads
    weights). The rest (fused blocks and text layers, neck, head) then runs for the (image, prompt) pairs of the
    batch, image after image, ``prompt_batch_size`` pairs per forward
    (default None: 8 on CUDA, so LVIS' 31 prompts of an image are 4 forwards instead of 31; 1 on the CPU, where 8
    per forward measured 1.15x slower than 1). Each pair is post-processed with its
    prompt's label→token map. The activations of one forward grow linearly with the pairs in it; 1 runs each
    pair alone. With ``reuse_text_free_features`` off every prompt of every image runs the whole model, as the
    original does; the outputs are the same whatever ``prompt_batch_size`` (tested).

    Images of different sizes in one batch (``batch_size`` > 1 in the inferencer or the test data loader) each
    get exactly the detections they get alone: with ``test_cfg.group_by_padded_shape`` (default True) the images
    whose own padded size differs run separately, each group cropped to its size, since padding to the batch's
    largest image changes Swin features near the borders and the text the fused layers read. False runs the
    whole padded batch in one forward, as mmdet's detectors do: faster when sizes differ, not equal to one image
    at a time.

    Args:
        backbone (dict): :class:`FusionSwinTransformer` config.
        neck (dict): FPN config.
        bbox_head (dict): :class:`FIBERHead` config.
        language_model (dict): :class:`FusedRoberta` config. Its ``fused_layers`` pair, in order, with the
            backbone's ``fusion_blocks``; widths are checked at construction.
        checkpoint_fit (dict, optional): how loaded weights are checked, whatever loads them (``load_from``,
            ``tools/test.py``, ``init_detector``, ``DetInferencer``, EMA copies): ``allow_partial`` (default
            False: a checkpoint with missing, unexpected or differently sized weights is an error that names
            them and the likely cause; True loads what fits and logs the counts), ``allowed_missing`` /
            ``allowed_unexpected`` (regex patterns of keys that may be absent / extra).
        tuning_mode (str): which parameters train (FIBER's ``TUNING_HIGHLEVEL_OVERRIDE``, see
            :mod:`fiber_mmdet.models.utils.tuning_modes`): ``'full'`` (default), ``'linear_prob'`` or
            ``'language_prompt_v2'`` (adds ``text_prompt_offset`` (num_tokens, D)). The others get
            ``requires_grad=False`` here, so the optimizer never holds them.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: ConfigType,
                 bbox_head: ConfigType,
                 language_model: ConfigType,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 checkpoint_fit: OptConfigType = None,
                 tuning_mode: str = 'full') -> None:
        super().__init__(backbone=backbone, neck=neck, bbox_head=bbox_head, train_cfg=train_cfg,
                         test_cfg=test_cfg, data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.language_model = MODELS.build(language_model)
        self._check_fusion_pairing()
        self.checkpoint_fit = dict(checkpoint_fit or {})
        unknown = set(self.checkpoint_fit) - {'allow_partial', 'allowed_missing', 'allowed_unexpected'}
        if unknown:
            raise ValueError(f'model.checkpoint_fit: unknown key(s) {sorted(unknown)}; expected allow_partial, '
                             'allowed_missing, allowed_unexpected')
        self._prompt_cache = LRUCache(16)  # class list -> prompts; one entry per class list of a batch in use
        self._text_cache = LRUCache(64)  # TextCacheKey -> (tokens, states); test_cfg.text_cache_size at use
        self.tuning_mode = tuning_mode
        mode = get_tuning_mode(tuning_mode)
        if mode.prompt_bias:
            self.text_prompt_offset = new_prompt_offset(self.bbox_head.num_tokens,
                                                    self.language_model.config.hidden_size)
            # prompt tuning starts from a checkpoint without the offset: its absence is expected, not a mismatch
            allowed = list(self.checkpoint_fit.get('allowed_missing', ()))
            self.checkpoint_fit['allowed_missing'] = allowed + [r'^text_prompt_offset$']
        if mode.trainable is not None:
            freeze_all_but(self, mode.trainable, tuning_mode)

    def train(self, mode: bool = True) -> 'FIBER':
        self._text_cache.clear()  # weights change in training (and EMA swaps them before validation)
        super().train(mode)
        if mode and get_tuning_mode(getattr(self, 'tuning_mode', 'full')).frozen_modules_eval:
            for child in self.children():
                if all(not p.requires_grad for p in child.parameters()):
                    child.eval()
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # the whole detector's weights are checked here, before any submodule loads (see ``checkpoint_fit``)
        check_checkpoint_fits(self, state_dict, prefix, what='FIBER', **self.checkpoint_fit)
        self._text_cache.clear()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check_fusion_pairing(self) -> None:
        blocks = self.backbone.fusion_blocks
        layers = self.language_model.fused_layers
        problems = []
        if len(blocks) != len(layers):
            problems.append(f'the backbone fuses {len(blocks)} blocks {blocks} but the language model fuses '
                            f'{len(layers)} layers {layers}')
        elif self.backbone.fused_block_dims() != self.language_model.image_dims:
            problems.append(f'image widths at the fused blocks {self.backbone.fused_block_dims()} differ from '
                            f'what the fused text layers attend to (image_dims={self.language_model.image_dims})')
        hidden = self.language_model.config.hidden_size
        if self.backbone.text_dims != hidden:
            problems.append(f'backbone text_dims={self.backbone.text_dims} but the text width is {hidden}')
        if self.bbox_head.head.lang_dim != hidden:
            problems.append(f'bbox_head lang_dim={self.bbox_head.head.lang_dim} but the text width is {hidden}')
        if self.bbox_head.num_tokens != self.language_model.max_tokens:
            problems.append(f'bbox_head num_tokens={self.bbox_head.num_tokens} but captions have '
                            f'{self.language_model.max_tokens} tokens')
        if problems:
            raise ValueError('FIBER fusion configuration does not fit: ' + '; '.join(problems))

    # ------------------------------------------------------------------ features
    def fuse(self, image_state: SwinState, text: Tensor, attention_mask: Tensor) -> Tuple[Tuple[Tensor], dict]:
        """The text-dependent part: fused backbone blocks with the paired text layers, then the neck.

        Args:
            image_state (SwinState): from ``backbone.forward_image_only`` (B images).
            text (Tensor): (B, T, D) text states from ``language_model.forward_text_only``.
            attention_mask (Tensor): (B, T).

        Returns:
            tuple: neck outputs, and the language dict (``hidden``, ``embedded``, ``masks``).
        """
        lm = self.language_model

        def text_layer(step: int, hidden: Tensor, image_tokens: Tensor) -> Tensor:
            return lm.forward_fused_layer(step, hidden, attention_mask, image_tokens)

        outs, text = self.backbone.forward_fused(image_state, text, attention_mask, text_layer)
        text = lm.forward_after_fusion(text, attention_mask)
        language = lm.language_dict(text, attention_mask)
        if hasattr(self, 'text_prompt_offset'):
            language = add_prompt_offset(language, self.text_prompt_offset)
        return self.neck(outs), language

    def extract_feat(self, batch_inputs: Tensor, input_ids: Tensor,
                     attention_mask: Tensor) -> Tuple[Tuple[Tensor], dict]:
        """Visual features (FPN levels) and language features of images (B, 3, H, W) with captions
        tokenised to ``input_ids`` / ``attention_mask`` (B, T)."""
        state = self.backbone.forward_image_only(batch_inputs)
        text = self.language_model.forward_text_only(input_ids, attention_mask)
        return self.fuse(state, text, attention_mask)

    # ------------------------------------------------------------------ training
    def _training_caption(self, sample) -> Tuple[str, list]:
        """Caption and, per GT box, its character spans."""
        labels = sample.gt_instances.labels.tolist()
        tokens_positive = sample.get('tokens_positive', None)
        if isinstance(tokens_positive, dict):
            missing = sorted({l for l in labels if l not in tokens_positive})
            if missing:
                raise KeyError(f'{sample.get("img_path", "a sample")}: GT labels {missing} have no entry in '
                               f'tokens_positive (keys {sorted(tokens_positive)})')
            return sample.text, [tokens_positive[l] for l in labels]
        if isinstance(sample.text, (list, tuple)):
            caption, spans = build_class_prompt(sample.text, sample.get('caption_prompt', None), clean=True)
            return caption, [spans[l] for l in labels]
        raise ValueError('a training sample needs `text` as a class list, or a caption with a '
                         '`tokens_positive` dict {label: spans}')

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> dict:
        """Losses of a batch of images (B, 3, H, W) with their captions and boxes."""
        tok = self._training_text(batch_data_samples, batch_inputs.device)
        visual, language = self.extract_feat(batch_inputs, tok['input_ids'], tok['attention_mask'])
        return self.bbox_head.loss(visual, language, batch_data_samples)

    @torch.compiler.disable  # strings and the tokenizer: eager under torch.compile, one boundary
    def _training_text(self, batch_data_samples: SampleList, device) -> dict:
        """Tokenised captions (B, T) of a batch; sets each sample's binary positive maps (N_i, T).

        T is ``max_tokens``, or with ``train_cfg.trim_text_padding`` the batch's longest caption and one padding
        column: the last column, where FIBER's background anchors put their target, stays padding and out of
        the loss as at 256, so the losses are those of the padded batch."""
        trim = bool((self.train_cfg or {}).get('trim_text_padding', False))
        captions, spans = zip(*(self._training_caption(sample) for sample in batch_data_samples))
        tok = self.language_model.tokenize(list(captions), device=device, allow_truncation=True,
                                           pad_to_max=False if trim else None, spare_pad=1)
        unmapped = 0
        for sample, caption, caption_spans in zip(batch_data_samples, captions, spans):
            result = build_positive_map(self.language_model.tokenizer(caption), caption_spans,
                                        tok['input_ids'].shape[1])
            unmapped += len(result.unmapped)
            sample.gt_instances.positive_maps = result.positive_map.to(device)
        if unmapped:
            MMLogger.get_current_instance().warning(
                f'{unmapped} phrase span(s) in this batch map to no caption token (whitespace or beyond '
                f'{self.language_model.max_tokens} tokens); their boxes get no positive token')
        return tok

    # ------------------------------------------------------------------ inference
    def prompt_planner(self) -> PromptPlanner:
        """Plans test prompts with this model's tokenizer, token budget and ``test_cfg.chunked_size``
        (:class:`~fiber_mmdet.utils.PromptPlanner`, which the ONNX runtime uses too)."""
        tokenizer = self.language_model.tokenizer
        logger = MMLogger.get_current_instance()
        return PromptPlanner(lambda caption: tokenizer(caption), lambda caption: len(tokenizer(caption)['input_ids']),
                             self.language_model.max_tokens, self.test_cfg.get('chunked_size', -1),
                             warn=logger.warning, info=logger.info)

    @torch.compiler.disable  # prompt planning works on strings: eager under torch.compile
    def test_prompts(self, sample) -> List[Prompt]:
        """The prompt(s) to run for one data sample (see the class docstring for the accepted forms).

        Raises:
            PromptError: the text cannot be run (empty, separators only, a phrase not in its caption, a reversed
                or out-of-range span, a sentence over the token budget); the message names the image.
        """
        try:
            return self._test_prompts(sample)
        except PromptError as e:
            where = sample.get('img_path', None)
            raise PromptError(f'{where}: {e}' if where else str(e)) from e

    def _test_prompts(self, sample) -> List[Prompt]:
        text = sample.get('text', None)
        tokens_positive = sample.get('tokens_positive', None)
        custom_entities = sample.get('custom_entities', False)
        caption_prompt = sample.get('caption_prompt', None)
        planner = self.prompt_planner()
        if tokens_positive is None and (isinstance(text, (list, tuple)) or (isinstance(text, str) and custom_entities)):
            # class lists repeat over a dataset: their prompts are kept (the chunking setting is part of the key)
            names = check_class_names(split_class_names(text) if isinstance(text, str) else text)
            key = repr((list(names), caption_prompt, planner.chunked_size))
            return self._prompt_cache.get(key, lambda: planner.class_prompts(names, caption_prompt))
        return planner.plan(text, tokens_positive, custom_entities, caption_prompt)

    def _text_cache_key(self, caption: str, device) -> TextCacheKey:
        """What the text-free states of ``caption`` depend on besides the weights: the device and dtype the
        language model computes on and the autocast state there (a model moved with ``.to()`` / ``.half()``, or
        run under ``torch.autocast``, must not get states computed on another device or in another dtype)."""
        device = torch.device(device)
        weights_dtype = next(self.language_model.parameters()).dtype
        autocast_dtype = (torch.get_autocast_dtype(device.type)
                          if torch.is_autocast_enabled(device.type) else None)
        return TextCacheKey(caption, str(device), weights_dtype, autocast_dtype, self._trim_text())

    def _trim_text(self) -> bool:
        """Whether test-time prompts run only on their own tokens (``test_cfg.trim_text_padding=True``) instead
        of the language model's padding (FIBER: ``max_tokens``, 256). Padding is masked everywhere, so the
        detections are the same up to rounding (tested on the reference fixtures and random prompts) while the
        text side costs what the prompt needs. Training batches have their own setting,
        ``train_cfg.trim_text_padding`` (:meth:`_training_text`)."""
        return not self.training and bool(self.test_cfg.get('trim_text_padding', False))

    @torch.compiler.disable  # a cache keyed by strings; its text-only forward is short and runs once per prompt
    def _text_free_text(self, caption: str, device) -> Tuple[dict, Tensor]:
        """Tokenised caption (1, T) and its text-free states (1, T, D), from the prompt cache when allowed."""
        cacheable = not self.training  # training changes the weights

        def compute() -> Tuple[dict, Tensor]:
            tok = self.language_model.tokenize([caption], device=device,
                                               pad_to_max=False if self._trim_text() else None)
            return tok, self.language_model.forward_text_only(tok['input_ids'], tok['attention_mask'])

        if not cacheable:
            return compute()
        self._text_cache.max_entries = self.test_cfg.get('text_cache_size', 64)
        return self._text_cache.get(self._text_cache_key(caption, device), compute)

    def _predict_plain(self, batch_inputs: Tensor, batch_data_samples: SampleList, prompts: List[List[Prompt]],
                       rescale: bool) -> List[List[InstanceData]]:
        """The original's path: the whole model for every prompt; images with the same prompts run together."""
        if all(p == prompts[0] for p in prompts):
            groups = [(list(range(len(prompts))), prompts[0])]
        else:
            groups = [([i], p) for i, p in enumerate(prompts)]
        results: List[List[InstanceData]] = [[] for _ in batch_data_samples]
        for indices, chunk_prompts in groups:
            n = len(indices)
            samples = [batch_data_samples[i] for i in indices]
            for prompt in chunk_prompts:
                tok = self.language_model.tokenize([prompt.caption], device=batch_inputs.device,
                                                   pad_to_max=False if self._trim_text() else None)
                mask = tok['attention_mask'].expand(n, -1)
                visual, language = self.extract_feat(batch_inputs[indices], tok['input_ids'].expand(n, -1), mask)
                for s in samples:
                    s.token_positive_map = prompt.label_to_tokens
                preds = self.bbox_head.predict(visual, language, samples, rescale=rescale)
                for i, pred in zip(indices, preds):
                    pred.labels = pred.labels + prompt.label_offset
                    results[i].append(pred)
        return results

    def _predict_reusing(self, batch_inputs: Tensor, batch_data_samples: SampleList, prompts: List[List[Prompt]],
                         rescale: bool) -> List[List[InstanceData]]:
        """The text-free image part once per image, then the (image, prompt) pairs through the rest of the model
        ``test_cfg.prompt_batch_size`` at a time (see :mod:`.prompt_batching`), each pair post-processed with
        its prompt's label→token map."""
        state = self.backbone.forward_image_only(batch_inputs)
        metas = [s.metainfo for s in batch_data_samples]
        results: List[List[InstanceData]] = [[None] * len(p) for p in prompts]
        pairs_per_forward = self.test_cfg.get('prompt_batch_size', None)
        if pairs_per_forward is None:  # CPU: 8 per forward was 1.15x slower than 1 (FIBER-B 512², 31 prompts)
            pairs_per_forward = 8 if batch_inputs.is_cuda else 1
        for run in prompt_batches([len(p) for p in prompts], pairs_per_forward):
            run_prompts = [prompts[i][j] for i, j in run]
            captions = [p.caption for p in run_prompts]
            entries = {}
            for c in captions:
                if c not in entries:
                    tok, text = self._text_free_text(c, batch_inputs.device)
                    entries[c] = (tok['attention_mask'], text)
            text, mask = stack_texts(captions, entries)
            visual, language = self.fuse(state.select([i for i, _ in run]), text, mask)
            preds = self.bbox_head.predict_by_feat(
                *self.bbox_head(visual, language), batch_img_metas=[metas[i] for i, _ in run],
                batch_token_positive_maps=[p.label_to_tokens for p in run_prompts], rescale=rescale)
            for (i, j), prompt, pred in zip(run, run_prompts, preds):
                pred.labels = pred.labels + prompt.label_offset
                results[i][j] = pred
        return results

    def _padded_shape_groups(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> List[PaddedShapeGroup]:
        """The images to run together: all of them, or with ``test_cfg.group_by_padded_shape`` (default True)
        those with the same padded size alone, each group cropped to it (see :mod:`.padded_shape_groups`); a
        cropped group's samples get that size as ``batch_input_shape``, as when they run alone."""
        if not self.test_cfg.get('group_by_padded_shape', True):
            return [PaddedShapeGroup(list(range(len(batch_data_samples))), batch_inputs)]
        divisor = getattr(self.data_preprocessor, 'pad_size_divisor', 1)
        groups = padded_shape_groups(batch_inputs, [s.metainfo for s in batch_data_samples], divisor)
        if len(groups) > 1:
            for group in groups:
                for i in group.indices:
                    batch_data_samples[i].set_metainfo(dict(batch_input_shape=tuple(group.inputs.shape[-2:])))
        return groups

    def predict(self, batch_inputs: Tensor, batch_data_samples: SampleList, rescale: bool = True) -> SampleList:
        """Detections for each image (``pred_instances``: ``bboxes`` xyxy, ``scores``, 0-based ``labels`` into
        the sample's class / phrase list, ``label_names``), its prompts' detections one after the other. See the
        class docstring for what is computed once and what runs as one batch."""
        prompts = [self.test_prompts(s) for s in batch_data_samples]
        run = (self._predict_reusing if self.test_cfg.get('reuse_text_free_features', True)
               else self._predict_plain)
        results: List[List[InstanceData]] = [[] for _ in batch_data_samples]
        for indices, inputs in self._padded_shape_groups(batch_inputs, batch_data_samples):
            samples = [batch_data_samples[i] for i in indices]
            for i, preds in zip(indices, run(inputs, samples, [prompts[i] for i in indices], rescale)):
                results[i] = preds
        for sample, sample_prompts, preds in zip(batch_data_samples, prompts, results):
            pred = preds[0] if len(preds) == 1 else InstanceData.cat(preds)
            names = [name for p in sample_prompts for name in p.entities]
            pred.label_names = [names[int(l)] for l in pred.labels]
            sample.pred_instances = pred
        return batch_data_samples

    def _forward(self, batch_inputs: Tensor, batch_data_samples: OptConfigType = None) -> Tuple[List[Tensor]]:
        """Raw head outputs (token logits, box deltas, centerness per level) for the first prompt of each
        sample (tensor mode, e.g. for FLOP counting)."""
        if batch_data_samples is None:
            raise ValueError('FIBER needs data samples with `text` even in tensor mode')
        captions = [self.test_prompts(s)[0].caption for s in batch_data_samples]
        tok = self.language_model.tokenize(captions, device=batch_inputs.device)
        visual, language = self.extract_feat(batch_inputs, tok['input_ids'], tok['attention_mask'])
        return self.bbox_head(visual, language)
