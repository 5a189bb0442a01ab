"""Reading a data source into the run's raw.parquet a chunk at a time, with its analysis on the way.

The file is never held whole: each chunk is written out, added to the analysis (Profiler: a few dozen bytes per
row) and to the content hash, then dropped; a data.max_rows sample is chosen from the row ids and labels alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from textcls_core.dataset.analyze import Profiler
from textcls_core.dataset.columnar import ParquetAppender, iter_parquet, parquet_rows_at
from textcls_core.dataset.read import iter_dataset, sample_rows
from textcls_core.dataset.split import FrameHasher
from textcls_core.runtime.config import DataConfig


def ingest(data: DataConfig, extra_columns: list[str], seed: int, max_len: int, raw_path: str | Path
           ) -> tuple[dict[str, Any], str, pd.DataFrame]:
    """Write the source's canonical rows (or their data.max_rows stratified sample) to raw_path and return
    (analysis stats with rows_read and rows_sampled, the rows' content hash, the report's lengths frame)."""
    raw_path = Path(raw_path)
    chunks = iter_dataset(data.path, data.text_column, data.label_column, data.encoding, extra_columns, data.chunk_rows)
    rows_read = -1
    full = raw_path.with_name(raw_path.stem + ".read.parquet")
    try:
        if data.max_rows > 0:  # the sample needs every row's label first: read everything to a scratch file
            with ParquetAppender(full) as w:
                for chunk in chunks:
                    w.write(chunk)
            rows_read = w.rows
            if rows_read > data.max_rows:
                ids = set(sample_rows(pd.read_parquet(full, columns=["row_id", "label"]), data.max_rows, seed)["row_id"].tolist())
                chunks = (c[c["row_id"].isin(ids)] for c in iter_parquet(full, batch_rows=data.chunk_rows))
            else:
                chunks = iter_parquet(full, batch_rows=data.chunk_rows)
        prof, hasher = Profiler(max_len), FrameHasher()
        with ParquetAppender(raw_path) as out:
            for chunk in chunks:
                out.write(chunk)
                prof.add(chunk)
                hasher.update(chunk)
    finally:
        full.unlink(missing_ok=True)
    stats = prof.finish(lambda pos: parquet_rows_at(raw_path, pos, batch_rows=data.chunk_rows), seed=seed)
    return stats | {"rows_read": prof.rows if rows_read < 0 else rows_read, "rows_sampled": prof.rows}, hasher.hexdigest(), prof.lengths()
