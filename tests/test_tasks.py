"""Each task through `.fn` (no Prefect server): files written, MLflow state, registry aliases."""

from __future__ import annotations

import json
import re

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tasks.data import analyze_task, clean_task, split_task
from tasks.encode import encode_task
from tasks.evaluate import evaluate_task
from tasks.package import package_task
from tasks.registry import promote_version, rollback_champion
from tasks.train import train_task
from tasks.tracking import client_for, resolve_tracking_uri
from tests.conftest import small_config
from textcls_core.errors import TextclsError
from textcls_core.evaluate import BADCASE_COLUMNS
from textcls_core.predictor import TextClassifier


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
    cleaning = clean_task.fn(analysis["raw_path"], cfg.clean, tracking)
    split = split_task.fn(cleaning["clean_path"], cfg.split, cfg.run.seed, tracking)
    encoded = encode_task.fn(split["paths"], cfg.tokenize, tracking)
    trained = train_task.fn(encoded, cfg.model, cfg.train, cfg.tokenize, cfg.clean, cfg.run.seed, tracking)
    evaluation = evaluate_task.fn(trained["model_dir"], split["paths"], cfg.evaluate, cfg.registry.model_name, cfg.run.seed, tracking)
    return locals()


def test_data_and_training_tasks(pipeline_outputs):
    o = pipeline_outputs
    tracking, analysis, cleaning, split = o["tracking"], o["analysis"], o["cleaning"], o["split"]
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
    assert "TF-IDF + LR baseline" in html and "data:image/png;base64," in html
    # no external assets (review texts may contain URLs, as plain escaped text)
    assert not re.search(r'(src|href)="?https?:|<link|@import|<script src', html)
    assert o["evaluation"]["champion_version"] is None
    assert {"evaluation/report.html", "evaluation/badcases.csv", "evaluation/relabel_queue.csv"} <= {
        a.path for a in MlflowClient(tracking["tracking_uri"]).list_artifacts(tracking["run_id"], "evaluation")}


def test_package_gate_promote_and_rollback(pipeline_outputs):
    o = pipeline_outputs
    cfg, tracking, model_dir = o["cfg"], o["tracking"], o["trained"]["model_dir"]
    base, per_class = dict(o["evaluation"]["metrics"]), o["evaluation"]["per_class"]
    first = package_task.fn(model_dir, base, per_class, cfg, tracking, {"dataset_sha256": "x"})
    assert (first["version"], first["alias"]) == ("1", "champion")
    worse = package_task.fn(model_dir, base | {"test_macro_f1": base["test_macro_f1"] - 0.1}, per_class, cfg, tracking, {})
    assert worse["alias"] == "challenger" and [c["check"] for c in worse["gate_checks"] if not c["passed"]] == ["improvement"]
    better = package_task.fn(model_dir, base | {"test_macro_f1": base["test_macro_f1"] + 0.01}, per_class, cfg, tracking, {})
    assert better["alias"] == "champion" and better["previous_champion"] == "1"
    client = MlflowClient(tracking["tracking_uri"])
    assert str(client.get_model_version_by_alias("textcls-test", "champion").version) == "3"
    assert str(client.get_model_version_by_alias("textcls-test", "challenger").version) == "2"
    v2 = client.get_model_version("textcls-test", "2")
    assert v2.description.startswith("challenger:") and "FAIL test_macro_f1" in v2.description
    assert float(v2.tags["test_macro_f1"]) < base["test_macro_f1"] and v2.tags["gate"] == "failed"
    v1 = client.get_model_version("textcls-test", "1")
    assert v1.tags["dataset_sha256"] == "x" and len(v1.tags["config_sha256"]) == 64 and v1.tags["git_commit"]

    # an absolute floor the model cannot reach keeps it a challenger even though it would beat the champion
    strict = cfg.model_copy(update={"registry": cfg.registry.model_copy(update={"min_class_f1": 0.999})})
    blocked = package_task.fn(model_dir, base | {"test_macro_f1": 0.99}, per_class, strict, tracking, {})
    assert blocked["alias"] == "challenger" and any("every class F1" in r for r in blocked["gate_failures"])

    # humans: promote v2 by hand, then roll back to v3, then to v1
    assert promote_version("textcls-test", "2", "hotfix for a customer", tracking["tracking_uri"]) == "3"
    assert str(client.get_model_version_by_alias("textcls-test", "champion").version) == "2"
    assert rollback_champion("textcls-test", "bad canary", tracking["tracking_uri"]) == ("2", "3")
    assert rollback_champion("textcls-test", "older", tracking["tracking_uri"]) == ("3", "1")
    with pytest.raises(TextclsError, match="no earlier champion"):
        rollback_champion("textcls-test", "again", tracking["tracking_uri"])
    with pytest.raises(TextclsError, match="has no version 99"):
        promote_version("textcls-test", "99", "x", tracking["tracking_uri"])

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


def test_regression_set_gate(pipeline_outputs, tmp_path):
    o = pipeline_outputs
    cfg, tracking, model_dir = o["cfg"], o["tracking"], o["trained"]["model_dir"]
    base, per_class = dict(o["evaluation"]["metrics"]), o["evaluation"]["per_class"]
    first = package_task.fn(model_dir, base, per_class, cfg, tracking, {})
    assert first["alias"] == "champion"
    # a regression set the champion gets right: the same model is neither better nor worse on it -> passes
    reg = tmp_path / "regression.csv"
    pd.read_parquet(o["split"]["paths"]["test"])[["text", "label"]].head(40).to_csv(reg, index=False)
    with_reg = cfg.model_copy(update={"registry": cfg.registry.model_copy(update={"regression_set": str(reg), "regression_tolerance": 0.0})})
    second = package_task.fn(model_dir, base | {"test_macro_f1": base["test_macro_f1"] + 0.01}, per_class, with_reg, tracking, {})
    check = [c for c in second["gate_checks"] if c["check"] == "regression_set"][0]
    assert check["passed"] and second["alias"] == "champion"


def test_default_tracking_uri_is_absolute_sqlite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri("") == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    assert resolve_tracking_uri("") == "http://127.0.0.1:5001"
