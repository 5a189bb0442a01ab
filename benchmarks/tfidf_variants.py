"""tfidf_lr design choices, judged on VALIDATION over split seeds (the test column is printed for the record only).

For each (rows, seed): the pipeline's cleaning, stratified slice and split (as benchmarks/candidates.py), then
`fit_tfidf_lr` (the candidates stage's own fit, settings picked on validation) under each variant of the config's
tfidf keys. Prints mean +- std of val and test macro-F1 per variant; the word 1-2-gram C=4 reference beside them.

Run: .venv/bin/python benchmarks/tfidf_variants.py --rows 0 --seeds 42 1 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from benchmarks.candidates import split_case
from textcls_core.dataset.clean import clean_dataset
from textcls_core.dataset.read import read_dataset
from textcls_core.modeling.tfidf import TfidfSettings, fit_tfidf_lr, word_ngrams
from textcls_core.runtime.config import load_config
from textcls_core.training.candidates import score

VARIANTS = {  # name -> (char n, word n, min_df, feature sets, C values)
    "default": (3, 2, 2, ["char+word", "char", "word"], [1.0, 4.0, 16.0]),
    "char4": (4, 2, 2, ["char+word", "char", "word"], [1.0, 4.0, 16.0]),
    "char5": (5, 2, 2, ["char+word", "char", "word"], [1.0, 4.0, 16.0]),
    "word3": (3, 3, 2, ["char+word", "char", "word"], [1.0, 4.0, 16.0]),
    "char4_word3": (4, 3, 2, ["char+word", "char", "word"], [1.0, 4.0, 16.0]),
    "min_df1": (3, 2, 1, ["char+word", "char", "word"], [1.0, 4.0, 16.0]),
    "c_fine": (3, 2, 2, ["char+word", "char", "word"], [2.0, 4.0, 8.0]),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--config", default="conf/default.yaml")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    cfg = load_config(args.config, ["train.progress=false"])
    kept = clean_dataset(read_dataset(cfg.data.path), cfg.clean)[0]
    out = []
    for n in args.rows:
        for seed in args.seeds:
            labels, y, prepared, words = split_case(kept, n, seed, cfg)
            vec = TfidfVectorizer(analyzer=lambda ws: word_ngrams(ws, 2), sublinear_tf=True)
            ref = LogisticRegression(C=4, max_iter=2000).fit(vec.fit_transform(words["train"]), y["train"])
            ref_test = np.zeros((len(y["test"]), len(labels)))
            ref_test[:, ref.classes_] = ref.predict_proba(vec.transform(words["test"]))
            row = {"rows": n or len(kept), "seed": seed, "reference_test": score(y["test"], ref_test, labels)["macro_f1"]}
            for name in args.variants:
                cn, wn, md, fsets, cs = VARIANTS[name]
                t0 = time.perf_counter()
                m = fit_tfidf_lr(prepared["train"], y["train"], prepared["val"], y["val"], labels, cfg.clean,
                                 TfidfSettings(cn, wn, md, cfg.tokenize.max_len), fsets, cs, cfg.train.select_metric,
                                 words=(words["train"], words["val"]), prepared=True)
                for k in ("val", "test"):
                    row[f"{name}_{k}"] = score(y[k], m.proba_from_features(m.features(prepared[k], words[k])), labels)["macro_f1"]
                row[f"{name}_pick"] = f"{m.settings.features} C={m.settings.c:g}"
                row[f"{name}_s"] = time.perf_counter() - t0
            out.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)
            if args.json:
                with open(args.json, "w", encoding="utf-8") as f:
                    json.dump(out, f, indent=1)
    for n in sorted({r["rows"] for r in out}):
        rs = [r for r in out if r["rows"] == n]
        print(f"\n{n} rows, seeds {[r['seed'] for r in rs]} (macro-F1 mean +- std)")
        for name in args.variants:
            v, t = [r[f"{name}_val"] for r in rs], [r[f"{name}_test"] for r in rs]
            print(f"  {name:<12} val {np.mean(v):.4f} +- {np.std(v):.4f}   test {np.mean(t):.4f} +- {np.std(t):.4f}   "
                  f"fit {np.mean([r[f'{name}_s'] for r in rs]):.1f} s   picks: {[r[f'{name}_pick'] for r in rs]}")
        ref = [r["reference_test"] for r in rs]
        print(f"  {'word12 C=4':<12} test {np.mean(ref):.4f} +- {np.std(ref):.4f}")


if __name__ == "__main__":
    main()
