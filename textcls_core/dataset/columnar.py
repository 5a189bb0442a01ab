"""Working with a data file a batch at a time: 128-bit text keys instead of the texts, label codes, group
boundaries of sorted keys, and Parquet reading and appending in batches.

The analysis and the cleaning of a large file keep per row only these keys and codes (a few dozen bytes), so
their memory is a fraction of the file's size (benchmarks/large_file.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd

# two independent 64-bit hashes make a 128-bit key per text: two different texts of an n-row file share a key with
# probability about n^2 / 2^129 (1e-24 for 40 million rows), so counts and drops keyed by it are exact in practice
_HASH_KEYS = ("textcls-analysis", "0123456789abcdef")
BATCH_ROWS = 200_000


def _objects(texts: pd.Series | list[str]) -> np.ndarray:
    return np.asarray(texts.to_numpy(dtype=object) if isinstance(texts, pd.Series) else texts, dtype=object)


def text_keys(texts: pd.Series | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Two uint64 hashes per text (see _HASH_KEYS): a key for grouping a file's texts without holding them."""
    values = _objects(texts)
    if not len(values):
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    h1, h2 = (pd.util.hash_array(values, hash_key=k, categorize=False) for k in _HASH_KEYS)
    return h1, h2


def text_key64(texts: pd.Series | list[str]) -> np.ndarray:
    """One uint64 hash per text, where a rare collision only changes a label, never what is kept."""
    values = _objects(texts)
    return pd.util.hash_array(values, hash_key=_HASH_KEYS[0], categorize=False) if len(values) else np.zeros(0, np.uint64)


def group_starts(*keys: np.ndarray) -> np.ndarray:
    """For arrays already sorted by `keys`, True where a new group of equal keys starts."""
    n = len(keys[0])
    new = np.zeros(n, dtype=bool)
    if n:
        new[0] = True
        for k in keys:
            new[1:] |= k[1:] != k[:-1]
    return new


class LabelCodes:
    """Labels as small integer codes, stable across batches (first seen, first coded)."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}

    def encode(self, labels: pd.Series) -> np.ndarray:
        if not len(labels):
            return np.zeros(0, np.int32)
        uniq = labels.unique()
        for u in uniq:
            self.codes.setdefault(str(u), len(self.codes))
        return labels.map({u: self.codes[str(u)] for u in uniq}).to_numpy(dtype=np.int32)

    def names(self) -> list[str]:
        return list(self.codes)


def release_memory() -> None:
    """Hand freed memory that Arrow's allocator and the C library keep for reuse back to the system. Without it,
    every batch read or written leaves pages behind and a pass over a large file holds several batches' worth
    (benchmarks/large_file.py)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    if _TRIM is not None:
        _TRIM(0)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None on a C library without it."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def parquet_batches(pf: Any, batch_rows: int, columns: list[str] | None = None) -> Iterator[Any]:
    """pyarrow record batches of a ParquetFile, one reader per row group: one reader over the whole file keeps
    part of every row group it has read until it is done (seen with pyarrow 25), this keeps nothing."""
    for i in range(pf.num_row_groups):
        yield from pf.iter_batches(batch_size=batch_rows, row_groups=[i], columns=columns)
        release_memory()


def iter_parquet(path: str | Path, columns: list[str] | None = None, batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """A Parquet file as pandas frames of at most batch_rows rows (at least one frame, maybe empty)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    empty = True
    for batch in parquet_batches(pf, batch_rows, columns):
        empty = False
        frame = batch.to_pandas()
        del batch
        yield frame
        del frame
        release_memory()
    if empty:
        schema = pf.schema_arrow
        yield schema.empty_table().select(columns or schema.names).to_pandas()


def parquet_rows_at(path: str | Path, positions: np.ndarray, columns: tuple[str, ...] = ("text", "label"),
                    batch_rows: int = BATCH_ROWS) -> pd.DataFrame:
    """The rows at these positions of a Parquet file, in the order asked, read a batch at a time."""
    import pyarrow.parquet as pq

    want = np.asarray(positions, dtype=np.int64)
    order = np.argsort(want, kind="stable")
    sorted_pos = want[order]
    out: dict[str, list[object]] = {c: [None] * len(want) for c in columns}
    start = 0
    for batch in parquet_batches(pq.ParquetFile(path), batch_rows, list(columns)):
        lo, hi = np.searchsorted(sorted_pos, [start, start + batch.num_rows])
        if hi > lo:
            local = sorted_pos[lo:hi] - start
            for c in columns:
                values = batch.column(c).take(local).to_pylist()
                col = out[c]
                for j, i in enumerate(order[lo:hi]):
                    col[i] = values[j]
        start += batch.num_rows
        del batch
        release_memory()
    return pd.DataFrame(out, columns=list(columns))


class ParquetAppender:
    """Write frames with the same columns to one Parquet file, one row group each (the first frame's schema)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._writer = None
        self._schema = None
        self.rows = 0

    def write(self, df: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not len(df) and self._writer is not None:
            return
        table = pa.Table.from_pandas(df, schema=self._schema, preserve_index=False)
        if self._writer is None:
            self._schema = table.schema
            self._writer = pq.ParquetWriter(self.path, self._schema)
        if len(df):
            self._writer.write_table(table)
            self.rows += len(df)
        del table
        release_memory()

    def __enter__(self) -> ParquetAppender:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._writer is not None:
            self._writer.close()
