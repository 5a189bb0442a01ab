"""Dataset analysis: class balance, lengths, empties, duplicates and conflicting labels."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from textcls_core.dataset.clean import text_limits
from textcls_core.dataset.columnar import BATCH_ROWS, LabelCodes, group_starts, iter_parquet, parquet_rows_at, text_keys
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


class Profiler:
    """analyze_dataset over a file a chunk at a time: per row it keeps a 128-bit text key, a label code, a
    length and an empty flag (about 25 bytes), never the texts, so a file's analysis needs a small fraction of
    the file's size. `finish` asks for the few rows it reports (the token sample, conflicting examples).
    workers: processes for the token sample's jieba pass (segment_texts; the same tokens for any number)."""

    def __init__(self, max_len: int = 256, workers: int = 1) -> None:
        self.char_limit = text_limits(max_len)[1]
        self.workers = workers
        self.labels = LabelCodes()
        self._parts: dict[str, list[np.ndarray]] = {k: [] for k in ("h1", "h2", "label", "nonempty", "chars")}
        self.rows = 0

    def add(self, chunk: pd.DataFrame) -> None:
        """One chunk of a canonical frame (text, label), in file order."""
        text = chunk["text"]
        h1, h2 = text_keys(text)
        for k, v in (("h1", h1), ("h2", h2), ("label", self.labels.encode(chunk["label"])),
                     ("nonempty", (text.str.strip() != "").to_numpy(dtype=bool)), ("chars", text.str.len().to_numpy(dtype=np.int64))):
            self._parts[k].append(v)
        self.rows += len(chunk)

    def _arrays(self) -> dict[str, np.ndarray]:
        dtypes = {"h1": np.uint64, "h2": np.uint64, "label": np.int32, "nonempty": bool, "chars": np.int64}
        out = {k: np.concatenate(v) if v else np.zeros(0, dtypes[k]) for k, v in self._parts.items()}
        self._parts = {k: [v] for k, v in out.items()}
        return out

    def lengths(self) -> pd.DataFrame:
        """label and character length of every non-empty text (the report's histograms)."""
        a = self._arrays()
        names = np.array(self.labels.names() or [""], dtype=object)
        return pd.DataFrame({"label": names[a["label"][a["nonempty"]]], "chars": a["chars"][a["nonempty"]]})

    def finish(self, fetch: Callable[[np.ndarray], pd.DataFrame], token_sample: int = 5000, seed: int = 0) -> dict[str, Any]:
        """The stats. fetch(positions) returns the rows at those file positions (text, label), in that order."""
        a = self._arrays()
        names = self.labels.names()
        label_names = np.array(names or [""], dtype=object)
        nonempty = a["nonempty"]
        counts = pd.Series(np.bincount(a["label"], minlength=len(names)), index=names, dtype="int64").sort_index()
        counts = counts[counts > 0]
        # duplicate rows: the same text and label as an earlier row (empty texts included)
        order = np.lexsort((a["label"], a["h2"], a["h1"]))
        pair_new = group_starts(a["h1"][order], a["h2"][order], a["label"][order])
        duplicate_rows = int(len(order) - pair_new.sum())
        # among non-empty texts: repeats, and texts with more than one label
        ne = np.flatnonzero(nonempty)
        o = ne[np.lexsort((a["label"][ne], a["h2"][ne], a["h1"][ne]))]
        text_new = group_starts(a["h1"][o], a["h2"][o])
        label_new = group_starts(a["h1"][o], a["h2"][o], a["label"][o])
        text_group = np.cumsum(text_new) - 1
        labels_per_text = np.bincount(text_group, weights=label_new) if len(o) else np.zeros(0)
        conflicted_first = o[text_new][labels_per_text > 1] if len(o) else o  # one row per conflicting text
        # the token sample: the same rows as nonempty.sample(n, random_state=seed) on the whole frame
        k = min(token_sample, len(ne))
        picked = pd.Series(np.arange(len(ne))).sample(n=k, random_state=seed).to_numpy() if k else np.zeros(0, np.int64)
        wanted = np.concatenate([np.sort(conflicted_first), ne[picked]]).astype(np.int64)
        rows = fetch(wanted) if len(wanted) else pd.DataFrame({"text": [], "label": []})  # one pass over a file
        conflicting = sorted(str(t) for t in rows["text"].iloc[: len(conflicted_first)])
        sample = rows.iloc[len(conflicted_first) :].reset_index(drop=True)
        sample_tokens = segment_texts((str(t)[: self.char_limit] for t in sample["text"].tolist()), self.workers)
        tok_lens = np.array([len(t) for t in sample_tokens])
        sample_labels = sample["label"].astype(str).to_numpy()
        char_lens = a["chars"][nonempty]
        ne_labels = label_names[a["label"][nonempty]]
        per_class = {str(label): {"chars": _percentiles(char_lens[ne_labels == label]),
                                  "tokens": _percentiles(tok_lens[sample_labels == label])}
                     for label in counts.index}
        empty_labels = int(counts.get("", 0))
        return {
            "rows": int(self.rows),
            "classes": int(counts.size),
            "class_counts": {str(k): int(v) for k, v in counts.items()},
            "imbalance_ratio": round(float(counts.max() / counts.min()), 3) if counts.size else 0.0,
            "empty_rows": int((~nonempty).sum()),
            "empty_labels": empty_labels,
            "duplicate_rows": duplicate_rows,
            "duplicate_texts": int(len(o) - text_new.sum()),
            "conflicting_texts": int(len(conflicted_first)),
            "conflicting_examples": [t[:80] for t in conflicting[:5]],
            "char_length": _percentiles(char_lens),
            "texts_longer_than_model_reads": int((char_lens > self.char_limit).sum()),  # cut to char_limit before segmentation
            "model_char_limit": self.char_limit,
            "token_length": _percentiles(tok_lens) | {"sampled_texts": int(len(sample))},
            # tokenize.max_len that keeps 95% of texts whole (the rest are cut, never dropped)
            "recommended_max_len": int(np.ceil(np.percentile(tok_lens, 95))) if len(tok_lens) else 0,
            "length_by_class": per_class,
            "script_share": script_share([str(t) for t in sample["text"].tolist()]),
            "sample_vocabulary_size": len({w for toks in sample_tokens for w in toks}),
            "distinctive_tokens": distinctive_tokens(sample_tokens, sample_labels.tolist()),
        }


