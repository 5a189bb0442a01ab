"""Drift core: PSI / KS on known inputs, a profile against itself and against shifted data, unlabelled-file checks."""

from __future__ import annotations

import numpy as np
import opencc
import pytest

from textcls_core.dataset.read import read_dataset
from textcls_core.evaluation.drift import (
    OOV_EDGES,
    build_profile,
    compare_with_profile,
    histogram,
    ks_statistic,
    psi,
    read_texts,
    traditional_shares,
)
from textcls_core.runtime.config import MonitorConfig
from textcls_core.runtime.errors import DataError


def test_histogram_psi_and_ks_on_known_values():
    assert histogram([0, 0, 0.03, 0.07, 0.6, 0.9], OOV_EDGES) == pytest.approx([2 / 6, 1 / 6, 1 / 6, 0, 0, 0, 2 / 6])
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0
    # (0.8-0.5) ln(0.8/0.5) + (0.2-0.5) ln(0.2/0.5)
    assert psi([0.5, 0.5], [0.8, 0.2]) == pytest.approx(0.3 * np.log(1.6) - 0.3 * np.log(0.4))
    assert psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 * (1 - 1e-4) * np.log(1 / 1e-4))  # empty bins floored, finite
    assert ks_statistic([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == 0 and ks_statistic([0.1, 0.2], [0.8, 0.9]) == 1


def test_traditional_share_counts_converted_characters():
    shares = traditional_shares(["这本书很好看", "這本書很好看", "abc", "這本书"])
    assert shares[0] == 0 and shares[2] == 0
    assert shares[1] == pytest.approx(2 / 6) and shares[3] == pytest.approx(1 / 3)  # 這, 書 of 6; 這 of 3


def _sample(n, seed):
    rng = np.random.default_rng(seed)
    words = ["质量很好", "物流很快", "非常满意", "太差了", "很失望", "不推荐", "包装精美", "客服耐心"]
    texts = ["".join(rng.choice(words, size=rng.integers(2, 8))) for _ in range(n)]
    labels = rng.choice(["negative", "positive"], size=n, p=[0.4, 0.6]).tolist()
    conf = rng.uniform(0.6, 1.0, size=n)
    probs = np.stack([conf, 1 - conf], axis=1)
    probs[np.array(labels) == "positive"] = probs[np.array(labels) == "positive"][:, ::-1]
    oov = rng.choice([0.0, 0.0, 0.1, 0.2], size=n)
    return texts, labels, probs, oov


def test_a_sample_of_the_same_distribution_is_no_drift_and_shifts_are():
    texts, labels, probs, oov = _sample(2000, 0)
    profile = build_profile(texts, labels, ["negative", "positive"], probs, oov)
    new_texts, _, new_probs, new_oov = _sample(400, 1)
    cfg = MonitorConfig()
    assert not any(c.drift for c in compare_with_profile(profile, new_texts, new_probs, new_oov, cfg))
    s2t = opencc.OpenCC("s2t").convert
    shifted = {c.check: c for c in compare_with_profile(profile, [s2t(t) for t in new_texts], new_probs, new_oov, cfg)}
    assert shifted["traditional_script"].drift and not shifted["text_length"].drift
    longer = {c.check: c for c in compare_with_profile(profile, [t * 3 for t in new_texts], new_probs, new_oov, cfg)}
    assert longer["text_length"].drift and longer["text_length"].value > cfg.length_psi
    unsure = np.full_like(new_probs, 0.5)
    all_neg = {c.check: c for c in compare_with_profile(profile, new_texts, unsure, np.clip(new_oov + 0.3, 0, 1), cfg)}
    assert all_neg["confidence"].drift and all_neg["oov_rate"].drift and all_neg["predicted_labels"].drift  # argmax of ties -> class 0
    few = compare_with_profile(profile, [s2t(t) for t in new_texts[:10]], new_probs[:10], new_oov[:10], cfg)
    assert not any(c.drift for c in few)  # under monitor.min_rows nothing is declared


def test_a_model_without_vocabulary_skips_the_oov_check():
    texts, labels, probs, _ = _sample(300, 0)
    profile = build_profile(texts, labels, ["negative", "positive"], probs, None)
    oov = {c.check: c for c in compare_with_profile(profile, texts, probs, None, MonitorConfig())}["oov_rate"]
    assert oov.value is None and not oov.drift and "no vocabulary" in oov.reference


@pytest.mark.parametrize("content,message", [
    (b"body,label\n\xe5\xa5\xbd,1\n", "has no column 'text'"),
    (b"", "is empty"),
    (b"text,label\n", "has a header but no rows"),
    ("text\n好评\n".encode("utf-16"), "cannot be decoded"),
])
def test_unlabelled_files_get_the_training_data_errors(tmp_path, content, message):
    p = tmp_path / "new.csv"
    p.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        read_texts(p)
    assert "\n" not in str(err.value) and str(p) in str(err.value)
    if message in ("cannot be decoded", "has a header but no rows"):  # the very same words as for training data
        with pytest.raises(DataError) as train_err:
            read_dataset(str(p))
        assert str(train_err.value).split(".")[0] == str(err.value).split(".")[0]


def test_gb18030_file_is_read_like_training_data(tmp_path):
    p = tmp_path / "gbk.csv"
    p.write_bytes("text\n這本書很好看\n质量太差了\n".encode("gb18030"))
    assert read_texts(p) == ["這本書很好看", "质量太差了"]
