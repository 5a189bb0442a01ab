"""Candidates (#14), core: tfidf_lr as a model family, the validation-fit ensemble, the choice and the loader."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from tests.conftest import NEG, POS
from textcls_core.dataset.clean import prepare_texts
from textcls_core.modeling.classifiers import load_classifier, model_kind, proba_and_oov
from textcls_core.modeling.ensemble import EnsembleClassifier, crossfit_proba, fit_weight
from textcls_core.modeling.tfidf import (
    TfidfClassifier,
    TfidfSettings,
    _Block,
    char_ngrams,
    fit_tfidf_lr,
    refit_tfidf_lr,
    word_ngrams,
)
from textcls_core.runtime.config import CleanConfig, ModelConfig, build_config
from textcls_core.runtime.errors import ConfigError
from textcls_core.training.candidates import choose_candidate, paired_se, plan_candidates

LABELS = ["negative", "positive"]


def _data():
    texts = POS + NEG
    y = np.array([1] * len(POS) + [0] * len(NEG))
    order = np.random.default_rng(0).permutation(len(texts))
    texts, y = [texts[i] for i in order], y[order]
    return texts[:16], y[:16], texts[16:], y[16:]


@pytest.fixture(scope="module")
def tfidf() -> TfidfClassifier:
    tr, ytr, va, yva = _data()
    return fit_tfidf_lr(tr, ytr, va, yva, LABELS, CleanConfig(), TfidfSettings(min_df=1), ["char+word", "char", "word"],
                        [0.5, 4.0, 32.0])


def test_ngrams():
    assert char_ngrams("很好用", 2) == ["很", "好", "用", "很好", "好用"]
    assert word_ngrams(["质量", "很", "好"], 2) == ["质量", "很", "好", "质量 很", "很 好"]


def test_block_transform_equals_sklearn():
    """The load-time transform repeats TfidfVectorizer's (sublinear tf, smoothed idf, l2) on unseen texts too."""
    docs = [char_ngrams(t, 3) for t in POS + NEG]
    vec = TfidfVectorizer(analyzer=lambda g: g, sublinear_tf=True, min_df=1).fit(docs[:18])
    block = _Block({str(k): int(v) for k, v in vec.vocabulary_.items()}, vec.idf_)
    np.testing.assert_allclose(block.transform(docs).toarray(), vec.transform(docs).toarray(), atol=1e-12)


def test_keyed_char_and_word_features_equal_sklearn_on_awkward_texts():
    """Prediction's integer-keyed n-gram lookup gives TfidfVectorizer's rows: astral characters (emoji), a lone
    surrogate, texts shorter than an n-gram, empty texts, unseen words, and a token holding a space (the string path)."""
    fit_texts = POS + NEG + ["好😀好", "\udcff坏", "a"]
    new_texts = fit_texts + ["", "😀", "好😀", "没见过的字", "很"]
    char = TfidfVectorizer(analyzer=lambda g: g, sublinear_tf=True, min_df=1).fit([char_ngrams(t, 3) for t in fit_texts])
    block = _Block({str(k): int(v) for k, v in char.vocabulary_.items()}, char.idf_)
    expected = char.transform([char_ngrams(t, 3) for t in new_texts]).toarray()
    np.testing.assert_allclose(block.transform_chars(new_texts, 3).toarray(), expected, atol=1e-12)
    assert np.count_nonzero(expected[-3]) == 3  # 好, 😀, 好😀: an astral character keys like any other
    fit_words = [["质量", "很", "好"], ["质量", "太", "差"], ["很", "好", "用"], ["好"]]
    new_words = fit_words + [[], ["没见过"], ["质量", "没见过", "好"], ["很", "好"]]
    word = TfidfVectorizer(analyzer=lambda g: g, sublinear_tf=True, min_df=1).fit([word_ngrams(w, 2) for w in fit_words])
    wblock = _Block({str(k): int(v) for k, v in word.vocabulary_.items()}, word.idf_)
    expected = word.transform([word_ngrams(w, 2) for w in new_words]).toarray()
    np.testing.assert_allclose(wblock.transform_words(new_words, 2).toarray(), expected, atol=1e-12)
    assert np.count_nonzero(expected[-2]) == 2  # 质量 and 好 count; every n-gram with the unseen word is dropped
    spaced = [["质量 很"], ["质量", "很"]]  # "质量 很" as one token must not be read as the 2-gram
    np.testing.assert_allclose(wblock.transform_words(spaced, 2).toarray(),
                               word.transform([word_ngrams(w, 2) for w in spaced]).toarray(), atol=1e-12)


