"""The promotion gate's pure parts: paired bootstrap, the decision and its outcomes, fingerprints, hash split."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score

from textcls_core.dataset.fingerprint import build_fingerprint, canonical_text, text_hashes, unseen_mask
from textcls_core.dataset.split import split_by_hash
from textcls_core.evaluation.bootstrap import metric_value, paired_bootstrap
from textcls_core.registry.gate import COMPARED, INSUFFICIENT, compare_on_rows, decide_promotion
from textcls_core.runtime.config import build_config
from textcls_core.runtime.errors import ConfigError


def _preds(n=600, acc_a=0.9, acc_b=0.8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    a = np.where(rng.random(n) < acc_a, y, (y + 1) % classes)
    b = np.where(rng.random(n) < acc_b, y, (y + 1) % classes)
    return y, a, b


def test_metric_matches_sklearn():
    y, a, _ = _preds()
    assert metric_value(y, a, 3, "accuracy") == pytest.approx(accuracy_score(y, a))
    assert metric_value(y, a, 3, "macro_f1") == pytest.approx(f1_score(y, a, labels=[0, 1, 2], average="macro", zero_division=0))
    # a class nobody has counts as F1 0, like compute_metrics (labels=all classes, zero_division=0)
    assert metric_value(y, a, 4, "macro_f1") == pytest.approx(f1_score(y, a, labels=[0, 1, 2, 3], average="macro", zero_division=0))


def test_bootstrap_detects_a_real_improvement_and_not_a_tie():
    y, a, b = _preds()
    better = paired_bootstrap(y, a, b, 3, "macro_f1", samples=1000, confidence=0.95)
    assert better.n == 600 and better.delta == pytest.approx(metric_value(y, a, 3, "macro_f1") - metric_value(y, b, 3, "macro_f1"))
    assert 0 < better.ci_low < better.delta < better.ci_high and better.p_value < 0.05
    same = paired_bootstrap(y, a, a, 3, "accuracy", samples=500)
    assert (same.delta, same.ci_low, same.ci_high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    # fixed seed: the same rows give the same interval
    assert paired_bootstrap(y, a, b, 3, "macro_f1", samples=1000) == better


def test_bootstrap_is_paired():
    # the two models differ on 6 of 2000 rows: the unpaired scores' spread is wide, the paired delta's is tiny
    y, a, _ = _preds(2000, acc_a=0.8)
    b = a.copy()
    b[:6] = (y[:6] + 1) % 3   # champion wrong on 6 rows where the candidate may be right
    r = paired_bootstrap(y, a, b, 3, "accuracy", samples=1000)
    assert r.ci_high - r.ci_low < 0.006


def _decide(comparison, **kw):
    return decide_promotion("test_macro_f1", 0.85, {"a": 0.85, "b": 0.85}, comparison, min_shared_rows=100, **kw)


def test_outcomes_and_reasons():
    first = _decide(None)
    assert first.passed and "no champion yet" in first.describe() and first.summary()["gate.outcome"] == "no_champion"

    y, a, b = _preds()
    shared = np.arange(600) < 50
    few = compare_on_rows(y, a, b, shared, 3, "4", "test split minus v4's training texts", True, "macro_f1", 100, 500, 0.95, 0.0)
    assert few.outcome == INSUFFICIENT and few.n == 50
    r = _decide(few)
    assert not r.passed and r.reasons == ["insufficient evidence: 50 rows that neither model trained on (test split minus "
                                          "v4's training texts) < registry.min_shared_rows 100; kept @challenger"]

    win = compare_on_rows(y, a, b, np.ones(600, bool), 3, "4", "test split", True, "macro_f1", 100, 500, 0.95, 0.0)
    assert win.outcome == COMPARED and _decide(win).passed
    s = _decide(win).summary()
    assert s["gate.n_shared_rows"] == 600 and s["gate.ci_low"] > 0 and s["gate.decision"] == "champion"
    # the margin is on the lower bound: demanding more improvement than the evidence supports fails
    assert not _decide(win, min_improvement=s["gate.ci_low"] + 0.001).passed
    lose = compare_on_rows(y, b, a, np.ones(600, bool), 3, "4", "test split", True, "macro_f1", 100, 500, 0.95, 0.0)
    assert not _decide(lose).passed and "lower bound" in _decide(lose).reasons[0]


def test_floors_baseline_regression_and_extra_checks():
    r = decide_promotion("test_macro_f1", 0.50, {"a": 0.9, "b": 0.1}, None, min_metric=0.7, min_class_f1=0.5,
                         baseline=(0.50, 0.97, 0.02), regression=(0.70, None),
                         extra_checks=[{"check": "stress", "passed": False, "detail": "flip rate"}])
    assert [c["check"] for c in r.checks if not c["passed"]] == ["floor", "class_floor", "baseline", "stress"]
    assert "val_macro_f1 0.5000 >= TF-IDF baseline 0.9700 - margin 0.0200" in r.reasons[2]
    assert decide_promotion("m", 0.9, {}, None, baseline=(0.955, 0.97, 0.02)).passed   # within the margin
    assert decide_promotion("m", 0.9, {}, None, baseline=(0.0, None, 0.02)).passed      # baseline off: recorded, skipped
    y, a, b = _preds()
    legacy = compare_on_rows(y, a, b, np.ones(600, bool), 3, "1", "test split; overlap unknown: v1 has no training fingerprint",
                             False, "macro_f1", 100, 500, 0.95, 0.0)
    s = _decide(legacy).summary()
    assert s["gate.overlap_known"] is False and "overlap unknown" in _decide(legacy).describe()
    assert not decide_promotion("m", 0.9, {}, None, regression=(0.70, 0.80), regression_tolerance=0.05).passed


def test_fingerprint_matches_canonical_texts():
    assert canonical_text("ＡＢＣ 好  评") == canonical_text("abc好评")
    fp = build_fingerprint(["质量很好", "Hello World"], ["物流快"])
    assert len(fp) == 3 and fp.dtype == np.uint64
    mask = unseen_mask(["质量 很好", "hello world", "新的评论", "物流快"], fp)
    assert mask.tolist() == [False, False, True, False]
    assert unseen_mask(["a", "b"], None).all()  # unknown fingerprint excludes nothing
    assert (text_hashes(["x"], salt="1") != text_hashes(["x"], salt="2")).all()


def test_hash_split_is_stable_across_snapshots():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"text": [f"评论{i}号" for i in range(3000)], "label": rng.choice(["a", "b", "c"], 3000, p=[0.6, 0.39, 0.01])})
    full = split_by_hash(df, 0.1, 0.1, "salt")
    part = split_by_hash(df.sample(frac=0.9, random_state=1), 0.1, 0.1, "salt")
    # yesterday's test rows are test rows today, never training rows; fractions are approximate
    assert set(part["test"].text) <= set(full["test"].text) and not set(part["train"].text) & set(full["test"].text)
    assert 0.08 < len(full["test"]) / 3000 < 0.12 and 0.08 < len(full["val"]) / 3000 < 0.12
    assert all(set(p.label) == {"a", "b", "c"} for p in full.values())   # the 1% class too
    assert sum(len(p) for p in full.values()) == 3000
    other = split_by_hash(df, 0.1, 0.1, "another salt")
    assert set(other["test"].text) != set(full["test"].text)


def test_bad_gate_and_split_values_fail_with_the_key():
    for override, key in (("registry.confidence=1.5", "registry.confidence"), ("registry.confidence=0", "registry.confidence"),
                          ("registry.baseline_margin=-0.1", "registry.baseline_margin"),
                          ("registry.min_improvement=-0.01", "registry.min_improvement"),
                          ("registry.bootstrap_samples=10", "registry.bootstrap_samples")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            build_config({}, [override])
    with pytest.raises(ConfigError, match="split.mode=hash"):
        build_config({}, ["split.mode=hash", "split.group_column=user"])
