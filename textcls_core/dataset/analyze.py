"""Dataset analysis: class balance, lengths, empties, duplicates and conflicting labels."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from textcls_core.dataset.clean import text_limits
from textcls_core.text.tokenize import segment_texts

PERCENTILES = (50, 90, 95, 99)
_CJK = re.compile(r"[\u4e00-\u9fff]")


def script_share(texts: list[str]) -> dict[str, float]:
    """Share of texts written in simplified, traditional or mixed script (OpenCC round trips);
    'neutral' texts read the same in both (or hold no Chinese)."""
    import opencc

    t2s, s2t = opencc.OpenCC("t2s").convert, opencc.OpenCC("s2t").convert
    counts = Counter()
    for t in texts:
        if not _CJK.search(t):
            counts["neutral"] += 1
            continue
        is_trad, is_simp = t2s(t) != t, s2t(t) != t
        counts["mixed" if is_trad and is_simp else "traditional" if is_trad else "simplified" if is_simp else "neutral"] += 1
    n = max(len(texts), 1)
    return {k: round(counts[k] / n, 4) for k in ("simplified", "traditional", "mixed", "neutral")}


def distinctive_tokens(token_lists: list[list[str]], labels: list[str], top_k: int = 10, min_count: int = 5) -> dict[str, list[str]]:
    """Per class, the words most over-represented against the other classes (smoothed log-odds ratio)."""
    by_class: dict[str, Counter] = {}
    for toks, label in zip(token_lists, labels):
        by_class.setdefault(label, Counter()).update(w for w in toks if len(w.strip()) > 0 and not w.isspace())
    total = Counter()
    for c in by_class.values():
        total.update(c)
    n_all = sum(total.values())
    out = {}
    for label, c in by_class.items():
        n_c, n_rest = sum(c.values()), n_all - sum(c.values())
        scores = {w: np.log((c[w] + 0.5) / (n_c - c[w] + 0.5)) - np.log((total[w] - c[w] + 0.5) / (n_rest - total[w] + c[w] + 0.5))
                  for w, k in c.items() if total[w] >= min_count and any(ch.isalnum() for ch in w)}
        out[str(label)] = [w for w, _ in sorted(scores.items(), key=lambda kv: -kv[1])[:top_k]]
    return out


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {f"p{p}": 0.0 for p in PERCENTILES} | {"max": 0.0, "mean": 0.0}
    out = {f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES}
    return out | {"max": float(values.max()), "mean": round(float(values.mean()), 2)}


def analyze_dataset(df: pd.DataFrame, token_sample: int = 5000, seed: int = 0, max_len: int = 256) -> dict[str, Any]:
    """Facts about a canonical frame (text, label). Character lengths are those of the texts as given; token
    lengths use a jieba pass over a sample, each text cut first to what a `max_len`-token model reads
    (clean.text_limits), so one huge unpunctuated text cannot stall the stage (jieba's HMM is quadratic in it)."""
    char_limit = text_limits(max_len)[1]
    stripped = df["text"].str.strip()
    nonempty = df[stripped != ""]
    counts = df["label"].value_counts().sort_index()
    # group and deduplicate by integer ids of the texts: grouping by the text itself expands every text of a
    # large file into a Python object; the ids are exact (pd.factorize), not hashes
    text_id, unique_texts = pd.factorize(df["text"])
    keyed = pd.DataFrame({"t": text_id, "label": df["label"].to_numpy()}, index=df.index)
    keyed_nonempty = keyed.loc[nonempty.index]
    labels_per_text = keyed_nonempty.groupby("t")["label"].nunique()
    conflicting = sorted(unique_texts[labels_per_text.index[labels_per_text > 1]])
    sample = nonempty.sample(n=min(token_sample, len(nonempty)), random_state=seed) if len(nonempty) else nonempty
    sample_tokens = segment_texts(t[:char_limit] for t in sample["text"].tolist())
    tok_lens = np.array([len(t) for t in sample_tokens])
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
        "duplicate_rows": int(keyed.duplicated(["t", "label"]).sum()),
        "duplicate_texts": int(keyed_nonempty.duplicated("t").sum()),
        "conflicting_texts": int(len(conflicting)),
        "conflicting_examples": [str(t)[:80] for t in conflicting[:5]],
        "char_length": _percentiles(char_lens.to_numpy()),
        "texts_longer_than_model_reads": int((char_lens > char_limit).sum()),  # cut to char_limit before segmentation
        "model_char_limit": char_limit,
        "token_length": _percentiles(tok_lens) | {"sampled_texts": int(len(sample))},
        # tokenize.max_len that keeps 95% of texts whole (the rest are cut, never dropped)
        "recommended_max_len": int(np.ceil(np.percentile(tok_lens, 95))) if len(tok_lens) else 0,
        "length_by_class": per_class,
        "script_share": script_share(sample["text"].tolist()),
        "sample_vocabulary_size": len({w for toks in sample_tokens for w in toks}),
        "distinctive_tokens": distinctive_tokens(sample_tokens, sample_labels.tolist()),
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
    if stats.get("texts_longer_than_model_reads"):
        lines.append(f"texts longer than the model reads ({stats['model_char_limit']} chars, cut before segmentation): "
                     f"{stats['texts_longer_than_model_reads']}")
    for label, p in stats["length_by_class"].items():
        lines.append(f"  {label}: chars p50 {p['chars']['p50']:.0f} p95 {p['chars']['p95']:.0f}; tokens p50 {p['tokens']['p50']:.0f} p95 {p['tokens']['p95']:.0f}")
    lines.append("script share: " + ", ".join(f"{k} {v:.1%}" for k, v in stats["script_share"].items()))
    for label, words in stats["distinctive_tokens"].items():
        lines.append(f"  distinctive for {label}: {' '.join(words)}")
    if stats["conflicting_examples"]:
        lines.append("conflicting examples: " + " | ".join(stats["conflicting_examples"]))
    return "\n".join(lines) + "\n"


def save_analysis_html(stats: dict[str, Any], df: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Self-contained HTML: the facts as tables, a class bar chart and per-class length histograms."""
    import tempfile

    from textcls_core.evaluation.html import image_html, render_report, table_html
    from textcls_core.evaluation.metrics import pyplot

    plt = pyplot()

    with tempfile.TemporaryDirectory() as tmp:
        bar, hist = Path(tmp) / "classes.png", Path(tmp) / "lengths.png"
        fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
        ax.bar(list(stats["class_counts"]), list(stats["class_counts"].values()))
        ax.set_title("rows per class")
        fig.tight_layout()
        fig.savefig(bar)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
        cap = max(stats["char_length"]["p99"], 1)
        for label, g in df[df["text"].str.strip() != ""].groupby("label"):
            ax.hist(g["text"].str.len().clip(upper=cap), bins=40, alpha=0.5, label=str(label))
        ax.set_title(f"text length in characters (clipped at p99 = {cap:.0f})")
        ax.legend()
        fig.tight_layout()
        fig.savefig(hist)
        plt.close(fig)
        facts = pd.DataFrame([{"fact": k, "value": str(v)} for k, v in stats.items()
                              if not isinstance(v, dict | list)])
        lengths = pd.DataFrame([{"class": c, **{f"chars {k}": v for k, v in p["chars"].items()},
                                 **{f"tokens {k}": v for k, v in p["tokens"].items()}} for c, p in stats["length_by_class"].items()])
        words = pd.DataFrame([{"class": c, "distinctive words": " ".join(w)} for c, w in stats["distinctive_tokens"].items()])
        html = render_report(title, [("Facts", table_html(facts)), ("Classes", image_html(bar, "classes")),
                                     ("Lengths", image_html(hist, "lengths") + table_html(lengths, float_format="{:.0f}")),
                                     ("Script", table_html(pd.DataFrame([stats["script_share"]]))),
                                     ("Distinctive words", table_html(words))])
    Path(path).write_text(html, encoding="utf-8")
    return Path(path)
