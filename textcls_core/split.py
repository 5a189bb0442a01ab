"""Stratified train/val/test split by unique text, so no identical text lands in two splits."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from textcls_core.errors import DataError

SPLITS = ("train", "val", "test")


def split_dataset(df: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> dict[str, pd.DataFrame]:
    """Split a cleaned frame. Units are unique texts, stratified by label; every class is in every split."""
    counts = df["label"].value_counts()
    if len(counts) < 2:
        found = ", ".join(f"{k!r}" for k in counts.index) or "none"
        raise DataError(f"After cleaning the data has {len(counts)} class(es) ({found}); a classifier needs at least 2. Check data.label_column.")
    units = df.drop_duplicates("text")[["text", "label"]]
    unit_counts = units["label"].value_counts()
    too_small = unit_counts[unit_counts < 3]
    if len(too_small):
        detail = ", ".join(f"{k!r}: {v}" for k, v in too_small.items())
        raise DataError(f"Classes with fewer than 3 distinct texts cannot appear in train, val and test ({detail}). Add examples or remove these classes.")
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for label in sorted(unit_counts.index):
        texts = units.loc[units["label"] == label, "text"].to_numpy()
        texts = texts[rng.permutation(len(texts))]
        n = len(texts)
        n_test = max(1, round(n * test_fraction))
        n_val = max(1, round(n * val_fraction))
        n_test, n_val = min(n_test, n - 2), min(n_val, n - 1 - min(n_test, n - 2))
        for t in texts[:n_test]:
            assignment[t] = "test"
        for t in texts[n_test : n_test + n_val]:
            assignment[t] = "val"
        for t in texts[n_test + n_val :]:
            assignment[t] = "train"
    which = df["text"].map(assignment)
    return {name: df[which == name].reset_index(drop=True) for name in SPLITS}


def hash_frame(df: pd.DataFrame, columns: tuple[str, ...] = ("text", "label")) -> str:
    """sha256 of the listed columns, row by row: identical content gives an identical hash."""
    h = hashlib.sha256()
    for row in df[list(columns)].itertuples(index=False):
        h.update("\t".join(str(v) for v in row).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
