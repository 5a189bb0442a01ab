"""One encoder from raw text (#11): TextEncoder round trip, raw == cleaned input, bounded work, legacy model folders,
and checkpoints that refuse to resume on other data."""

from __future__ import annotations

import json
import shutil
from functools import partial

import numpy as np
import pytest
import torch

from textcls_core.dataset.clean import normalize_texts, text_limits
from textcls_core.modeling.networks import TextCNN
from textcls_core.modeling.predictor import TextClassifier, build_model
from textcls_core.runtime.config import CleanConfig, ModelConfig, TrainConfig
from textcls_core.runtime.errors import DataError
from textcls_core.text.batching import EncodedDataset, collate_batch
from textcls_core.text.encoders import ENCODER_FILE, TextEncoder, WordEncoder, encoder_sha256
from textcls_core.training.loop import set_seed, train_model

ITOS = ["<pad>", "<unk>", "质量", "很", "好", "太", "差", "了", "URL", "PHONE", "好好"]
RAW = ["质量很好 http://a.cn/x", "质量太差了 13812345678 &amp;lt;b&amp;gt;", "ＡＢＣ质量", None, 12, "好" * 1_000_000]


def test_text_encoder_encodes_raw_text_like_its_cleaned_form_and_round_trips(tmp_path):
    enc = TextEncoder(CleanConfig(), WordEncoder(ITOS, 16))
    ids = enc.encode(RAW)
    assert ids[0] == [2, 3, 4, 1, 8, 1] and 9 in ids[1]  # jieba: "<", "URL", ">"; the placeholders survive a second pass
    assert enc.encode(enc.prepare(RAW)) == ids  # cleaning twice changes nothing
    assert ids[3] == [] and len(ids[5]) == 16  # None is an empty text; the huge text costs at most the bound
    assert len(enc.prepare(RAW)[5]) == text_limits(16)[1]
    enc.save(tmp_path / "enc")
    loaded = TextEncoder.load(tmp_path / "enc")
    assert loaded.encode(RAW) == ids and loaded.clean_cfg == enc.clean_cfg
    sha = encoder_sha256(tmp_path / "enc")
    assert encoder_sha256(loaded.save(tmp_path / "again")) == sha  # the saved files are deterministic
    TextEncoder(CleanConfig(), WordEncoder(ITOS[:-1], 16)).save(tmp_path / "other")
    TextEncoder(CleanConfig(emoji="strip"), WordEncoder(ITOS, 16)).save(tmp_path / "other_clean")
    assert len({sha, encoder_sha256(tmp_path / "other"), encoder_sha256(tmp_path / "other_clean")}) == 3


def test_classifier_uses_the_saved_encoder_and_loads_old_folders(tmp_path):
    set_seed(0)
    mcfg = ModelConfig(embed_dim=8, num_filters=4, kernel_sizes=[1, 2])
    clf = TextClassifier(build_model(mcfg, len(ITOS), 2), TextEncoder(CleanConfig(nfkc=False), WordEncoder(ITOS, 16)), ["a", "b"], mcfg)
    probs = clf.predict_proba(RAW)
    clf.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / ENCODER_FILE).read_text())["clean"]["nfkc"] is False
    np.testing.assert_allclose(TextClassifier.load(tmp_path / "m").predict_proba(RAW), probs, atol=1e-6)
    # a folder saved before encoder.json existed: model.json's cleaning settings and max_len give the same encoder
    legacy = tmp_path / "legacy"
    shutil.copytree(tmp_path / "m", legacy)
    (legacy / ENCODER_FILE).unlink()
    old = TextClassifier.load(legacy)
    assert old.clean_cfg == CleanConfig(nfkc=False)
    np.testing.assert_allclose(old.predict_proba(RAW), probs, atol=1e-6)
    # cleaned text in, same probabilities: evaluation on raw or on the split's cleaned text agrees
    cleaned = normalize_texts(["质量很好 http://a.cn/x", "ＡＢＣ质量"], CleanConfig(nfkc=False))
    np.testing.assert_allclose(clf.predict_proba(cleaned), probs[[0, 2]], atol=1e-6)


def _data(n: int, shift: int = 0) -> EncodedDataset:
    rng = np.random.default_rng(shift)
    return EncodedDataset([(rng.integers(2, 8, size=5) + 6 * (i % 2)).tolist() for i in range(n)], [i % 2 for i in range(n)])


def test_resume_against_other_data_stops_with_one_message(tmp_path):
    ck = tmp_path / "last.pt"
    cfg = TrainConfig(epochs=1, batch_size=8, progress=False)
    collate = partial(collate_batch, max_len=16, min_len=2)
    fp = {"train_sha256": "a" * 64, "val_sha256": "b" * 64, "test_sha256": "c" * 64, "encoder_sha256": "d" * 64}

    def run(fingerprint, epochs=1):
        set_seed(0)
        return train_model(TextCNN(20, 2, 8, 4, [2]), _data(32), _data(16, 1), cfg.model_copy(update={"epochs": epochs}),
                           torch.device("cpu"), 2, collate, checkpoint_path=ck, fingerprint=fingerprint)

    run(fp)
    assert torch.load(ck, weights_only=True)["fingerprint"] == fp
    assert run(fp, epochs=2).resumed_from_step > 0  # same data: resumes
    with pytest.raises(DataError, match=r"trained on other data \(encoder dddddddddddd -> eeeeeeeeeeee\).*delete the checkpoint"):
        run(fp | {"encoder_sha256": "e" * 64}, epochs=3)
    with pytest.raises(DataError, match=r"train aaaaaaaaaaaa -> ffffffffffff"):
        run(fp | {"train_sha256": "f" * 64}, epochs=3)


def test_analysis_reports_original_lengths_and_segments_bounded_texts(tiny_df):
    from textcls_core.dataset.analyze import analyze_dataset

    df = tiny_df.copy()
    df.loc[0, "text"] = "好" * 1_000_000  # unbounded, jieba's HMM would take hours on this
    stats = analyze_dataset(df, max_len=16)
    assert stats["char_length"]["max"] == 1_000_000 and stats["texts_longer_than_model_reads"] == 1
    assert stats["model_char_limit"] == text_limits(16)[1] and stats["token_length"]["max"] <= text_limits(16)[1]


def test_fit_word_encoder_takes_its_vocabulary_from_train_only():
    from textcls_core.text.encoders import fit_word_encoder
    from textcls_core.text.tokenize import UNK_ID

    words = {"train": [["好", "电影"], ["好", "差"]], "val": [["电影", "新词"]], "test": [["好"] * 5]}
    enc, ids, metrics = fit_word_encoder(words, max_len=3, min_freq=1)
    assert "新词" not in enc.stoi and {"好", "电影", "差"} <= set(enc.stoi)
    assert ids["val"] == [[enc.stoi["电影"], UNK_ID]]
    assert ids["test"] == [[enc.stoi["好"]] * 3]  # cut to max_len
    assert metrics["val_oov_rate"] == 0.5 and metrics["train_oov_rate"] == 0.0
    assert metrics["test_truncated_share"] == 1.0 and metrics["train_truncated_share"] == 0.0
    assert metrics["vocab_size"] == enc.vocab_size == len(enc.itos)


def test_class_labels_are_the_train_split_labels_sorted():
    import pandas as pd

    from textcls_core.dataset.split import class_labels

    assert class_labels(pd.DataFrame({"label": ["差评", "好评", "差评", "中评"]})) == ["中评", "好评", "差评"]  # code-point order, the ids every stage uses
