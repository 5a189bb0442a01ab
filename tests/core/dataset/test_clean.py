import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textcls_core.dataset.clean import check_quality, clean_dataset, normalize_text, normalize_texts, prepare_texts, text_limits
from textcls_core.runtime.config import CleanConfig
from textcls_core.runtime.errors import DataError


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
    kept, dropped, report = clean_dataset(df, CleanConfig(), max_len=64)
    # the huge text is cut to what a 64-token model can read; the original stays beside it
    assert kept["text"].tolist() == ["好评 第二行", "差" * text_limits(64)[1]] and dropped.empty
    assert kept["raw_text"].str.len().tolist() == [8, 1_000_000]
    assert {r["rule"]: r["changed"] for r in report}["cut_to_512_chars"] == 1


def test_too_long_measures_the_text_before_the_bound():
    df = frame([("短", "p"), ("长" * 5000, "n")])
    _, dropped, _ = clean_dataset(df, CleanConfig(max_chars=3000), max_len=16)  # clean limit 128 < 3000 < 5000
    assert dropped.set_index("row_id")["reason"].to_dict() == {1: "too_long"}


ISSUE_TEXT = "买了 http://a.cn/x 很好 联系 13812345678 &amp;lt;b&amp;gt;好 a@b.com"


def test_cleaning_twice_changes_nothing_on_the_issue_example():
    once = normalize_text(ISSUE_TEXT, CleanConfig())
    assert once == "买了 <URL> 很好 联系 <PHONE> 好 <EMAIL>"  # nested entities decoded, then the tag removed
    assert normalize_text(once, CleanConfig()) == once  # the placeholders survive a second pass
    fullwidth = "ｈｔｔｐ：／／ａ．ｃｎ／ｘ 与 ＜ｂ＞好＜／ｂ＞ 和 ht\u200btp://b.cn"
    assert normalize_text(fullwidth, CleanConfig()) == "<URL> 与 好 和 <URL>"


# pieces that interact: entities of tags and of themselves, URLs/e-mails/phones glued to each other and to
# the placeholders, emoji with joiners, full-width forms, control and zero-width characters, traditional script
PIECES = ["http://a.cn/x?y=1", "www.B.com", "https://例子.中国/路径", "a.b+c@mail.example.com", "x@y.z", "13812345678",
          "+86 139-1234-5678", "010-12345678", "4001234567", "<URL>", "<EMAIL>", "<PHONE>", "<b>", "</p>", "<a href='x'>",
          "&amp;", "&amp;lt;", "&lt;b&gt;", "&amp;amp;lt;i&amp;amp;gt;", "&#60;", "&#x3c;URL&#x3e;", "&lt;PHONE&gt;", "&nbsp;",
          "&not", "😀", "👍🏻", "👨\u200d👩\u200d👧", "\ufe0f", "ＡＢＣ", "１３８１２３４５６７８", "ｈｔｔｐ：／／ｃ．ｃｎ", "＜ｂ＞", "＆ａｍｐ；",
          "\u200b", "\x00", "\t", "\n", " ", "　", "很好", "質量", "價格2999元", "。", "，", "@", "<", ">", "&", "1", "0"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=6)), max_size=12),
       emoji=st.sampled_from(["keep", "strip"]), t2s=st.booleans(),
       modes=st.tuples(*[st.sampled_from(["keep", "replace", "drop"])] * 3))
def test_cleaning_is_a_fixpoint(parts, emoji, t2s, modes):
    cfg = CleanConfig(emoji=emoji, traditional_to_simplified=t2s, urls=modes[0], emails=modes[1], phones=modes[2])
    for text in ("".join(parts), " ".join(parts)):
        once = normalize_text(text, cfg)
        assert normalize_text(once, cfg) == once, (text, once)
        # the bounded path (cut raw, clean, cut clean) is a fixpoint too, also when the cut falls inside an entity
        bounded = prepare_texts([text * 4], cfg, max_len=1)[0]
        assert prepare_texts([bounded], cfg, max_len=1)[0] == bounded and len(bounded) <= text_limits(1)[1]


def test_prepare_texts_takes_any_input_and_bounds_the_work():
    cfg = CleanConfig()
    assert prepare_texts([None, float("nan"), 12, 3.5, b"\xe5\xa5\xbd", " 好 "], cfg, 16) == ["", "", "12", "3.5", "好", "好"]
    assert normalize_texts(["ＡＢ", "a  b"], cfg) == ["AB", "a b"]
    out = prepare_texts(["差" * 1_000_000, "<b>" * 300_000, "a@" * 500_000], cfg, 256)
    assert [len(t) for t in out] == [text_limits(256)[1], 2, text_limits(256)[1]]
    assert out[1] == "<b"  # the raw cut (8192 chars) fell inside the last whole tag; the cut-off tag start stays
