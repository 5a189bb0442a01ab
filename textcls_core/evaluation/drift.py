"""Drift watch: a reference profile of a model's training data, and a comparison of new texts with it.

The profile (drift_profile.json in the model folder, so it ships with every registered version) holds binned
distributions of text length, per-text share of traditional characters and the training label prior (from the
train split), and of the per-text out-of-vocabulary rate and the prediction confidence (from the validation
split: held-out texts are what in-domain new data looks like to the model; the train split's OOV is 0 by
construction of the vocabulary). Each check has one statistic (PSI over the stored bins, or a two-sample KS test
on the stored confidence sample) and a threshold from the `monitor` config section.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from textcls_core.dataset.read import read_table
from textcls_core.runtime.config import MonitorConfig
from textcls_core.runtime.errors import DataError

PROFILE_FILE = "drift_profile.json"
PROFILE_VERSION = 1
OOV_EDGES = [0.0, 1e-9, 0.05, 0.1, 0.2, 0.35, 0.5]  # left edges: exactly 0, then (0, 5%), [5%, 10%), ...
TRADITIONAL_EDGES = [0.0, 1e-9, 0.1, 0.3]            # left edges: none, a few, some, mostly traditional characters
_EPS = 1e-4  # floor of a bin's share in PSI, so an empty bin gives a large but finite term


@dataclass
class DriftCheck:
    check: str
    statistic: str
    value: float | None      # None: not measurable for this model (e.g. no vocabulary)
    threshold: float
    drift: bool
    reference: str           # a readable summary of each side, for the table artifact
    current: str


def histogram(values: Sequence[float], left_edges: Sequence[float]) -> list[float]:
    """Share of values in each bin [edge_i, edge_{i+1}); the last bin is open to the right."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return [0.0] * len(left_edges)
    idx = np.searchsorted(np.asarray(left_edges, dtype=float), v, side="right") - 1
    counts = np.bincount(np.clip(idx, 0, len(left_edges) - 1), minlength=len(left_edges))
    return (counts / len(v)).tolist()


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index: sum (a - e) * ln(a / e) over bins, shares floored at 1e-4."""
    e = np.maximum(np.asarray(expected, dtype=float), _EPS)
    a = np.maximum(np.asarray(actual, dtype=float), _EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_statistic(reference: Sequence[float], current: Sequence[float]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (largest gap between the two empirical CDFs)."""
    from scipy.stats import ks_2samp

    a, b = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    return float(ks_2samp(a, b, method="exact" if len(a) * len(b) <= 10000 else "asymp").statistic)


def length_edges(lengths: Sequence[int], bins: int = 10) -> list[float]:
    """Left edges at the reference's deciles (duplicates merged), so each bin holds about a tenth of training texts."""
    q = np.quantile(np.asarray(lengths, dtype=float), np.linspace(0, 1, bins + 1)[:-1]) if len(lengths) else [0.0]
    return sorted({0.0, *(float(x) for x in q)})


def traditional_shares(texts: Sequence[str]) -> np.ndarray:
    """Per text, the share of its Chinese characters that OpenCC's t2s converts (0 for simplified or no Chinese)."""
    import opencc

    t2s = opencc.OpenCC("t2s").convert
    out = np.zeros(len(texts))
    for i, t in enumerate(texts):
        han = [c for c in t if "\u4e00" <= c <= "\u9fff"]
        if not han:
            continue
        s = "".join(han)
        conv = t2s(s)
        changed = sum(a != b for a, b in zip(s, conv)) if len(conv) == len(s) else int(conv != s) * len(s)
        out[i] = changed / len(han)
    return out


def oov_rates(ids: Sequence[Sequence[int]], unk_id: int) -> np.ndarray:
    """Per text, the share of its tokens that map to the unknown id (0 for an empty text)."""
    return np.array([sum(i == unk_id for i in x) / len(x) if len(x) else 0.0 for x in ids])


def _sample(values: np.ndarray, size: int, seed: int) -> list[float]:
    v = np.asarray(values, dtype=float)
    if len(v) > size:
        v = np.random.default_rng(seed).choice(v, size=size, replace=False)
    return [round(float(x), 5) for x in v]


