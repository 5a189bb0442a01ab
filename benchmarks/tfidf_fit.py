"""Fitting a tfidf_lr block: sklearn's TfidfVectorizer on n-gram strings (`_fit_block`, the code before session 8)
against the integer-keyed count (`fit_block`, what the candidates stage runs now), side by side in one process.

Same texts (a finished run's train split, prepared and segmented once, outside the timing), same settings as the
default config (char 1-3-grams, word 1-2-grams, min_df 2), same timer (time.perf_counter around each call; the
string path's timing includes making its n-gram strings), alternating order, --rounds rounds, median. Checks that
the two give the same vocabulary, idf and training matrix, entry order included (bit for bit).

    .venv/bin/python benchmarks/tfidf_fit.py --run runs/<run> --rounds 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn

from textcls_core.dataset.clean import prepare_texts
from textcls_core.modeling.tfidf import TfidfSettings, _fit_block, char_ngrams, fit_block, word_ngrams
from textcls_core.runtime.config import CleanConfig
from textcls_core.text.tokenize import segment_texts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="a finished run folder (data/train.parquet)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    train = pd.read_parquet(Path(args.run) / "data" / "train.parquet")
    s = TfidfSettings()
    texts = prepare_texts(train["raw_text" if "raw_text" in train.columns else "text"].astype(str).tolist(), CleanConfig(), s.max_len)
    words = segment_texts(texts)
    n_max = {"char": s.char_ngrams, "word": s.word_ngrams}
    paths = {
        "strings": lambda kind: _fit_block([char_ngrams(t, n_max["char"]) for t in texts] if kind == "char"
                                           else [word_ngrams(w, n_max["word"]) for w in words], s.min_df),
        "keyed": lambda kind: fit_block(kind, texts, words, n_max[kind], s.min_df),
    }
    print(f"{len(texts)} train texts of {args.run}; {args.rounds} rounds, alternating order, median")
    for kind in ("char", "word"):
        times: dict[str, list[float]] = {name: [] for name in paths}
        out = {}
        for r in range(args.rounds):
            for name in (list(paths) if r % 2 == 0 else list(paths)[::-1]):
                t0 = time.perf_counter()
                out[name] = paths[name](kind)
                times[name].append(time.perf_counter() - t0)
        (a, xa), (b, xb) = out["strings"], out["keyed"]
        same = (a.vocab == b.vocab and np.array_equal(a.idf, b.idf) and np.array_equal(xa.indptr, xb.indptr)
                and np.array_equal(xa.indices, xb.indices) and np.array_equal(xa.data, xb.data))
        ms, mk = statistics.median(times["strings"]), statistics.median(times["keyed"])
        print(f"{kind:5s} vocabulary {len(b.vocab):7d}  strings {ms:6.3f} s  keyed {mk:6.3f} s  {ms / mk:5.2f}x  "
              f"identical: {same}")
    print(f"{platform.machine()}, python {platform.python_version()}, scikit-learn {sklearn.__version__}")


if __name__ == "__main__":
    main()
