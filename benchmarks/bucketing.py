"""One training epoch of the default TextCNN on the built-in corpus: random batches vs length-bucketed batches.

Same data, same model, same batch size, same optimiser step (textcls_core.training.loop's loss and AdamW), in one
process; prints seconds per epoch and the ratio.
Run: .venv/bin/python benchmarks/bucketing.py [--epochs 1]
"""

from __future__ import annotations

import argparse
import platform
import time
from functools import partial

import torch
from torch.utils.data import DataLoader

from textcls_core.dataset.clean import clean_dataset
from textcls_core.dataset.read import read_dataset
from textcls_core.dataset.split import split_dataset
from textcls_core.modeling.predictor import build_model
from textcls_core.runtime.config import Config
from textcls_core.text.batching import BucketBatchSampler, EncodedDataset, collate_batch
from textcls_core.text.tokenize import build_vocab, encode_tokens, segment_texts
from textcls_core.training.loop import classification_loss, make_optimizer, set_seed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    cfg = Config()
    cfg.train.epochs, cfg.train.progress, cfg.train.patience = args.epochs, False, 0
    kept, _, _ = clean_dataset(read_dataset(cfg.data.path), cfg.clean)
    parts = split_dataset(kept, cfg.split.val_fraction, cfg.split.test_fraction, cfg.run.seed)
    tokens = {k: segment_texts(v["text"]) for k, v in parts.items()}
    itos = build_vocab(tokens["train"], cfg.tokenize.min_freq, cfg.tokenize.max_vocab)
    stoi = {w: i for i, w in enumerate(itos)}
    labels = sorted(parts["train"]["label"].unique())
    data = {k: EncodedDataset(encode_tokens(tokens[k], stoi, cfg.tokenize.max_len), [labels.index(x) for x in parts[k]["label"]])
            for k in ("train", "val")}
    collate = partial(collate_batch, max_len=cfg.tokenize.max_len, min_len=max(cfg.model.kernel_sizes))
    results = {}
    for name in ("random", "bucketed"):
        set_seed(cfg.run.seed)
        g = torch.Generator().manual_seed(cfg.run.seed)
        if name == "random":
            loader = DataLoader(data["train"], batch_size=cfg.train.batch_size, shuffle=True, generator=g, collate_fn=collate)
        else:
            sampler = BucketBatchSampler([len(x) for x in data["train"].ids], cfg.train.batch_size, g)
            loader = DataLoader(data["train"], batch_sampler=sampler, collate_fn=collate)
        model = build_model(cfg.model, len(itos), len(labels))
        optimizer = make_optimizer(model, cfg.train, torch.device("cpu"))
        model.train()
        t0 = time.perf_counter()
        tokens_padded = 0
        for _ in range(args.epochs):
            for ids, y in loader:
                loss = classification_loss(model(ids), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                tokens_padded += ids.numel()
        results[name] = (time.perf_counter() - t0) / args.epochs, tokens_padded / args.epochs
        print(f"{name:9s} {results[name][0]:7.1f} s/epoch   {results[name][1]:.0f} padded tokens/epoch", flush=True)
    print(f"speed-up (random / bucketed): {results['random'][0] / results['bucketed'][0]:.2f}x")
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, python {platform.python_version()}")


if __name__ == "__main__":
    main()
