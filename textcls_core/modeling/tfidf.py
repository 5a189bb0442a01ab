"""`tfidf_lr`: character and jieba-word n-gram TF-IDF + logistic regression, a shippable model family.

It takes RAW text like TextClassifier (the same `prepare_texts`: cleaning settings and per-text cut), has the same
public interface (labels, clean_cfg, predict_proba, predict, save, load) and is saved as plain files, never a
pickle: model.json (kind, labels, settings), features.json (the n-gram vocabularies) and arrays.npz (idf and the
logistic-regression weights, loaded with allow_pickle=False). Its settings (feature set, C) are picked on the
validation split by `fit_tfidf_lr`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from textcls_core.dataset.clean import prepare_texts
from textcls_core.modeling.proba import proba_frame
from textcls_core.runtime.config import CleanConfig
from textcls_core.text.tokenize import segment_texts
from textcls_core.training.candidates import paired_se

KIND = "tfidf_lr"
FEATURE_SETS = ("char+word", "char", "word")


def char_ngrams(text: str, n_max: int) -> list[str]:
    """Every character 1..n_max-gram of a text (Chinese has no spaces: characters carry most of the signal)."""
    return [text[i : i + n] for n in range(1, n_max + 1) for i in range(len(text) - n + 1)]


def word_ngrams(words: Sequence[str], n_max: int) -> list[str]:
    """Word 1..n_max-grams, words joined by a space (jieba never yields a whitespace token)."""
    return [" ".join(words[i : i + n]) for n in range(1, n_max + 1) for i in range(len(words) - n + 1)]


@dataclass
class TfidfSettings:
    """What the model reads; fixed by the config except `features` and `c`, which validation picks."""

    char_ngrams: int = 3
    word_ngrams: int = 2
    min_df: int = 2
    max_len: int = 256  # tokenize.max_len: sets prepare_texts' per-text cut, as for the networks
    features: str = "char+word"
    c: float = 4.0

    def blocks(self) -> list[str]:
        return [b for b in ("char", "word") if b in self.features.split("+")]


@dataclass
class _Block:
    """One TF-IDF block: vocabulary and idf, applied like sklearn's TfidfVectorizer (sublinear tf, l2 norm)."""

    vocab: dict[str, int]
    idf: np.ndarray

    def transform(self, grams: list[list[str]]) -> sp.csr_matrix:
        """Counts -> (1 + log count) * idf -> l2-normalised rows; the per-gram work is one dict lookup, the rest is
        numpy (a pure-Python count loop took 2x jieba's time on the same texts)."""
        flat = list(chain.from_iterable(grams))
        cols = np.array(list(map(self.vocab.get, flat, repeat(-1, len(flat)))), dtype=np.int64)
        rows = np.repeat(np.arange(len(grams), dtype=np.int64), [len(items) for items in grams])
        known = cols >= 0
        m = sp.csr_matrix((np.ones(int(known.sum())), (rows[known], cols[known])), shape=(len(grams), len(self.vocab)),
                          dtype=np.float64)  # duplicates are summed: the counts
        m.sum_duplicates()
        m.data = (1.0 + np.log(m.data)) * self.idf[m.indices]
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / norms) @ m)


