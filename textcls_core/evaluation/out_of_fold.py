"""The traditional-ML baseline every run reports: character n-gram TF-IDF + logistic regression.

It answers the article's step-1 question (could traditional ML solve it?) and is the cheap model for
out-of-fold label-error detection.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline


def make_baseline(ngram_max: int = 3, c: float = 4.0, min_df: int = 2) -> Pipeline:
    """char 1..ngram_max TF-IDF (sublinear tf) feeding an L2 logistic regression."""
    return make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(1, ngram_max), sublinear_tf=True, min_df=min_df),
                         LogisticRegression(C=c, max_iter=2000))


def fit_baseline(texts: Sequence[str], y: Sequence[int], **kwargs) -> Pipeline:
    return make_baseline(**kwargs).fit(list(texts), np.asarray(y))


def baseline_proba(model: Pipeline, texts: Sequence[str], num_classes: int) -> np.ndarray:
    """[N, C] probabilities in label-id order, even if a class was missing from the fit."""
    out = np.zeros((len(texts), num_classes))
    out[:, model.classes_] = model.predict_proba(list(texts))
    return out


def _folds(y: np.ndarray, num_classes: int, folds: int) -> int:
    counts = np.bincount(y, minlength=num_classes)
    return int(max(2, min(folds, counts[counts > 0].min())))


def out_of_fold_from_features(x: sp.csr_matrix, y: Sequence[int], num_classes: int, folds: int = 5, seed: int = 0,
                              c: float = 4.0) -> np.ndarray:
    """Each row scored by a logistic regression (C=c) that never saw it (stratified k-fold) on fixed features `x`.

    The features may be fitted on all rows: TF-IDF's vocabulary and idf never read a label, so fitting them once
    instead of once per fold changes no row's labelled evidence and saves k-1 vectorizer fits."""
    y = np.asarray(y)
    k = _folds(y, num_classes, folds)
    probs = np.zeros((len(y), num_classes))
    for train_idx, held_idx in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        lr = LogisticRegression(C=c, max_iter=2000).fit(x[train_idx], y[train_idx])
        held = np.zeros((len(held_idx), num_classes))
        held[:, lr.classes_] = lr.predict_proba(x[held_idx])
        probs[held_idx] = held
    return probs


def out_of_fold_proba(texts: Sequence[str], y: Sequence[int], num_classes: int, folds: int = 5, seed: int = 0,
                      ngram_max: int = 3, c: float = 4.0, min_df: int = 2) -> np.ndarray:
    """Each example scored by a char n-gram baseline that never saw its label (stratified k-fold); the TF-IDF
    vocabulary is fitted once on all texts (label-free), the regressions once per fold."""
    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, ngram_max), sublinear_tf=True,
                          min_df=min_df if len(texts) >= 10 * min_df else 1)
    x = sp.csr_matrix(vec.fit_transform(list(texts)))
    return out_of_fold_from_features(x, y, num_classes, folds, seed, c)
