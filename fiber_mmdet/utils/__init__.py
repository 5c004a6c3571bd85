from .positive_map import PositiveMap, build_positive_map, label_to_token_indices
from .prompts import PromptError, build_class_prompt, chunk_class_names, clean_name
from .tokenizer import train_roberta_tokenizer

__all__ = [
    'PositiveMap', 'PromptError', 'build_positive_map', 'label_to_token_indices', 'build_class_prompt', 'chunk_class_names',
    'clean_name', 'train_roberta_tokenizer'
]
