"""Test-set metrics, calibration, slices, badcases and the comparison against the champion.

Everything takes (y_true, probs, labels) so the neural model, the TF-IDF baseline and a registered
champion are scored by the same code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

BADCASE_COLUMNS = ["row_id", "text", "true_label", "pred_label", "confidence", "true_label_prob", "loss",
                   "length", "oov_rate", "confusion_pair"]
LENGTH_BUCKETS = (0, 20, 50, 100, 200, np.inf)
CONFIDENCE_BUCKETS = {"unsure (<0.7)": (0.0, 0.7), "fairly sure (0.7-0.9)": (0.7, 0.9), "confidently wrong (>=0.9)": (0.9, 1.01)}


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> tuple[float, pd.DataFrame]:
    """ECE over equal-width confidence bins, and the per-bin table used for the reliability diagram."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, n_bins + 1)
    rows, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            acc, mean_conf = correct[mask].mean(), conf[mask].mean()
            ece += mask.mean() * abs(acc - mean_conf)
            rows.append({"bin_low": lo, "bin_high": hi, "count": int(mask.sum()), "accuracy": float(acc), "confidence": float(mean_conf)})
    return float(ece), pd.DataFrame(rows, columns=["bin_low", "bin_high", "count", "accuracy", "confidence"])


def _ranking_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float | None]:
    """ROC-AUC and PR-AUC: binary on the second class, one-vs-rest macro for more classes."""
    n_classes = probs.shape[1]
    present = np.unique(y_true)
    if len(present) < 2:
        return {"roc_auc": None, "pr_auc": None}
    if n_classes == 2:
        return {"roc_auc": float(roc_auc_score(y_true, probs[:, 1])), "pr_auc": float(average_precision_score(y_true, probs[:, 1]))}
    onehot = np.eye(n_classes)[y_true][:, present]
    p = probs[:, present]
    return {"roc_auc": float(roc_auc_score(onehot, p, average="macro", multi_class="ovr")),
            "pr_auc": float(average_precision_score(onehot, p, average="macro"))}


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class P/R/F1/support, confusion (counts and row-normalised),
    ROC-AUC, PR-AUC, log loss and expected calibration error."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)  # float32 softmax sums drift from 1
    y_pred = probs.argmax(axis=1)
    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=idx)
    with np.errstate(invalid="ignore", divide="ignore"):
        cm_norm = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    ece, _ = expected_calibration_error(y_true, probs)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=idx, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=idx, average="weighted", zero_division=0)),
        "log_loss": float(log_loss(y_true, np.clip(probs, 1e-12, 1), labels=idx)),
        "ece": ece,
        **_ranking_metrics(y_true, probs),
        "per_class": {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, name in enumerate(labels)},
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalized": cm_norm.round(6).tolist(),
    }


def length_bucket(lengths: pd.Series | np.ndarray) -> pd.Series:
    """Character-length buckets such as '20-49' and '200+'."""
    edges = list(LENGTH_BUCKETS)
    names = [f"{int(lo)}-{int(hi) - 1}" if np.isfinite(hi) else f"{int(lo)}+" for lo, hi in zip(edges[:-1], edges[1:])]
    return pd.cut(pd.Series(lengths), bins=edges, right=False, labels=names).astype(str)


def slice_metrics(frame: pd.DataFrame, y_true: np.ndarray, probs: np.ndarray, by: pd.Series, name: str) -> pd.DataFrame:
    """Accuracy and macro-F1 for each value of `by` (a length bucket or a metadata column)."""
    y_pred = probs.argmax(axis=1)
    rows = []
    natural = lambda v: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", v)]  # noqa: E731  ("20-49" before "100-199")
    for value in sorted(pd.Series(by).astype(str).unique(), key=natural):
        m = (pd.Series(by).astype(str) == value).to_numpy()
        rows.append({"slice": name, "value": value, "n": int(m.sum()), "accuracy": float((y_pred[m] == y_true[m]).mean()),
                     "macro_f1": float(f1_score(y_true[m], y_pred[m], average="macro", zero_division=0))})
    return pd.DataFrame(rows)