@pytest.mark.parametrize("min_df", [1, 2])
def test_keyed_fit_equals_sklearn_fit(min_df):
    """fit_block counts n-grams on integer keys: the same vocabulary (numbering included), idf and training matrix as
    TfidfVectorizer on the n-gram strings, with astral characters, a lone surrogate, a NUL, empty and 1-character
    texts, repeated grams and min_df pruning; word grams with words that are prefixes of others."""
    from textcls_core.modeling.tfidf import _fit_block, fit_block

    texts = (POS + NEG) * 2 + ["好😀好😀", "\udcff坏\udcff", "a", "", "\x00好", "好\x00", "😀😀😀😀", "ab ab", "AbC"]
    for n_max in (1, 2, 3):
        keyed, x = fit_block("char", texts, None, n_max, min_df)
        ref, xr = _fit_block([char_ngrams(t, n_max) for t in texts], min_df)
        assert keyed.vocab == ref.vocab and len(keyed.vocab) > 10
        np.testing.assert_array_equal(keyed.idf, ref.idf)
        np.testing.assert_array_equal(x.toarray(), xr.toarray())  # bit for bit: the regressions see the same matrix
        assert np.array_equal(x.indices, xr.indices) and np.array_equal(x.data, xr.data)  # in sklearn's entry order
    words = [["质量", "很", "好"], ["质量", "太", "差"], ["很", "好", "用"], ["好"], [], ["质", "量"], ["质量", "很", "好"]] * 3
    for n_max in (1, 2, 3):
        keyed, x = fit_block("word", [""] * len(words), words, n_max, min_df)
        ref, xr = _fit_block([word_ngrams(w, n_max) for w in words], min_df)
        assert keyed.vocab == ref.vocab
        np.testing.assert_array_equal(keyed.idf, ref.idf)
        np.testing.assert_array_equal(x.toarray(), xr.toarray())  # bit for bit: the regressions see the same matrix
        assert np.array_equal(x.indices, xr.indices) and np.array_equal(x.data, xr.data)  # in sklearn's entry order
    with pytest.raises(ValueError):  # nothing kept: sklearn's own error, as before
        fit_block("char", ["", ""], None, 2, 1)


def test_tfidf_picks_settings_on_validation_and_round_trips(tfidf, tmp_path):
    tr, ytr, va, yva = _data()
    tried = tfidf.search
    assert len(tried) == 9 and {r["features"] for r in tried} == {"char+word", "char", "word"}
    chosen = next(r for r in tried if (r["features"], r["c"]) == (tfidf.settings.features, tfidf.settings.c))
    default = tried[1]  # first feature set, middle C: kept unless beaten by more than one standard error
    assert (default["features"], default["c"]) == ("char+word", 4.0)
    assert chosen is default or chosen["val_accuracy"] == max(r["val_accuracy"] for r in tried) > default["val_accuracy"]
    probs = tfidf.predict_proba(va)
    assert probs.shape == (8, 2) and np.allclose(probs.sum(axis=1), 1)
    assert float((probs.argmax(axis=1) == yva).mean()) == pytest.approx(chosen["val_accuracy"])
    tfidf.save(tmp_path / "m")
    assert model_kind(tmp_path / "m") == "tfidf_lr"
    loaded = load_classifier(tmp_path / "m")
    assert isinstance(loaded, TfidfClassifier)
    np.testing.assert_allclose(loaded.predict_proba(va), probs, atol=1e-12)
    frame = loaded.predict(va[:3])
    assert list(frame.columns) == ["label", "score", "prob_negative", "prob_positive"]


