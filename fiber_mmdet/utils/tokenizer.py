"""Offline RoBERTa-style tokenizers: train a byte-level BPE on local text and save it so that
``transformers.AutoTokenizer.from_pretrained(directory)`` loads it exactly like ``roberta-base``."""
import os
from typing import Iterable

ROBERTA_SPECIAL_TOKENS = ['<s>', '<pad>', '</s>', '<unk>', '<mask>']  # ids 0..4 as in roberta-base


def train_roberta_tokenizer(texts: Iterable[str], out_dir: str, vocab_size: int = 1000,
                            min_frequency: int = 1) -> str:
    """Train a byte-level BPE (the RoBERTa algorithm) on ``texts`` and save a fast RoBERTa tokenizer.

    ``<s>`` = 0, ``<pad>`` = 1, ``</s>`` = 2 as in roberta-base, so FIBER's pad/position conventions hold.

    Args:
        texts: training sentences.
        out_dir: directory to write (``vocab.json``, ``merges.txt``, ``tokenizer.json``, ``tokenizer_config.json``).
        vocab_size: target vocabulary size (bytes and special tokens included).
        min_frequency: minimum pair frequency for a merge.

    Returns:
        str: ``out_dir``.
    """
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    os.makedirs(out_dir, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=min_frequency,
                            special_tokens=ROBERTA_SPECIAL_TOKENS)
    bpe.save_model(out_dir)
    # Re-load through transformers so the saved directory has the same files and post-processor
    # (<s> ... </s>, offsets trimmed) as a hub RoBERTa tokenizer.
    tokenizer = RobertaTokenizerFast.from_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
