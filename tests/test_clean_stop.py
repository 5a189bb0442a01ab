"""Clean stop (#11 item 3) and the stage watchdog (#20) on real `textcls run` processes (slow).

SIGTERM during a data stage and during training: the process is gone within 30 s, exit 128+15, one line saying
how to resume and no traceback; the MLflow run is KILLED with the stage, the checkpoint stays and --resume
finishes the run. A stage past its bound: exit 3, run FAILED naming the stage, every thread's stack on disk.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
DATA_STAGES = {"start", "analyze", "clean", "split", "encode"}


class _Run:
    """A `textcls run` subprocess whose merged output is collected line by line."""

    def __init__(self, tmp_path: Path, *args: str):
        self.uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        sets = [f"run.output_dir={tmp_path / 'runs'}", f"run.cache_dir={tmp_path / 'cache'}", f"tracking.uri={self.uri}",
                "train.progress=false", "model.embed_dim=32", "model.num_filters=16", "tokenize.max_len=64",
                "evaluate.latency_samples=0", "registry.model_name=textcls-stop-test"]
        cmd = [sys.executable, "-m", "flows.cli", "run", "--config", "conf/default.yaml",
               *[a for s in sets for a in ("--set", s)], *args]
        env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1",
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}  # a busy CI machine starts it slowly
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, predicate, timeout_s: float = 900) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"run ended or timed out before the expected point:\n{self.output[-4000:]}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> float:
        """Send sig; the seconds until the process is gone (the test fails past 30 s)."""
        sent = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"still running 30 s after {signal.Signals(sig).name}:\n{self.output[-4000:]}")
        time.sleep(0.5)  # the reader thread drains the pipe
        return time.monotonic() - sent

    def mlflow_run(self):
        runs = MlflowClient(self.uri).search_runs([MlflowClient(self.uri).get_experiment_by_name("textcls").experiment_id])
        assert len(runs) == 1
        return runs[0]


def _resume_dir(output: str) -> str:
    m = re.search(r"resume with: textcls run --resume (\S+)", output)
    assert m, output[-3000:]
    return m.group(1)


def test_sigterm_during_a_data_stage_marks_the_run_killed(tmp_path):
    run = _Run(tmp_path, "--set", "data.max_rows=3000")
    run.wait_for(lambda: "watchdog armed" in run.output)
    run.stop()
    assert run.proc.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in run.output
    assert re.search(r"textcls: stopped by SIGTERM during stage '(\w+)'", run.output)
    mlflow_run = run.mlflow_run()
    assert mlflow_run.info.status == "KILLED"
    assert mlflow_run.data.tags["textcls.stopped_stage"] in DATA_STAGES
    assert Path(_resume_dir(run.output)).is_dir()


def test_sigterm_during_training_keeps_the_checkpoint_and_resume_finishes(tmp_path):
    run = _Run(tmp_path, "--set", "data.max_rows=3000", "--set", "train.epochs=3", "--set", "train.checkpoint_every=3")
    checkpoints = lambda: list((tmp_path / "runs").glob("*/checkpoints/last.pt"))  # noqa: E731
    run.wait_for(lambda: bool(checkpoints()))
    run.stop()
    assert run.proc.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in run.output
    assert "stopped by SIGTERM during stage 'train'" in run.output and "checkpoint kept" in run.output
    mlflow_run = run.mlflow_run()
    assert (mlflow_run.info.status, mlflow_run.data.tags["textcls.stopped_stage"]) == ("KILLED", "train")
    assert checkpoints()

    resumed = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--resume", _resume_dir(run.output)], cwd=REPO,
                             env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "TQDM_DISABLE": "1",
                                  "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"},
                             capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert MlflowClient(run.uri).get_run(mlflow_run.info.run_id).info.status == "FINISHED"


def test_a_stage_past_its_bound_fails_the_run_with_stacks(tmp_path):
    run = _Run(tmp_path, "--set", "data.max_rows=1200", "--set", "train.epochs=1",
               "--set", "run.stage_timeout_s={default: 900, train: 0.5}")  # an epoch takes seconds
    run.proc.wait(timeout=900)
    time.sleep(0.5)
    assert run.proc.returncode == 3, run.output[-3000:]
    assert "Traceback" not in run.output
    assert "stage 'train' passed its time bound of 0.5 s" in run.output
    mlflow_run = run.mlflow_run()
    assert mlflow_run.info.status == "FAILED"
    assert mlflow_run.data.tags["textcls.failure_stage"] == "train"
    stacks = Path(_resume_dir(run.output)) / "logs" / "watchdog-train-stacks.txt"
    assert "Thread" in stacks.read_text() and "train_model" in stacks.read_text()
