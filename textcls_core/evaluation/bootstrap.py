"""Paired bootstrap of a metric difference between two classifiers scored on the same rows.

Rows are resampled with replacement; both models' predictions move together (paired), so the interval is
that of the *difference* on this population, not of two independent scores. Vectorised: each resample is a
row of multinomial counts, and per-class TP/FP/FN are count-weighted sums.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

METRICS = ("accuracy", "macro_f1")


@dataclass
class PairedBootstrap:
    metric: str
    n: int
    candidate: float
    champion: float
    delta: float
    ci_low: float     # one-sided lower bound of delta at `confidence`
    ci_high: float    # the matching upper bound (together a 2*confidence-1 two-sided interval)
    p_value: float    # share of resampled deltas <= min_improvement (one-sided)
    confidence: float
    samples: int

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def _scores(weights: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, metric: str) -> np.ndarray:
    """metric for each row of weights [B, n] (resample counts) -> [B]."""
    correct = (y_true == y_pred).astype(np.float64)
    if metric == "accuracy":
        return weights @ correct / weights.sum(axis=1)
    f1 = np.zeros((weights.shape[0], num_classes))
    for c in range(num_classes):
        tp = weights @ ((y_true == c) & (y_pred == c)).astype(np.float64)
        fp = weights @ ((y_true != c) & (y_pred == c)).astype(np.float64)
        fn = weights @ ((y_true == c) & (y_pred != c)).astype(np.float64)
        denom = 2 * tp + fp + fn
        f1[:, c] = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    # macro over every class, 0 for a class neither in y_true nor predicted: compute_metrics' labels=all, zero_division=0
    return f1.mean(axis=1)


def metric_value(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, metric: str) -> float:
    """The metric on all rows once (same arithmetic as the bootstrap)."""
    return float(_scores(np.ones((1, len(y_true))), np.asarray(y_true), np.asarray(y_pred), num_classes, metric)[0])


def paired_bootstrap(y_true: np.ndarray, pred_candidate: np.ndarray, pred_champion: np.ndarray, num_classes: int,
                     metric: str = "macro_f1", samples: int = 2000, confidence: float = 0.95, min_improvement: float = 0.0,
                     seed: int = 0, chunk: int = 250) -> PairedBootstrap:
    """Bootstrap distribution of metric(candidate) - metric(champion) over the same resampled rows."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    y_true, a, b = (np.asarray(v, dtype=np.int64) for v in (y_true, pred_candidate, pred_champion))
    n = len(y_true)
    if n == 0:
        raise ValueError("paired_bootstrap needs at least one row")
    rng = np.random.default_rng(seed)
    deltas = []
    for start in range(0, samples, chunk):
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, samples - start)).astype(np.float64)
        deltas.append(_scores(w, y_true, a, num_classes, metric) - _scores(w, y_true, b, num_classes, metric))
    d = np.concatenate(deltas)
    cand, champ = metric_value(y_true, a, num_classes, metric), metric_value(y_true, b, num_classes, metric)
    return PairedBootstrap(metric, n, cand, champ, cand - champ, float(np.quantile(d, 1 - confidence)),
                           float(np.quantile(d, confidence)), float((d <= min_improvement).mean()), confidence, samples)
