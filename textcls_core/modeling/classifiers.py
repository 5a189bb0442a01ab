"""One loader for every kind of model folder a run can ship, and scoring that also reports out-of-vocabulary rates.

model.json's `kind` says what a folder holds: `tfidf_lr` (TfidfClassifier), `ensemble` (EnsembleClassifier), and
no kind (every folder saved before candidates existed, and every network) is a TextClassifier. The pyfunc,
evaluation, the champion re-score and batch prediction all load through `load_classifier`.
"""

from __future__ import annotations

import json
import threading
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


_SHARED: dict[str, tuple[tuple, Any]] = {}
_SHARED_LOCK = threading.Lock()
_SHARED_MAX = 2  # a run's shipped model (and at most one more): loaded once per process, not once per stage


# written into a shipped folder after its model, never read by a loader: evaluation.drift.PROFILE_FILE and
# dataset.fingerprint.FINGERPRINT_FILE (named here, not imported: the serving process would import the data readers)
SIDECAR_FILES = frozenset({"drift_profile.json", "train_fingerprint.npy"})


def _folder_stamp(directory: Path) -> tuple:
    """Every file the loaders read, with its size and modification time: a rewritten model is a new stamp, a
    sidecar written beside it (SIDECAR_FILES) is not."""
    return tuple(sorted((str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns)
                        for p in directory.rglob("*") if p.is_file() and p.name not in SIDECAR_FILES))


def load_classifier(directory: str | Path, device: Any = "cpu", shared: bool = False) -> Any:
    """The model saved in `directory`, whatever its kind (see the module docstring).

    shared=True: one loaded object per folder in this process, reused while the folder's files are unchanged (the
    evaluation, drift profile, stress and packaging stages of a run read the same model; a tfidf_lr model takes
    about a second to load). Only for callers that predict and never change the object."""
    if shared:
        folder = Path(directory).resolve()
        with _SHARED_LOCK:  # two threads asking at once (stress beside evaluation): one loads, the other reuses
            stamp = (str(device), _folder_stamp(folder))
            hit = _SHARED.get(str(folder))
            if hit is not None and hit[0] == stamp:
                return hit[1]
            clf = load_classifier(folder, device)
            while len(_SHARED) >= _SHARED_MAX:
                _SHARED.pop(next(iter(_SHARED)))
            _SHARED[str(folder)] = (stamp, clf)
            return clf
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
