"""Group ids through chunked readers: 1, 1.0 and "1" are one group; rows without a group follow split.missing_group."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from textcls_core.dataset.read import read_dataset
from textcls_core.dataset.split import SPLITS, normalize_group_ids, split_dataset
from textcls_core.runtime.errors import DataError


def _rows(n: int = 120) -> list[dict]:
    # 30 users x 4 rows; user u's rows sit in different chunks (chunk_rows=30), and the second half of the file
    # holds nulls, so pandas turns the user ids of those chunks into floats (7.0) while the first stay ints (7)
    rows = []
    for i in range(n):
        user = i % 30
        rows.append({"text": f"评论{i}号", "label": "pos" if user % 2 else "neg",
                     "user": None if (i >= 60 and i % 13 == 0) else user})
    return rows


def _assert_groups_whole(parts: dict[str, pd.DataFrame]) -> None:
    where: dict[str, set[str]] = {}
    for name in SPLITS:
        for gid in normalize_group_ids(parts[name]["meta_user"]):
            where.setdefault(gid, set()).add(name)
    assert all(len(s) == 1 for gid, s in where.items() if gid), {g: s for g, s in where.items() if len(s) > 1}


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_int_group_ids_with_nulls_stay_one_group_through_chunks(tmp_path, fmt):
    rows = _rows()
    path = tmp_path / f"data.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([("text", pa.string()), ("label", pa.string()),
                                                                   ("user", pa.int64())])), path, row_group_size=30)
    else:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    df = read_dataset(str(path), metadata=["user"], chunk_rows=30)
    raw_ids = set(df["meta_user"])
    assert {"7", "7.0"} <= raw_ids  # what the chunked readers produce: one user, two spellings
    assert normalize_group_ids(df["meta_user"]).replace("", pd.NA).dropna().nunique() == 30
    with pytest.raises(DataError, match=r"split.group_column 'user' is empty in \d+ rows .*split.missing_group=own_group"):
        split_dataset(df, 0.2, 0.2, 0, group_column="meta_user")
    parts = split_dataset(df, 0.2, 0.2, 0, group_column="meta_user", missing_group="own_group")
    assert sum(len(p) for p in parts.values()) == len(df)
    _assert_groups_whole(parts)
    # rows without a group do not collapse into one unit: they land in more than one split
    no_group = [name for name in SPLITS if (parts[name]["meta_user"] == "").any()]
    assert len(no_group) >= 2


def test_normalize_group_ids():
    ids = pd.Series([1, 1.0, "1", " 1 ", "1.00", "01", None, float("nan"), "a", "2.5"], dtype=object)
    assert normalize_group_ids(ids).tolist() == ["1", "1", "1", "1", "1", "01", "", "", "a", "2.5"]
