"""Candidates of a run: which to train, and which one ships (the best on validation), with the reason written out.

`model` is whatever model.name configures (a network, or tfidf_lr itself), `tfidf_lr` the TF-IDF + logistic
regression family, `ensemble` their probability average. Ties go to the simpler candidate (SIMPLICITY order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from textcls_core.evaluation.metrics import compute_metrics
from textcls_core.runtime.config import ModelConfig

SIMPLICITY = ("tfidf_lr", "model", "ensemble")  # on equal validation scores the earlier one ships
TABLE_KEYS = ("accuracy", "macro_f1", "log_loss", "roc_auc")


@dataclass
class CandidatePlan:
    """What a run trains: the candidates compared, and whether tfidf_lr is trained only as the report's reference."""

    candidates: list[str]
    train_network: bool
    train_tfidf: bool
    notes: list[str] = field(default_factory=list)


def plan_candidates(model_cfg: ModelConfig, baseline: bool) -> CandidatePlan:
    """Resolve model.candidates against model.name: with model.name = tfidf_lr, `model` is tfidf_lr and there is
    nothing to blend, so the ensemble is dropped (and the plan says so)."""
    wanted = list(dict.fromkeys(model_cfg.candidates))
    notes = []
    if model_cfg.name == "tfidf_lr":
        wanted = list(dict.fromkeys("tfidf_lr" if c == "model" else c for c in wanted))
        if "ensemble" in wanted:
            wanted.remove("ensemble")
            notes.append("ensemble skipped: model.name is tfidf_lr, so there is no second model to blend")
    network = "model" in wanted
    tfidf = "tfidf_lr" in wanted or baseline
    return CandidatePlan(wanted, network, tfidf, notes)


def display_name(name: str, model_cfg: ModelConfig) -> str:
    """How a candidate is named in reports: the model family, e.g. textcnn, tfidf_lr, ensemble(textcnn+tfidf_lr)."""
    if name == "model":
        return model_cfg.name
    if name == "ensemble":
        return f"ensemble({model_cfg.name}+tfidf_lr)"
    return name


def score(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """The metrics a candidate is compared on (compute_metrics' scalar ones)."""
    m = compute_metrics(y_true, probs, labels)
    return {k: m[k] for k in ("n", *TABLE_KEYS, "weighted_f1", "ece")}


def paired_se(y_true: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray, metric: str, n_boot: int = 200,
              seed: int = 0) -> float:
    """Standard error of metric(a) - metric(b) on the same validation rows: closed form for accuracy, a paired
    bootstrap for macro-F1. Paired, so two models that agree on most rows get a small error."""
    y_true = np.asarray(y_true)
    pa, pb = probs_a.argmax(axis=1), probs_b.argmax(axis=1)
    if len(y_true) < 2:
        return float("inf")
    if metric == "val_accuracy":
        d = (pa == y_true).astype(float) - (pb == y_true).astype(float)
        return float(d.std(ddof=1) / np.sqrt(len(d)))
    from sklearn.metrics import f1_score

    labels = list(range(probs_a.shape[1]))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y_true), len(y_true))
        diffs.append(f1_score(y_true[i], pa[i], labels=labels, average="macro", zero_division=0)
                     - f1_score(y_true[i], pb[i], labels=labels, average="macro", zero_division=0))
    return float(np.std(diffs, ddof=1))


def choose_candidate(val_scores: dict[str, dict[str, Any]], metric: str, names: dict[str, str] | None = None,
                     se: dict[str, float] | None = None) -> tuple[str, str]:
    """(name, reason). The best validation `metric` (val_accuracy or val_macro_f1) unless a simpler candidate is
    within one standard error of it (the one-standard-error rule; `se[c]` = paired SE of best minus c): on a small
    validation split a network's lead is often noise, and the simpler model is the safer one to ship.
    Without `se`, the best ships; ties go to the simpler one. `names` maps candidates to display names."""
    key = metric.removeprefix("val_")
    shown = names or {}
    order = sorted(val_scores, key=lambda n: (-val_scores[n][key], SIMPLICITY.index(n)))
    best = order[0]
    chosen = best
    for c in sorted(val_scores, key=SIMPLICITY.index):
        if SIMPLICITY.index(c) >= SIMPLICITY.index(best):
            break
        if se is not None and val_scores[best][key] - val_scores[c][key] <= se.get(c, 0.0):
            chosen = c
            break
    others = ", ".join(f"{shown.get(n, n)} {val_scores[n][key]:.4f}" for n in order if n != chosen)
    if chosen == best:
        reason = (f"{shown.get(best, best)} has the best validation {key}, {val_scores[best][key]:.4f}"
                  + (f" (others: {others})" if others else " (the only candidate)"))
        if len(order) > 1 and val_scores[order[1]][key] == val_scores[best][key]:
            reason += f"; tied with {shown.get(order[1], order[1])}, so the simpler one ships"
        elif se is not None and len(order) > 1:
            runner = next(c for c in order[1:] if SIMPLICITY.index(c) < SIMPLICITY.index(best)) if any(
                SIMPLICITY.index(c) < SIMPLICITY.index(best) for c in order[1:]) else None
            if runner is not None:
                reason += (f"; its lead over the simpler {shown.get(runner, runner)} is more than one standard error "
                           f"({se.get(runner, 0.0):.4f})")
    else:
        reason = (f"{shown.get(chosen, chosen)} ships: its validation {key} {val_scores[chosen][key]:.4f} is within one "
                  f"standard error ({se[chosen]:.4f}) of the best, {shown.get(best, best)} {val_scores[best][key]:.4f}, "
                  f"and it is the simpler model (others: {others})")
    return chosen, reason
