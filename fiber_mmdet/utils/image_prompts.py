"""One prompt per image: the inferencer's ``texts`` / ``custom_entities`` / ``tokens_positive`` arguments -> the
text each image runs with.

Two forms:

* shared: ``texts`` is one string (class names, a caption or an expression) or ``[names]`` for one image;
  ``custom_entities`` and ``tokens_positive`` apply to every image, as in MMDetection's ``DetInferencer``;
* per image: ``texts`` is a list with one entry per image (a string, or a tuple / list of class names);
  ``tokens_positive`` is None, -1 (every string entry is an expression) or a list with one entry per image
  (None, -1, or that image's phrases / spans); ``custom_entities`` is a bool or one per image (a string entry
  without phrases is a class list ``'cat . dog'`` when its flag is set).

String work only (no torch), so that other runtimes can build the same prompts.
"""
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

from .prompts import PromptError

#: a class list, a caption, an expression, or one of these per image.
TextsType = Union[None, str, Sequence[Union[str, Sequence[str]]]]
#: None, -1, a phrase list shared by every image, or one of these per image (with per-image texts).
TokensPositiveType = Union[None, int, list, tuple]


class ImagePrompt(NamedTuple):
    """The text one image runs with, in the data sample fields of mmdet's grounding inputs.

    Attributes:
        text (str | tuple[str]): a caption / expression / ``'cat . dog'`` string, or the class names.
        custom_entities (bool): a string ``text`` is class names separated by ``'.'``.
        tokens_positive (None | int | list): None (class names), -1 (expression) or the phrases / their spans.
    """
    text: Union[str, Tuple[str, ...]]
    custom_entities: bool
    tokens_positive: TokensPositiveType


def _per_image(value, num_images: int, name: str) -> list:
    if len(value) != num_images:
        raise PromptError(f'{name} has {len(value)} entries for {num_images} image(s): with one text per image, '
                          f'{name} gives one entry per image too')
    return list(value)


def _check_tokens_positive_entry(entry, index: int) -> TokensPositiveType:
    if entry is None or (isinstance(entry, int) and not isinstance(entry, bool) and entry == -1):
        return entry
    if isinstance(entry, (list, tuple, dict)):
        return entry
    raise PromptError(f'tokens_positive[{index}] = {entry!r}: with one text per image, each entry is None (class '
                      "names), -1 (an expression) or that image's phrases, e.g. tokens_positive=[None, "
                      "['a man', 'a horse'], -1]; for phrases shared by every image give texts as one string")


def prompts_per_image(num_images: int, texts: TextsType, custom_entities: Union[bool, Sequence[bool]] = False,
                      tokens_positive: TokensPositiveType = None,
                      expand: Optional[Callable[[str], Optional[Tuple[str, ...]]]] = None) -> List[ImagePrompt]:
    """The prompt of each image (see the module docstring for the two forms).

    Args:
        num_images: how many images the call runs.
        texts: one text for all, or one per image.
        custom_entities: one flag for all, or one per image.
        tokens_positive: one value for all, or (with per-image texts) one per image.
        expand: ``'$: coco'`` -> class names (None for any other text), applied to every string entry.

    Returns:
        list[ImagePrompt]: ``num_images`` prompts.

    Raises:
        PromptError: no text, or a list whose length is not the number of images, or a bad per-image entry
            (the message names the argument and the index).
    """
    if texts is None:
        raise PromptError('FIBER needs a text prompt: class names (texts="cat . dog", custom_entities=True), '
                          'a caption with the phrases to ground (tokens_positive=[...]) or an expression '
                          '(tokens_positive=-1)')
    if isinstance(custom_entities, (list, tuple)):
        flags = [bool(f) for f in _per_image(custom_entities, num_images, 'custom_entities')]
    else:
        flags = [bool(custom_entities)] * num_images
    if isinstance(texts, str):
        texts, positives = [texts] * num_images, [tokens_positive] * num_images
    else:
        if len(texts) != num_images:
            raise PromptError(f'texts has {len(texts)} entries for {num_images} image(s): give one text per image, '
                              "or one text for all (a string such as 'cat . dog' with custom_entities=True, or "
                              "[('cat', 'dog')] for one image)")
        if isinstance(tokens_positive, (list, tuple)):
            positives = [_check_tokens_positive_entry(e, i)
                         for i, e in enumerate(_per_image(tokens_positive, num_images, 'tokens_positive'))]
        else:
            positives = [_check_tokens_positive_entry(tokens_positive, 0)] * num_images
    prompts = []
    for i, (text, flag, positive) in enumerate(zip(texts, flags, positives)):
        if isinstance(text, str):
            names = expand(text) if expand is not None else None
            if names is not None:
                text, positive = names, None
        elif isinstance(text, (list, tuple)):
            if positive is not None:
                raise PromptError(f'texts[{i}] is a class list: it takes no tokens_positive (got {positive!r}); '
                                  'phrases and expressions need a caption string')
            text = tuple(text)
        else:
            raise PromptError(f'texts[{i}] = {text!r}: give a string (class names, a caption or an expression) '
                              'or a tuple of class names')
        prompts.append(ImagePrompt(text, flag, positive))
    return prompts
