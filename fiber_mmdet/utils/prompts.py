"""Text prompts for detection: class names -> caption + character spans."""
import re
from typing import Dict, List, Optional, Sequence, Tuple

Span = Tuple[int, int]


class PromptError(ValueError):
    """A text prompt that cannot be built: empty, separators only, a phrase not in its caption, a span that is
    reversed or outside the caption, or a sentence over the model's token budget. The message names the
    problem and, where known, the sample (image path)."""


def clean_name(name: str) -> str:
    """FIBER's name cleaning (training captions and test prompts): drop "(...)", "_" -> " ", collapse double
    spaces (``'bow_(weapon)'`` -> ``'bow '``, trailing space kept as in the original)."""
    name = re.sub(r'\(.*\)', '', name)
    name = re.sub(r'_', ' ', name)
    name = re.sub(r'  ', ' ', name)
    return name


def build_class_prompt(names: Sequence[str],
                       caption_prompt: Optional[Dict[str, dict]] = None,
                       separator: str = '. ',
                       clean: bool = False) -> Tuple[str, List[List[Span]]]:
    """Join class names into one caption and return each name's character span.

    Args:
        names: class names in label order.
        caption_prompt: optional ``{class name: {'prefix', 'name', 'suffix'}}`` (GLIP/FIBER ODinW caption
            prompts, mmdet's format; looked up by the raw name, then the cleaned one); only ``name`` (or the class
            name) is inside the span, and a prompt's ``name`` is used verbatim (never cleaned, as the original).
        separator: text between classes (FIBER: ``'. '``, no trailing separator).
        clean: apply :func:`clean_name` to the class names (the original does, at training and at test time).

    Returns:
        tuple: caption, and per class a one-span list ``[[beg, end)]``.
    """
    caption = ''
    spans: List[List[Span]] = []
    for i, name in enumerate(names):
        raw, name = name, clean_name(name) if clean else name
        extra = (caption_prompt or {}).get(raw, (caption_prompt or {}).get(name, {}))
        caption += extra.get('prefix', '')
        shown = extra.get('name', name)
        spans.append([(len(caption), len(caption) + len(shown))])
        caption += shown + extra.get('suffix', '')
        if i != len(names) - 1:
            caption += separator
    return caption, spans


def chunk_class_names(names: Sequence[str], token_count, max_tokens: int, chunk_size: int = -1,
                      **prompt_kwargs) -> List[Tuple[int, List[str]]]:
    """Split a class list into prompts that fit ``max_tokens``.

    Args:
        names: all class names.
        token_count: callable caption -> number of tokens (special tokens included).
        max_tokens: token budget per prompt.
        chunk_size: fixed number of classes per prompt (LVIS protocol: 40); <= 0 packs as many classes as
            fit, in order.
        **prompt_kwargs: passed to :func:`build_class_prompt`.

    Returns:
        list of (index of the first class, names) per prompt.

    Raises:
        PromptError: a fixed-size chunk, or a single class name, does not fit.
    """
    names = list(names)
    if chunk_size > 0:
        chunks = [(s, names[s:s + chunk_size]) for s in range(0, len(names), chunk_size)]
        for start, chunk in chunks:
            n = token_count(build_class_prompt(chunk, **prompt_kwargs)[0])
            if n > max_tokens:
                raise PromptError(f'classes {start}..{start + len(chunk) - 1} need {n} > {max_tokens} tokens; '
                                 f'use a smaller chunked_size')
        return chunks
    chunks, start = [], 0
    while start < len(names):
        end = start + 1
        if token_count(build_class_prompt(names[start:end], **prompt_kwargs)[0]) > max_tokens:
            raise PromptError(f'class {start} ({names[start]!r}) alone needs more than {max_tokens} tokens')
        # grow the chunk while it fits (binary search keeps this O(log n) tokenisations per chunk)
        lo, hi = end, len(names)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if token_count(build_class_prompt(names[start:mid], **prompt_kwargs)[0]) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        chunks.append((start, names[start:lo]))
        start = lo
    return chunks
