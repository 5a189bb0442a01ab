"""The probability ensemble of two candidates: p = w * p_a + (1 - w) * p_b, w fit on the validation split.

Saved as a folder holding its members' own folders (members/<name>/) and model.json with the weights, so it ships
and loads like any other model (textcls_core.modeling.classifiers.load_classifier).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from textcls_core.modeling.proba import proba_frame
from textcls_core.text.tokenize import shared_segmentation

KIND = "ensemble"
WEIGHT_GRID = np.linspace(0.0, 1.0, 21)  # steps of 0.05: finer is noise on a validation split of a few thousand texts


def _log_loss(y: np.ndarray, probs: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))


def fit_weight(p_a: np.ndarray, p_b: np.ndarray, y: Sequence[int]) -> float:
    """The weight of `p_a` on the grid with the lowest log loss on (p_a, p_b, y); ties go to the larger weight.

    Log loss rather than accuracy: it is smooth in w, so a few hundred validation texts still give a stable weight.
    """
    y = np.asarray(y)
    losses = [_log_loss(y, w * p_a + (1 - w) * p_b) for w in WEIGHT_GRID]
    best = min(losses)
    return float(max(w for w, loss in zip(WEIGHT_GRID, losses) if loss <= best + 1e-12))


def crossfit_proba(p_a: np.ndarray, p_b: np.ndarray, y: Sequence[int], seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """Validation probabilities of the ensemble scored honestly: the weight used on each half of the split is fit
    on the other half, so the ensemble's validation score carries no advantage from fitting its own weight there.
    Returns the probabilities and the two weights."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    half = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):  # stratified halves
        idx = rng.permutation(np.flatnonzero(y == label))
        half[idx[: len(idx) // 2]] = True
    out = np.zeros_like(p_a, dtype=np.float64)
    weights = []
    for fit_mask in (half, ~half):
        score_mask = ~fit_mask
        if fit_mask.sum() == 0 or score_mask.sum() == 0:
            continue
        w = fit_weight(p_a[fit_mask], p_b[fit_mask], y[fit_mask])
        weights.append(w)
        out[score_mask] = w * p_a[score_mask] + (1 - w) * p_b[score_mask]
    if len(weights) < 2:  # a validation split of one text: nothing to hold out
        w = fit_weight(p_a, p_b, y)
        return w * p_a + (1 - w) * p_b, [w]
    return out, weights


@dataclass
class EnsembleClassifier:
    """Weighted average of members' probabilities; every member takes the same RAW text."""

    names: list[str]
    members: list[Any]  # TextClassifier | TfidfClassifier
    weights: list[float]

    kind = KIND

    def __post_init__(self) -> None:
        labels = [list(m.labels) for m in self.members]
        if any(lab != labels[0] for lab in labels):
            raise ValueError(f"ensemble members predict different labels: {labels}")
        if abs(sum(self.weights) - 1.0) > 1e-6:
            raise ValueError(f"ensemble weights must sum to 1, got {self.weights}")

    @property
    def labels(self) -> list[str]:
        return list(self.members[0].labels)

    @property
    def clean_cfg(self) -> Any:
        return self.members[0].clean_cfg

    def predict_proba(self, texts: Sequence[object], batch_size: int = 256) -> np.ndarray:
        texts = list(texts)
        with shared_segmentation():  # both members clean and segment the same texts: jieba runs once per text
            return sum(w * m.predict_proba(texts, batch_size) for w, m in zip(self.weights, self.members))

    def predict(self, texts: Sequence[object], batch_size: int = 256) -> pd.DataFrame:
        """One row per text: label, score (its probability) and prob_<label> for every class."""
        return proba_frame(self.predict_proba(list(texts), batch_size), self.labels)

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name, member in zip(self.names, self.members):
            member.save(d / "members" / name)
        meta = {"kind": KIND, "labels": self.labels,
                "members": [{"name": n, "weight": w, "kind": getattr(m, "kind", "network")}
                            for n, w, m in zip(self.names, self.weights, self.members)]}
        (d / "model.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path, device: Any = "cpu") -> "EnsembleClassifier":
        from textcls_core.modeling.classifiers import load_classifier  # the members are any kind of model folder

        d = Path(directory)
        meta = json.loads((d / "model.json").read_text(encoding="utf-8"))
        names = [m["name"] for m in meta["members"]]
        return cls(names, [load_classifier(d / "members" / n, device) for n in names], [float(m["weight"]) for m in meta["members"]])
