"""Stress tests, core: each perturbation does what its name says, seeded; metrics on a rule-based classifier; config."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from textcls_core.evaluation.stress import (
    PERTURBATIONS,
    flat_stress_metrics,
    flip_rate_checks,
    perturb_texts,
    perturbation_names,
    read_flip_rates,
    run_stress,
    sample_rows,
    write_stress_report,
)
from textcls_core.runtime.config import BUILTIN_PERTURBATIONS, StressConfig, build_config
from textcls_core.runtime.errors import ConfigError

TEXTS = ["这本书很好看，内容精彩，物流也快。", "质量太差了，发货慢，后悔购买！", "还行吧", "手机屏幕清晰，运行流畅，推荐购买。"]


def cfg(**kw) -> StressConfig:
    return StressConfig(**kw)


class KeywordClassifier:
    """positive iff the text has more 好/精彩/推荐 than 差/慢/后悔: enough to make flips predictable."""

    labels = ["negative", "positive"]

    def __init__(self):
        self.calls = []

    def predict_proba(self, texts, batch_size=256):
        self.calls.append(list(texts))
        out = []
        for t in texts:
            score = sum(t.count(w) for w in ("好", "精彩", "推荐")) - sum(t.count(w) for w in ("差", "慢", "后悔"))
            p = 1 / (1 + np.exp(-score))
            out.append([1 - p, p])
        return np.array(out).reshape(len(texts), 2)


def test_table_matches_schema_names_and_all_expands():
    assert tuple(PERTURBATIONS) == BUILTIN_PERTURBATIONS
    c = build_config({"stress": {"rules": [{"name": "mine", "regex": "a"}]}}).stress
    assert perturbation_names(c) == [*BUILTIN_PERTURBATIONS, "mine"]
    assert perturbation_names(StressConfig(perturbations=["empty", "all"])) == ["empty", *[n for n in BUILTIN_PERTURBATIONS if n != "empty"]]


@pytest.mark.parametrize("name", BUILTIN_PERTURBATIONS)
def test_every_perturbation_is_seeded_and_independent_of_others(name):
    a = perturb_texts(TEXTS, name, cfg(rate=0.3), seed=7)
    assert a == perturb_texts(TEXTS, name, cfg(rate=0.3), seed=7)
    # row i depends on (seed, name, i) only: perturbing a prefix gives the same rows
    assert perturb_texts(TEXTS[:2], name, cfg(rate=0.3), seed=7) == a[:2]
    assert all(isinstance(t, str) for t in a)


def test_script_conversions():
    trad = perturb_texts(["这本书很好看，质量太差了"], "traditional", cfg(), 0)[0]
    assert trad == "這本書很好看，質量太差了"
    # round trip: 发 -> 發 -> 发 is stable; 后 (after) may come back as 后 or 後 -> 后, the text stays simplified
    rt = perturb_texts(["头发很长，之后再说"], "script_round_trip", cfg(), 0)[0]
    assert rt.replace("發", "发") == rt and len(rt) == len("头发很长，之后再说")


def test_fullwidth_and_punctuation():
    out = perturb_texts(["iPhone 15 很好, 真的。"], "fullwidth", cfg(), 0)[0]
    assert out == "ｉＰｈｏｎｅ １５ 很好， 真的."


@pytest.mark.parametrize("name,pattern", [("noise_url", r"https://t\.cn/\w{7}"), ("noise_email", r"[a-z]{6}\d+@qq\.com"),
                                          ("noise_phone", r"1[3-9]\d{9}")])
def test_noise_inserts_one_item_and_keeps_the_text(name, pattern):
    for original, out in zip(TEXTS, perturb_texts(TEXTS, name, cfg(), 3)):
        found = re.findall(pattern, out)
        assert len(found) == 1
        assert re.sub(r"\s*" + pattern + r"\s*", "", out).replace(" ", "") == original.replace(" ", "")


def test_noise_punct_emoji_and_whitespace():
    out = perturb_texts(["好，很好。", "还行"], "noise_punct", cfg(), 1)
    assert re.fullmatch(r"好，{2,5}很好。{2,5}", out[0]) and re.fullmatch(r"还行[！?。]{2,5}", out[1])
    emoji = perturb_texts(TEXTS, "noise_emoji", cfg(), 1)
    assert all(len(e) > len(t) for e, t in zip(emoji, TEXTS))
    ws = perturb_texts(TEXTS, "noise_whitespace", cfg(rate=1.0), 1)
    assert all(re.sub(r"\s", "", w) == re.sub(r"\s", "", t) and len(w) >= 2 * len(t) for w, t in zip(ws, TEXTS))
    assert perturb_texts(TEXTS, "noise_whitespace", cfg(rate=0.0), 1) == TEXTS


def test_homophone_keeps_pinyin_and_rate():
    from pypinyin import Style, pinyin

    text = "这本书很好看内容精彩物流也快质量不错"
    full = perturb_texts([text], "homophone", cfg(rate=1.0), 5)[0]
    assert len(full) == len(text) and sum(a != b for a, b in zip(full, text)) >= len(text) // 2
    for a, b in zip(text, full):
        # b was chosen with a's first reading; pypinyin lists every reading of b, one of them matches
        assert pinyin(a, style=Style.TONE)[0][0] in pinyin(b, style=Style.TONE, heteronym=True)[0]
    assert perturb_texts([text], "homophone", cfg(rate=0.0), 5)[0] == text


def test_char_swap_rate():
    text = "这本书很好看内容精彩物流也快质量不错" * 10
    out = perturb_texts([text], "char_swap", cfg(rate=0.2), 5)[0]
    changed = sum(a != b for a, b in zip(out, text))
    assert len(out) == len(text) and 0.1 * len(text) < changed < 0.3 * len(text)


def test_truncate_shuffle_and_degenerate_inputs():
    assert perturb_texts(["一二三四五六"], "truncate_half", cfg(), 0) == ["一二三"]
    shuffled = perturb_texts(["甲，乙。丙！丁？"] * 5, "clause_shuffle", cfg(), 0)
    assert all(sorted(re.findall(r".[，。！？]", s)) == sorted(["甲，", "乙。", "丙！", "丁？"]) for s in shuffled)
    assert len(set(shuffled)) > 1  # seeded per row: rows differ
    assert perturb_texts(["没有标点"], "clause_shuffle", cfg(), 0) == ["没有标点"]
    assert perturb_texts(TEXTS, "empty", cfg(), 0) == [""] * 4
    assert all(not w.strip() and w for w in perturb_texts(TEXTS, "whitespace", cfg(), 0))
    assert perturb_texts(TEXTS, "one_char", cfg(), 0) == [t[0] for t in TEXTS]
    long = perturb_texts(["还行吧"], "very_long", cfg(long_chars=1000), 0)[0]
    assert len(long) == 1000 and long.startswith("还行吧。还行吧。")


def test_user_rules_regex_and_char_map_at_rate():
    c = build_config({"stress": {"perturbations": ["empty"], "rules": [
        {"name": "no_digits", "regex": r"(\d+)元", "replace": r"\1块"},
        {"name": "de_typo", "char_map": {"的": "地"}, "rate": 0.5}]}}).stress
    assert perturb_texts(["花了100元，买了5元的"], "no_digits", c, 0) == ["花了100块，买了5块的"]
    out = perturb_texts(["的" * 400], "de_typo", c, 0)[0]
    assert set(out) == {"的", "地"} and 120 < out.count("地") < 280
    assert perturb_texts(["的" * 40], "de_typo", c.model_copy(update={"rules": [c.rules[1].model_copy(update={"rate": 0.0})]}), 0) == ["的" * 40]


def test_run_stress_metrics_on_a_keyword_classifier(tmp_path):
    texts = ["很好，推荐", "太差了", "精彩，很好，后悔", "发货慢，差"]
    labels = ["positive", "negative", "positive", "negative"]
    clf = KeywordClassifier()
    c = build_config({"stress": {"perturbations": ["empty", "truncate_half"], "top_examples": 2,
                                 "rules": [{"name": "no_good", "char_map": {"好": "坏"}}]}}).stress
    r = run_stress(clf, texts, labels, c, seed=0)
    assert r.clean == {"accuracy": 1.0, "macro_f1": 1.0}
    t = r.table.set_index("perturbation")
    assert list(t.index) == ["empty", "truncate_half", "no_good"]
    # empty: every text scores 0.5/0.5 -> argmax = negative; the two positives flip
    assert t.loc["empty", "flip_rate"] == 0.5 and t.loc["empty", "accuracy"] == 0.5 and t.loc["empty", "accuracy_delta"] == -0.5
    base = clf.predict_proba(texts)
    expected_conf = np.mean([0.5 - base[i].max() for i in range(4)])
    assert t.loc["empty", "confidence_change"] == pytest.approx(expected_conf)
    # 好 -> 坏: "很好，推荐" keeps 推荐 (score 1, still positive); "精彩，很好，后悔" drops to score 0 -> negative
    assert t.loc["no_good", "flip_rate"] == 0.25 and t.loc["no_good", "changed_rate"] == 0.5
    ex = r.examples[r.examples.perturbation == "no_good"]
    assert len(ex) == 2 and ex.iloc[0]["flipped"] and ex.iloc[0]["original"] == "精彩，很好，后悔"
    assert ex.iloc[0]["perturbed"] == "精彩，很坏，后悔" and ex.iloc[0]["perturbed_pred"] == "negative"
    m = flat_stress_metrics(r)
    assert m["stress_empty_flip_rate"] == 0.5 and m["stress_max_flip_rate"] == 0.5 and m["stress_texts"] == 4
    files = write_stress_report(r, tmp_path, "stress")
    page = files["html"].read_text(encoding="utf-8")
    assert "精彩，很坏，后悔" in page and "Most changed: no_good" in page
    assert json.loads(files["json"].read_text(encoding="utf-8"))["perturbations"][0]["perturbation"] == "empty"


def test_sample_rows_is_seeded_and_bounded():
    import pandas as pd

    frame = pd.DataFrame({"text": [str(i) for i in range(50)], "label": ["a"] * 50})
    a, b = sample_rows(frame, 10, 1), sample_rows(frame, 10, 1)
    assert len(a) == 10 and a.equals(b) and list(a["text"].astype(int)) == sorted(a["text"].astype(int))
    assert len(sample_rows(frame, 0, 1)) == 50


def test_flip_rate_gate_checks(tmp_path):
    rates = {"empty": 0.5, "homophone": 0.08}
    assert flip_rate_checks(rates, {}) == []
    checks = flip_rate_checks(rates, {"default": 0.1, "empty": 1.0})
    assert [c["passed"] for c in checks] == [True, True]
    checks = flip_rate_checks(rates, {"default": 0.05})
    assert {c["detail"].split()[3]: c["passed"] for c in checks} == {"empty": False, "homophone": False}
    missing = flip_rate_checks(rates, {"char_swap": 0.2})
    assert len(missing) == 1 and not missing[0]["passed"] and "not measured" in missing[0]["detail"]
    assert [c["passed"] for c in flip_rate_checks({}, {"default": 0.5})] == [False]  # stage off, gate on: fail, not skip
    assert read_flip_rates(tmp_path / "missing.json") == {}
    r = run_stress(KeywordClassifier(), ["很好", "太差"], ["positive", "negative"], StressConfig(perturbations=["empty"]), 0)
    assert read_flip_rates(write_stress_report(r, tmp_path, "t")["json"]) == {"empty": 0.5}


@pytest.mark.parametrize("override,needle", [
    ("stress.perturbations=[homophone, homofone]", "unknown perturbation ['homofone'] (did you mean 'homophone'?)"),
    ("stress.rate=1.5", "stress.rate = 1.5"),
    ("registry.max_flip_rate={typo: 0.1}", "registry.max_flip_rate names 'typo'"),
    ("registry.max_flip_rate={empty: 2}", "must be in [0, 1]"),
    ("stress.rules=[{name: bad, regex: '(', replace: x}]", "does not compile"),
    ("stress.rules=[{name: r1, char_map: {ab: c}}]", "single characters"),
    ("stress.rules=[{name: r1, regex: a, char_map: {a: b}}]", "exactly one of regex or char_map"),
    ("stress.rules=[{name: empty, regex: a}]", "is a built-in perturbation"),
    ("stress.rules=[{name: r1, regex: a, rate: -0.1}]", "stress.rules.0.rate = -0.1"),
])
def test_bad_stress_config_is_one_clear_message(override, needle):
    with pytest.raises(ConfigError) as e:
        build_config({}, [override])
    assert needle in str(e.value)


def test_rows_come_back_in_input_order_although_scored_by_length():
    clf = KeywordClassifier()
    texts = ["很好很好很好，推荐", "差", "精彩", "太差了，发货慢，后悔"]
    r = run_stress(clf, texts, ["positive", "negative", "positive", "negative"], StressConfig(perturbations=["one_char"]), 0)
    assert [len(t) for t in clf.calls[0]] == sorted(len(t) for t in texts)  # sent shortest first
    assert r.clean["accuracy"] == 1.0  # ... and every row's probabilities went back to its own label


def test_perturbations_in_worker_processes_give_the_sequential_result(tmp_path):
    """#19: with workers > 1 the perturbations are scored in a process pool (each loading the saved model); the
    table and the examples are exactly those of the sequential loop; a repeated text is scored once."""
    from textcls_core.modeling.tfidf import TfidfSettings, fit_tfidf_lr
    from textcls_core.runtime.config import CleanConfig

    pos = ["这本书很好看，内容精彩", "手机屏幕清晰，推荐购买", "物流很快，包装很好", "味道不错，下次还来", "性价比高，值得推荐"]
    neg = ["质量太差了，后悔购买", "发货慢，客服态度差", "屏幕有划痕，很失望", "味道一般，不会再来", "价格贵，质量差"]
    texts, y = pos * 4 + neg * 4, [1] * 20 + [0] * 20
    clf = fit_tfidf_lr(texts, y, texts, y, ["negative", "positive"], CleanConfig(), TfidfSettings(min_df=1), ["char"], [1.0])
    model_dir = str(clf.save(tmp_path / "tfidf"))
    sample, labels = texts[::3] + [texts[0]], ["positive" if v else "negative" for v in y[::3] + [y[0]]]
    conf = StressConfig(perturbations=["all"])
    seq = run_stress(clf, sample, labels, conf, 7)
    par = run_stress(clf, sample, labels, conf, 7, workers=2, model_dir=model_dir)
    assert len(seq.table) == len(BUILTIN_PERTURBATIONS)
    assert seq.table.equals(par.table)
    assert seq.examples.equals(par.examples)
