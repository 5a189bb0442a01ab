"""Bounded work per text (#11): what one long unpunctuated text costs, unbounded vs through the run's encoder.

    .venv/bin/python benchmarks/long_text.py [--max-len 256]

Prints jieba's time on unpunctuated runs of growing length (its HMM path copy is quadratic in the run) and the
time of TextEncoder.encode (cut raw text, clean, cut cleaned text, segment, ids) on a 1,000,000-character text,
side by side in one process.
"""

from __future__ import annotations

import argparse
import time

from textcls_core.dataset.clean import text_limits
from textcls_core.runtime.config import CleanConfig
from textcls_core.text.encoders import TextEncoder, WordEncoder
from textcls_core.text.tokenize import segment_texts


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-len", type=int, default=256)
    args = ap.parse_args()
    segment_texts(["预热"])  # load jieba's dictionary outside the timings
    text = "差" * 1_000_000
    print(f"{'text':<44} {'seconds':>8}")
    for n in (5_000, 10_000, 20_000):
        print(f"{f'jieba, unbounded, {n:,} chars':<44} {timed(lambda: segment_texts([text[:n]])):8.3f}")
    enc = TextEncoder(CleanConfig(), WordEncoder(["<pad>", "<unk>", "差"], args.max_len))
    raw_limit, clean_limit = text_limits(args.max_len)
    ids: list = []
    s = timed(lambda: ids.append(enc.encode([text])))
    print(f"{'TextEncoder.encode, 1,000,000 chars':<44} {s:8.3f}   (cut to {raw_limit:,} raw / {clean_limit:,} clean chars, "
          f"{len(ids[0][0])} ids)")


if __name__ == "__main__":
    main()
