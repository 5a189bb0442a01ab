import pandas as pd
import pytest

from textcls_core.dataset.split import hash_frame, split_dataset
from textcls_core.runtime.errors import DataError


def make(n_a=100, n_b=50, dup=0):
    texts = [f"a{i}" for i in range(n_a)] + [f"b{i}" for i in range(n_b)] + [f"a{i}" for i in range(dup)]
    labels = ["A"] * n_a + ["B"] * n_b + ["A"] * dup
    return pd.DataFrame({"row_id": range(len(texts)), "text": texts, "label": labels})


def test_stratified_fractions_and_no_leakage():
    df = make(dup=20)  # 20 repeated texts must stay in one split
    parts = split_dataset(df, 0.1, 0.1, seed=7)
    assert sum(len(p) for p in parts.values()) == len(df)
    sets = {k: set(v["text"]) for k, v in parts.items()}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    # fractions apply to distinct texts, per class
    for name in ("val", "test"):
        assert parts[name].drop_duplicates("text")["label"].value_counts().to_dict() == {"A": 10, "B": 5}


def test_seeded_and_seed_sensitive():
    df = make()
    a, b, c = (split_dataset(df, 0.1, 0.1, seed=s) for s in (1, 1, 2))
    assert a["test"].equals(b["test"]) and not a["test"].equals(c["test"])


def test_every_class_in_every_split_even_when_small():
    parts = split_dataset(make(n_a=40, n_b=3), 0.1, 0.1, seed=0)
    for p in parts.values():
        assert set(p["label"]) == {"A", "B"}


def test_too_few_examples_and_single_class():
    with pytest.raises(DataError, match=r"fewer than 3 distinct texts.*'B': 2"):
        split_dataset(make(n_b=2), 0.1, 0.1, seed=0)
    with pytest.raises(DataError, match="1 class"):
        split_dataset(make(n_b=0), 0.1, 0.1, seed=0)


def test_hash_is_content_based():
    df = make()
    assert hash_frame(df) == hash_frame(df.copy()) and len(hash_frame(df)) == 64
    changed = df.copy()
    changed.loc[0, "label"] = "B"
    assert hash_frame(changed) != hash_frame(df)


def test_user_split_column_and_leakage_removal():
    from textcls_core.dataset.split import remove_cross_split_duplicates

    df = make(n_a=10, n_b=10)
    df["meta_part"] = (["train"] * 6 + ["Valid"] * 2 + ["TEST"] * 2) * 2
    df.loc[df.index[6], "text"] = df.loc[df.index[0], "text"]  # a val row repeating a train text
    parts = split_dataset(df, 0.1, 0.1, seed=0, split_column="meta_part")
    assert [len(parts[k]) for k in ("train", "val", "test")] == [12, 4, 4]
    clean, removed = remove_cross_split_duplicates(parts)
    assert len(clean["val"]) == 3 and removed["removed_from"].tolist() == ["val"]
    df.loc[0, "meta_part"] = "holdout"
    with pytest.raises(DataError, match=r"split.column 'part' has values \['holdout'\]"):
        split_dataset(df, 0.1, 0.1, seed=0, split_column="meta_part")


def test_group_column_keeps_groups_together():
    df = make(n_a=60, n_b=60)
    df["meta_user"] = [f"u{i // 4}" for i in range(len(df))]  # 4 rows per user, one label per user
    parts = split_dataset(df, 0.2, 0.2, seed=3, group_column="meta_user")
    owners = {}
    for name, p in parts.items():
        for u in p["meta_user"]:
            owners.setdefault(u, set()).add(name)
    assert all(len(v) == 1 for v in owners.values())
    assert all(set(p["label"]) == {"A", "B"} for p in parts.values())