def build_profile(train_texts: Sequence[str], train_labels: Sequence[str], labels: list[str], ref_probs: np.ndarray,
                  ref_oov: np.ndarray | None, sample_size: int = 5000, seed: int = 0) -> dict[str, Any]:
    """The reference profile: train texts and labels, and the model's probabilities (and OOV rates, None for a
    model without a vocabulary) on held-out reference texts."""
    lengths = np.array([len(t) for t in train_texts])
    edges = length_edges(lengths)
    trad = traditional_shares(train_texts)
    counts = pd.Series(list(train_labels)).value_counts()
    conf = ref_probs.max(axis=1) if len(ref_probs) else np.zeros(0)
    return {
        "format_version": PROFILE_VERSION, "n_train": len(train_texts), "n_reference": int(len(ref_probs)), "labels": labels,
        "length": {"edges": edges, "shares": histogram(lengths, edges), "mean": float(lengths.mean()) if len(lengths) else 0.0},
        "traditional": {"edges": TRADITIONAL_EDGES, "shares": histogram(trad, TRADITIONAL_EDGES),
                        "texts_with_traditional": float((trad > 0).mean()) if len(trad) else 0.0},
        "oov": None if ref_oov is None else {"edges": OOV_EDGES, "shares": histogram(ref_oov, OOV_EDGES), "mean": float(np.mean(ref_oov))},
        "label_prior": {name: float(counts.get(name, 0) / max(len(train_labels), 1)) for name in labels},
        "confidence": {"mean": float(conf.mean()) if len(conf) else 0.0, "sample": _sample(conf, sample_size, seed)},
    }


def compare_with_profile(profile: dict[str, Any], texts: Sequence[str], probs: np.ndarray, oov: np.ndarray | None,
                         cfg: MonitorConfig) -> list[DriftCheck]:
    """One DriftCheck per signal; `drift` is set only when the file has at least cfg.min_rows texts."""
    enough = len(texts) >= cfg.min_rows
    checks = []
    lengths = np.array([len(t) for t in texts])
    p = profile["length"]
    v = psi(p["shares"], histogram(lengths, p["edges"]))
    checks.append(DriftCheck("text_length", "psi", v, cfg.length_psi, enough and v > cfg.length_psi,
                             f"mean {p['mean']:.1f} chars", f"mean {lengths.mean() if len(lengths) else 0:.1f} chars"))
    p = profile["traditional"]
    trad = traditional_shares(texts)
    v = psi(p["shares"], histogram(trad, p["edges"]))
    checks.append(DriftCheck("traditional_script", "psi", v, cfg.traditional_psi, enough and v > cfg.traditional_psi,
                             f"{p['texts_with_traditional']:.1%} of texts", f"{(trad > 0).mean() if len(trad) else 0:.1%} of texts"))
    p = profile.get("oov")
    if p is None or oov is None:  # a model without a vocabulary: reported as not measurable, never as drift
        checks.append(DriftCheck("oov_rate", "psi", None, cfg.oov_psi, False, "model has no vocabulary", "n/a"))
    else:
        v = psi(p["shares"], histogram(oov, p["edges"]))
        checks.append(DriftCheck("oov_rate", "psi", v, cfg.oov_psi, enough and v > cfg.oov_psi,
                                 f"mean {p['mean']:.1%}", f"mean {np.mean(oov) if len(oov) else 0:.1%}"))
    labels, prior = profile["labels"], profile["label_prior"]
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=int)
    current = np.bincount(pred, minlength=len(labels)) / max(len(pred), 1)
    v = psi([prior[name] for name in labels], current)
    fmt = lambda d: ", ".join(f"{k} {x:.1%}" for k, x in d.items())  # noqa: E731
    checks.append(DriftCheck("predicted_labels", "psi", v, cfg.label_psi, enough and v > cfg.label_psi,
                             fmt(prior), fmt(dict(zip(labels, current.tolist())))))
    p = profile["confidence"]
    conf = probs.max(axis=1) if len(probs) else np.zeros(0)
    v = ks_statistic(p["sample"], conf) if len(conf) and p["sample"] else 0.0
    checks.append(DriftCheck("confidence", "ks", v, cfg.confidence_ks, enough and v > cfg.confidence_ks,
                             f"mean {p['mean']:.3f}", f"mean {conf.mean() if len(conf) else 0:.3f}"))
    return checks


def drift_table(checks: list[DriftCheck]) -> list[dict[str, Any]]:
    """Rows for a Prefect table artifact / CSV."""
    return [asdict(c) | {"value": None if c.value is None else round(c.value, 4)} for c in checks]


def save_profile(profile: dict[str, Any], model_dir: str | Path) -> Path:
    path = Path(model_dir) / PROFILE_FILE
    path.write_text(json.dumps(profile, ensure_ascii=False), encoding="utf-8")
    return path


def load_profile(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_texts(path: str | Path, text_column: str = "text", encoding: str = "auto") -> list[str]:
    """The text column of an unlabelled file, with the same checks and one-line errors as training data."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"Data file '{p}' does not exist. Pass an existing .csv, .tsv, .jsonl, .parquet or .xlsx file.")
    if p.stat().st_size == 0:
        raise DataError(f"Data file '{p}' is empty. It needs a header row and at least one row of text.")
    frame = read_table(p, encoding)
    if text_column not in frame.columns:
        raise DataError(f"Data file '{p}' has no column '{text_column}'; columns found: "
                        f"{', '.join(repr(str(c)) for c in frame.columns)}. Pass --text-column (or set data.text_column).")
    if len(frame) == 0:
        raise DataError(f"Data file '{p}' has a header but no rows. Add rows of text.")
    return frame[text_column].astype("string").fillna("").astype(str).tolist()
