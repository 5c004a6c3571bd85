"""Character spans -> caption token columns, without torch (the ONNX runtime uses it; :mod:`.positive_map`
turns the columns into FIBER's positive-map tensors).

A tokenised caption is anything with ``char_to_token(char_index)``: a transformers ``BatchEncoding`` of one
caption or a ``tokenizers.Encoding``.
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

Span = Tuple[int, int]


class TokenColumns(NamedTuple):
    """Result of :func:`span_token_columns`.

    Attributes:
        columns (list[list[int]]): per entity, the sorted token columns its spans cover (empty when none maps).
        unmapped (list[tuple[int, tuple[int, int]]]): ``(entity index, span)`` of every span that maps to no
            token (it lies in whitespace or beyond ``num_tokens``).
    """
    columns: List[List[int]]
    unmapped: List[Tuple[int, Span]]


def char_to_token(tokenized, char_idx: int, step: int, tries: int = 3) -> Optional[int]:
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


def span_token_columns(tokenized, tokens_positive: Sequence[Sequence[Span]], num_tokens: int) -> TokenColumns:
    """Token columns of each entity's ``[beg, end)`` character spans.

    A span's first token is ``char_to_token(beg)`` (falling back to ``beg+1``, ``beg+2``), its last
    ``char_to_token(end-1)`` (falling back to ``end-2``, ``end-3``); every token in between is covered, up to
    column ``num_tokens - 1``.
    """
    columns: List[List[int]] = []
    unmapped: List[Tuple[int, Span]] = []
    for i, spans in enumerate(tokens_positive):
        covered = set()
        for beg, end in spans:
            first = char_to_token(tokenized, int(beg), step=1)
            last = char_to_token(tokenized, int(end) - 1, step=-1)
            if first is None or last is None or first >= num_tokens:
                unmapped.append((i, (int(beg), int(end))))
                continue
            covered.update(range(first, min(last, num_tokens - 1) + 1))
        columns.append(sorted(covered))
    return TokenColumns(columns, unmapped)
