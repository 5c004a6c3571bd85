"""Memory of a long-lived FIBERInferencer (a demo, a service) stays flat over hundreds of calls that each bring a
new prompt: every store the inference path keeps is bounded (toy config, a small image)."""
import functools
import gc
import os
import random
import sys

import numpy as np
import pytest

from fiber_mmdet.apis import FIBERInferencer
from fiber_mmdet.utils.lru_cache import LRUCache
from ..conftest import TOY_CONFIG

WARM_UP_CALLS = 40
MEASURED_CALLS = 200
RSS_BOUND_MIB = 6.0  # growth allowed after warm-up (measured: about 1 MiB, allocator noise)


def rss_mib() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def warning_registry_size() -> int:
    """Entries Python's warnings keep per (message, category, line): a message carrying the prompt grows them."""
    registries = (getattr(m, '__warningregistry__', None) for m in list(sys.modules.values()))
    return sum(len(r) for r in registries if isinstance(r, dict))


def new_prompt(call: int, rng: random.Random) -> dict:
    """A prompt never seen before: class names, a caption with two phrases, or an expression, in turn."""
    def word() -> str:
        return ''.join(rng.choice('abcdefghijklmnopqrstuvwxyzé猫🐱') for _ in range(rng.randint(3, 7)))

    kind = call % 3
    if kind == 0:
        return dict(texts=' . '.join(word() for _ in range(3)), custom_entities=True)
    if kind == 1:
        a, b = word(), word()
        return dict(texts=f'a {a} next to the {b}', tokens_positive=[a, b])
    return dict(texts=f'the {word()} on the left', tokens_positive=-1)


def bounded_stores(model) -> list:
    """(where, store) for every LRUCache of the model; a plain dict or list attribute named like a cache fails."""
    stores = []
    for name, module in model.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, LRUCache):
                stores.append((f'{name}.{attr}', value))
            elif 'cache' in attr.lower() and isinstance(value, (dict, list)):
                pytest.fail(f'{name}.{attr} is an unbounded {type(value).__name__} cache')
    return stores


def test_memory_stays_flat_over_hundreds_of_calls_with_new_prompts(toy_dir, toy_checkpoint):
    inferencer = FIBERInferencer(model=TOY_CONFIG, weights=toy_checkpoint, device='cpu', show_progress=False)
    model = inferencer.model
    model.test_cfg['text_cache_size'] = 16  # full after a few calls, so that the measured calls all evict
    image = (np.random.RandomState(0).rand(48, 48, 3) * 255).astype(np.uint8)
    rng = random.Random(0)
    for call in range(WARM_UP_CALLS):
        inferencer(image, **new_prompt(call, rng))
    gc.collect()
    start, start_warnings = rss_mib(), warning_registry_size()
    peak = start
    for call in range(WARM_UP_CALLS, WARM_UP_CALLS + MEASURED_CALLS):
        out = inferencer(image, **new_prompt(call, rng))
        if call % 20 == 0:
            gc.collect()
            peak = max(peak, rss_mib())
    assert len(out['predictions'][0]['labels']) > 0
    assert peak - start < RSS_BOUND_MIB, f'resident memory grew {peak - start:.1f} MiB over {MEASURED_CALLS} calls'
    assert warning_registry_size() - start_warnings <= 2
    stores = dict(bounded_stores(model))
    assert len(stores['._text_cache']) == 16 and len(stores['._prompt_cache']) == stores['._prompt_cache'].max_entries
    assert all(len(store) <= store.max_entries for store in stores.values())
    # functools caches of the package: all with a size limit
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith('fiber_mmdet'):
            for attr, value in vars(module).items():
                if isinstance(value, functools._lru_cache_wrapper):
                    assert value.cache_info().maxsize is not None, f'{module_name}.{attr} is an unbounded cache'