def find_badcases(df: pd.DataFrame, probs: np.ndarray, y_true: np.ndarray, labels: list[str],
                  oov: np.ndarray | None = None) -> pd.DataFrame:
    """Every misclassified row with its loss, length, OOV rate and confusion pair; highest loss first."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y_true)
    p_true = probs[wrong, y_true[wrong]]
    texts = df["text"].to_numpy()[wrong]
    out = pd.DataFrame({
        "row_id": df["row_id"].to_numpy()[wrong],
        "text": texts,
        "true_label": [labels[i] for i in y_true[wrong]],
        "pred_label": [labels[i] for i in pred[wrong]],
        "confidence": probs[wrong, pred[wrong]],
        "true_label_prob": p_true,
        "loss": -np.log(np.clip(p_true, 1e-12, 1)),
        "length": [len(t) for t in texts],
        "oov_rate": oov[wrong] if oov is not None else np.nan,
    }, columns=BADCASE_COLUMNS[:-1])
    out["confusion_pair"] = out["true_label"] + " -> " + out["pred_label"]
    return out.sort_values("loss", ascending=False, kind="stable").reset_index(drop=True)


def group_badcases(badcases: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Counts and mean loss by confusion pair, by length bucket and by confidence bucket."""
    conf_bucket = pd.Series("", index=badcases.index)
    for name, (lo, hi) in CONFIDENCE_BUCKETS.items():
        conf_bucket[(badcases["confidence"] >= lo) & (badcases["confidence"] < hi)] = name
    keys = {"confusion_pair": badcases["confusion_pair"], "length_bucket": length_bucket(badcases["length"]),
            "confidence_bucket": conf_bucket}
    return {name: (badcases.assign(key=key.to_numpy()).groupby("key")
                   .agg(count=("row_id", "size"), mean_loss=("loss", "mean"), example=("text", "first"))
                   .sort_values("count", ascending=False).reset_index().rename(columns={"key": name}))
            for name, key in keys.items()}


def compare_with_champion(frame: pd.DataFrame, y_true: np.ndarray, cand_probs: np.ndarray, champ_probs: np.ndarray,
                          labels: list[str]) -> dict[str, Any]:
    """Metric deltas (candidate - champion), and the examples the candidate newly gets wrong or right."""
    cand, champ = compute_metrics(y_true, cand_probs, labels), compute_metrics(y_true, champ_probs, labels)
    cand_ok, champ_ok = cand_probs.argmax(1) == y_true, champ_probs.argmax(1) == y_true

    def _rows(mask: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"row_id": frame["row_id"].to_numpy()[mask], "text": frame["text"].to_numpy()[mask],
                             "true_label": [labels[i] for i in y_true[mask]],
                             "candidate_label": [labels[i] for i in cand_probs.argmax(1)[mask]],
                             "champion_label": [labels[i] for i in champ_probs.argmax(1)[mask]]})

    overall = {k: cand[k] - champ[k] for k in ("accuracy", "macro_f1", "weighted_f1", "log_loss", "ece")}
    per_class = {name: {k: cand["per_class"][name][k] - champ["per_class"][name][k] for k in ("precision", "recall", "f1")}
                 for name in labels}
    return {"candidate": cand, "champion": champ, "delta": overall, "delta_per_class": per_class,
            "newly_wrong": _rows(champ_ok & ~cand_ok), "newly_right": _rows(~champ_ok & cand_ok)}


def confusion_frame(metrics: dict[str, Any], labels: list[str], normalized: bool = False) -> pd.DataFrame:
    """Confusion matrix as a labelled frame: index true label, columns predicted label."""
    data = metrics["confusion_matrix_normalized" if normalized else "confusion_matrix"]
    return pd.DataFrame(data, index=pd.Index(labels, name="true"), columns=pd.Index(labels, name="pred"))


# Chinese class names need a CJK font; the first one installed wins, DejaVu (no CJK glyphs) is the last resort
CJK_FONTS = ["Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Zen Hei", "SimHei",
             "Microsoft YaHei", "PingFang SC", "DejaVu Sans"]


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display) with CJK-capable fonts first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["font.sans-serif"] = CJK_FONTS
    plt.rcParams["font.family"] = "sans-serif"
    plt.rcParams["axes.unicode_minus"] = False
    return plt


def save_confusion_png(cm: pd.DataFrame, path: str | Path, title: str = "Confusion matrix (test)") -> Path:
    """Render the confusion matrix as a PNG with the value in every cell."""
    plt = pyplot()
    n = len(cm)
    fig, ax = plt.subplots(figsize=(2 + 0.8 * n, 1.6 + 0.8 * n), dpi=110)
    ax.imshow(cm.to_numpy(dtype=float), cmap="Blues")
    ax.set_xticks(range(n), [str(c) for c in cm.columns], rotation=45, ha="right")
    ax.set_yticks(range(n), [str(i) for i in cm.index])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    vmax = cm.to_numpy(dtype=float).max() if n else 0
    for i in range(n):
        for j in range(n):
            v = cm.iat[i, j]
            ax.text(j, i, f"{v:.2f}" if isinstance(v, float) else str(v), ha="center", va="center",
                    color="white" if v > vmax / 2 else "black")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def save_reliability_png(bins: pd.DataFrame, ece: float, path: str | Path) -> Path:
    """Reliability diagram: accuracy against mean confidence per bin, with the diagonal."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=110)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot(bins["confidence"], bins["accuracy"], "o-", label="model")
    ax.set_xlabel("mean confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability (ECE {ece:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
