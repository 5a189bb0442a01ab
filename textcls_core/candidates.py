"""Candidates of a run: which to train, and which one ships (the best on validation), with the reason written out.

`model` is whatever model.name configures (a network, or tfidf_lr itself), `tfidf_lr` the TF-IDF + logistic
regression family, `ensemble` their probability average. Ties go to the simpler candidate (SIMPLICITY order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from textcls_core.config import ModelConfig
from textcls_core.evaluate import compute_metrics

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


def choose_candidate(val_scores: dict[str, dict[str, Any]], metric: str, names: dict[str, str] | None = None) -> tuple[str, str]:
    """(name, reason): the highest validation `metric` (val_accuracy or val_macro_f1); ties go to the simpler one.
    `names` maps candidates to the names the reason uses (display_name)."""
    key = metric.removeprefix("val_")
    shown = names or {}
    order = sorted(val_scores, key=lambda n: (-val_scores[n][key], SIMPLICITY.index(n)))
    best = order[0]
    others = ", ".join(f"{shown.get(n, n)} {val_scores[n][key]:.4f}" for n in order[1:])
    reason = (f"{shown.get(best, best)} has the best validation {key}, {val_scores[best][key]:.4f}"
              + (f" (others: {others})" if others else " (the only candidate)"))
    if len(order) > 1 and val_scores[order[1]][key] == val_scores[best][key]:
        reason += f"; tied with {shown.get(order[1], order[1])}, so the simpler one ships"
    return best, reason
