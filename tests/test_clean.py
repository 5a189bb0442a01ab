import pandas as pd
import pytest

from textcls_core.clean import check_quality, clean_dataset, normalize_text
from textcls_core.config import CleanConfig
from textcls_core.errors import DataError


def frame(rows):
    return pd.DataFrame({"row_id": range(len(rows)), "text": [r[0] for r in rows], "label": [r[1] for r in rows]})


def test_normalize_text_rules():
    cfg = CleanConfig()
    assert normalize_text("ＡＢＣ１２３，很好！", cfg) == "ABC123,很好!"  # NFKC full-width -> half-width
    assert normalize_text("  很\t好 \n\n 用\u200b  ", cfg) == "很 好 用"
    assert normalize_text("a\x00b\x07c", cfg) == "abc"
    assert normalize_text("ＡＢ", CleanConfig(nfkc=False)) == "ＡＢ"


def test_clean_accounts_for_every_row():
    df = frame([("好评", "pos"), ("好评", "pos"), ("  ", "pos"), ("差评", "neg"), ("两可", "pos"), ("两可", "neg"),
                ("\u200b", "neg"), ("没标签", ""), ("好 评", "pos"), ("好　评", "pos")])
    kept, dropped, report = clean_dataset(df, CleanConfig())
    assert len(kept) + len(dropped) == len(df)
    assert kept["text"].tolist() == ["好评", "差评", "好 评"]
    assert dropped.set_index("row_id")["reason"].to_dict() == {
        1: "duplicate", 2: "empty_text", 4: "conflicting_label", 5: "conflicting_label", 6: "empty_text", 7: "empty_label",
        9: "duplicate_normalized"}  # "好　评" only equals "好 评" after NFKC
    by_rule = {r["rule"]: r for r in report}
    assert by_rule["nfkc"]["changed"] == 1 and by_rule["nfkc"]["examples"] == [{"before": "好　评", "after": "好 评"}]
    assert by_rule["duplicate"]["dropped"] == 1 and by_rule["duplicate_normalized"]["dropped"] == 1
    assert dropped.loc[dropped.row_id == 6, "text"].item() == "\u200b"  # the original text is reported


def test_conflict_majority_and_fail():
    df = frame([("两可", "pos"), ("两可", "pos"), ("两可", "neg"), ("平手", "a"), ("平手", "b"), ("好", "pos")])
    kept, dropped, _ = clean_dataset(df, CleanConfig(conflict_policy="majority"))
    assert kept["text"].tolist() == ["两可", "好"] and kept["label"].tolist() == ["pos", "pos"]
    assert sorted(dropped["reason"]) == ["conflicting_label_minority"] * 3 + ["duplicate"]
    with pytest.raises(DataError, match="2 texts appear with more than one label"):
        clean_dataset(df, CleanConfig(conflict_policy="fail"))


def test_duplicates_kept_when_disabled():
    kept, dropped, _ = clean_dataset(frame([("好", "p"), ("好", "p"), ("坏", "n")]), CleanConfig(drop_duplicates=False))
    assert len(kept) == 3 and dropped.empty


def test_text_rules_html_urls_emails_phones_emoji_traditional():
    cfg = CleanConfig(emoji="strip", traditional_to_simplified=True)
    assert normalize_text("<p>很好&amp;便宜</p>", cfg) == "很好&便宜"
    assert normalize_text("详见 https://example.com/a?b=1 谢谢", cfg) == "详见 <URL> 谢谢"
    assert normalize_text("联系 foo.bar@example.com 或 13812345678", cfg) == "联系 <EMAIL> 或 <PHONE>"
    assert normalize_text("价格 2999 元，订单 20201010", cfg) == "价格 2999 元,订单 20201010"  # numbers that are not phones stay
    assert normalize_text("太棒了😀👍", cfg) == "太棒了"
    assert normalize_text("這本書質量很好", cfg) == "这本书质量很好"
    assert normalize_text("网址 www.a.cn", CleanConfig(urls="drop")) == "网址"
    assert normalize_text("太棒了😀", CleanConfig()) == "太棒了😀"  # emoji kept by default


def test_length_filters_and_quality_gates():
    df = frame([("好", "p"), ("很好很好", "p"), ("x" * 50, "n"), ("差差差", "n"), ("坏坏坏", "n")])
    kept, dropped, _ = clean_dataset(df, CleanConfig(min_chars=2, max_chars=10))
    assert dropped.set_index("row_id")["reason"].to_dict() == {0: "too_short", 2: "too_long"}
    with pytest.raises(DataError, match="fewer than clean.min_class_examples=2 rows after cleaning: 'p': 1"):
        check_quality(len(df), kept, CleanConfig(min_class_examples=2))
    with pytest.raises(DataError, match=r"dropped 2 of 5 rows \(40%\), more than clean.max_drop_share=0.3"):
        check_quality(len(df), kept, CleanConfig(max_drop_share=0.3))
    check_quality(len(df), kept, CleanConfig(min_class_examples=1))


def test_nul_bytes_windows_newlines_and_a_huge_text():
    df = frame([("好\x00评\r\n第二行", "p"), ("差" * 1_000_000, "n")])
    kept, dropped, _ = clean_dataset(df, CleanConfig())
    assert kept["text"].tolist()[0] == "好评 第二行" and len(kept["text"].tolist()[1]) == 1_000_000 and dropped.empty
