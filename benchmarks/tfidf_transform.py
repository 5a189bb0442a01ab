"""tfidf_lr features: the n-gram-string path (`_Block.transform` of char_ngrams / word_ngrams) against the
integer-keyed path prediction uses (`transform_chars` / `transform_words`), side by side in one process.

Same texts (a finished run's raw test texts, prepared and segmented once, outside the timing), same timer
(time.perf_counter around each call, the string path's timing includes making its n-gram strings, which the keyed
path does not need), alternating order, --rounds rounds, median. Also checks the two give the same matrix.

    .venv/bin/python benchmarks/tfidf_transform.py --run runs/<run> --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from textcls_core.modeling.classifiers import load_classifier
from textcls_core.modeling.tfidf import char_ngrams, word_ngrams
from textcls_core.text.tokenize import segment_texts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="run folder with candidates/tfidf_lr and data/test.parquet")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    run = Path(args.run)
    t0 = time.perf_counter()
    clf = load_classifier(run / "candidates" / "tfidf_lr")
    load_s = time.perf_counter() - t0
    test = pd.read_parquet(run / "data" / "test.parquet")
    prepared = clf.prepare(test["raw_text" if "raw_text" in test.columns else "text"].astype(str).tolist())
    words = segment_texts(prepared)
    s = clf.settings
    paths = {
        "char": (lambda: clf.blocks["char"].transform([char_ngrams(t, s.char_ngrams) for t in prepared]),
                 lambda: clf.blocks["char"].transform_chars(prepared, s.char_ngrams)),
        "word": (lambda: clf.blocks["word"].transform([word_ngrams(w, s.word_ngrams) for w in words]),
                 lambda: clf.blocks["word"].transform_words(words, s.word_ngrams)),
    }
    print(f"{len(prepared)} texts; model load (keyed tables included) {load_s:.2f} s")
    for block, (strings, keyed) in paths.items():
        a, b = strings(), keyed()
        assert a.shape == b.shape and abs(a - b).max() < 1e-12, block
        times: dict[str, list[float]] = {"strings": [], "keyed": []}
        for r in range(args.rounds):
            order = [("strings", strings), ("keyed", keyed)] if r % 2 == 0 else [("keyed", keyed), ("strings", strings)]
            for name, fn in order:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        ms, mk = statistics.median(times["strings"]), statistics.median(times["keyed"])
        print(f"{block}: strings {ms:.4f} s, keyed {mk:.4f} s, ratio {ms / mk:.1f}x (max difference {abs(a - b).max():.1e}, "
              f"{np.count_nonzero(b.toarray()) if b.shape[0] < 5000 else b.nnz} non-zeros)")


if __name__ == "__main__":
    main()