@pytest.mark.parametrize("features", ["char", "char+word"])
def test_refit_on_train_and_val_is_the_chosen_settings_fitted_on_both(features, tmp_path):
    """model.tfidf_refit: the shipped tfidf_lr is the validation-picked setting fitted again on train + val. Checked
    against sklearn fitted independently on the union (TfidfVectorizer per block, l2 rows, hstack, LogisticRegression
    at the picked C): equal probabilities on unseen texts. A refit that kept the train-only vocabulary or weights
    differs: a word only validation holds gets a column, and the weights move."""
    from scipy.sparse import hstack

    from textcls_core.text.tokenize import segment_texts

    tr, ytr, va, yva = _data()
    only_val = "榴莲酥"  # in no training text
    va = [t + only_val for t in va]
    first = fit_tfidf_lr(tr, ytr, va, yva, LABELS, CleanConfig(), TfidfSettings(min_df=1), [features], [2.0])
    refit = refit_tfidf_lr(first, tr + va, np.concatenate([ytr, yva]))
    assert (refit.settings.features, refit.settings.c, refit.fitted_on, first.fitted_on) == (features, 2.0, "train+val", "train")
    assert refit.search == first.search  # the validation scores that chose the setting travel with it
    assert "榴莲酥" not in first.blocks["char"].vocab and "榴莲酥" in refit.blocks["char"].vocab

    union = first.prepare(tr + va)
    vecs = [TfidfVectorizer(analyzer=lambda t: char_ngrams(t, 3), sublinear_tf=True, min_df=1).fit(union)]
    docs = [union]
    if "word" in features:
        words = segment_texts(union)
        vecs.append(TfidfVectorizer(analyzer=lambda w: word_ngrams(w, 2), sublinear_tf=True, min_df=1).fit(words))
        docs.append(words)
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=2.0, max_iter=2000).fit(hstack([v.transform(d) for v, d in zip(vecs, docs)]).tocsr(),
                                                      np.concatenate([ytr, yva]))
    new = ["质量很好，物流也快", "太差了，不推荐", "榴莲酥很好吃"]
    p_new = first.prepare(new)
    x_new = hstack([vecs[0].transform(p_new)] + ([vecs[1].transform(segment_texts(p_new))] if "word" in features else [])).tocsr()
    np.testing.assert_allclose(refit.predict_proba(new), lr.predict_proba(x_new), atol=1e-6)
    assert not np.allclose(refit.predict_proba(new), first.predict_proba(new), atol=1e-3)
    refit.save(tmp_path / "m")
    assert load_classifier(tmp_path / "m").fitted_on == "train+val"


def test_oov_shares_count_unseen_unigrams(tfidf):
    """The drift profile's OOV signal: the share of a text's words (or characters) the model never saw."""
    seen = next(iter(tfidf.blocks["word"].vocab)) if "word" in tfidf.blocks else next(iter(tfidf.blocks["char"].vocab))
    unit = "word" if "word" in tfidf.blocks else "char"
    if unit == "word":
        shares = tfidf.oov_shares(["x", "y"], [[seen, "从未见过的词"], [seen, seen]])
        np.testing.assert_allclose(shares, [0.5, 0.0])
    else:
        np.testing.assert_allclose(tfidf.oov_shares([seen[0] + "龘", seen[0] * 2]), [0.5, 0.0])
    np.testing.assert_allclose(tfidf.oov_shares([""], [[]] if unit == "word" else None), [0.0])


def test_tfidf_cleans_raw_text_like_the_networks(tfidf):
    """Raw text goes through the same prepare_texts (HTML, full width, URLs) as the networks' encoder."""
    raw = ["<b>质量很好</b>，非常满意 http://x.cn/a", "ＡＢＣ质量太差了&amp;很失望", None, 12]
    cleaned = prepare_texts(raw, CleanConfig(), tfidf.settings.max_len)
    np.testing.assert_allclose(tfidf.predict_proba(raw), tfidf.predict_proba(cleaned), atol=1e-12)
    probs, oov = tfidf.predict_proba_oov(["质量很好", "完全陌生的词汇组合"])
    np.testing.assert_allclose(probs, tfidf.predict_proba(["质量很好", "完全陌生的词汇组合"]))
    assert oov[0] < oov[1]