@dataclass
class TfidfClassifier:
    """The delivered tfidf_lr model: raw text in, class probabilities out."""

    labels: list[str]
    clean_cfg: CleanConfig
    settings: TfidfSettings
    blocks: dict[str, _Block]
    coef: np.ndarray  # [K, F]: K = 1 for two classes (sigmoid), else one row per class (softmax)
    intercept: np.ndarray  # [K]
    classes: np.ndarray  # label ids the regression saw in training (a class absent there gets probability 0)
    search: list[dict[str, Any]] = field(default_factory=list)  # validation scores of the settings tried

    kind = KIND

    def prepare(self, texts: Sequence[object]) -> list[str]:
        """Raw texts -> what the model reads (the networks' cleaning and per-text cut)."""
        return prepare_texts(texts, self.clean_cfg, self.settings.max_len)

    def grams(self, prepared: list[str], words: list[list[str]] | None = None) -> dict[str, list[list[str]]]:
        """n-grams per block; `words` are the jieba words of `prepared` when the caller already has them."""
        out: dict[str, list[list[str]]] = {}
        blocks = self.settings.blocks()
        if "char" in blocks:
            out["char"] = [char_ngrams(t, self.settings.char_ngrams) for t in prepared]
        if "word" in blocks:
            out["word"] = [word_ngrams(w, self.settings.word_ngrams) for w in (segment_texts(prepared) if words is None else words)]
        return out

    def features(self, prepared: list[str], words: list[list[str]] | None = None) -> sp.csr_matrix:
        grams = self.grams(prepared, words)
        return sp.hstack([self.blocks[b].transform(grams[b]) for b in self.settings.blocks()], format="csr")

    def predict_proba(self, texts: Sequence[object], batch_size: int = 256) -> np.ndarray:
        """[N, C] probabilities in label order; batch_size is accepted for interface parity (the model is linear)."""
        return self.proba_from_features(self.features(self.prepare(texts)))

    def proba_from_features(self, x: sp.csr_matrix) -> np.ndarray:
        scores = np.asarray(x @ self.coef.T) + self.intercept
        if self.coef.shape[0] == 1:  # binary: sklearn's sigmoid on the decision function
            p1 = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            seen = np.stack([1.0 - p1, p1], axis=1)
        else:
            scores = scores - scores.max(axis=1, keepdims=True)
            seen = np.exp(scores)
            seen /= seen.sum(axis=1, keepdims=True)
        out = np.zeros((x.shape[0], len(self.labels)))
        out[:, self.classes] = seen
        return out

    def predict_proba_oov(self, texts: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and, per text, the share of its unigrams (words, else characters) unseen in training;
        the texts are cleaned and segmented once for both."""
        prepared = self.prepare(texts)
        words = segment_texts(prepared) if "word" in self.blocks else None
        probs = self.proba_from_features(self.features(prepared, words))
        units = words if words is not None else [list(t) for t in prepared]
        vocab = self.blocks["word" if words is not None else "char"].vocab
        return probs, np.array([sum(u not in vocab for u in us) / len(us) if us else 0.0 for us in units])

    def predict(self, texts: Sequence[object], batch_size: int = 256) -> pd.DataFrame:
        """One row per text: label, score (its probability) and prob_<label> for every class."""
        return proba_frame(self.predict_proba(list(texts), batch_size), self.labels)

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"kind": KIND, "labels": self.labels, "settings": self.settings.__dict__, "clean": self.clean_cfg.model_dump(),
                "classes": self.classes.tolist(), "search": self.search}
        (d / "model.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        vocabs = {name: sorted(b.vocab, key=b.vocab.__getitem__) for name, b in self.blocks.items()}
        (d / "features.json").write_text(json.dumps(vocabs, ensure_ascii=False), encoding="utf-8")
        np.savez(d / "arrays.npz", coef=self.coef, intercept=self.intercept,
                 **{f"idf_{name}": b.idf for name, b in self.blocks.items()})
        return d

    @classmethod
    def load(cls, directory: str | Path, device: Any = None) -> "TfidfClassifier":
        d = Path(directory)
        meta = json.loads((d / "model.json").read_text(encoding="utf-8"))
        vocabs = json.loads((d / "features.json").read_text(encoding="utf-8"))
        with np.load(d / "arrays.npz", allow_pickle=False) as arrays:
            blocks = {name: _Block({g: i for i, g in enumerate(items)}, arrays[f"idf_{name}"]) for name, items in vocabs.items()}
            coef, intercept = arrays["coef"], arrays["intercept"]
        return cls(list(meta["labels"]), CleanConfig(**meta["clean"]), TfidfSettings(**meta["settings"]), blocks, coef,
                   intercept, np.asarray(meta["classes"], dtype=int), meta.get("search", []))


def _fit_block(grams: list[list[str]], min_df: int) -> tuple[_Block, sp.csr_matrix]:
    """Vocabulary, smoothed idf and the training matrix, from sklearn's TfidfVectorizer (whose transform
    `_Block.transform` repeats; a test keeps them equal). min_df falls to 1 on a handful of texts."""
    vec = TfidfVectorizer(analyzer=lambda g: g, min_df=min_df if len(grams) >= 10 * min_df else 1, sublinear_tf=True)
    x = vec.fit_transform(grams)
    return _Block({str(k): int(v) for k, v in vec.vocabulary_.items()}, vec.idf_.astype(np.float64)), sp.csr_matrix(x)


def _score(y_true: np.ndarray, probs: np.ndarray, metric: str) -> float:
    from sklearn.metrics import accuracy_score, f1_score

    pred = probs.argmax(axis=1)
    if metric == "val_macro_f1":
        return float(f1_score(y_true, pred, labels=list(range(probs.shape[1])), average="macro", zero_division=0))
    return float(accuracy_score(y_true, pred))


def new_probe(labels: list[str], clean_cfg: CleanConfig, settings: TfidfSettings) -> TfidfClassifier:
    """An unfitted model: its `prepare` and `grams` are what fitting and prediction use."""
    return TfidfClassifier(labels, clean_cfg, settings, {}, np.zeros((1, 0)), np.zeros(1), np.zeros(0, dtype=int))


def fit_tfidf_lr(train_texts: Sequence[object], y_train: Sequence[int], val_texts: Sequence[object], y_val: Sequence[int],
                 labels: list[str], clean_cfg: CleanConfig, base: TfidfSettings, feature_sets: Sequence[str],
                 c_values: Sequence[float], select_metric: str = "val_accuracy",
                 words: tuple[list[list[str]], list[list[str]]] | None = None, prepared: bool = False,
                 keep: dict[str, sp.csr_matrix] | None = None) -> TfidfClassifier:
    """Fit every (feature set, C) on train and pick one on validation (`select_metric`): the default setting (the first
    feature set with the middle C) unless another one beats it by more than one paired standard error of the
    difference; then the best (ties: the earlier one). On a few dozen validation texts the best of nine settings is
    mostly noise, so the default stays; on thousands a real gain replaces it.

    Texts are RAW. `words`: the jieba words of the prepared train and val texts when the caller has them (the encode
    stage's cached segmentation), else they are segmented here; prepared=True: the texts already went through
    prepare_texts with these settings (it is a fixpoint, so this only saves the second pass). The vocabularies are fitted once on train; a feature
    set is a subset of the l2-normalised blocks, so trying several costs only the regressions. Each C warm-starts
    from the previous one's weights (same optimum, fewer steps). keep: a dict that receives the chosen feature set's
    train and val matrices ("train", "val"), for work that reuses them (the out-of-fold label-error search).
    """
    y_train, y_val = np.asarray(y_train), np.asarray(y_val)
    needed = sorted({b for fs in feature_sets for b in fs.split("+")})
    probe = new_probe(labels, clean_cfg, TfidfSettings(**{**base.__dict__, "features": "+".join(needed)}))
    w_train, w_val = words if words is not None else (None, None)
    prep = (lambda t: list(t)) if prepared else probe.prepare
    grams_train = probe.grams(prep(train_texts), w_train)
    grams_val = probe.grams(prep(val_texts), w_val)
    fitted = {b: _fit_block(grams_train[b], base.min_df) for b in needed}
    blocks, x_train = {b: f[0] for b, f in fitted.items()}, {b: f[1] for b, f in fitted.items()}
    x_val = {b: blocks[b].transform(grams_val[b]) for b in needed}
    classes = np.unique(y_train)
    tried: list[tuple[float, TfidfClassifier, np.ndarray]] = []
    stacked: dict[str, tuple[sp.csr_matrix, sp.csr_matrix]] = {}
    search: list[dict[str, Any]] = []
    for fs in feature_sets:
        parts = fs.split("+")
        xt = sp.hstack([x_train[b] for b in parts], format="csr")
        xv = sp.hstack([x_val[b] for b in parts], format="csr")
        stacked[fs] = (xt, xv)
        lr = LogisticRegression(max_iter=2000, warm_start=True)
        for c in c_values:
            lr.set_params(C=float(c)).fit(xt, y_train)
            clf = TfidfClassifier(labels, clean_cfg, TfidfSettings(**{**base.__dict__, "features": fs, "c": float(c)}),
                                  {b: blocks[b] for b in parts}, lr.coef_.copy(), lr.intercept_.copy(), classes)
            probs = clf.proba_from_features(xv)
            score = _score(y_val, probs, select_metric)
            search.append({"features": fs, "c": float(c), select_metric: score})
            tried.append((score, clf, probs))
    assert tried, "fit_tfidf_lr needs at least one feature set and one C"
    best = max(tried, key=lambda t: t[0])  # max keeps the first of equal scores
    default = tried[len(c_values) // 2]  # first feature set, middle C
    se = paired_se(y_val, best[2], default[2], select_metric)
    chosen = default if best[0] - default[0] <= se else best
    chosen[1].search = search
    if keep is not None:
        keep["train"], keep["val"] = stacked[chosen[1].settings.features]
    return chosen[1]
