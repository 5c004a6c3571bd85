"""What a user types -> the captions FIBER runs and, per caption, its labels' token columns; without torch.

The detector (:meth:`fiber_mmdet.models.detectors.FIBER.test_prompts`) and the ONNX runtime
(:mod:`fiber_mmdet.runtime`) plan prompts here, so both run the same captions with the same label maps.
"""
import logging
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

from .grounding_prompts import (check_class_names, check_expression, entity_names, resolve_phrases,
                                split_class_names)
from .prompts import PromptError, build_class_prompt, chunk_class_names
from .token_spans import span_token_columns


class Prompt(NamedTuple):
    """One caption run through the model at test time.

    Attributes:
        caption (str): the text.
        label_to_tokens (dict[int, list[int]]): 1-based label within this prompt -> token columns.
        label_offset (int): added to the 0-based labels predicted with this prompt.
        entities (list[str]): a name per label of this prompt (for ``label_names``).
    """
    caption: str
    label_to_tokens: Dict[int, List[int]]
    label_offset: int
    entities: List[str]


class PromptPlanner:
    """Plans the prompts of a text as :class:`Prompt` s.

    Args:
        tokenize: caption -> its tokenisation (special tokens included; ``len(...)`` of its ids and
            ``char_to_token`` are used): ``lambda c: tokenizer(c)`` for transformers,
            ``tokenizers.Tokenizer.encode`` for the runtime.
        count: caption -> number of tokens.
        max_tokens: the model's caption budget (FIBER: 256).
        chunked_size: class names per prompt; <= 0 packs as many as fit (``test_cfg.chunked_size``).
        warn: where mapping warnings go (a logger's ``warning``).
        info: where chunking notes go.
    """

    def __init__(self, tokenize: Callable[[str], object], count: Callable[[str], int], max_tokens: int,
                 chunked_size: int = -1, warn: Optional[Callable[[str], None]] = None,
                 info: Optional[Callable[[str], None]] = None) -> None:
        self.tokenize = tokenize
        self.count = count
        self.max_tokens = max_tokens
        self.chunked_size = chunked_size
        logger = logging.getLogger(__name__)
        self.warn = warn or logger.warning
        self.info = info or logger.info

    def label_map(self, caption: str, spans: Sequence[Sequence[Sequence[int]]], what: str,
                  strict: bool = False) -> Dict[int, List[int]]:
        """``{1-based label: token columns}``. With ``strict`` (a user's sentence) a caption over the token
        budget or an entity that maps to no token is an error; class-list captions come already chunked."""
        n = self.count(caption)
        if strict and n > self.max_tokens:
            raise PromptError(f'the sentence needs {n} tokens but the model reads at most {self.max_tokens}; it '
                              f'is not truncated: shorten it ({caption[:60]!r}...)')
        columns, unmapped = span_token_columns(self.tokenize(caption), spans, self.max_tokens)
        if unmapped:
            empty = [i for i, tokens in enumerate(columns) if not tokens]
            if strict and empty:
                raise PromptError(f'{what} {empty[0]} ({spans[empty[0]]}) covers no token of {caption!r}')
            self.warn(f'{len(unmapped)} {what} span(s) map to no token and can never be predicted: '
                      f'{unmapped[:5]}')
        return {i + 1: tokens for i, tokens in enumerate(columns)}

    def class_prompts(self, names: Sequence[str], caption_prompt: Optional[dict] = None) -> List[Prompt]:
        """A class list, split into prompts that fit (names cleaned as the original's
        ``create_queries_and_maps``: ``'bow_(weapon)'`` -> ``'bow '``)."""
        chunks = chunk_class_names(names, self.count, self.max_tokens, self.chunked_size,
                                   caption_prompt=caption_prompt, clean=True)
        prompts = []
        for start, chunk in chunks:
            caption, spans = build_class_prompt(chunk, caption_prompt, clean=True)
            prompts.append(Prompt(caption, self.label_map(caption, spans, 'class name'), start, list(chunk)))
        if len(prompts) > 1:
            self.info(f'{len(names)} classes are predicted with {len(prompts)} prompts')
        return prompts

    def plan(self, text, tokens_positive=None, custom_entities: bool = False,
             caption_prompt: Optional[dict] = None) -> List[Prompt]:
        """The prompt(s) of one text (the forms of :class:`~fiber_mmdet.apis.FIBERInferencer`): class names
        (a list / tuple, or a ``'.'``-separated string with ``custom_entities``), a caption with
        ``tokens_positive`` (phrases or spans per entity, or a ``{label: spans}`` dict), or a referring
        expression (``tokens_positive=-1``).

        Raises:
            PromptError: the text cannot be run.
        """
        if text is None:
            raise PromptError('no text prompt: give class names, a caption with its phrases, or an expression')
        if isinstance(tokens_positive, int) and not isinstance(tokens_positive, bool) and tokens_positive == -1:
            caption, spans = check_expression(text)
            return [Prompt(caption, self.label_map(caption, spans, 'expression', strict=True), 0, [caption])]
        if tokens_positive is not None:
            if isinstance(tokens_positive, dict):
                tokens_positive = [tokens_positive[k] for k in sorted(tokens_positive)]
            if not isinstance(text, str):
                raise PromptError(f'phrases need a caption string, got {type(text).__name__} {text!r}')
            spans = resolve_phrases(text, tokens_positive)
            return [Prompt(text, self.label_map(text, spans, 'phrase', strict=True), 0, entity_names(text, spans))]
        if isinstance(text, str) and custom_entities:
            text = split_class_names(text)
        if isinstance(text, (list, tuple)):
            return self.class_prompts(check_class_names(text), caption_prompt)
        raise PromptError(f'{text!r} is a sentence without the phrases to ground: give tokens_positive as the '
                          "phrases (e.g. ['a man', 'a horse']) or their [beg, end) spans, tokens_positive=-1 for a "
                          "referring expression, or custom_entities=True for class names separated by '.'")