def test_tfidf_default_setting_stays_unless_clearly_beaten():
    """Only a lead of more than one paired standard error on validation replaces the default (first set, middle C)."""
    rng = np.random.default_rng(0)
    words = ["好", "棒", "赞", "差", "烂", "坏"]
    y = (np.arange(200) % 5 == 0).astype(int)  # 20% positive
    texts = ["".join(rng.choice(words[:3] if label else words[3:], 3)) + "".join(rng.choice(list("的了是在"), 4)) for label in y]
    # char n-grams separate the classes; a tiny C predicts the majority class only (0.8 accuracy), far below the others
    clf = fit_tfidf_lr(texts[:150], y[:150], texts[150:], y[150:], LABELS, CleanConfig(), TfidfSettings(min_df=1), ["char"],
                       [1.0, 1e-4, 100.0])
    assert next(r for r in clf.search if r["c"] == 1e-4)["val_accuracy"] == 0.8 and clf.settings.c != 1e-4
    # and a default as good as the rest stays
    clf = fit_tfidf_lr(texts[:150], y[:150], texts[150:], y[150:], LABELS, CleanConfig(), TfidfSettings(min_df=1), ["char"],
                       [1.0, 10.0, 100.0])
    assert clf.settings.c == 10.0


def test_tfidf_multiclass_and_class_missing_from_train():
    texts = ["体育比赛进球", "足球联赛冠军", "篮球比赛得分", "股市大涨", "基金收益", "银行利率下调", "电影票房", "演员新片上映"]
    y = [0, 0, 0, 1, 1, 1, 2, 2]
    labels = ["sports", "finance", "film", "never_in_train"]
    clf = fit_tfidf_lr(texts, y, texts, y, labels, CleanConfig(), TfidfSettings(min_df=1), ["char"], [10.0])
    probs = clf.predict_proba(texts)
    assert probs.shape == (8, 4) and np.allclose(probs.sum(axis=1), 1) and np.all(probs[:, 3] == 0)
    assert (probs.argmax(axis=1) == np.array(y)).all()


def test_fit_weight_and_crossfit():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    good = np.eye(2)[y] * 0.9 + 0.05
    noise = rng.dirichlet([1, 1], 200)
    assert fit_weight(good, noise, y) == 1.0 and fit_weight(noise, good, y) == 0.0
    probs, weights = crossfit_proba(good, noise, y, seed=0)
    assert weights == [1.0, 1.0] and np.allclose(probs, good)
    # a weight fit on one half is applied to the other: 0.5/0.5 between two complementary halves
    a = np.where((np.arange(200) % 2 == 0)[:, None], good, 1 - good)
    b = 1 - a
    probs, weights = crossfit_proba(a, b, y, seed=0)
    assert len(weights) == 2 and probs.shape == (200, 2)


def test_ensemble_round_trip(tfidf, tmp_path):
    other = fit_tfidf_lr(*_data(), LABELS, CleanConfig(), TfidfSettings(min_df=1), ["word"], [1.0])
    ens = EnsembleClassifier(["model", "tfidf_lr"], [other, tfidf], [0.3, 0.7])
    texts = ["质量很好", "太差了"]
    expected = 0.3 * other.predict_proba(texts) + 0.7 * tfidf.predict_proba(texts)
    np.testing.assert_allclose(ens.predict_proba(texts), expected)
    ens.save(tmp_path / "e")
    assert model_kind(tmp_path / "e") == "ensemble"
    loaded = load_classifier(tmp_path / "e")
    np.testing.assert_allclose(loaded.predict_proba(texts), expected, atol=1e-12)
    np.testing.assert_allclose(proba_and_oov(loaded, texts)[0], expected, atol=1e-12)
    assert json.loads((tmp_path / "e" / "model.json").read_text())["members"][1] == {"name": "tfidf_lr", "weight": 0.7, "kind": "tfidf_lr"}
    with pytest.raises(ValueError, match="sum to 1"):
        EnsembleClassifier(["a", "b"], [other, tfidf], [0.5, 0.6])


def test_network_folder_without_kind_loads_as_text_classifier(tmp_path):
    """Folders saved by earlier code (no `kind` in model.json) still load, as the network they are."""
    import torch

    from textcls_core.modeling.networks import build_model
    from textcls_core.modeling.predictor import TextClassifier
    from textcls_core.text.encoders import WordEncoder

    cfg = ModelConfig(embed_dim=8, num_filters=2)
    itos = ["<pad>", "<unk>", "质量", "很", "好"]
    torch.manual_seed(0)
    clf = TextClassifier(build_model(cfg, len(itos), 2), WordEncoder(itos, 16), LABELS, cfg, CleanConfig())
    clf.save(tmp_path / "n")
    assert "kind" not in json.loads((tmp_path / "n" / "model.json").read_text()) and model_kind(tmp_path / "n") == "network"
    loaded = load_classifier(tmp_path / "n")
    assert isinstance(loaded, TextClassifier)
    probs, oov = proba_and_oov(loaded, ["质量很好", "陌生"])
    np.testing.assert_allclose(probs, clf.predict_proba(["质量很好", "陌生"]), atol=1e-6)
    assert oov[0] == 0.0 and oov[1] == 1.0


