"""jieba's words through textcls's block memo against plain jieba.lcut, on the same texts (#19).

textcls_core.text.tokenize._BlockMemo segments a text block by block (jieba.cut's own split at every character
outside its han pattern) and remembers each block's words, so a block seen before costs a lookup. This measures
what that buys on two workloads of a finished run, each started with an EMPTY memo in every round (only repeats
inside the workload count):
- stress: the stress stage's texts, 1,000 seeded test texts (stress.max_texts) as they are and under every built-in
  perturbation (18 x 1,000 texts, very_long included);
- corpus: the encode stage's texts, every prepared text of train, val and test.
Also the memo turned off (TEXTCLS_SEGMENT_MEMO_CHARS=0): the block split's own cost against jieba.lcut.
Same process, same timer, `--rounds` rounds in alternating order, the median kept; the words are checked equal.
Then the memory a memo holding every block of the encode texts takes (tracemalloc), per remembered character.

    .venv/bin/python benchmarks/segment_memo.py --run runs/<run> --rounds 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import jieba
import pandas as pd

from textcls_core.evaluation.stress import perturb_texts, perturbation_names, sample_rows
from textcls_core.runtime.config import StressConfig
from textcls_core.text.tokenize import _BlockMemo, _jieba


def _plain(texts: list[str]) -> list[list[str]]:
    lcut = jieba.lcut
    return [[w for w in lcut(t) if w.strip()] for t in texts]


def _memo(texts: list[str]) -> list[list[str]]:
    segment = _BlockMemo().segment  # empty at the start of every call
    return [segment(t) for t in texts]


def _memo_off(texts: list[str]) -> list[list[str]]:
    memo = _BlockMemo()
    memo.MAX_CHARS = 0  # TEXTCLS_SEGMENT_MEMO_CHARS=0: the block split without remembering (its own overhead)
    return [memo.segment(t) for t in texts]


def _timed(fn, texts: list[str]) -> tuple[float, list[list[str]]]:
    t0 = time.perf_counter()
    out = fn(texts)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="a finished run folder (data/*.parquet)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    run = Path(args.run)
    _jieba().initialize()
    test = pd.read_parquet(run / "data" / "test.parquet")
    cfg = StressConfig()
    sample = sample_rows(test, cfg.max_texts, 42)
    raw = sample["raw_text" if "raw_text" in sample.columns else "text"].astype(str).tolist()
    stress = raw + [t for name in perturbation_names(cfg) for t in perturb_texts(raw, name, cfg, 42)]
    corpus = [t for split in ("train", "val", "test") for t in pd.read_parquet(run / "data" / f"{split}.parquet")["text"].astype(str)]
    print(f"run {run}; {args.rounds} rounds, alternating order, median")
    for label, texts in (("stress", stress), ("corpus", corpus)):
        times: dict[str, list[float]] = {"_plain": [], "_memo": [], "_memo_off": []}
        fns = (_plain, _memo, _memo_off)
        for r in range(args.rounds):
            results = {}
            for fn in (fns if r % 2 == 0 else fns[::-1]):
                seconds, words = _timed(fn, texts)
                times[fn.__name__].append(seconds)
                results[fn.__name__] = words
            assert results["_plain"] == results["_memo"] == results["_memo_off"], "the memo changed the words"
        p, m, o = (statistics.median(times[k]) for k in ("_plain", "_memo", "_memo_off"))
        print(f"{label:7s} {len(texts):6d} texts {sum(map(len, texts)):>10,} chars   jieba.lcut {p:7.3f} s   memo {m:7.3f} s   "
              f"jieba/memo {p / m:5.2f}x   memo off {o:7.3f} s (off/jieba {o / p:4.2f})   (same words)")
    # memory: a memo holding every block of the encode texts (no emptying), measured with tracemalloc
    import tracemalloc

    memo = _BlockMemo()
    memo.MAX_CHARS = 10**12
    tracemalloc.start()
    for t in corpus:
        memo.segment(t)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"memory  {len(memo.words):,} blocks, {memo.chars:,} characters held: {held / 2**20:.1f} MiB "
          f"({held / max(memo.chars, 1):.0f} bytes per character; at the {_BlockMemo.MAX_CHARS:,}-character bound: "
          f"{held / max(memo.chars, 1) * _BlockMemo.MAX_CHARS / 2**20:.0f} MiB)")
    print(f"{platform.machine()}, python {platform.python_version()}, jieba {jieba.__version__}")


if __name__ == "__main__":
    main()
