"""Should tfidf_lr be refitted on train + validation once validation has chosen its settings? Judged on validation only.

The question is about a procedure, so it is tested one level down, where the real validation split plays the part of
unseen data: for each (rows, seed), split as the pipeline does (train / val / test; test is never read here), then split
the TRAIN part again into an inner train and an inner validation of the pipeline's validation share (same seed,
stratified). Procedure A is what the run did before: fit_tfidf_lr on inner train with its settings picked on inner
validation. Procedure B picks the same way, then refits those settings (vocabularies, idf and regression) on inner
train + inner validation with `refit_tfidf_lr`, the function the run uses (model.tfidf_refit). Both are scored on the real validation split; the paired difference B - A, per seed, is
the evidence.

Run: .venv/bin/python benchmarks/refit.py --rows 0 --seeds 42 1 2
     .venv/bin/python benchmarks/refit.py --rows 300 800 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import pandas as pd
import sklearn
from sklearn.model_selection import train_test_split

from benchmarks.candidates import stratified_slice
from textcls_core.dataset.clean import clean_dataset, prepare_texts
from textcls_core.dataset.read import read_dataset
from textcls_core.dataset.split import class_labels, split_dataset
from textcls_core.modeling.tfidf import TfidfSettings, fit_tfidf_lr, refit_tfidf_lr
from textcls_core.runtime.config import Config, load_config
from textcls_core.text.tokenize import segment_texts
from textcls_core.training.candidates import paired_se, score


def run_case(kept: pd.DataFrame, rows: int, seed: int, cfg: Config) -> dict:
    t0 = time.perf_counter()
    data = stratified_slice(kept, rows, seed)
    parts = split_dataset(data, cfg.split.val_fraction, cfg.split.test_fraction, seed)
    train, val = parts["train"], parts["val"]
    labels = class_labels(train)
    inner_share = len(val) / len(train)
    strat = train["label"] if train["label"].value_counts().min() >= 2 else None
    tr, iv = train_test_split(train, test_size=inner_share, random_state=seed, stratify=strat)
    frames = {"tr": tr, "iv": iv, "val": val}
    y = {k: np.array([labels.index(x) for x in f["label"]]) for k, f in frames.items()}
    raw = {k: f["raw_text" if "raw_text" in f.columns else "text"].tolist() for k, f in frames.items()}
    prep = {k: prepare_texts(raw[k], cfg.clean, cfg.tokenize.max_len) for k in frames}
    words = {k: segment_texts(prep[k]) for k in frames}
    m = cfg.model
    base = TfidfSettings(m.tfidf_char_ngrams, m.tfidf_word_ngrams, m.tfidf_min_df, cfg.tokenize.max_len)
    key = cfg.train.select_metric
    a = fit_tfidf_lr(prep["tr"], y["tr"], prep["iv"], y["iv"], labels, cfg.clean, base, m.tfidf_features, m.tfidf_c,
                     key, words=(words["tr"], words["iv"]), prepared=True)
    b = refit_tfidf_lr(a, prep["tr"] + prep["iv"], np.concatenate([y["tr"], y["iv"]]), words["tr"] + words["iv"], prepared=True)
    pa = a.proba_from_features(a.features(prep["val"], words["val"]))
    pb = b.proba_from_features(b.features(prep["val"], words["val"]))
    sa, sb = score(y["val"], pa, labels), score(y["val"], pb, labels)
    return {"rows": rows or len(kept), "seed": seed, "n_inner_train": len(tr), "n_inner_val": len(iv), "n_val": len(val),
            "features": a.settings.features, "c": a.settings.c,
            "a_val_macro_f1": sa["macro_f1"], "b_val_macro_f1": sb["macro_f1"],
            "a_val_accuracy": sa["accuracy"], "b_val_accuracy": sb["accuracy"],
            "paired_se_macro_f1": paired_se(y["val"], pb, pa, "val_macro_f1", seed=seed),
            "seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[0], help="slice sizes; 0 = the whole cleaned corpus")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--config", default="conf/default.yaml")
    parser.add_argument("--data", default="", help="another labelled file instead of the config's data.path")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    cfg = load_config(args.config, ["train.progress=false", *([f"data.path={args.data}"] if args.data else [])])
    kept = clean_dataset(read_dataset(cfg.data.path), cfg.clean)[0]
    rows = []
    for n in args.rows:
        for seed in args.seeds:
            r = run_case(kept, n, seed, cfg)
            rows.append(r)
            print(f"rows {r['rows']:6d} seed {seed:3d}: val macro-F1 A {r['a_val_macro_f1']:.4f}  B (refit) "
                  f"{r['b_val_macro_f1']:.4f}  B-A {r['b_val_macro_f1'] - r['a_val_macro_f1']:+.4f} "
                  f"(paired se {r['paired_se_macro_f1']:.4f}; {r['features']}, C={r['c']:g}; {r['seconds']:.0f} s)", flush=True)
            if args.json:
                with open(args.json, "w", encoding="utf-8") as f:
                    json.dump(rows, f, indent=1)
    for n in sorted({r["rows"] for r in rows}):
        rs = [r for r in rows if r["rows"] == n]
        d = [r["b_val_macro_f1"] - r["a_val_macro_f1"] for r in rs]
        print(f"\n{n} rows, {len(rs)} seeds: val macro-F1 A {np.mean([r['a_val_macro_f1'] for r in rs]):.4f} "
              f"+- {np.std([r['a_val_macro_f1'] for r in rs]):.4f}, B {np.mean([r['b_val_macro_f1'] for r in rs]):.4f} "
              f"+- {np.std([r['b_val_macro_f1'] for r in rs]):.4f}; B-A mean {np.mean(d):+.4f}, per seed "
              + " / ".join(f"{x:+.4f}" for x in d))
    print(f"\nscikit-learn {sklearn.__version__}, python {platform.python_version()}, {platform.machine()}")


if __name__ == "__main__":
    main()
