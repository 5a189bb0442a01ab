"""Subprocess body for the resume-after-kill test: `python tests/_resume_worker.py MODE CHECKPOINT OUT`.

MODE full: train without checkpoints; kill: checkpoint and SIGKILL itself right after the 4th checkpoint (step 15)
is on disk (a real kill -9, mid-epoch); resume: train with the same checkpoint path. OUT gets the history
and the final weights.
"""

import os
import signal
import sys
from functools import partial

import numpy as np
import torch

import textcls_core.training.loop as train_mod
from textcls_core.modeling.networks import TextCNN
from textcls_core.runtime.config import TrainConfig
from textcls_core.text.batching import EncodedDataset, collate_batch
from textcls_core.training.loop import configure_torch, set_seed, train_model


def data(n, seed):
    rng = np.random.default_rng(seed)
    ids, labels = [], []
    for i in range(n):
        y = int(rng.integers(0, 3))
        ids.append((rng.integers(2, 12, size=rng.integers(2, 15)) + 10 * y).tolist())
        labels.append(y)
    return EncodedDataset(ids, labels)


def main(mode: str, checkpoint: str, out: str) -> None:
    cfg = TrainConfig(epochs=3, batch_size=16, lr=5e-3, word_dropout=0.1, checkpoint_every=5, patience=0,
                      deterministic=True, progress=False, num_threads=1)
    configure_torch(cfg, torch.device("cpu"))
    set_seed(7)
    model = TextCNN(40, 3, embed_dim=16, num_filters=8, kernel_sizes=[1, 2], dropout=0.3)
    if mode == "kill":
        real, calls = train_mod.save_checkpoint, []

        def save_then_die(path, state):
            real(path, state)
            calls.append(path)
            if len(calls) == 4:
                os.kill(os.getpid(), signal.SIGKILL)

        train_mod.save_checkpoint = save_then_die
    result = train_model(model, data(200, 0), data(60, 1), cfg, torch.device("cpu"), 3,
                         partial(collate_batch, max_len=32, min_len=2), seed=3,
                         checkpoint_path=None if mode == "full" else checkpoint)
    torch.save({"state": model.state_dict(), "history": [{k: v for k, v in h.items() if k not in ("train_samples_per_s", "epoch_seconds")}
                                                        for h in result.history],
                "resumed_from_step": result.resumed_from_step}, out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
