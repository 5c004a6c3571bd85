"""A bounded least-recently-used store, for the model's caches of values that depend on inputs, not weights."""
from collections import OrderedDict
from typing import Any, Callable, Hashable, Iterator, Tuple


class LRUCache:
    """Keeps at most ``max_entries`` values; a new one drops the least recently used.

    Every cache of the model is bounded: a store keyed by image sizes or prompts that never forgets grows without
    end under multi-scale training, a demo or thousands of prompts.

    Args:
        max_entries (int): Values kept at most (at least 1). May be changed later; it applies at the next store.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: 'OrderedDict[Hashable, Any]' = OrderedDict()

    @property
    def max_entries(self) -> int:
        return self._max_entries

    @max_entries.setter
    def max_entries(self, value: int) -> None:
        if value < 1:
            raise ValueError(f'a cache needs max_entries >= 1, got {value}')
        self._max_entries = value

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[Hashable]:
        """The keys, least recently used first."""
        return iter(self._entries)

    def __getitem__(self, key: Hashable) -> Any:
        return self._entries[key]

    def items(self) -> Iterator[Tuple[Hashable, Any]]:
        return iter(self._entries.items())

    def clear(self) -> None:
        self._entries.clear()

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The value stored under ``key`` (now the most recently used), else ``build()``, stored."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = build()
        self._entries[key] = value
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return value
