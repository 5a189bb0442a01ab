"""Each task through `.fn` (no Prefect server): files written, MLflow state, registry aliases."""

from __future__ import annotations

import json
import re

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tasks.candidates import candidates_task
from tasks.data import analyze_task, clean_task, split_task
from tasks.encode import encode_task
from tasks.evaluate import evaluate_task
from tasks.package import package_task
from tasks.tracking import client_for, resolve_tracking_uri
from tasks.train import train_task
from tests.conftest import small_config
from textcls_core.evaluation.metrics import BADCASE_COLUMNS
from textcls_core.modeling.predictor import TextClassifier


def _start_run(cfg, tmp_path):
    client = client_for(cfg.tracking.uri)
    exp = client.create_experiment(f"t-{tmp_path.name}")
    run = client.create_run(exp)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return {"run_id": run.info.run_id, "tracking_uri": cfg.tracking.uri, "experiment_id": exp, "run_dir": str(run_dir)}


@pytest.fixture
def pipeline_outputs(tmp_path, tracking_uri):
    cfg = small_config(tmp_path, tracking_uri)
    tracking = _start_run(cfg, tmp_path)
    analysis = analyze_task.fn(cfg.data, cfg.extra_columns(), cfg.run.seed, tracking)
    cleaning = clean_task.fn(analysis["raw_path"], cfg.clean, tracking, max_len=cfg.tokenize.max_len)
    split = split_task.fn(cleaning["clean_path"], cfg.split, cfg.run.seed, tracking)
    encoded = encode_task.fn(split["paths"], cfg.tokenize, tracking, cfg.clean)
    trained = train_task.fn(encoded, cfg.model, cfg.train, cfg.tokenize, cfg.clean, cfg.run.seed, tracking)
    # the network is evaluated here; the candidates stage supplies the baseline (its tfidf_lr candidate)
    candidates = candidates_task.fn(split["paths"], trained["model_dir"], cfg.model, cfg.tokenize, cfg.clean,
                                    cfg.train.select_metric, cfg.evaluate.baseline, cfg.run.seed, tracking)
    evaluation = evaluate_task.fn(trained["model_dir"], split["paths"], cfg.evaluate, cfg.registry.model_name, cfg.run.seed, tracking,
                                  candidates=candidates)
    return locals()


def test_data_and_training_tasks(pipeline_outputs):
    o = pipeline_outputs
    tracking, analysis, cleaning, split = o["tracking"], o["analysis"], o["cleaning"], o["split"]
    # the splits are the run's MLflow datasets: context, a 32-digit digest of the split's sha256, the full hash in the profile
    inputs = MlflowClient(tracking["tracking_uri"]).get_run(tracking["run_id"]).inputs.dataset_inputs
    by_context = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset for i in inputs}
    assert set(by_context) == {"train", "validation", "test"}
    for context, name in (("train", "train"), ("validation", "val"), ("test", "test")):
        ds = by_context[context]
        assert ds.digest == split["sha256"][name][:32] and json.loads(ds.profile)["sha256"] == split["sha256"][name]
        assert json.loads(ds.profile)["num_rows"] == split["rows"][name]
    assert analysis["stats"]["rows"] == 1200 and analysis["stats"]["rows_read"] == 35124
    assert json.loads(open(tracking["run_dir"] + "/reports/analysis.json").read())["classes"] == 2
    after = json.loads(open(tracking["run_dir"] + "/reports/analysis_after_cleaning.json").read())
    assert after["rows"] == cleaning["rows_kept"] and after["duplicate_rows"] == 0 and after["conflicting_texts"] == 0
    vocab = json.loads(open(tracking["run_dir"] + "/reports/vocabulary.json").read())
    assert vocab["vocab_size"] == o["encoded"]["vocab_size"] and 0 < vocab["test_oov_rate"] < 1
    assert "Distinctive words" in open(tracking["run_dir"] + "/reports/analysis_after_cleaning.html", encoding="utf-8").read()
    rules = json.loads(open(tracking["run_dir"] + "/reports/cleaning.json").read())["rules"]
    assert sum(r["dropped"] for r in rules) == len(pd.read_csv(cleaning["dropped_path"]))
    # every row accounted for: kept + dropped == in, and the dropped file lists each with a reason
    dropped = pd.read_csv(cleaning["dropped_path"])
    assert cleaning["rows_kept"] + len(dropped) == 1200 and dropped["reason"].notna().all()
    assert sum(split["rows"].values()) == cleaning["rows_kept"]
    parts = {k: pd.read_parquet(v) for k, v in split["paths"].items()}
    assert not set(parts["train"].text) & set(parts["test"].text)
    assert o["encoded"]["labels"] == ["negative", "positive"] and o["encoded"]["vocab_size"] > 100
    assert o["trained"]["epochs_run"] == 2 and 0.0 <= o["trained"]["best_val_accuracy"] <= 1.0
    m = o["evaluation"]["metrics"]
    assert 0.5 <= m["test_accuracy"] <= 1.0 and 0.0 < m["test_macro_f1"] <= 1.0
    bad = pd.read_csv(o["evaluation"]["badcases_path"])
    assert list(bad.columns) == BADCASE_COLUMNS
    assert len(bad) == round((1 - m["test_accuracy"]) * split["rows"]["test"])
    assert bad["confidence"].is_monotonic_decreasing
    run = MlflowClient(tracking["tracking_uri"]).get_run(tracking["run_id"])
    assert run.data.metrics["test_accuracy"] == pytest.approx(m["test_accuracy"])
    assert run.data.metrics["split_test_rows"] == split["rows"]["test"]
    assert "val_accuracy" in run.data.metrics and len(run.data.tags["textcls.dataset_sha256"]) == 64
    # baseline beside the model, label-error queue over train+val, latency, a self-contained HTML report
    assert 0.5 <= m["baseline_test_accuracy"] <= 1.0 and m["latency_batch_texts_per_s"] > 0
    queue = pd.read_csv(o["evaluation"]["relabel_queue_path"])
    assert len(queue) == m["suspected_label_errors"] and set(queue["row_id"]) <= set(parts["train"].row_id) | set(parts["val"].row_id)
    html = open(o["evaluation"]["report_path"], encoding="utf-8").read()
    assert "tfidf_lr candidate (baseline)" in html and "data:image/png;base64," in html
    # no external assets (review texts may contain URLs, as plain escaped text)
    assert not re.search(r'(src|href)="?https?:|<link|@import|<script src', html)
    assert o["evaluation"]["champion_version"] is None
    assert {"evaluation/report.html", "evaluation/badcases.csv", "evaluation/relabel_queue.csv"} <= {
        a.path for a in MlflowClient(tracking["tracking_uri"]).list_artifacts(tracking["run_id"], "evaluation")}


