"""Character spans -> token positive maps (FIBER / GLIP convention), reporting what does not map.

A *positive map* row marks the caption tokens an entity (a box's phrase or a class name) refers to. Columns are
indices into the padded token sequence of length ``num_tokens`` (256 for FIBER), ``<s>`` included at column 0.
"""
from typing import Dict, List, NamedTuple, Sequence, Tuple

import torch
from torch import Tensor

from .token_spans import Span, span_token_columns


class PositiveMap(NamedTuple):
    """Result of :func:`build_positive_map`.

    Attributes:
        positive_map (Tensor): (N, num_tokens) float tensor of 0/1; row i marks the tokens of entity i.
        unmapped (list[tuple[int, tuple[int, int]]]): ``(entity index, span)`` for every character span that
            maps to no token (it lies in whitespace or beyond the truncated caption). Entities listed here
            with no other span have an all-zero row.
    """
    positive_map: Tensor
    unmapped: List[Tuple[int, Span]]


def build_positive_map(tokenized,
                       tokens_positive: Sequence[Sequence[Span]],
                       num_tokens: int = 256) -> PositiveMap:
    """Binary positive map from character spans.

    For each ``[beg, end)`` span the first token is ``char_to_token(beg)`` (falling back to ``beg+1``, ``beg+2``)
    and the last is the final token of character ``end-1`` (falling back to ``end-2``, ``end-3``); all tokens in
    between are set. Spans are character offsets into the caption as written (``str`` indices, not bytes): a
    character that byte-level BPE splits into several tokens (``'é'``, ``'猫'``, ``'🐱'``) is covered whole (the
    original stops at its first token; for text whose characters are one token each, e.g. ASCII, the maps are
    the same).

    Args:
        tokenized: a fast-tokenizer ``BatchEncoding`` of ONE caption (``char_to_token`` must work).
        tokens_positive: per entity, a list of ``[beg, end)`` character spans.
        num_tokens: width of the map (the padded caption length).

    Returns:
        PositiveMap: the binary map and the spans that could not be mapped.
    """
    columns, unmapped = span_token_columns(tokenized, tokens_positive, num_tokens)
    positive_map = torch.zeros((len(tokens_positive), num_tokens), dtype=torch.float)
    for i, tokens in enumerate(columns):
        positive_map[i, tokens] = 1.0
    return PositiveMap(positive_map, unmapped)


def label_to_token_indices(positive_map: Tensor, first_label: int = 1) -> Dict[int, List[int]]:
    """``{label: [token indices]}`` for row i with label ``i + first_label`` (the test-time positive map)."""
    return {
        i + first_label: torch.nonzero(row, as_tuple=True)[0].tolist()
        for i, row in enumerate(positive_map)
    }
