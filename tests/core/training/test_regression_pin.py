"""A pinned regression run: a deterministic tiny CPU training whose per-epoch losses are fixed numbers (as
torchtune's recipe tests pin losses). A silent change in the loop (order of batches, loss reduction, schedule,
initialisation, padding) moves them; an intended change updates the numbers here in the same commit."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from textcls_core.modeling.networks import TextCNN
from textcls_core.runtime.config import TrainConfig
from textcls_core.text.batching import EncodedDataset, collate_batch
from textcls_core.training.loop import set_seed, train_model

# per-epoch (train_loss, val_loss) of the run below with torch 2.x on CPU, one thread
PINNED = [(0.702729, 0.69158), (0.681364, 0.687485), (0.694883, 0.68605)]


def _data(n: int, seed: int) -> EncodedDataset:
    rng = np.random.default_rng(seed)
    ids, labels = [], []
    for i in range(n):
        y = i % 2
        ids.append((rng.integers(2, 10, size=int(rng.integers(3, 12))) + 8 * y).tolist())
        labels.append(y)
    return EncodedDataset(ids, labels)


def test_pinned_losses_of_a_tiny_deterministic_run():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        set_seed(0)
        model = TextCNN(20, 2, embed_dim=8, num_filters=4, kernel_sizes=[2, 3])
        cfg = TrainConfig(epochs=3, batch_size=16, lr=1e-3, progress=False, patience=0, deterministic=True, checkpoint_every=0,
                          lr_schedule="linear", warmup_ratio=0.1)
        collate = partial(collate_batch, max_len=32, min_len=3)
        result = train_model(model, _data(96, 0), _data(32, 1), cfg, torch.device("cpu"), 2, collate, seed=0)
    finally:
        torch.set_num_threads(threads)
    got = [(round(row["train_loss"], 6), round(row["val_loss"], 6)) for row in result.history]
    assert np.allclose(got, PINNED, rtol=0, atol=2e-6), f"losses moved: {got}"
