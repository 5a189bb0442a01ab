"""`tfidf_lr`: character and jieba-word n-gram TF-IDF + logistic regression, a shippable model family.

It takes RAW text like TextClassifier (the same `prepare_texts`: cleaning settings and per-text cut), has the same
public interface (labels, clean_cfg, predict_proba, predict, save, load) and is saved as plain files, never a
pickle: model.json (kind, labels, settings), features.json (the n-gram vocabularies) and arrays.npz (idf and the
logistic-regression weights, loaded with allow_pickle=False). Its settings (feature set, C) are picked on the
validation split by `fit_tfidf_lr`; `refit_tfidf_lr` then fits the same settings again on train + validation for the
model that ships (model.tfidf_refit), so the validation rows add to its vocabulary and weights.
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


_CP_BITS = 21  # every Unicode code point is below 2**21, so up to 3 characters pack into one int64 key


def _weighted_csr(rows: np.ndarray, cols: np.ndarray, n: int, width: int, idf: np.ndarray,
                  sum_order: np.ndarray | None = None) -> sp.csr_matrix:
    """(row, column) of every n-gram occurrence (column -1: not in the vocabulary) -> counts -> (1 + log count) *
    idf -> l2-normalised rows, as sklearn's TfidfVectorizer(sublinear_tf=True) computes them; numpy builds the CSR
    arrays directly (scipy's COO conversion, duplicate summing and diagonal product took 3x as long)."""
    known = cols >= 0
    keys, counts = np.unique(rows[known] * width + cols[known], return_counts=True)  # sorted: by row, then column
    rows, cols = np.divmod(keys, width)
    data = (1.0 + np.log(counts)) * idf[cols]
    if sum_order is not None:  # a row's entries in this column order (fit: sklearn's, see fit_block), not sorted
        perm = np.lexsort((sum_order[cols], rows))
        rows, cols, data = rows[perm], cols[perm], data[perm]
    norms = np.sqrt(np.bincount(rows, weights=data * data, minlength=n))
    norms[norms == 0] = 1.0
    data /= norms[rows]  # a division, as sklearn's row normalisation does: the same bits, not a rounding apart
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return sp.csr_matrix((data, cols, indptr), shape=(n, width))


def char_units(texts: list[str]) -> np.ndarray:
    """The code points of the texts, end to end (a lone surrogate is its own code point, as ord() gives it)."""
    return np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)


