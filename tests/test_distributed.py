"""train.devices=2 runs the same loop under torchrun (gloo, 2 CPU processes) through the train task."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tasks.tracking import client_for
from tasks.train import train_task
from textcls_core.runtime.config import build_config
from textcls_core.training.distributed import launch_command


def _encoded(tmp_path):
    """Three classes of equal-length texts; 189 train rows, so the last batch splits 7/6 over two ranks."""
    rng = np.random.default_rng(0)
    out = {}
    for name, n in (("train", 189), ("val", 48), ("test", 48)):
        y = rng.integers(0, 3, size=n)
        ids = [(rng.integers(2, 12, size=8) + 10 * c).tolist() for c in y]
        path = tmp_path / f"{name}.ids.parquet"
        pd.DataFrame({"row_id": range(n), "ids": ids, "label_id": y}).to_parquet(path)
        out[name] = str(path)
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps(["<pad>", "<unk>"] + [f"w{i}" for i in range(2, 40)]))
    return {"paths": out, "vocab_path": str(vocab), "labels": ["a", "b", "c"], "vocab_size": 40}


def _train(tmp_path, tracking_uri, devices):
    cfg = build_config({}, ["model.embed_dim=16", "model.num_filters=8", "model.kernel_sizes=[1,2]", "model.dropout=0",
                            "train.epochs=3", "train.batch_size=16", "train.lr=0.01", "train.patience=0", "train.progress=false",
                            f"train.devices={devices}", "train.num_threads=1",
                            "tokenize.max_len=16"])
    client = client_for(tracking_uri)
    exp = client.get_experiment_by_name("ddp") or client.get_experiment(client.create_experiment("ddp"))
    run = client.create_run(exp.experiment_id)
    run_dir = tmp_path / f"run{devices}"
    tracking = {"run_id": run.info.run_id, "tracking_uri": tracking_uri, "run_dir": str(run_dir)}
    out = train_task.fn(_encoded(tmp_path), cfg.model, cfg.train, cfg.tokenize, cfg.clean, 3, tracking)
    return out, json.loads((run_dir / "reports" / "train_history.json").read_text()), tracking


def test_two_process_gloo_ddp_matches_one_process(tmp_path, tracking_uri):
    one, hist1, _ = _train(tmp_path, tracking_uri, 1)
    two, hist2, tracking = _train(tmp_path, tracking_uri, 2)
    assert (one["world_size"], two["world_size"]) == (1, 2)
    for a, b in zip(hist1, hist2):  # same effective batch: the same training up to float summation order
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=2e-3)
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=2e-3)
        assert b["val_accuracy"] == pytest.approx(a["val_accuracy"], abs=0.03)
    client = MlflowClient(tracking_uri)
    run = client.get_run(tracking["run_id"])
    assert run.data.tags["textcls.world_size"] == "2"
    # rank 0's per-epoch metrics reached MLflow through the task (3 epochs, one value each)
    assert len(client.get_metric_history(tracking["run_id"], "val_loss")) == 3
    assert (tmp_path / "run2" / "model" / "weights.pt").is_file()
    assert (tmp_path / "run2" / "checkpoints" / "last.pt").is_file()  # written by rank 0


def test_launch_command_names_every_torchrun_setting():
    cfg = build_config({}, ["train.devices=8", "train.nnodes=2", "train.node_rank=1", "train.master_addr=10.0.0.5"]).train
    cmd = launch_command(cfg, "/shared/spec.json", python="python")
    assert cmd == ["python", "-m", "torch.distributed.run", "--nproc_per_node=8", "--nnodes=2", "--node_rank=1",
                   "--master_addr=10.0.0.5", "--master_port=29500", "-m", "textcls_core.training.distributed", "/shared/spec.json"]
    one_node = launch_command(build_config({}, ["train.devices=2"]).train, "spec.json", python="python")
    assert one_node[:5] == ["python", "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]  # a free port


def test_user_errors_in_torchrun_workers_surface_as_one_message(tmp_path, tracking_uri):
    from textcls_core.runtime.errors import TextclsError

    cfg = build_config({}, ["train.devices=2", "train.progress=false", "tokenize.max_len=16", "train.epochs=1"])
    enc = _encoded(tmp_path)
    enc["labels"] = ["a", "b"]  # the files hold label id 2: out of range for two classes
    client = client_for(tracking_uri)
    run = client.create_run(client.create_experiment("ddp-error"))
    tracking = {"run_id": run.info.run_id, "tracking_uri": tracking_uri, "run_dir": str(tmp_path / "run")}
    with pytest.raises(TextclsError, match=r"train labels: label ids \[2\] are outside 0..1"):
        train_task.fn(enc, cfg.model, cfg.train, cfg.tokenize, cfg.clean, 3, tracking)