def analyze_dataset(df: pd.DataFrame, token_sample: int = 5000, seed: int = 0, max_len: int = 256) -> dict[str, Any]:
    """Facts about a canonical frame (text, label). Character lengths are those of the texts as given; token
    lengths use a jieba pass over a sample, each text cut first to what a `max_len`-token model reads
    (clean.text_limits), so one huge unpunctuated text cannot stall the stage (jieba's HMM is quadratic in it).
    The same computation as profile_parquet, which reads a file a chunk at a time."""
    prof = Profiler(max_len)
    prof.add(df)
    return prof.finish(lambda pos: df.iloc[pos][["text", "label"]], token_sample, seed)


def profile_parquet(path: str | Path, token_sample: int = 5000, seed: int = 0, max_len: int = 256,
                    batch_rows: int = BATCH_ROWS, workers: int = 1) -> tuple[dict[str, Any], pd.DataFrame]:
    """analyze_dataset of a Parquet file (row_id, text, label, ...) read a batch at a time, and the lengths
    frame of its report (Profiler.lengths). workers: see Profiler."""
    prof = Profiler(max_len, workers)
    for batch in iter_parquet(path, ["text", "label"], batch_rows):
        prof.add(batch)
    return prof.finish(lambda pos: parquet_rows_at(path, pos, batch_rows=batch_rows), token_sample, seed), prof.lengths()


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


def save_analysis_html(stats: dict[str, Any], lengths: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Self-contained HTML: the facts as tables, a class bar chart and per-class length histograms.

    lengths: label and chars of every non-empty text (Profiler.lengths, or lengths_of(frame))."""
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
        for label, g in lengths.groupby("label"):
            ax.hist(g["chars"].clip(upper=cap), bins=40, alpha=0.5, label=str(label))
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


def lengths_of(df: pd.DataFrame) -> pd.DataFrame:
    """label and character length of every non-empty text of a frame (save_analysis_html's input)."""
    nonempty = df[df["text"].str.strip() != ""]
    return pd.DataFrame({"label": nonempty["label"].to_numpy(), "chars": nonempty["text"].str.len().to_numpy()})