class _GramIndex:
    """A block's vocabulary as integer keys, one hash table per n-gram order, so prediction looks up n-grams
    without making a Python string for each: a character n-gram's key packs its code points, a word n-gram's
    its word ids. Looking a string up in the block's dict cost ~500 ns per n-gram (a large dict: cache misses),
    about as much as jieba itself on the same texts (benchmarks/predict_vs_jieba.py)."""

    def __init__(self, vocab: dict[str, int], kind: str) -> None:
        self.kind = kind
        self.word_ids: dict[str, int] = {}
        grams, cols = list(vocab), np.fromiter(vocab.values(), np.int64, len(vocab))
        if kind == "word":
            # the words of every n-gram, end to end, without a list per n-gram (the same words): with 75,741 word
            # n-grams in a process that has imported the flow, 0.03 s instead of 0.29 s, most of it garbage collection
            flat = " ".join(grams).split(" ") if grams else []
            self.word_ids = {w: i for i, w in enumerate(sorted(set(flat)))}
            lens = np.fromiter((g.count(" ") + 1 for g in grams), np.int64, len(grams))
            units = np.fromiter(map(self.word_ids.__getitem__, flat), np.int64, len(flat))
        else:
            lens = np.fromiter(map(len, grams), np.int64, len(grams))
            units = char_units(grams)
        self.base = max(len(self.word_ids), 1)
        starts = np.cumsum(lens) - lens
        self.tables: dict[int, tuple[pd.Index, np.ndarray]] = {}
        for n in np.unique(lens).tolist():
            pick = np.flatnonzero(lens == n)
            key = units[starts[pick]].copy()
            for k in range(1, n):
                key = self._combine(key, units[starts[pick] + k])
            self.tables[n] = (pd.Index(key), cols[pick])

    def _combine(self, key: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return (key << _CP_BITS) | nxt if self.kind == "char" else key * self.base + nxt

    @staticmethod
    def fits(kind: str, n_max: int, vocab_words: int) -> bool:
        """Whether n_max-gram keys fit in an int64."""
        return n_max * _CP_BITS <= 63 if kind == "char" else max(vocab_words, 1) ** n_max < 2**63

    def _lookup(self, n: int, keys: np.ndarray) -> np.ndarray:
        if n not in self.tables:
            return np.full(len(keys), -1, dtype=np.int64)
        index, cols = self.tables[n]
        pos = index.get_indexer(keys)
        return np.where(pos >= 0, cols[pos], -1)

    def rows_cols(self, units: np.ndarray, lens: np.ndarray, n_max: int) -> tuple[np.ndarray, np.ndarray]:
        """(row, column) of every 1..n_max-gram of every text; units: the texts' code points (char) or word ids
        (word, -1 for a word no vocabulary n-gram holds) end to end, lens: units per text."""
        total = len(units)
        row_of = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
        end_of = np.repeat(np.cumsum(lens), lens)
        starts = np.arange(total, dtype=np.int64)
        rows, cols = [], []
        for n in range(1, n_max + 1):
            idx = starts[starts + n <= end_of]
            key = units[idx].copy()
            ok = key >= 0
            for k in range(1, n):
                nxt = units[idx + k]
                ok &= nxt >= 0
                key = self._combine(key, nxt)
            col = self._lookup(n, key)
            col[~ok] = -1
            rows.append(row_of[idx])
            cols.append(col)
        return np.concatenate(rows), np.concatenate(cols)


@dataclass
class _Block:
    """One TF-IDF block: vocabulary and idf, applied like sklearn's TfidfVectorizer (sublinear tf, l2 norm)."""

    vocab: dict[str, int]
    idf: np.ndarray
    _index: dict[str, _GramIndex] = field(default_factory=dict, init=False, repr=False, compare=False)

    def transform(self, grams: list[list[str]]) -> sp.csr_matrix:
        """The TF-IDF rows of texts given as n-gram strings (one dict lookup per n-gram)."""
        n = len(grams)
        lens = np.fromiter(map(len, grams), np.int64, n)
        total = int(lens.sum())
        cols = np.fromiter(map(self.vocab.get, chain.from_iterable(grams), repeat(-1, total)), np.int64, total)
        return _weighted_csr(np.repeat(np.arange(n, dtype=np.int64), lens), cols, n, len(self.vocab), self.idf)

    def gram_index(self, kind: str) -> _GramIndex:
        if kind not in self._index:
            self._index[kind] = _GramIndex(self.vocab, kind)
        return self._index[kind]

    def transform_chars(self, texts: list[str], n_max: int) -> sp.csr_matrix:
        """transform([char_ngrams(t, n_max) for t in texts]), without making the n-gram strings."""
        if not _GramIndex.fits("char", n_max, 0):
            return self.transform([char_ngrams(t, n_max) for t in texts])
        lens = np.fromiter(map(len, texts), np.int64, len(texts))
        units = char_units(texts)
        rows, cols = self.gram_index("char").rows_cols(units, lens, n_max)
        return _weighted_csr(rows, cols, len(texts), len(self.vocab), self.idf)

    def transform_words(self, words: list[list[str]], n_max: int) -> sp.csr_matrix:
        """transform([word_ngrams(w, n_max) for w in words]), looking each word up once."""
        index = self.gram_index("word")
        flat = list(chain.from_iterable(words))
        if not _GramIndex.fits("word", n_max, len(index.word_ids)) or any(" " in w for w in flat):
            return self.transform([word_ngrams(w, n_max) for w in words])  # a space would make "a b" ambiguous
        lens = np.fromiter(map(len, words), np.int64, len(words))
        units = np.fromiter(map(index.word_ids.get, flat, repeat(-1, len(flat))), np.int64, len(flat))
        rows, cols = index.rows_cols(units, lens, n_max)
        return _weighted_csr(rows, cols, len(words), len(self.vocab), self.idf)


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
    fitted_on: str = "train"  # the splits its vocabulary and weights come from: "train", or "train+val" after a refit

    kind = KIND

    def prepare(self, texts: Sequence[object]) -> list[str]:
        """Raw texts -> what the model reads (the networks' cleaning and per-text cut)."""
        return prepare_texts(texts, self.clean_cfg, self.settings.max_len)

    def features(self, prepared: list[str], words: list[list[str]] | None = None) -> sp.csr_matrix:
        """The TF-IDF rows of prepared texts (the same as each block's transform of `grams`)."""
        parts = []
        for b in self.settings.blocks():
            if b == "char":
                parts.append(self.blocks[b].transform_chars(prepared, self.settings.char_ngrams))
            else:
                words = segment_texts(prepared) if words is None else words
                parts.append(self.blocks[b].transform_words(words, self.settings.word_ngrams))
        return sp.hstack(parts, format="csr")

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
        return self.proba_from_features(self.features(prepared, words)), self.oov_shares(prepared, words)

    def oov_shares(self, prepared: list[str], words: list[list[str]] | None = None) -> np.ndarray:
        """Per prepared text, the share of its unigrams unseen in training: jieba words when the model has a word
        block (`words`: their segmentation, computed here when None), else characters."""
        if "word" in self.blocks:
            units: Sequence[Sequence[str]] = segment_texts(prepared) if words is None else words
            vocab = self.blocks["word"].vocab
        else:
            units, vocab = prepared, self.blocks["char"].vocab
        return np.array([sum(u not in vocab for u in us) / len(us) if len(us) else 0.0 for us in units])

    def predict(self, texts: Sequence[object], batch_size: int = 256) -> pd.DataFrame:
        """One row per text: label, score (its probability) and prob_<label> for every class."""
        return proba_frame(self.predict_proba(list(texts), batch_size), self.labels)

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"kind": KIND, "labels": self.labels, "settings": self.settings.__dict__, "clean": self.clean_cfg.model_dump(),
                "classes": self.classes.tolist(), "search": self.search, "fitted_on": self.fitted_on}
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
        for name, block in blocks.items():
            block.gram_index(name)  # built at load, so a served model does no per-request setup
        return cls(list(meta["labels"]), CleanConfig(**meta["clean"]), TfidfSettings(**meta["settings"]), blocks, coef,
                   intercept, np.asarray(meta["classes"], dtype=int), meta.get("search", []), meta.get("fitted_on", "train"))