def test_choose_candidate_best_on_validation_ties_to_simpler():
    val = {"model": {"accuracy": 0.80}, "tfidf_lr": {"accuracy": 0.86}, "ensemble": {"accuracy": 0.86}}
    name, reason = choose_candidate(val, "val_accuracy", {"model": "textcnn", "ensemble": "ensemble(textcnn+tfidf_lr)"})
    assert name == "tfidf_lr"
    assert reason.startswith("tfidf_lr has the best validation accuracy, 0.8600") and "textcnn 0.8000" in reason
    assert "tied with ensemble(textcnn+tfidf_lr), so the simpler one ships" in reason
    val["ensemble"]["accuracy"] = 0.87
    assert choose_candidate(val, "val_accuracy")[0] == "ensemble"
    assert choose_candidate({"model": {"macro_f1": 0.5}}, "val_macro_f1") == ("model", "model has the best validation macro_f1, 0.5000 (the only candidate)")


def test_one_standard_error_rule_ships_the_simpler_model_when_the_lead_is_noise():
    val = {"model": {"accuracy": 0.821}, "tfidf_lr": {"accuracy": 0.795}, "ensemble": {"accuracy": 0.795}}
    name, reason = choose_candidate(val, "val_accuracy", {"model": "textcnn"}, {"tfidf_lr": 0.045, "ensemble": 0.045})
    assert name == "tfidf_lr" and "within one standard error (0.0450) of the best, textcnn 0.8210" in reason
    val = {"model": {"accuracy": 0.86}, "tfidf_lr": {"accuracy": 0.868}, "ensemble": {"accuracy": 0.885}}
    name, reason = choose_candidate(val, "val_accuracy", None, {"tfidf_lr": 0.005, "model": 0.007})
    assert name == "ensemble" and "more than one standard error (0.0050)" in reason


def test_paired_se():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    a = np.eye(2)[np.where(rng.random(400) < 0.85, y, 1 - y)]
    b = a.copy()
    assert paired_se(y, a, b, "val_accuracy") == 0.0  # identical predictions: no noise in the difference
    flip = rng.random(400) < 0.2
    b[flip] = 1 - b[flip]
    d = (a.argmax(1) == y).astype(float) - (b.argmax(1) == y).astype(float)
    assert paired_se(y, a, b, "val_accuracy") == pytest.approx(d.std(ddof=1) / 20)
    assert 0.5 * d.std(ddof=1) / 20 < paired_se(y, a, b, "val_macro_f1", seed=1) < 2 * d.std(ddof=1) / 20


def test_plan_candidates():
    plan = plan_candidates(ModelConfig(), baseline=True)
    assert plan.candidates == ["model", "tfidf_lr", "ensemble"] and plan.train_network and plan.train_tfidf
    plan = plan_candidates(ModelConfig(name="tfidf_lr"), baseline=True)
    assert plan.candidates == ["tfidf_lr"] and not plan.train_network and "ensemble skipped" in plan.notes[0]
    plan = plan_candidates(ModelConfig(candidates=["model"]), baseline=False)
    assert plan.candidates == ["model"] and not plan.train_tfidf
    assert plan_candidates(ModelConfig(candidates=["model"]), baseline=True).train_tfidf  # the report's reference


@pytest.mark.parametrize("override, message", [
    ("model.candidates=[model, svm]", "model.candidates.1 = 'svm'"),
    ("model.candidates=[model, ensemble]", "ensemble blends model and tfidf_lr; list both"),
    ("model.candidates=[]", "model.candidates"),
    ("model.tfidf_c=[1.0, 0]", "every C must be > 0"),
    ("model.tfidf_features=[chars]", "model.tfidf_features.0 = 'chars'"),
])
def test_bad_candidate_settings_are_one_clear_error(override, message):
    with pytest.raises(ConfigError, match="Invalid config") as err:
        build_config({}, [override])
    assert message in str(err.value)


