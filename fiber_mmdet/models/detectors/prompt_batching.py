"""Test time: the (image, prompt) pairs of a batch through FIBER's text-dependent part a few at a time.

Everything after the text-free parts (the fused blocks with their text layers, the neck, the head's forward)
treats the rows of a batch independently in eval mode (LayerNorm per token, GroupNorm and DyReLU's pooling per
sample, BatchNorm with its running statistics), so the prompts of an image can run as one batch, each row its
image's text-free state with one prompt's text-free text; post-processing then runs per row with that row's
prompt. The detector uses these helpers (:meth:`FIBER.predict`).
"""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

#: ``(image index in the batch, prompt index within that image's prompts)``.
Pair = Tuple[int, int]


def prompt_batches(num_prompts: Sequence[int], batch_size: int) -> List[List[Pair]]:
    """Cut the (image, prompt) pairs of a batch, image after image and prompt after prompt, into runs of at most
    ``batch_size`` pairs (the last one may be shorter; a run may span two images).

    Args:
        num_prompts: the number of prompts of each image.
        batch_size: most pairs per forward (``test_cfg.prompt_batch_size``), >= 1.

    Example:
        >>> prompt_batches([3, 2], 2)
        [[(0, 0), (0, 1)], [(0, 2), (1, 0)], [(1, 1)]]
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f'test_cfg.prompt_batch_size must be an integer >= 1, got {batch_size!r}')
    pairs = [(i, j) for i, n in enumerate(num_prompts) for j in range(n)]
    return [pairs[k:k + batch_size] for k in range(0, len(pairs), batch_size)]


def stack_texts(captions: Sequence[str], entries: Dict[str, Tuple[Tensor, Tensor]]) -> Tuple[Tensor, Tensor]:
    """The text-free text states and masks of a run of prompts, one row per prompt.

    Args:
        captions: the caption of each row (N).
        entries: caption -> (attention mask (1, T_c), text-free states (1, T_c, D)).

    Returns:
        tuple: states (N, T, D) and attention masks (N, T). Captions padded to ``max_tokens`` (FIBER) all have
        the same T; otherwise (``pad_to_max=False``) shorter ones get zero states and mask 0 up to the longest,
        which no valid token attends to. One caption repeated is an expanded view, not a copy.
    """
    n = len(captions)
    if len(set(captions)) == 1:
        mask, text = entries[captions[0]]
        return text.expand(n, -1, -1), mask.expand(n, -1)
    longest = max(entries[c][0].shape[1] for c in captions)
    masks, texts = [], []
    for c in captions:
        mask, text = entries[c]
        pad = longest - mask.shape[1]
        masks.append(F.pad(mask, (0, pad)) if pad else mask)
        texts.append(F.pad(text, (0, 0, 0, pad)) if pad else text)
    return torch.cat(texts), torch.cat(masks)
