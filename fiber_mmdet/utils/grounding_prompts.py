"""What a user types -> what FIBER runs: class lists, phrases to ground in a caption, referring expressions.

The forms follow MMDetection's grounding inferencer (``texts``, ``custom_entities``, ``tokens_positive``):

* classes: ``'cat . remote control .'`` with ``custom_entities=True``, or a list / tuple of names;
* phrase grounding: a caption and, per phrase, either the phrase itself (found in the caption) or its
  ``[beg, end)`` character spans;
* referring expression: ``tokens_positive=-1``, the whole text is one entity.

Everything here is string work; turning spans into token columns is :mod:`.positive_map`. Every problem is a
:class:`~.prompts.PromptError` that says what is wrong and with which text.
"""
import re
from typing import List, Sequence, Tuple, Union

from .prompts import PromptError, Span

SpanList = List[Span]
EntitySpec = Union[str, Sequence[int], Sequence[Sequence[int]]]


def split_class_names(text: str, separator: str = '.') -> List[str]:
    """``'cat . remote control .'`` -> ``['cat', 'remote control']``.

    Splits on the separator, strips each name and drops empty pieces (mmdet's GLIP keeps ``'cat '`` with its
    trailing space from such input, which then shows in the label names).

    Raises:
        PromptError: the text is empty or holds only separators.
    """
    names = [n.strip() for n in text.split(separator)]
    names = [n for n in names if n]
    if not names:
        raise PromptError(f'the class list {text!r} names no class: separate class names with {separator!r}, '
                          "e.g. 'cat . remote control'")
    return names


def check_class_names(names: Sequence[str]) -> List[str]:
    """A class list as given (list or tuple), with an error for an empty list or an empty name."""
    names = list(names)
    if not names:
        raise PromptError('the class list is empty')
    blank = [i for i, n in enumerate(names) if not isinstance(n, str) or not n.strip()]
    if blank:
        raise PromptError(f'class name(s) at position(s) {blank[:10]} are empty or not strings: '
                          f'{[names[i] for i in blank[:3]]!r}')
    return names


def _is_span(value) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value))


def _check_span(caption: str, span: Sequence[int], entity: int) -> Span:
    beg, end = int(span[0]), int(span[1])
    if beg >= end:
        raise PromptError(f'phrase {entity}: span [{beg}, {end}] is reversed or empty (spans are [beg, end) '
                          f'character offsets with beg < end) in {caption!r}')
    if beg < 0 or end > len(caption):
        raise PromptError(f'phrase {entity}: span [{beg}, {end}] lies outside the caption of '
                          f'{len(caption)} characters: {caption!r}')
    if not caption[beg:end].strip():
        raise PromptError(f'phrase {entity}: span [{beg}, {end}] covers only whitespace in {caption!r}')
    return beg, end


def find_phrase(caption: str, phrase: str, start: int = 0) -> Span:
    """The ``[beg, end)`` span of the first occurrence of ``phrase`` at or after ``start``, else of the first
    occurrence anywhere (case-insensitive when there is no exact match).

    Spans are character offsets into ``caption`` as written, in any script: the case-insensitive search compares
    character by character in place (``str.lower()`` may change a caption's length, e.g. ``'İ'`` becomes two
    characters, which would shift every later span).

    Raises:
        PromptError: the phrase is empty or not in the caption.
    """
    if not phrase.strip():
        raise PromptError(f'an empty phrase cannot be grounded in {caption!r}')
    phrase = phrase.strip()
    beg = caption.find(phrase, start)
    if beg < 0:
        beg = caption.find(phrase)
    if beg >= 0:
        return beg, beg + len(phrase)
    pattern = re.compile(re.escape(phrase), re.IGNORECASE)
    match = pattern.search(caption, start) or pattern.search(caption)
    if match is not None:
        return match.span()
    raise PromptError(f'phrase {phrase!r} is not in the caption {caption!r}')


def resolve_phrases(caption: str, entities: Sequence[EntitySpec]) -> List[SpanList]:
    """Per entity, its list of ``[beg, end)`` spans in ``caption``.

    Args:
        caption: the sentence.
        entities: per phrase to ground, the phrase string (found in the caption; repeated phrases take
            successive occurrences), one span ``[beg, end]`` or a list of spans (mmdet's ``tokens_positive``).

    Raises:
        PromptError: no caption, no entity, a phrase not in the caption, a reversed, empty or out-of-range span.
    """
    if not isinstance(caption, str) or not caption.strip():
        raise PromptError('the caption is empty: phrase grounding needs a sentence and the phrases in it')
    entities = list(entities)
    if not entities:
        raise PromptError(f'no phrase to ground in {caption!r}: give the phrases (strings found in the caption) '
                          'or their [beg, end) character spans')
    resolved: List[SpanList] = []
    search_from = 0
    for i, entity in enumerate(entities):
        if isinstance(entity, str):
            span = find_phrase(caption, entity, search_from)
            search_from = span[1]
            resolved.append([span])
        elif _is_span(entity):
            resolved.append([_check_span(caption, entity, i)])
        elif isinstance(entity, (list, tuple)) and entity and all(_is_span(s) for s in entity):
            resolved.append([_check_span(caption, s, i) for s in entity])
        else:
            raise PromptError(f'phrase {i}: {entity!r} is neither a phrase string, a [beg, end] span nor a list '
                              'of spans')
    return resolved


def entity_names(caption: str, spans: Sequence[SpanList]) -> List[str]:
    """The text each entity covers (spans of one entity joined by ' / ')."""
    return [' / '.join(caption[b:e] for b, e in entity) for entity in spans]


def check_expression(text) -> Tuple[str, List[SpanList]]:
    """A referring expression: the whole text is entity 0."""
    if not isinstance(text, str) or not text.strip():
        raise PromptError('the referring expression is empty')
    return text, [[(0, len(text))]]
