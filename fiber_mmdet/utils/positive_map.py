"""Character spans -> token positive maps (FIBER / GLIP convention), reporting what does not map.

A *positive map* row marks the caption tokens an entity (a box's phrase or a class name) refers to. Columns are
indices into the padded token sequence of length ``num_tokens`` (256 for FIBER), ``<s>`` included at column 0.
"""
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

Span = Tuple[int, int]


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


def _char_to_token(tokenized, char_idx: int, step: int, tries: int = 3) -> Optional[int]:
    """``char_to_token`` at ``char_idx``, then at ``char_idx + step``, ``+ 2 * step``..., as the reference does
    (a span boundary on a space has no token)."""
    for k in range(tries):
        idx = char_idx + k * step
        if idx < 0:
            return None
        try:
            token = tokenized.char_to_token(idx)
        except Exception:  # index past the end of the caption
            token = None
        if token is not None:
            return token
    return None


def build_positive_map(tokenized,
                       tokens_positive: Sequence[Sequence[Span]],
                       num_tokens: int = 256) -> PositiveMap:
    """Binary positive map from character spans.

    For each ``[beg, end)`` span the first token is ``char_to_token(beg)`` (falling back to ``beg+1``, ``beg+2``)
    and the last ``char_to_token(end-1)`` (falling back to ``end-2``, ``end-3``); all tokens in between are set.

    Args:
        tokenized: a fast-tokenizer ``BatchEncoding`` of ONE caption (``char_to_token`` must work).
        tokens_positive: per entity, a list of ``[beg, end)`` character spans.
        num_tokens: width of the map (the padded caption length).

    Returns:
        PositiveMap: the binary map and the spans that could not be mapped.
    """
    positive_map = torch.zeros((len(tokens_positive), num_tokens), dtype=torch.float)
    unmapped: List[Tuple[int, Span]] = []
    for i, spans in enumerate(tokens_positive):
        for beg, end in spans:
            first = _char_to_token(tokenized, int(beg), step=1)
            last = _char_to_token(tokenized, int(end) - 1, step=-1)
            if first is None or last is None or first >= num_tokens:
                unmapped.append((i, (int(beg), int(end))))
                continue
            positive_map[i, first:min(last, num_tokens - 1) + 1] = 1.0
    return PositiveMap(positive_map, unmapped)


def label_to_token_indices(positive_map: Tensor, first_label: int = 1) -> Dict[int, List[int]]:
    """``{label: [token indices]}`` for row i with label ``i + first_label`` (the test-time positive map)."""
    return {
        i + first_label: torch.nonzero(row, as_tuple=True)[0].tolist()
        for i, row in enumerate(positive_map)
    }
