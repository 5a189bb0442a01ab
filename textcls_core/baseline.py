"""The traditional-ML baseline every run reports: character n-gram TF-IDF + logistic regression.

It answers the article's step-1 question (could traditional ML solve it?) and is the cheap model for
out-of-fold label-error detection.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
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


def out_of_fold_proba(texts: Sequence[str], y: Sequence[int], num_classes: int, folds: int = 5, seed: int = 0,
                      **kwargs) -> np.ndarray:
    """Each example scored by a baseline that never saw it (stratified k-fold)."""
    y = np.asarray(y)
    min_count = np.bincount(y, minlength=num_classes)[np.bincount(y, minlength=num_classes) > 0].min()
    k = int(max(2, min(folds, min_count)))
    texts = np.asarray(list(texts), dtype=object)
    probs = np.zeros((len(y), num_classes))
    for train_idx, held_idx in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(texts, y):
        model = fit_baseline(texts[train_idx], y[train_idx], **kwargs)
        probs[held_idx] = baseline_proba(model, texts[held_idx], num_classes)
    return probs
