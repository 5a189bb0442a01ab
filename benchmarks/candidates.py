"""Candidates on the built-in corpus and on small stratified slices: what the run would register, against every
single candidate and the issue's reference (word 1-2-gram TF-IDF + logistic regression, C=4).

For each (rows, seed): clean the built-in corpus as the pipeline does, take a stratified slice of `rows` rows (0 =
all), split with the seed, and run the same core code as the candidates stage: the config's network (trained with
model selection on val), tfidf_lr (settings picked on val; with model.tfidf_refit, then fitted again on train + val,
its val scores staying the train-only fit's), their ensemble (weight fit on val, its val score
cross-fitted), the choice on validation (train.select_metric). Prints val and test macro-F1 per candidate, the
chosen one, and mean +- std per setting; --json writes every row.

Run: .venv/bin/python benchmarks/candidates.py --rows 0 --seeds 42 1 2
     .venv/bin/python benchmarks/candidates.py --rows 300 800 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from functools import partial

import numpy as np
import pandas as pd
import sklearn
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from textcls_core.dataset.clean import clean_dataset, prepare_texts
from textcls_core.dataset.read import read_dataset
from textcls_core.dataset.split import class_labels, split_dataset
from textcls_core.modeling.ensemble import crossfit_proba, fit_weight
from textcls_core.modeling.networks import build_model, min_batch_len
from textcls_core.modeling.predictor import TextClassifier
from textcls_core.modeling.tfidf import TfidfSettings, fit_tfidf_lr, refit_tfidf_lr, word_ngrams
from textcls_core.runtime.config import Config, load_config
from textcls_core.text.batching import EncodedDataset, collate_batch
from textcls_core.text.encoders import TextEncoder, WordEncoder
from textcls_core.text.tokenize import build_vocab, encode_tokens, segment_texts
from textcls_core.training.candidates import choose_candidate, paired_se, score
from textcls_core.training.loop import set_seed, train_model


def stratified_slice(kept: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """About `rows` rows with the label shares of the whole (the pipeline's data.max_rows does the same)."""
    if not rows or rows >= len(kept):
        return kept
    share = rows / len(kept)
    parts = [g.sample(max(1, round(len(g) * share)), random_state=seed) for _, g in kept.groupby("label")]
    return pd.concat(parts).reset_index(drop=True)


def split_case(kept: pd.DataFrame, rows: int, seed: int, cfg: Config) -> tuple[list[str], dict, dict, dict]:
    """Slice and split as the pipeline does: class labels, label ids, prepared texts and jieba words per split."""
    data = stratified_slice(kept, rows, seed)
    parts = split_dataset(data, cfg.split.val_fraction, cfg.split.test_fraction, seed)
    labels = class_labels(parts["train"])
    y = {k: np.array([labels.index(x) for x in v["label"]]) for k, v in parts.items()}
    raw = {k: v["raw_text" if "raw_text" in v.columns else "text"].tolist() for k, v in parts.items()}
    prepared = {k: prepare_texts(raw[k], cfg.clean, cfg.tokenize.max_len) for k in parts}
    return labels, y, prepared, {k: segment_texts(prepared[k]) for k in parts}


def run_case(kept: pd.DataFrame, rows: int, seed: int, cfg: Config) -> dict:
    t0 = time.perf_counter()
    labels, y, prepared, words = split_case(kept, rows, seed, cfg)
    probs: dict[str, dict[str, np.ndarray]] = {}

    # the network, as the train stage builds it
    itos = build_vocab(words["train"], cfg.tokenize.min_freq, cfg.tokenize.max_vocab)
    stoi = {w: i for i, w in enumerate(itos)}
    ids = {k: encode_tokens(words[k], stoi, cfg.tokenize.max_len) for k in y}
    collate = partial(collate_batch, max_len=cfg.tokenize.max_len, min_len=min_batch_len(cfg.model))
    set_seed(seed)
    model = build_model(cfg.model, len(itos), len(labels))
    train_model(model, EncodedDataset(ids["train"], y["train"].tolist()), EncodedDataset(ids["val"], y["val"].tolist()),
                cfg.train, torch.device("cpu"), len(labels), collate, seed=seed, message=lambda m: None)
    net = TextClassifier(model, TextEncoder(cfg.clean, WordEncoder(itos, cfg.tokenize.max_len)), labels, cfg.model)
    probs["model"] = {k: net.predict_proba_ids(ids[k]) for k in ("val", "test")}
    net_s = time.perf_counter() - t0

    # tfidf_lr, as the candidates stage fits it
    m = cfg.model
    tfidf = fit_tfidf_lr(prepared["train"], y["train"], prepared["val"], y["val"], labels, cfg.clean,
                         TfidfSettings(m.tfidf_char_ngrams, m.tfidf_word_ngrams, m.tfidf_min_df, cfg.tokenize.max_len),
                         m.tfidf_features, m.tfidf_c, cfg.train.select_metric, words=(words["train"], words["val"]), prepared=True)
    probs["tfidf_lr"] = {"val": tfidf.proba_from_features(tfidf.features(prepared["val"], words["val"]))}
    if m.tfidf_refit:  # as run_tfidf_job: the shipped tfidf_lr is fitted again on train + val; val scores stay train-only
        tfidf = refit_tfidf_lr(tfidf, prepared["train"] + prepared["val"], np.concatenate([y["train"], y["val"]]),
                               words["train"] + words["val"], prepared=True)
    probs["tfidf_lr"]["test"] = tfidf.proba_from_features(tfidf.features(prepared["test"], words["test"]))

    # the ensemble: weight on val by log loss; its val probabilities cross-fitted
    w = fit_weight(probs["model"]["val"], probs["tfidf_lr"]["val"], y["val"])
    ens_val, _ = crossfit_proba(probs["model"]["val"], probs["tfidf_lr"]["val"], y["val"], seed)
    probs["ensemble"] = {"val": ens_val, "test": w * probs["model"]["test"] + (1 - w) * probs["tfidf_lr"]["test"]}

    # the reference: word 1-2-gram TF-IDF + LR, C=4 (not a candidate)
    vec = TfidfVectorizer(analyzer=lambda ws: word_ngrams(ws, 2), sublinear_tf=True)
    ref = LogisticRegression(C=4, max_iter=2000).fit(vec.fit_transform(words["train"]), y["train"])
    ref_test = np.zeros((len(y["test"]), len(labels)))
    ref_test[:, ref.classes_] = ref.predict_proba(vec.transform(words["test"]))

    scores = {c: {k: score(y[k], probs[c][k], labels) for k in ("val", "test")} for c in probs}
    key = cfg.train.select_metric
    best = max(scores, key=lambda c: scores[c]["val"][key.removeprefix("val_")])
    se = {c: paired_se(y["val"], probs[best]["val"], probs[c]["val"], key, seed=seed) for c in scores if c != best}
    chosen, reason = choose_candidate({c: scores[c]["val"] for c in scores}, key, None, se)
    best_val, _ = choose_candidate({c: scores[c]["val"] for c in scores}, key)  # the plain best on validation
    row = {"rows": rows or len(kept), "seed": seed, "reason": reason, "best_on_val": best_val, "n_train": len(y["train"]), "n_val": len(y["val"]), "n_test": len(y["test"]),
           "chosen": chosen, "ensemble_weight_model": w, "tfidf_features": tfidf.settings.features, "tfidf_c": tfidf.settings.c,
           "tfidf_search": tfidf.search, "network_seconds": net_s, "seconds": time.perf_counter() - t0,
           "reference_test_macro_f1": score(y["test"], ref_test, labels)["macro_f1"]}
    for c in scores:
        for k in ("val", "test"):
            row[f"{c}_{k}_macro_f1"] = scores[c][k]["macro_f1"]
            row[f"{c}_{k}_accuracy"] = scores[c][k]["accuracy"]
    row["registered_test_macro_f1"] = row[f"{chosen}_test_macro_f1"]
    row["registered_test_accuracy"] = row[f"{chosen}_test_accuracy"]
    row["best_on_val_test_macro_f1"] = row[f"{best_val}_test_macro_f1"]  # what the rule without the standard error ships
    return row


COLUMNS = ("registered", "model", "tfidf_lr", "ensemble", "reference")


def _fmt(values: list[float]) -> str:
    return f"{np.mean(values):.4f} +- {np.std(values):.4f}"


def summarize(rows: list[dict], name: str) -> None:
    """mean +- std of test macro-F1 (and val for the candidates) per slice size."""
    for n in sorted({r["rows"] for r in rows}):
        rs = [r for r in rows if r["rows"] == n]
        print(f"\n{n} rows, {len(rs)} seeds (test macro-F1, mean +- std):")
        print(f"  registered (best on val)       {_fmt([r['registered_test_macro_f1'] for r in rs])}   chosen: "
              + ", ".join(r["chosen"] for r in rs))
        for c, label in (("model", name), ("tfidf_lr", "tfidf_lr"), ("ensemble", "ensemble")):
            print(f"  {label:<30} {_fmt([r[f'{c}_test_macro_f1'] for r in rs])}   (val {_fmt([r[f'{c}_val_macro_f1'] for r in rs])})")
        best_single = max(("model", "tfidf_lr"), key=lambda c: np.mean([r[f"{c}_test_macro_f1"] for r in rs]))
        print(f"  best single candidate on test: {best_single}")
        print(f"  word 1-2-gram TF-IDF+LR (C=4)  {_fmt([r['reference_test_macro_f1'] for r in rs])}")
        print(f"  plain best on val (no 1-SE)    {_fmt([r['best_on_val_test_macro_f1'] for r in rs])}   chosen: "
              + ", ".join(r["best_on_val"] for r in rs))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[0], help="slice sizes; 0 = the whole cleaned corpus")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--config", default="conf/default.yaml")
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. train.epochs=3")
    parser.add_argument("--json", default="", help="also write every row to this JSON file")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default); 1 on a busy machine")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, [*args.set, "train.progress=false"])
    kept = clean_dataset(read_dataset(cfg.data.path), cfg.clean)[0]
    rows = []
    for n in args.rows:
        for seed in args.seeds:
            r = run_case(kept, n, seed, cfg.model_copy(deep=True))
            rows.append(r)
            print(f"rows {r['rows']:6d} seed {seed:3d}: registered {r['chosen']:<9} test F1 {r['registered_test_macro_f1']:.4f} | "
                  f"{cfg.model.name} {r['model_val_macro_f1']:.4f}/{r['model_test_macro_f1']:.4f}  "
                  f"tfidf_lr {r['tfidf_lr_val_macro_f1']:.4f}/{r['tfidf_lr_test_macro_f1']:.4f} ({r['tfidf_features']}, C={r['tfidf_c']:g})  "
                  f"ensemble {r['ensemble_val_macro_f1']:.4f}/{r['ensemble_test_macro_f1']:.4f} (w={r['ensemble_weight_model']:.2f})  "
                  f"ref {r['reference_test_macro_f1']:.4f}  [val/test, {r['seconds']:.0f} s]", flush=True)
            if args.json:
                with open(args.json, "w", encoding="utf-8") as f:
                    json.dump(rows, f, indent=1)
    summarize(rows, cfg.model.name)
    print(f"\ntorch {torch.__version__}, scikit-learn {sklearn.__version__}, python {platform.python_version()}, {platform.machine()}")


if __name__ == "__main__":
    main()
