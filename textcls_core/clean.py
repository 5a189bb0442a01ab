"""Cleaning: normalise texts, then drop empty rows, conflicting labels and duplicates, each with a reason.

Invariant: len(input) == len(kept) + len(dropped); every dropped row carries its reason.
"""

from __future__ import annotations

import re
import unicodedata

import pandas as pd

from textcls_core.config import CleanConfig
from textcls_core.errors import DataError

# Cc control characters except whitespace we collapse anyway, plus zero-width and BOM characters.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u2060\ufeff]")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str, cfg: CleanConfig) -> str:
    """One text through the enabled normalisation rules. Used at training and at prediction time."""
    if cfg.nfkc:
        text = unicodedata.normalize("NFKC", text)
    if cfg.strip_control:
        text = _CONTROL.sub("", text)
    if cfg.collapse_whitespace:
        text = _SPACE.sub(" ", text).strip()
    return text


def _resolve_conflicts(df: pd.DataFrame, policy: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    n_labels = df.groupby("text")["label"].transform("nunique")
    conflicted = df[n_labels > 1]
    if conflicted.empty:
        return df, df.iloc[0:0].assign(reason=pd.Series(dtype=str))
    if policy == "fail":
        examples = "; ".join(f"{t[:40]!r} -> {sorted(g['label'].unique())}" for t, g in list(conflicted.groupby("text"))[:3])
        raise DataError(
            f"{conflicted['text'].nunique()} texts appear with more than one label (e.g. {examples}). "
            "Fix the labels, or set clean.conflict_policy to 'drop' or 'majority'."
        )
    if policy == "drop":
        return df[n_labels <= 1], conflicted.assign(reason="conflicting_label")
    # majority: keep rows whose label is the strict majority for that text; ties drop every row of the text.
    counts = conflicted.groupby(["text", "label"]).size().rename("n").reset_index()
    top = counts.sort_values("n", ascending=False).groupby("text").head(2)
    winners = {}
    for text, g in top.groupby("text"):
        ns = g["n"].tolist()
        if len(ns) == 1 or ns[0] > ns[1]:
            winners[text] = g["label"].iloc[0]
    keep_mask = conflicted.apply(lambda r: winners.get(r["text"]) == r["label"], axis=1)
    kept = pd.concat([df[n_labels <= 1], conflicted[keep_mask]]).sort_values("row_id")
    return kept, conflicted[~keep_mask].assign(reason="conflicting_label_minority")


def clean_dataset(df: pd.DataFrame, cfg: CleanConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (kept, dropped). `dropped` has the original row_id, text, label and a reason."""
    work = df.copy()
    work["text"] = [normalize_text(t, cfg) for t in work["text"]]
    dropped = []
    empty = (work["text"] == "") | (work["label"] == "")
    reasons = work.loc[empty, "text"].eq("").map({True: "empty_text", False: "empty_label"})
    dropped.append(work[empty].assign(reason=reasons))
    work = work[~empty]
    work, conflicts = _resolve_conflicts(work, cfg.conflict_policy)
    dropped.append(conflicts)
    if cfg.drop_duplicates:
        dup = work.duplicated(["text", "label"], keep="first")
        dropped.append(work[dup].assign(reason="duplicate"))
        work = work[~dup]
    dropped_df = pd.concat(dropped, ignore_index=True)[["row_id", "text", "label", "reason"]]
    # report dropped rows with their original text so a human can find them in the source file
    dropped_df["text"] = dropped_df["row_id"].map(df.set_index("row_id")["text"])
    kept = work.reset_index(drop=True)
    assert len(kept) + len(dropped_df) == len(df), "clean_dataset lost rows"
    return kept, dropped_df.sort_values("row_id").reset_index(drop=True)


def drop_unusable_rows(df: pd.DataFrame, cfg: CleanConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For scoring a labelled file: drop only rows with an empty text (after normalisation) or label.

    Duplicates and conflicting labels stay: they are real traffic, and evaluation should count them.
    """
    empty_text = pd.Series([normalize_text(t, cfg) == "" for t in df["text"]], index=df.index)
    empty = empty_text | (df["label"] == "")
    dropped = df[empty].assign(reason=empty_text[empty].map({True: "empty_text", False: "empty_label"}))
    return df[~empty].reset_index(drop=True), dropped[["row_id", "text", "label", "reason"]].reset_index(drop=True)
