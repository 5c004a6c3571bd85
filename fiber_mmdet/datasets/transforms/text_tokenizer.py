"""A tokenizer handle that data transforms can carry into dataloader workers.

The Hugging Face tokenizer is built lazily on first use and is never pickled, so each dataloader worker loads it
once (from a hub name or a local directory) instead of the main process shipping a copy to every worker.
"""
from typing import Any, Dict


class LazyTokenizer:
    """Load ``transformers.AutoTokenizer.from_pretrained(name)`` on first access.

    Args:
        name (str): a Hugging Face hub name (``'roberta-base'``) or a local tokenizer directory, e.g. the one
            written by :func:`fiber_mmdet.utils.train_roberta_tokenizer`.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer
            self._tokenizer = AutoTokenizer.from_pretrained(self.name)
        return self._tokenizer

    def __getstate__(self) -> Dict[str, Any]:
        # Workers rebuild their own copy; a loaded tokenizer is never sent through pickle.
        return {'name': self.name, '_tokenizer': None}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f'LazyTokenizer({self.name!r})'