def _keyed_grams(kind: str, units: np.ndarray, lens: np.ndarray, n: int, n_max: int, base: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(text row, integer key, stream position) of every n-gram of order n, keys packed as _GramIndex packs them.
    The stream position numbers every n-gram of every text in the order char_ngrams/word_ngrams list them (text by
    text; in a text, 1-grams first), which is the order sklearn first meets them."""
    row_of = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
    end_of = np.repeat(np.cumsum(lens), lens)
    per_text = {m: np.maximum(lens - m + 1, 0) for m in range(1, n_max + 1)}
    text_start = np.cumsum(sum(per_text.values())) - sum(per_text.values())  # stream position of a text's first n-gram
    before = sum((per_text[m] for m in range(1, n)), np.zeros(len(lens), dtype=np.int64))  # its lower orders
    unit_start = np.cumsum(lens) - lens
    idx = np.flatnonzero(np.arange(len(units), dtype=np.int64) + n <= end_of)
    key = units[idx].copy()
    for k in range(1, n):
        key = (key << _CP_BITS) | units[idx + k] if kind == "char" else key * base + units[idx + k]
    rows = row_of[idx]
    return rows, key, text_start[rows] + before[rows] + (idx - unit_start[rows])


def _fit_vocabulary(kind: str, units: np.ndarray, lens: np.ndarray, n_max: int, min_df: int,
                    words: list[str]) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """Vocabulary (n-grams sorted as strings, as sklearn numbers them), smoothed idf and each column's first stream
    position, as TfidfVectorizer(min_df=min_df).fit computes them, counted on integer keys instead of n-gram
    strings: only the n-grams kept are made into strings. units: code points (char) or word ids into `words` (word)."""
    n_docs = len(lens)
    grams: list[str] = []
    dfs: list[np.ndarray] = []
    firsts: list[np.ndarray] = []
    base = max(len(words), 1)
    for n in range(1, n_max + 1):
        rows, keys, pos = _keyed_grams(kind, units, lens, n, n_max, base)
        if not len(keys):
            continue
        pairs = pd.DataFrame({"row": rows, "key": keys}).drop_duplicates()  # document frequency: once per text
        df = pairs["key"].value_counts(sort=False)
        df = df[df >= min_df]
        kept = df.index.to_numpy(dtype=np.int64)
        firsts.append(pd.Series(pos).groupby(keys).min().reindex(kept).to_numpy(dtype=np.int64))
        parts = []
        for j in range(n):  # the j-th unit of each kept n-gram
            shift = n - 1 - j
            parts.append((kept >> (_CP_BITS * shift)) & ((1 << _CP_BITS) - 1) if kind == "char" else (kept // base**shift) % base)
        if kind == "char":
            flat = np.stack(parts, axis=1).astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")
            grams.extend(flat[i : i + n] for i in range(0, len(flat), n))
        else:
            grams.extend(" ".join(words[i] for i in ids) for ids in zip(*(p.tolist() for p in parts)))
        dfs.append(df.to_numpy(dtype=np.float64))
    order = sorted(range(len(grams)), key=grams.__getitem__)
    df_all = np.concatenate(dfs)[order] if dfs else np.zeros(0)
    idf = np.log((1.0 + n_docs) / (1.0 + df_all)) + 1.0  # smooth_idf=True
    first = np.concatenate(firsts)[order] if firsts else np.zeros(0, dtype=np.int64)
    return {grams[i]: j for j, i in enumerate(order)}, idf, first


def fit_block(kind: str, texts: list[str], words: list[list[str]] | None, n_max: int, min_df: int
              ) -> tuple[_Block, sp.csr_matrix]:
    """One block's vocabulary, idf and training matrix: what _fit_block (sklearn's TfidfVectorizer on n-gram strings)
    gives, counted on integer n-gram keys (a test keeps them equal, bit for bit). sklearn's training matrix keeps a
    row's entries in the order it first met each column in the corpus (its l2 norm sums them in that order, and the
    regression's products too), so this one does: a last-bit difference changes the regressions' solutions. Falls back to _fit_block where keys do not fit an int64 or a
    word holds a space, and when no n-gram is kept (sklearn's error)."""
    min_df = min_df if len(texts) >= 10 * min_df else 1
    if kind == "char" and _GramIndex.fits("char", n_max, 0):
        lens = np.fromiter(map(len, texts), np.int64, len(texts))
        units = char_units(texts)
        vocab, idf, first = _fit_vocabulary("char", units, lens, n_max, min_df, [])
        if vocab:
            block = _Block(vocab, idf)
            rows, cols = block.gram_index("char").rows_cols(units, lens, n_max)
            return block, _weighted_csr(rows, cols, len(texts), len(vocab), idf, first)
    elif kind == "word" and words is not None:
        flat = list(chain.from_iterable(words))
        codes, uniques = pd.factorize(pd.Series(flat, dtype=object)) if flat else (np.zeros(0, np.int64), [])
        names = [str(w) for w in uniques]
        if _GramIndex.fits("word", n_max, len(names)) and not any(" " in w for w in names):
            lens = np.fromiter(map(len, words), np.int64, len(words))
            vocab, idf, first = _fit_vocabulary("word", np.asarray(codes, dtype=np.int64), lens, n_max, min_df, names)
            if vocab:
                block = _Block(vocab, idf)
                index = block.gram_index("word")
                units = np.fromiter(map(index.word_ids.get, flat, repeat(-1, len(flat))), np.int64, len(flat))
                rows, cols = index.rows_cols(units, lens, n_max)
                return block, _weighted_csr(rows, cols, len(words), len(vocab), idf, first)
    grams = [char_ngrams(t, n_max) for t in texts] if kind == "char" else [word_ngrams(w, n_max) for w in (words or [])]
    return _fit_block(grams, min_df)


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
    """An unfitted model: its `prepare` is what fitting and prediction use."""
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
    p_train, p_val = prep(train_texts), prep(val_texts)
    if "word" in needed and w_train is None:
        w_train, w_val = segment_texts(p_train), segment_texts(p_val)
    n_max = {"char": base.char_ngrams, "word": base.word_ngrams}
    fitted = {b: fit_block(b, p_train, w_train, n_max[b], base.min_df) for b in needed}
    blocks, x_train = {b: f[0] for b, f in fitted.items()}, {b: f[1] for b, f in fitted.items()}
    x_val = {b: blocks[b].transform_chars(p_val, n_max[b]) if b == "char" else blocks[b].transform_words(w_val, n_max[b])
             for b in needed}
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


def refit_tfidf_lr(clf: TfidfClassifier, texts: Sequence[object], y: Sequence[int], words: list[list[str]] | None = None,
                   prepared: bool = False, fitted_on: str = "train+val") -> TfidfClassifier:
    """`clf`'s settings (feature set, C, n-gram lengths, min_df), picked on validation, fitted again on `texts`:
    typically train + validation, so the model that ships learns from every labelled row the test split does not
    hold. New vocabularies, idf and regression; `search` (the validation scores that chose the settings) is kept.
    Texts are RAW unless prepared=True; `words`: their jieba words when the caller has them."""
    s = clf.settings
    y = np.asarray(y)
    prep = list(texts) if prepared else clf.prepare(texts)
    parts = s.blocks()
    if "word" in parts and words is None:
        words = segment_texts(prep)
    n_max = {"char": s.char_ngrams, "word": s.word_ngrams}
    fitted = {b: fit_block(b, prep, words, n_max[b], s.min_df) for b in parts}
    x = sp.hstack([fitted[b][1] for b in parts], format="csr")
    lr = LogisticRegression(C=float(s.c), max_iter=2000).fit(x, y)
    return TfidfClassifier(clf.labels, clf.clean_cfg, s, {b: fitted[b][0] for b in parts}, lr.coef_.copy(),
                           lr.intercept_.copy(), np.unique(y), list(clf.search), fitted_on)
