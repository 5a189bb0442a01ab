import pandas as pd
import pytest

from textcls_core.clean import clean_dataset, normalize_text
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
    kept, dropped = clean_dataset(df, CleanConfig())
    assert len(kept) + len(dropped) == len(df)
    assert kept["text"].tolist() == ["好评", "差评", "好 评"]
    assert dropped.set_index("row_id")["reason"].to_dict() == {
        1: "duplicate", 2: "empty_text", 4: "conflicting_label", 5: "conflicting_label", 6: "empty_text", 7: "empty_label", 9: "duplicate"}
    assert dropped.loc[dropped.row_id == 6, "text"].item() == "\u200b"  # the original text is reported


def test_conflict_majority_and_fail():
    df = frame([("两可", "pos"), ("两可", "pos"), ("两可", "neg"), ("平手", "a"), ("平手", "b"), ("好", "pos")])
    kept, dropped = clean_dataset(df, CleanConfig(conflict_policy="majority"))
    assert kept["text"].tolist() == ["两可", "好"] and kept["label"].tolist() == ["pos", "pos"]
    assert sorted(dropped["reason"]) == ["conflicting_label_minority"] * 3 + ["duplicate"]
    with pytest.raises(DataError, match="2 texts appear with more than one label"):
        clean_dataset(df, CleanConfig(conflict_policy="fail"))


def test_duplicates_kept_when_disabled():
    kept, dropped = clean_dataset(frame([("好", "p"), ("好", "p"), ("坏", "n")]), CleanConfig(drop_duplicates=False))
    assert len(kept) == 3 and dropped.empty
