"""The inferencer's text arguments -> one prompt per image (string work, no model)."""
import pytest

from fiber_mmdet.utils import PromptError
from fiber_mmdet.utils.image_prompts import ImagePrompt, prompts_per_image


def coco(text: str):
    return ('person', 'bicycle') if text == '$: coco' else None


def test_one_text_for_every_image_as_in_mmdet():
    assert prompts_per_image(2, 'a man riding a horse', tokens_positive=['a man', 'a horse']) == [
        ImagePrompt('a man riding a horse', False, ['a man', 'a horse'])] * 2
    assert prompts_per_image(2, 'cat . dog', custom_entities=True) == [ImagePrompt('cat . dog', True, None)] * 2
    assert prompts_per_image(1, [('cat', 'dog')]) == [ImagePrompt(('cat', 'dog'), False, None)]
    assert prompts_per_image(2, '$: coco', expand=coco) == [ImagePrompt(('person', 'bicycle'), False, None)] * 2


def test_a_prompt_per_image():
    prompts = prompts_per_image(
        4, [('cat', 'dog'), 'a man riding a horse', 'the man on the left', '$: coco'],
        custom_entities=[False, False, False, True], tokens_positive=[None, ['a man', 'a horse'], -1, None],
        expand=coco)
    assert prompts == [ImagePrompt(('cat', 'dog'), False, None),
                       ImagePrompt('a man riding a horse', False, ['a man', 'a horse']),
                       ImagePrompt('the man on the left', False, -1),
                       ImagePrompt(('person', 'bicycle'), True, None)]
    # one value of tokens_positive / custom_entities for every per-image text
    assert [p.tokens_positive for p in prompts_per_image(2, ['the cat', 'the dog'], tokens_positive=-1)] == [-1, -1]
    assert [p.custom_entities for p in prompts_per_image(2, ['cat', 'dog'], custom_entities=True)] == [True, True]


@pytest.mark.parametrize('args, message', [
    (dict(texts=None), 'needs a text prompt'),
    (dict(texts=['cat', 'dog', 'bird']), 'texts has 3 entries for 2 image'),
    (dict(texts=['a cat', 'a dog'], tokens_positive=[['cat']]), 'tokens_positive has 1 entries'),
    (dict(texts=['a cat', 'a dog'], tokens_positive=['cat', 'dog']), r"tokens_positive\[0\] = 'cat'"),
    (dict(texts=[('cat',), 'a dog'], tokens_positive=[-1, None]), r'texts\[0\] is a class list'),
    (dict(texts=[3, 'a dog']), r'texts\[0\] = 3'),
    (dict(texts='cat', custom_entities=[True]), 'custom_entities has 1 entries'),
])
def test_arguments_that_do_not_fit_the_images_are_named(args, message):
    with pytest.raises(PromptError, match=message):
        prompts_per_image(2, **args)
