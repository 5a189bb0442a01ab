"""Dataset analysis: class balance, lengths, empties, duplicates and conflicting labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from textcls_core.tokenize import segment_texts

PERCENTILES = (50, 90, 95, 99)


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {f"p{p}": 0.0 for p in PERCENTILES} | {"max": 0.0, "mean": 0.0}
    out = {f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES}
    return out | {"max": float(values.max()), "mean": round(float(values.mean()), 2)}


def analyze_dataset(df: pd.DataFrame, token_sample: int = 5000, seed: int = 0) -> dict[str, Any]:
    """Facts about a canonical frame (text, label). Token lengths use a jieba pass over a sample."""
    stripped = df["text"].str.strip()
    nonempty = df[stripped != ""]
    counts = df["label"].value_counts().sort_index()
    labels_per_text = nonempty.groupby("text")["label"].nunique()
    conflicting = labels_per_text[labels_per_text > 1]
    sample = nonempty.sample(n=min(token_sample, len(nonempty)), random_state=seed) if len(nonempty) else nonempty
    tok_lens = np.array([len(t) for t in segment_texts(sample["text"])])
    sample_labels = sample["label"].to_numpy()
    char_lens = nonempty["text"].str.len()
    per_class = {str(label): {"chars": _percentiles(char_lens[nonempty["label"] == label].to_numpy()),
                              "tokens": _percentiles(tok_lens[sample_labels == label])}
                 for label in counts.index}
    return {
        "rows": int(len(df)),
        "classes": int(counts.size),
        "class_counts": {str(k): int(v) for k, v in counts.items()},
        "imbalance_ratio": round(float(counts.max() / counts.min()), 3) if counts.size else 0.0,
        "empty_rows": int((stripped == "").sum()),
        "empty_labels": int((df["label"] == "").sum()),
        "duplicate_rows": int(df.duplicated(["text", "label"]).sum()),
        "duplicate_texts": int(nonempty.duplicated("text").sum()),
        "conflicting_texts": int(len(conflicting)),
        "conflicting_examples": [str(t)[:80] for t in conflicting.index[:5]],
        "char_length": _percentiles(nonempty["text"].str.len().to_numpy()),
        "token_length": _percentiles(tok_lens) | {"sampled_texts": int(len(sample))},
        # tokenize.max_len that keeps 95% of texts whole (the rest are cut, never dropped)
        "recommended_max_len": int(np.ceil(np.percentile(tok_lens, 95))) if len(tok_lens) else 0,
        "length_by_class": per_class,
    }


def format_report(stats: dict[str, Any], title: str = "Dataset analysis") -> str:
    """A short human-readable version of analyze_dataset's output."""
    lines = [f"# {title}", "", f"rows: {stats['rows']}   classes: {stats['classes']}   imbalance ratio (max/min): {stats['imbalance_ratio']}"]
    lines += [f"  {label}: {n}" for label, n in stats["class_counts"].items()]
    lines += [
        f"empty texts: {stats['empty_rows']}   empty labels: {stats['empty_labels']}",
        f"duplicate rows (same text and label): {stats['duplicate_rows']}   repeated texts: {stats['duplicate_texts']}",
        f"texts with conflicting labels: {stats['conflicting_texts']}",
    ]
    for name in ("char_length", "token_length"):
        p = stats[name]
        lines.append(f"{name}: mean {p['mean']}  p50 {p['p50']:.0f}  p90 {p['p90']:.0f}  p95 {p['p95']:.0f}  p99 {p['p99']:.0f}  max {p['max']:.0f}")
    lines.append(f"recommended tokenize.max_len (covers 95% of texts): {stats['recommended_max_len']}")
    for label, p in stats["length_by_class"].items():
        lines.append(f"  {label}: chars p50 {p['chars']['p50']:.0f} p95 {p['chars']['p95']:.0f}; tokens p50 {p['tokens']['p50']:.0f} p95 {p['tokens']['p95']:.0f}")
    if stats["conflicting_examples"]:
        lines.append("conflicting examples: " + " | ".join(stats["conflicting_examples"]))
    return "\n".join(lines) + "\n"