def test_package_registers_a_servable_pyfunc(pipeline_outputs):
    """The first version (no champion: the floors decide) as a pyfunc that predicts like the in-process model.
    The gate itself (bootstrap on shared rows, outcomes, lock, retries, promote/rollback) is in tests/test_promotion.py."""
    o = pipeline_outputs
    cfg, tracking, model_dir = o["cfg"], o["tracking"], o["trained"]["model_dir"]
    base, per_class = dict(o["evaluation"]["metrics"]), o["evaluation"]["per_class"]
    no_baseline_check = cfg.model_copy(update={"registry": cfg.registry.model_copy(update={"baseline_check": False})})
    first = package_task.fn(model_dir, base, per_class, no_baseline_check, tracking, {"dataset_sha256": "x"}, o["split"]["paths"])
    assert (first["version"], first["alias"], first["gate.outcome"]) == ("1", "champion", "no_champion")
    client = MlflowClient(tracking["tracking_uri"])
    v1 = client.get_model_version("textcls-test", "1")
    assert v1.tags["dataset_sha256"] == "x" and len(v1.tags["config_sha256"]) == 64 and v1.tags["git_commit"]
    assert v1.tags["gate"] == "passed" and "test_macro_f1" not in v1.tags  # version tags: provenance, not metrics
    # the metrics sit on the Logged Model, tied to the test dataset; the description is the model card
    linked = {m.key: m for m in client.get_logged_model(v1.model_id or v1.source.removeprefix("models:/")).metrics}
    assert linked["test_macro_f1"].value == pytest.approx(base["test_macro_f1"])
    assert linked["test_macro_f1"].dataset_name.endswith("-test") and len(linked["test_macro_f1"].dataset_digest) == 32
    assert v1.description.startswith("### textcls-test v1 — @champion") and "models:/textcls-test/1" in v1.description
    assert "textcls-test" in client.get_registered_model("textcls-test").description
    # the evaluate stage gave the gate its validation metrics: the model and the TF-IDF baseline on val
    assert {"val_macro_f1", "val_accuracy", "baseline_val_macro_f1", "baseline_val_accuracy"} <= set(base)
    assert 0.5 <= base["baseline_val_accuracy"] <= 1.0

    # the registered pyfunc predicts label + score per text, with the in-process model's probabilities
    mlflow.set_tracking_uri(tracking["tracking_uri"])
    model = mlflow.pyfunc.load_model("models:/textcls-test@champion")
    texts = pd.read_parquet(o["split"]["paths"]["test"])["text"].tolist()
    served = model.predict(texts)
    local = TextClassifier.load(model_dir).predict(texts)
    assert len(served) == len(texts) and (served["label"] == local["label"]).all()
    assert np.abs(served.filter(like="prob_").to_numpy() - local.filter(like="prob_").to_numpy()).max() < 1e-5
    edge = model.predict(["", "好" * 20000])
    assert len(edge) == 2 and ((edge["score"] >= 0.5) & (edge["score"] <= 1.0)).all()


def test_default_tracking_uri_is_absolute_sqlite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri("") == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    assert resolve_tracking_uri("") == "http://127.0.0.1:5001"
