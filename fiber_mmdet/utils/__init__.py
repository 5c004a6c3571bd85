"""Small shared helpers. Prompt planning (:mod:`.prompts`, :mod:`.grounding_prompts`, :mod:`.token_spans`,
:mod:`.prompt_plan`) needs no torch, so the ONNX runtime (:mod:`fiber_mmdet.runtime`) uses it on machines with
only onnxruntime; the tensor helpers (:mod:`.positive_map`) are imported on first use."""
from .prompt_plan import Prompt, PromptPlanner
from .prompts import PromptError, build_class_prompt, chunk_class_names, clean_name
from .tokenizer import train_roberta_tokenizer

_TENSOR_HELPERS = ('PositiveMap', 'build_positive_map', 'label_to_token_indices')


def __getattr__(name: str):
    if name in _TENSOR_HELPERS:
        from . import positive_map
        return getattr(positive_map, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = [
    'PositiveMap', 'Prompt', 'PromptError', 'PromptPlanner', 'build_positive_map', 'label_to_token_indices',
    'build_class_prompt', 'chunk_class_names', 'clean_name', 'train_roberta_tokenizer'
]
