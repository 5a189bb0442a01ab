"""Test-set metrics, confusion matrix and the badcase table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

BADCASE_COLUMNS = ["row_id", "text", "true_label", "pred_label", "confidence", "true_label_prob"]


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix (rows = true)."""
    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=idx, average="macro", zero_division=0)),
        "per_class": {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, name in enumerate(labels)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=idx).tolist(),
        "n": int(len(y_true)),
    }


def find_badcases(df: pd.DataFrame, probs: np.ndarray, y_true: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """Every misclassified row, most confidently wrong first."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y_true)
    out = pd.DataFrame({
        "row_id": df["row_id"].to_numpy()[wrong],
        "text": df["text"].to_numpy()[wrong],
        "true_label": [labels[i] for i in y_true[wrong]],
        "pred_label": [labels[i] for i in pred[wrong]],
        "confidence": probs[wrong, pred[wrong]],
        "true_label_prob": probs[wrong, y_true[wrong]],
    }, columns=BADCASE_COLUMNS)
    return out.sort_values("confidence", ascending=False, kind="stable").reset_index(drop=True)


def confusion_frame(metrics: dict[str, Any], labels: list[str]) -> pd.DataFrame:
    """Confusion matrix as a labelled frame: index true label, columns predicted label."""
    return pd.DataFrame(metrics["confusion_matrix"], index=pd.Index(labels, name="true"), columns=pd.Index(labels, name="pred"))


def save_confusion_png(cm: pd.DataFrame, path: str | Path, title: str = "Confusion matrix (test)") -> Path:
    """Render the confusion matrix as a PNG with counts in every cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(cm)
    fig, ax = plt.subplots(figsize=(2 + 0.8 * n, 1.6 + 0.8 * n), dpi=110)
    ax.imshow(cm.to_numpy(), cmap="Blues")
    ax.set_xticks(range(n), [str(c) for c in cm.columns], rotation=45, ha="right")
    ax.set_yticks(range(n), [str(i) for i in cm.index])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    vmax = cm.to_numpy().max() if n else 0
    for i in range(n):
        for j in range(n):
            v = cm.iat[i, j]
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > vmax / 2 else "black")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
