"""The streamed data stages (a file a batch at a time) give what the in-memory functions give on the whole frame."""

import pandas as pd
import pytest

from textcls_core.dataset.analyze import analyze_dataset, profile_parquet
from textcls_core.dataset.clean import clean_dataset, clean_parquet
from textcls_core.dataset.ingest import ingest
from textcls_core.dataset.read import iter_dataset, read_dataset, sample_rows
from textcls_core.dataset.split import hash_frame
from textcls_core.runtime.config import CleanConfig, DataConfig
from textcls_core.runtime.errors import DataError

# duplicates and conflicts whose rows fall in different 2-row batches
ROWS = [("好评", "p"), ("差评", "n"), ("两可", "p"), ("好 评", "p"), ("好评", "p"), ("两可", "n"), ("好　评", "p"),
        ("两可", "p"), ("  ", "p"), ("无标签", ""), ("差评", "n"), ("平手", "a"), ("平手", "b")]


def frame(rows):
    return pd.DataFrame({"row_id": range(len(rows)), "text": [r[0] for r in rows], "label": [r[1] for r in rows]})


@pytest.mark.parametrize("policy, kept_texts, reasons", [
    ("drop", ["好评", "差评", "好 评"],
     {2: "conflicting_label", 4: "duplicate", 5: "conflicting_label", 6: "duplicate_normalized", 7: "conflicting_label",
      8: "empty_text", 9: "empty_label", 10: "duplicate", 11: "conflicting_label", 12: "conflicting_label"}),
    ("majority", ["好评", "差评", "两可", "好 评"],  # 两可 is p twice, n once; 平手 is a tie: both rows go
     {4: "duplicate", 5: "conflicting_label_minority", 6: "duplicate_normalized", 7: "duplicate", 8: "empty_text",
      9: "empty_label", 10: "duplicate", 11: "conflicting_label_minority", 12: "conflicting_label_minority"}),
])
def test_clean_parquet_in_two_row_batches_finds_duplicates_and_conflicts_across_batches(tmp_path, policy, kept_texts, reasons):
    df = frame(ROWS)
    df.to_parquet(tmp_path / "raw.parquet", index=False)
    counts, report = clean_parquet(tmp_path / "raw.parquet", CleanConfig(conflict_policy=policy), 256, tmp_path, batch_rows=2)
    kept = pd.read_parquet(tmp_path / "clean.parquet")
    dropped = pd.read_csv(tmp_path / "dropped.csv", keep_default_na=False)
    assert kept["text"].tolist() == kept_texts
    assert dropped.set_index("row_id")["reason"].to_dict() == reasons
    assert dropped.loc[dropped.row_id == 6, "text"].item() == "好　评"  # the original text, not the model text
    assert counts["rows_in"] == 13 and counts["rows_kept"] + counts["rows_dropped"] == 13
    assert not (tmp_path / "staged.parquet").exists()
    whole_kept, whole_dropped, whole_report = clean_dataset(df, CleanConfig(conflict_policy=policy))
    pd.testing.assert_frame_equal(kept, whole_kept, check_dtype=False)
    assert report == whole_report


def test_clean_parquet_fail_policy_names_the_conflicts(tmp_path):
    frame(ROWS).to_parquet(tmp_path / "raw.parquet", index=False)
    with pytest.raises(DataError, match=r"2 texts appear with more than one label \(e.g. '两可' -> \['n', 'p'\]; '平手' -> \['a', 'b'\]\)"):
        clean_parquet(tmp_path / "raw.parquet", CleanConfig(conflict_policy="fail"), 256, tmp_path, batch_rows=2)


def test_profile_parquet_in_small_batches_gives_the_whole_frame_analysis(tmp_path, tiny_df):
    df = pd.concat([tiny_df, pd.DataFrame({"row_id": [90, 91, 92], "text": ["  ", tiny_df.text[0], tiny_df.text[0]],
                                            "label": ["positive", "positive", "negative"]})], ignore_index=True)
    df.to_parquet(tmp_path / "d.parquet", index=False)
    stats, lengths = profile_parquet(tmp_path / "d.parquet", batch_rows=5)
    assert stats["duplicate_rows"] == 1 and stats["conflicting_texts"] == 1 and stats["empty_rows"] == 1
    assert stats["conflicting_examples"] == [tiny_df.text[0]]
    assert stats == analyze_dataset(df)
    assert len(lengths) == 26 and lengths["chars"].max() == max(len(t) for t in df.text)


def test_ingest_writes_every_row_or_the_max_rows_sample_a_chunk_at_a_time(tmp_path):
    src = tmp_path / "d.csv"
    pd.DataFrame({"text": [f"第{i}条评论{'很好' if i % 3 else '很差'}" for i in range(2500)],
                  "label": ["pos" if i % 3 else "neg" for i in range(2500)], "other": "x"}).to_csv(src, index=False)
    whole = read_dataset(str(src))
    stats, digest, lengths = ingest(DataConfig(path=str(src), chunk_rows=1000), [], 7, 256, tmp_path / "raw.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "raw.parquet"), whole, check_dtype=False)
    assert digest == hash_frame(whole) and stats["rows_read"] == stats["rows_sampled"] == 2500
    assert stats["class_counts"] == {"neg": 834, "pos": 1666} and len(lengths) == 2500
    stats, digest, _ = ingest(DataConfig(path=str(src), chunk_rows=1000, max_rows=300), [], 7, 256, tmp_path / "raw2.parquet")
    sample = sample_rows(whole, 300, 7)
    got = pd.read_parquet(tmp_path / "raw2.parquet")
    assert got["row_id"].tolist() == sample["row_id"].tolist() and digest == hash_frame(sample)
    assert stats["rows_read"] == 2500 and stats["rows_sampled"] == len(sample) == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv", "raw.parquet", "raw2.parquet"]  # no scratch file left


def test_auto_encoding_holds_when_the_first_chunks_are_plain_ascii(tmp_path):
    p = tmp_path / "gbk.csv"
    body = "text,label\n" + "ok,a\n" * 2500 + "质量很好,正面\n"
    p.write_bytes(body.encode("gb18030"))
    df = read_dataset(str(p), chunk_rows=1000)  # chunks 1-2 decode as UTF-8; the last one only as GB18030
    assert len(df) == 2501 and df["text"].iloc[-1] == "质量很好" and df["label"].iloc[-1] == "正面"


def test_iter_dataset_reports_an_all_empty_label_column_after_the_last_chunk(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,label\n" + "好,\n" * 2500, encoding="utf-8")
    chunks = iter_dataset(str(p), chunk_rows=1000)
    assert len(next(chunks)) == 1000
    with pytest.raises(DataError, match="has an empty label in column 'label'"):
        list(chunks)
