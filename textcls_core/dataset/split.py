"""Stratified train/val/test split by unique text, so no identical text lands in two splits."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from textcls_core.runtime.errors import DataError

SPLITS = ("train", "val", "test")


_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val",
                "test": "test", "testing": "test"}



def class_labels(train: pd.DataFrame) -> list[str]:
    """The run's classes in id order: the train split's labels, sorted. Label id i is class_labels(train)[i] in the
    encoded files, every candidate, the evaluation and the served model (the split puts every class in train)."""
    return sorted(train["label"].unique().tolist())

def normalize_group_ids(values: pd.Series) -> pd.Series:
    """Group ids as one canonical string each: 1, 1.0, "1" and " 1 " are one group (chunked Parquet/JSONL reading
    turns an integer column with nulls into floats in some chunks only); missing values become ""."""
    out = values.astype("string").fillna("").astype(str).str.strip()
    out = out.where(~out.str.lower().isin(["nan", "none", "<na>", "null"]), "")
    return out.where(~out.str.match(r"^-?\d+\.0+$"), out.str.replace(r"\.0+$", "", regex=True))


def _group_units(df: pd.DataFrame, group_column: str, missing_group: str) -> pd.Series:
    """The unit of each row for a group split: its normalised group id; rows without one are an error, or each
    its own group (split.missing_group)."""
    ids = normalize_group_ids(df[group_column])
    missing = ids == ""
    if missing.any():
        name = group_column.removeprefix("meta_")
        if missing_group == "error":
            rows = df.loc[missing, "row_id"].head(5).tolist() if "row_id" in df.columns else list(df.index[missing][:5])
            raise DataError(f"split.group_column '{name}' is empty in {int(missing.sum())} rows (row ids {rows}...). "
                            "Fill in the groups, or set split.missing_group=own_group to give each such row its own group.")
        ids = ids.where(~missing, "\0row:" + df.index.astype(str))  # cannot collide with a real (stripped) id
    return ids


def split_dataset(df: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int,
                  split_column: str = "", group_column: str = "", missing_group: str = "error") -> dict[str, pd.DataFrame]:
    """Split a cleaned frame, stratified by label; every class ends up in every split.

    Units are distinct texts, or the groups of `group_column` (all rows of a group in one split);
    `split_column` instead takes the user's own train/val/test assignment. Cross-split duplicates are
    then removed from val/test (see remove_cross_split_duplicates).
    """
    counts = df["label"].value_counts()
    if len(counts) < 2:
        found = ", ".join(f"{k!r}" for k in counts.index) or "none"
        raise DataError(f"After cleaning the data has {len(counts)} class(es) ({found}); a classifier needs at least 2. Check data.label_column.")
    if split_column:
        given = df[split_column].str.strip().str.lower().map(_SPLIT_NAMES)
        bad = sorted(df.loc[given.isna(), split_column].unique())
        if bad:
            raise DataError(f"split.column '{split_column.removeprefix('meta_')}' has values {bad[:10]}; allowed: train, val (valid, dev), test.")
        parts = {name: df[given == name].reset_index(drop=True) for name in SPLITS}
        _check_classes_everywhere(parts, set(counts.index))
        return parts
    if group_column:
        unit = _group_units(df, group_column, missing_group)
        groups = df.groupby(unit)["label"].agg(lambda s: s.value_counts().index[0]).rename("label").rename_axis("unit").reset_index()
        assignment = _assign_units(groups, val_fraction, test_fraction, seed)
        which = unit.map(assignment)
        parts = {name: df[which == name].reset_index(drop=True) for name in SPLITS}
        _check_classes_everywhere(parts, set(counts.index))
        return parts
    units = df.drop_duplicates("text")[["text", "label"]]
    assignment = _assign_units(units.rename(columns={"text": "unit"}), val_fraction, test_fraction, seed)
    which = df["text"].map(assignment)
    return {name: df[which == name].reset_index(drop=True) for name in SPLITS}


def _check_classes_everywhere(parts: dict[str, pd.DataFrame], classes: set[str]) -> None:
    missing = {name: sorted(classes - set(p["label"])) for name, p in parts.items() if classes - set(p["label"])}
    if missing:
        raise DataError(f"Some classes are missing from a split: {missing}. Every split needs every class; "
                        "add examples, or change split.column / split.group_column.")


def remove_cross_split_duplicates(parts: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Leakage check: a text in train may not appear in val or test, nor a val text in test. Returns the
    cleaned parts and the removed rows (with the split they were removed from)."""
    seen: set[str] = set()
    removed = []
    out = {}
    for name in SPLITS:
        p = parts[name]
        leak = p["text"].isin(seen)
        removed.append(p[leak].assign(removed_from=name))
        out[name] = p[~leak].reset_index(drop=True)
        seen |= set(out[name]["text"])
    return out, pd.concat(removed, ignore_index=True)


