"""`textcls run --resume RUN` reopens an interrupted run: same MLflow run, same folder, training from its checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mlflow import MlflowClient

from flows.cli import main
from flows.train import train_text_classifier
from tests.conftest import small_config


def test_resume_reuses_the_run_and_its_checkpoint(tmp_path, tracking_uri, prefect_server, capsys):
    first = train_text_classifier(config=small_config(tmp_path, tracking_uri, "train.checkpoint_every=5"))
    run_dir = Path(first["run_dir"])
    checkpoint = run_dir / "checkpoints" / "last.pt"
    assert checkpoint.is_file() and json.loads((run_dir / "mlflow_run.json").read_text())["run_id"] == first["mlflow_run_id"]
    shutil.rmtree(run_dir / "model")  # as if the process died after the last checkpoint, before the model was saved
    client = MlflowClient(tracking_uri)
    client.set_terminated(first["mlflow_run_id"], "FAILED")

    summary_path = tmp_path / "resumed.json"
    assert main(["run", "--resume", str(run_dir), "--summary", str(summary_path)]) == 0
    resumed = json.loads(summary_path.read_text(encoding="utf-8"))
    assert resumed["mlflow_run_id"] == first["mlflow_run_id"] and resumed["run_dir"] == first["run_dir"]
    assert resumed["metrics"]["test_accuracy"] == first["metrics"]["test_accuracy"]  # the checkpointed best weights
    assert resumed["metrics"]["test_macro_f1"] == first["metrics"]["test_macro_f1"]
    run = client.get_run(first["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    steps = client.get_metric_history(run.info.run_id, "train_resumed_from_step")
    assert [m.value for m in steps][0] == 0 and steps[-1].value > 0  # first run from scratch, the resumed one from the checkpoint
    assert (run_dir / "model" / "weights.pt").is_file()
    # the data stages of the resumed run come from the data-stage cache (same data, same settings)
    for stage in ("analyze", "clean", "split"):
        assert run.data.tags[f"textcls.cache.{stage}"] == "hit"
        assert [m.value for m in client.get_metric_history(run.info.run_id, f"cache_hit_{stage}")] == [0.0, 1.0]
    # the resumed run is the same MLflow run: its package step reuses the version that run registered (one version per run)
    assert resumed["model_version"] == "1"
    assert main(["run", "--resume", str(run_dir)]) == 2  # finished now: nothing to resume, refused before any work
    assert "finished; there is nothing to resume" in capsys.readouterr().err


def test_resume_errors_are_clear(tmp_path, tracking_uri, capsys):
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "is not a textcls run folder" in capsys.readouterr().err
    assert main(["run", "--resume", "0123456789abcdef", "--set", f"tracking.uri={tracking_uri}"]) == 2
    assert "drop the --set options" in capsys.readouterr().err
    assert main(["run", "--resume", "0123456789abcdef"]) == 2
    assert "neither a run folder nor an MLflow run id" in capsys.readouterr().err
