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


def _num_tokens(tokenized) -> int:
    ids = getattr(tokenized, 'ids', None)  # tokenizers.Encoding; a BatchEncoding keeps them under 'input_ids'
    return len(tokenized['input_ids'] if ids is None else ids)


def last_token_of_char(tokenized, token: int, char_idx: int) -> int:
    """The last token of the character at ``char_idx``, given its first ``token`` (``char_to_token``'s answer).

    Byte-level BPE splits a character of several UTF-8 bytes (``'é'``, ``'猫'``, ``'🐱'``) into several tokens
    when its bytes are not merged, each with the character's offsets; ``char_to_token`` returns the first, and a
    span that stopped there would leave the character's other bytes out. Needs ``token_to_chars`` (a
    ``BatchEncoding`` or ``tokenizers.Encoding``); without it ``token`` is returned."""
    if not hasattr(tokenized, 'token_to_chars'):
        return token
    num = _num_tokens(tokenized)
    while token + 1 < num:
        chars = tokenized.token_to_chars(token + 1)
        if chars is None or not chars[0] <= char_idx < chars[1]:
            break
        token += 1
    return token


def last_token(tokenized, end: int, tries: int = 3) -> Optional[int]:
    """The final token of a ``[beg, end)`` span: that of character ``end - 1``, falling back to ``end - 2``,
    ``end - 3`` (a trailing space has no token) as :func:`char_to_token` does, covering every byte token of that
    character (:func:`last_token_of_char`)."""
    for k in range(tries):
        idx = end - 1 - k
        token = char_to_token(tokenized, idx, step=-1, tries=1)
        if token is not None:
            return last_token_of_char(tokenized, token, idx)
    return None


def span_token_columns(tokenized, tokens_positive: Sequence[Sequence[Span]], num_tokens: int) -> TokenColumns:
    """Token columns of each entity's ``[beg, end)`` character spans.

    A span's first token is ``char_to_token(beg)`` (falling back to ``beg+1``, ``beg+2``), its last the final
    token of character ``end-1`` (falling back to ``end-2``, ``end-3``); every token in between is covered, up to
    column ``num_tokens - 1``. Spans are character offsets into the caption as written (``str`` indices, not
    bytes); a character that byte-level BPE splits into several tokens is covered whole (the original stops at
    its first token; where every character is one token or part of one, e.g. ASCII, the columns are the same).
    """
    columns: List[List[int]] = []
    unmapped: List[Tuple[int, Span]] = []
    for i, spans in enumerate(tokens_positive):
        covered = set()
        for beg, end in spans:
            first = char_to_token(tokenized, int(beg), step=1)
            last = last_token(tokenized, int(end))
            if first is None or last is None or first >= num_tokens:
                unmapped.append((i, (int(beg), int(end))))
                continue
            covered.update(range(first, min(last, num_tokens - 1) + 1))
        columns.append(sorted(covered))
    return TokenColumns(columns, unmapped)
