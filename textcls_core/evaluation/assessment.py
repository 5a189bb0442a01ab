"""Assessing a classifier on labelled rows: the model, the run's baseline and the champion scored on the same raw
texts, label errors searched out of fold, latency; validation metrics for the gate. Pure: the evaluate tasks
(tasks/evaluate.py) read the files, publish and log."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from textcls_core.evaluation.assemble import build_evaluation, measure_latency
from textcls_core.evaluation.label_issues import find_suspect_labels
from textcls_core.evaluation.metrics import compute_metrics
from textcls_core.evaluation.out_of_fold import out_of_fold_proba
from textcls_core.modeling.classifiers import proba_and_oov
from textcls_core.runtime.config import EvaluateConfig


def label_ids(frame: pd.DataFrame, labels: list[str]) -> np.ndarray:
    ids = {name: i for i, name in enumerate(labels)}
    return frame["label"].map(ids).to_numpy()


def aligned_proba(clf: Any, texts: list[str], labels: list[str], batch_size: int) -> np.ndarray:
    """Probabilities of `clf` re-ordered to `labels` (a class it does not know gets 0)."""
    return _align(clf.predict_proba(texts, batch_size), clf.labels, labels)


def _align(probs: np.ndarray, own: list[str], labels: list[str]) -> np.ndarray:
    out = np.zeros((len(probs), len(labels)))
    for j, name in enumerate(own):
        if name in labels:
            out[:, labels.index(name)] = probs[:, j]
    return out


def _argmax_labels(probs: np.ndarray, labels: list[str]) -> list[str]:
    return [labels[i] for i in probs.argmax(axis=1)] if len(probs) else []


def assess_classifier(clf: Any, test: pd.DataFrame, eval_cfg: EvaluateConfig, baseline: Any | None,
                      label_pool: pd.DataFrame | None, champion: Any | None, seed: int, log: Any,
                      source_sha256: str = "", oof: np.ndarray | None = None):
    """Score clf (any model kind) on one labelled frame beside `baseline` (the run's tfidf_lr candidate, or None);
    the label-error search runs over `label_pool` (its queue records source_sha256, the file its row ids refer to,
    for `textcls relabel apply`). oof: out-of-fold probabilities of label_pool's rows, in its order and clf.labels'
    column order, when the caller has them (the candidates stage computes them from tfidf_lr's features); else a
    char n-gram baseline computes them here."""
    labels = clf.labels
    y = label_ids(test, labels)
    texts = test["text"].tolist()
    # the model and the champion get what production gets, the raw text, and clean it with their own encoder
    raw = test["raw_text"].tolist() if "raw_text" in test.columns else texts
    probs, oov = proba_and_oov(clf, raw, eval_cfg.batch_size)  # a network encodes once, in eval() + inference_mode
    relabel = None
    baseline_probs = _baseline_proba(clf, probs, baseline, raw, eval_cfg.batch_size)
    if eval_cfg.label_error_folds and label_pool is not None:
        pool_y = label_ids(label_pool, labels)
        if oof is None:
            oof = out_of_fold_proba(label_pool["text"].tolist(), pool_y, len(labels), eval_cfg.label_error_folds, seed)
        elif oof.shape != (len(label_pool), len(labels)):
            raise ValueError(f"out-of-fold probabilities of shape {oof.shape} for {len(label_pool)} rows and {len(labels)} labels")
        relabel = find_suspect_labels(label_pool, pool_y, oof, labels, source_sha256)
        log.info("evaluate: %d suspected label errors in %d rows", len(relabel), len(label_pool))
    champion_probs, champion_predicted = None, None
    if champion is not None:
        own = champion.predict_proba(raw, eval_cfg.batch_size)
        champion_probs, champion_predicted = _align(own, champion.labels, labels), _argmax_labels(own, champion.labels)
    latency = measure_latency(lambda t: clf.predict_proba(t, eval_cfg.batch_size), raw, eval_cfg.latency_samples)
    ev = build_evaluation(test, y, probs, labels, oov, baseline_probs, champion_probs, relabel, latency)
    ev.predicted, ev.champion_predicted = _argmax_labels(probs, labels), champion_predicted
    return ev


def _baseline_proba(clf: Any, probs: np.ndarray, baseline: Any | None, raw: list, batch_size: int) -> np.ndarray | None:
    """The baseline's probabilities in clf's label order; clf's own when the baseline is the shipped model itself
    (one object: tfidf_lr ships, and the evaluation loaded its folder once)."""
    if baseline is None:
        return None
    return probs if baseline is clf else aligned_proba(baseline, raw, clf.labels, batch_size)


def candidate_val_metrics(table: list[dict[str, Any]], baseline: bool) -> dict[str, float]:
    """validation_metrics' keys from the candidates stage's table: the chosen candidate's and (baseline on, and a
    tfidf_lr row there) tfidf_lr's validation scores. Those are out of sample: tfidf_lr's come from its train-only
    fit, the ensemble's are cross-fitted. Re-scoring validation with the shipped model would not be when tfidf_lr
    was refitted on train + validation (model.tfidf_refit)."""
    chosen = next(r for r in table if r["chosen"])
    out = {"val_accuracy": float(chosen["val_accuracy"]), "val_macro_f1": float(chosen["val_macro_f1"])}
    tfidf = next((r for r in table if r["candidate"] == "tfidf_lr"), None)
    if baseline and tfidf is not None:
        out |= {"baseline_val_accuracy": float(tfidf["val_accuracy"]), "baseline_val_macro_f1": float(tfidf["val_macro_f1"])}
    return out


def validation_metrics(clf: Any, val: pd.DataFrame, baseline: Any | None, eval_cfg: EvaluateConfig) -> dict[str, float]:
    """The shipped model and the tfidf_lr candidate (the baseline) on the validation split: val_/baseline_val_
    accuracy and macro_f1, which the promotion gate compares (registry.baseline_check)."""
    labels = clf.labels
    y = label_ids(val, labels)
    raw = val["raw_text"].tolist() if "raw_text" in val.columns else val["text"].tolist()
    probs = clf.predict_proba(raw, eval_cfg.batch_size)
    m = compute_metrics(y, probs, labels)
    out = {"val_accuracy": float(m["accuracy"]), "val_macro_f1": float(m["macro_f1"])}
    if baseline is not None:
        b = compute_metrics(y, _baseline_proba(clf, probs, baseline, raw, eval_cfg.batch_size), labels)
        out |= {"baseline_val_accuracy": float(b["accuracy"]), "baseline_val_macro_f1": float(b["macro_f1"])}
    return out
