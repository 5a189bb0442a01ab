"""Test accuracy of a word model (default: conf/default.yaml's TextCNN) against TF-IDF + logistic regression, same splits.

For each seed: clean and split the built-in corpus as the pipeline does, train the config's model
(model selection on val), and fit word 1-2-gram TF-IDF + logistic regression on the same train
split; print both test accuracies.
Run: .venv/bin/python benchmarks/accuracy.py --seeds 42 1 2 [--config conf/bilstm.yaml]
"""

from __future__ import annotations

import argparse
import platform
import time
from functools import partial

import numpy as np
import sklearn
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from torch.utils.data import DataLoader

from textcls_core.dataset.clean import clean_dataset
from textcls_core.dataset.read import read_dataset
from textcls_core.dataset.split import split_dataset
from textcls_core.modeling.networks import build_model, min_batch_len
from textcls_core.runtime.config import Config, load_config
from textcls_core.text.batching import EncodedDataset, collate_batch
from textcls_core.text.tokenize import build_vocab, encode_tokens, segment_texts
from textcls_core.training.loop import evaluate_model, set_seed, train_model


def _ngrams(words: list[str]) -> list[str]:
    return words + [a + " " + b for a, b in zip(words, words[1:])]


def run_seed(seed: int, kept, cfg: Config) -> tuple[float, float, float]:
    cfg.train.progress = False
    parts = split_dataset(kept, cfg.split.val_fraction, cfg.split.test_fraction, seed)
    tokens = {k: segment_texts(v["text"]) for k, v in parts.items()}
    labels = sorted(parts["train"]["label"].unique())
    y = {k: [labels.index(x) for x in v["label"]] for k, v in parts.items()}

    itos = build_vocab(tokens["train"], cfg.tokenize.min_freq, cfg.tokenize.max_vocab)
    stoi = {w: i for i, w in enumerate(itos)}
    data = {k: EncodedDataset(encode_tokens(tokens[k], stoi, cfg.tokenize.max_len), y[k]) for k in parts}
    collate = partial(collate_batch, max_len=cfg.tokenize.max_len, min_len=min_batch_len(cfg.model))
    set_seed(seed)
    test = DataLoader(data["test"], batch_size=256, collate_fn=collate)
    t0 = time.perf_counter()
    model = build_model(cfg.model, len(itos), len(labels))
    train_model(model, data["train"], data["val"], cfg.train, torch.device("cpu"), len(labels), collate, seed=seed)
    cnn_acc = evaluate_model(model, test, torch.device("cpu"), len(labels))["val_accuracy"]
    cnn_s = time.perf_counter() - t0

    vec = TfidfVectorizer(analyzer=_ngrams, sublinear_tf=True)
    lr = LogisticRegression(C=4, max_iter=2000).fit(vec.fit_transform(tokens["train"]), y["train"])
    lr_acc = float(np.mean(lr.predict(vec.transform(tokens["test"])) == np.array(y["test"])))
    return cnn_acc, lr_acc, cnn_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--config", default="conf/default.yaml")
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. train.epochs=3")
    args = parser.parse_args()
    cfg = load_config(args.config, args.set)
    name = cfg.model.name
    kept, _, _ = clean_dataset(read_dataset(cfg.data.path), cfg.clean)
    rows = []
    for seed in args.seeds:
        cnn, lr, secs = run_seed(seed, kept, cfg.model_copy(deep=True))
        rows.append((cnn, lr))
        print(f"seed {seed:3d}: {name} {cnn:.4f} ({secs:.0f} s)   TF-IDF+LR {lr:.4f}   difference {cnn - lr:+.4f}", flush=True)
    cnn_m, lr_m = np.mean(rows, axis=0)
    print(f"mean over {len(rows)} seeds: {name} {cnn_m:.4f}   TF-IDF+LR {lr_m:.4f}   ratio {cnn_m / lr_m:.3f}")
    print(f"torch {torch.__version__}, scikit-learn {sklearn.__version__}, python {platform.python_version()}, {platform.machine()}")


if __name__ == "__main__":
    main()
