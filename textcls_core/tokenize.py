"""jieba segmentation, a vocabulary built from train only, and token ids."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence

import jieba

jieba.setLogLevel(logging.WARNING)  # jieba prints its dictionary loading to stderr otherwise

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1


def segment_texts(texts: Iterable[str]) -> list[list[str]]:
    """jieba words per text, whitespace-only tokens removed."""
    return [[w for w in jieba.lcut(t) if w.strip()] for t in texts]


def build_vocab(token_lists: Iterable[Sequence[str]], min_freq: int = 2, max_size: int = 50000) -> list[str]:
    """Index-to-token list: <pad>=0, <unk>=1, then words by descending frequency (ties alphabetical)."""
    counts = Counter(w for toks in token_lists for w in toks)
    words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    return [PAD, UNK] + words[: max(0, max_size - 2)]


def encode_tokens(token_lists: Iterable[Sequence[str]], stoi: dict[str, int], max_len: int) -> list[list[int]]:
    """Token ids per text, cut to max_len. No padding here: batches are padded by the collate function."""
    return [[stoi.get(w, UNK_ID) for w in toks[:max_len]] for toks in token_lists]


def oov_rate(token_lists: Iterable[Sequence[str]], stoi: dict[str, int]) -> float:
    """Share of tokens that map to <unk>."""
    total = unk = 0
    for toks in token_lists:
        total += len(toks)
        unk += sum(1 for w in toks if w not in stoi)
    return unk / total if total else 0.0