def test_shared_load_reuses_the_object_until_the_folder_changes(tfidf, tmp_path):
    """load_classifier(shared=True): the stages of a run get one loaded object per folder; a folder rewritten (a
    new model saved there) is loaded again, and a plain load is always a new object."""
    import os

    folder = tfidf.save(tmp_path / "m")
    first = load_classifier(folder, shared=True)
    assert load_classifier(folder, shared=True) is first
    assert load_classifier(folder) is not first
    model_json = folder / "model.json"
    os.utime(model_json, ns=(model_json.stat().st_atime_ns, model_json.stat().st_mtime_ns + 10**9))
    again = load_classifier(folder, shared=True)
    assert again is not first and again.labels == first.labels
    texts = ["质量很好", "太差了"]
    np.testing.assert_allclose(again.predict_proba(texts), tfidf.predict_proba(texts))


def test_shared_load_is_kept_when_only_a_sidecar_is_written(tfidf, tmp_path):
    """The drift profile and the training fingerprint are written into the shipped folder after the evaluation
    loaded it; they are no part of the model, so the stages after them keep the loaded object. Their names are the
    ones the writers use."""
    from textcls_core.dataset.fingerprint import FINGERPRINT_FILE, build_fingerprint, save_fingerprint
    from textcls_core.evaluation.drift import PROFILE_FILE
    from textcls_core.modeling.classifiers import SIDECAR_FILES

    assert SIDECAR_FILES == {PROFILE_FILE, FINGERPRINT_FILE}
    folder = tfidf.save(tmp_path / "m")
    first = load_classifier(folder, shared=True)
    save_fingerprint(folder, build_fingerprint(["质量很好"], ["太差了"]))
    (folder / PROFILE_FILE).write_text("{}", encoding="utf-8")
    assert (folder / FINGERPRINT_FILE).is_file()
    assert load_classifier(folder, shared=True) is first
    import os

    arrays = (folder / "arrays.npz").stat()  # a model file rewritten: loaded again
    os.utime(folder / "arrays.npz", ns=(arrays.st_atime_ns, arrays.st_mtime_ns + 10**9))
    assert load_classifier(folder, shared=True) is not first


class _Counting(TfidfClassifier):
    """A tfidf_lr model that counts the texts it was asked to score."""

    scored = 0

    @classmethod
    def of(cls, clf: TfidfClassifier) -> "_Counting":
        return cls(**{f.name: getattr(clf, f.name) for f in dataclasses.fields(clf)})

    def predict_proba(self, texts, batch_size=256):
        self.scored += len(texts)
        return super().predict_proba(texts, batch_size)

    def predict_proba_oov(self, texts):
        self.scored += len(texts)
        return super().predict_proba_oov(texts)


def test_a_shipped_baseline_is_scored_once_and_gives_the_models_numbers(tfidf):
    """When tfidf_lr ships, the evaluation's model and baseline are one object: the baseline's test and validation
    metrics are the model's own, and each split is scored once (plus the latency pass), not twice. A different
    baseline object is still scored on its own."""
    from textcls_core.evaluation.assessment import assess_classifier, validation_metrics
    from textcls_core.runtime.config import EvaluateConfig

    _, _, va, yva = _data()
    frame = pd.DataFrame({"text": va, "label": [LABELS[i] for i in yva], "row_id": range(len(va))})
    cfg = EvaluateConfig(label_error_folds=0, latency_samples=0)
    shipped = _Counting.of(tfidf)
    ev = assess_classifier(shipped, frame, cfg, shipped, None, None, 0, _NullLog())
    assert ev.baseline["accuracy"] == ev.metrics["accuracy"] and ev.baseline["macro_f1"] == ev.metrics["macro_f1"]
    assert shipped.scored == 2 * len(va)  # the evaluation, then the latency pass; no second baseline pass
    val = validation_metrics(shipped, frame, shipped, cfg)
    assert val["baseline_val_accuracy"] == val["val_accuracy"] and shipped.scored == 3 * len(va)
    other = _Counting.of(tfidf)
    val_other = validation_metrics(shipped, frame, other, cfg)
    assert other.scored == len(va) and val_other == val


class _NullLog:
    def info(self, *args):
        pass