def _require_three_per_class(labels: pd.Series, what: str) -> None:
    """Every class needs a unit in train, val and test: fail with the classes that have fewer than 3."""
    counts = labels.value_counts()
    small = counts[counts < 3]
    if len(small):
        detail = ", ".join(f"{k!r}: {v}" for k, v in small.items())
        raise DataError(f"Classes with fewer than 3 {what} cannot appear in train, val and test ({detail}). "
                        "Add examples or remove these classes.")


def _assign_units(units: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> dict:
    """Per label: shuffle the units, cut test and val off the front; at least one of each when possible."""
    _require_three_per_class(units["label"], "distinct texts (or groups)")
    rng = np.random.default_rng(seed)
    assignment: dict = {}
    for label in sorted(units["label"].unique()):
        texts = units.loc[units["label"] == label, "unit"].to_numpy()
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
    return assignment


class FrameHasher:
    """hash_frame over a frame that arrives in chunks: the same digest as hash_frame of their concatenation."""

    def __init__(self, columns: tuple[str, ...] = ("text", "label")) -> None:
        self.columns = list(columns)
        self._h = hashlib.sha256()

    def update(self, df: pd.DataFrame) -> None:
        for row in df[self.columns].itertuples(index=False):
            self._h.update("\t".join(str(v) for v in row).encode("utf-8"))
            self._h.update(b"\n")

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def hash_frame(df: pd.DataFrame, columns: tuple[str, ...] = ("text", "label")) -> str:
    """sha256 of the listed columns, row by row: identical content gives an identical hash."""
    h = FrameHasher(columns)
    h.update(df)
    return h.hexdigest()


def split_by_hash(df: pd.DataFrame, val_fraction: float, test_fraction: float, salt: str) -> dict[str, pd.DataFrame]:
    """split.mode=hash: each distinct text goes to the split its salted hash falls in, whatever else is in the file.

    The same text lands in the same split in every snapshot (yesterday's test rows never become training rows),
    so models trained on different snapshots can be compared on rows neither saw. Fractions are approximate
    (each text draws independently). Per label, a split left empty takes that label's unit nearest to its
    hash range, so every class appears in every split; only classes with a handful of texts are affected.
    """
    from textcls_core.dataset.fingerprint import text_hashes  # canonical form: the same texts a fingerprint matches

    counts = df["label"].value_counts()
    if len(counts) < 2:
        found = ", ".join(f"{k!r}" for k in counts.index) or "none"
        raise DataError(f"After cleaning the data has {len(counts)} class(es) ({found}); a classifier needs at least 2. Check data.label_column.")
    units = df.drop_duplicates("text")[["text", "label"]].reset_index(drop=True)
    _require_three_per_class(units["label"], "distinct texts")
    u = text_hashes(units["text"], salt).astype(np.float64) / 2.0**64
    which = np.where(u < test_fraction, "test", np.where(u < test_fraction + val_fraction, "val", "train")).astype(object)
    for label in sorted(units["label"].unique()):
        idx = np.flatnonzero((units["label"] == label).to_numpy())
        for name, target in (("test", 0.0), ("val", test_fraction), ("train", 1.0)):
            if (which[idx] == name).any():
                continue
            # the unit nearest this split's range, from a split that can spare one
            spare = [i for i in idx if (which[idx] == which[i]).sum() > 1]
            which[min(spare, key=lambda i: abs(u[i] - target))] = name
    assignment = dict(zip(units["text"], which))
    split_of = df["text"].map(assignment)
    return {name: df[split_of == name].reset_index(drop=True) for name in SPLITS}
