"""Dataset, collate function and batch sampler: padding happens per batch, to that batch's longest sequence."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Dataset

from textcls_core.text.tokenize import PAD_ID


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


def padded_width(longest: int, max_len: int, min_len: int = 1, buckets: Sequence[int] = ()) -> int:
    """Batch width: the longest text, rounded up to the next bucket size if buckets are given, within [min_len, max_len].

    Fixed bucket sizes mean torch.compile (and CUDA graphs) see a handful of shapes instead of one per batch.
    """
    width = min(longest, max_len)
    if buckets:
        sizes = sorted(b for b in buckets if b <= max_len) or [max_len]
        i = bisect.bisect_left(sizes, width)
        width = sizes[i] if i < len(sizes) else max_len
    return max(width, min_len)


def collate_batch(batch: Sequence[tuple[Sequence[int], int]], max_len: int, min_len: int = 1, pad_id: int = PAD_ID,
                  buckets: Sequence[int] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the batch's longest sequence (cut at max_len, at least min_len for the widest conv).

    Pads go at the end. Returns ids [B, T] long and labels [B] long: 1-D targets, as cross_entropy requires.
    """
    longest = max((len(ids) for ids, _ in batch), default=0)
    width = padded_width(longest, max_len, min_len, buckets)
    out = torch.full((len(batch), width), pad_id, dtype=torch.long)
    for row, (ids, _) in enumerate(batch):
        ids = ids[:width]
        if len(ids):
            out[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
    labels = torch.tensor([label for _, label in batch], dtype=torch.long)
    return out, labels


class BucketBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of similar lengths, in random order: less padding per batch, same data per epoch.

    Indices are shuffled, cut into pools of `pool_batches` batches, sorted by length inside a pool,
    split into batches (of `batch_size` rows, or of at most `max_tokens` padded tokens when set), and
    the batches are shuffled. Seeded by `generator`, so runs are repeatable.

    Resume: `epoch_start_state` is the generator state the current epoch started from; restoring it with
    `resume(state, start_batch)` replays the same epoch and skips the batches already trained on.
    Distributed: every rank builds the same global batches and takes its slice `batch[rank::world_size]`;
    a batch smaller than world_size joins the one before it, so no rank ever gets an empty batch.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, generator: torch.Generator | None = None,
                 pool_batches: int = 50, max_tokens: int = 0, max_len: int = 10**9, rank: int = 0, world_size: int = 1):
        self.lengths = [min(n, max_len) for n in lengths]
        self.batch_size = batch_size
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.pool = batch_size * pool_batches
        self.max_tokens = max_tokens
        self.rank, self.world_size = rank, world_size
        self.epoch_start_state = self.generator.get_state()
        self.start_batch = 0
        self._pending: list[list[int]] | None = None

    def resume(self, state: torch.Tensor, start_batch: int) -> None:
        self.generator.set_state(state)
        self.start_batch = start_batch
        self._pending = None

    def _split_pool(self, pool: list[int]) -> list[list[int]]:
        if not self.max_tokens:
            return [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        batches, cur, widest = [], [], 0
        for i in pool:  # pool is sorted by length, so the newest row is the widest
            w = max(widest, self.lengths[i], 1)
            if cur and (len(cur) + 1) * w > self.max_tokens:
                batches.append(cur)
                cur, w = [], max(self.lengths[i], 1)
            cur.append(i)
            widest = w
        return batches + ([cur] if cur else [])

    def _global_batches(self) -> list[list[int]]:
        self.epoch_start_state = self.generator.get_state()
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        batches: list[list[int]] = []
        for start in range(0, len(order), self.pool):
            pool = sorted(order[start : start + self.pool], key=lambda i: self.lengths[i])
            batches += self._split_pool(pool)
        batches = [batches[b] for b in torch.randperm(len(batches), generator=self.generator).tolist()]
        if self.world_size > 1:  # every rank needs at least one row of every batch
            merged: list[list[int]] = []
            for b in batches:
                if merged and (len(b) < self.world_size or len(merged[-1]) < self.world_size):
                    merged[-1] = merged[-1] + b
                else:
                    merged.append(b)
            batches = merged
        return batches

    def epoch_lengths(self, epochs: int) -> list[int]:
        """Batches in each of the next `epochs` epochs, without moving the generator (the scheduler's total)."""
        if not self.max_tokens and self.world_size == 1:
            return [len(self)] * epochs
        state, start = self.generator.get_state(), self.epoch_start_state
        counts = [len(self._global_batches()) for _ in range(epochs)]
        self.generator.set_state(state)
        self.epoch_start_state = start
        return counts

    def __len__(self) -> int:
        if not self.max_tokens and self.world_size == 1:
            return (len(self.lengths) + self.batch_size - 1) // self.batch_size
        if self._pending is None:  # building the epoch's batches advances the generator: keep them for __iter__
            self._pending = self._global_batches()
        return len(self._pending)

    def __iter__(self) -> Iterator[list[int]]:
        if self._pending is not None:  # built by __len__, which also recorded epoch_start_state
            batches, self._pending = self._pending, None
        else:
            batches = self._global_batches()
        start, self.start_batch = self.start_batch, 0
        for b in batches[start:]:
            yield b[self.rank :: self.world_size]
