"""One loader for every kind of model folder a run can ship, and scoring that also reports out-of-vocabulary rates.

model.json's `kind` says what a folder holds: `tfidf_lr` (TfidfClassifier), `ensemble` (EnsembleClassifier), and
no kind (every folder saved before candidates existed, and every network) is a TextClassifier. The pyfunc,
evaluation, the champion re-score and batch prediction all load through `load_classifier`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from textcls_core.modeling.ensemble import KIND as ENSEMBLE_KIND
from textcls_core.modeling.ensemble import EnsembleClassifier
from textcls_core.modeling.tfidf import KIND as TFIDF_KIND
from textcls_core.modeling.tfidf import TfidfClassifier


class Classifier(Protocol):
    """What every shippable model offers; texts are RAW (cleaned and bounded inside)."""

    labels: list[str]

    def predict_proba(self, texts: list[Any], batch_size: int = 256) -> np.ndarray: ...

    def predict(self, texts: list[Any], batch_size: int = 256) -> pd.DataFrame: ...

    def save(self, directory: str | Path) -> Path: ...


def model_kind(directory: str | Path) -> str:
    """`tfidf_lr`, `ensemble` or `network` for a saved model folder."""
    meta = json.loads((Path(directory) / "model.json").read_text(encoding="utf-8"))
    return str(meta.get("kind", "network"))


def load_classifier(directory: str | Path, device: Any = "cpu") -> Any:
    """The model saved in `directory`, whatever its kind (see the module docstring)."""
    kind = model_kind(directory)
    if kind == TFIDF_KIND:
        return TfidfClassifier.load(directory)
    if kind == ENSEMBLE_KIND:
        return EnsembleClassifier.load(directory, device)
    from textcls_core.modeling.predictor import TextClassifier  # torch only when a network is loaded

    return TextClassifier.load(directory, device)


def proba_and_oov(clf: Any, texts: list[Any], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities [N, C] and each text's out-of-vocabulary share, encoding a network's texts once.

    A network counts <unk> ids; tfidf_lr counts unseen words; an ensemble reports its first member's rates.
    """
    if isinstance(clf, EnsembleClassifier):
        parts = [proba_and_oov(m, texts, batch_size) for m in clf.members]
        return sum(w * p for w, (p, _) in zip(clf.weights, parts)), parts[0][1]
    if isinstance(clf, TfidfClassifier):
        return clf.predict_proba_oov(texts)
    ids = clf.encode(texts)
    unk = clf.encoder.unk_id
    oov = np.array([sum(i == unk for i in x) / len(x) if x else 0.0 for x in ids])
    return clf.predict_proba_ids(ids, batch_size), oov
