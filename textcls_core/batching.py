"""Dataset and collate function: padding happens per batch, to that batch's longest sequence."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from textcls_core.tokenize import PAD_ID


class EncodedDataset(Dataset):
    """Token-id lists and integer labels (label -1 means unlabelled, for prediction)."""

    def __init__(self, ids: Sequence[Sequence[int]], labels: Sequence[int] | None = None):
        self.ids = ids
        self.labels = labels if labels is not None else [-1] * len(ids)
        if len(self.labels) != len(self.ids):
            raise ValueError(f"{len(self.ids)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[Sequence[int], int]:
        return self.ids[i], self.labels[i]


def collate_batch(batch: Sequence[tuple[Sequence[int], int]], max_len: int, min_len: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the batch's longest sequence (cut at max_len, at least min_len for the widest conv).

    Returns ids [B, T] long and labels [B] long: 1-D targets, as cross_entropy requires.
    """
    longest = max((len(ids) for ids, _ in batch), default=0)
    width = max(min(longest, max_len), min_len)
    out = torch.full((len(batch), width), PAD_ID, dtype=torch.long)
    for row, (ids, _) in enumerate(batch):
        ids = ids[:width]
        if len(ids):
            out[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
    labels = torch.tensor([label for _, label in batch], dtype=torch.long)
    return out, labels


class BucketBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of similar lengths, in random order: less padding per batch, same data per epoch.

    Indices are shuffled, cut into pools of `pool_batches` batches, sorted by length inside a pool,
    split into batches, and the batches are shuffled. Seeded by `generator`, so runs are repeatable.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, generator: torch.Generator | None = None, pool_batches: int = 50):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.generator = generator
        self.pool = batch_size * pool_batches

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        batches = []
        for start in range(0, len(order), self.pool):
            pool = sorted(order[start : start + self.pool], key=lambda i: self.lengths[i])
            batches += [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        for b in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[b]
