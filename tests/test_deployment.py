"""What ops does, against real processes on loopback: a Prefect server, an MLflow tracking server, a
process work pool, `prefect deploy` from prefect.yaml, `prefect deployment run --param`, a worker run once.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ops")
    p_port, m_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env |= {"PREFECT_HOME": str(tmp / "prefect_home"), "PREFECT_API_URL": f"http://127.0.0.1:{p_port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{m_port}",
            "TQDM_DISABLE": "1", "PATH": f"{BIN}:{env.get('PATH', '')}"}
    logs = {name: open(tmp / f"{name}.log", "w") for name in ("prefect", "mlflow")}
    procs = [
        subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(p_port)],
                         env=env, stdout=logs["prefect"], stderr=subprocess.STDOUT),
        subprocess.Popen([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(m_port),
                          "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--artifacts-destination", str(tmp / "artifacts")],
                         env=env, stdout=logs["mlflow"], stderr=subprocess.STDOUT),
    ]
    try:
        _wait_http(f"http://127.0.0.1:{p_port}/api/health")
        _wait_http(f"http://127.0.0.1:{m_port}/health")
        yield tmp, env
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def _cli(env, *args, timeout=240, check=True):
    r = subprocess.run([str(BIN / "prefect"), "--no-prompt", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"prefect {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def test_deploy_run_and_register_through_a_worker(servers):
    tmp, env = servers
    _cli(env, "work-pool", "create", "textcls-process", "--type", "process")
    _cli(env, "deploy", "--name", "adhoc-train")
    _cli(env, "deploy", "--name", "tune")  # the search deployment is accepted by the server as well
    config = {"data": {"max_rows": 600}, "model": {"embed_dim": 16, "num_filters": 8}, "tokenize": {"max_len": 48},
              "train": {"epochs": 1, "progress": False}, "evaluate": {"label_error_folds": 0, "latency_samples": 0},
              "run": {"output_dir": str(tmp / "runs")}, "registry": {"model_name": "textcls-deploy"}}

    bad = _cli(env, "deployment", "run", "train-text-classifier/adhoc-train", "--param",
               f"config={json.dumps({'train': {'epochs': 'three'}})}", check=False)
    assert bad.returncode != 0 and "epochs" in (bad.stdout + bad.stderr)  # rejected before any worker sees it

    run = _cli(env, "deployment", "run", "train-text-classifier/adhoc-train", "--param", f"config={json.dumps(config)}")
    assert "Created flow run" in run.stdout
    _cli(env, "worker", "start", "--pool", "textcls-process", "--run-once", timeout=420)

    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", run.stdout).group(1)
    inspect = _cli(env, "flow-run", "inspect", flow_run_id)
    assert "COMPLETED" in inspect.stdout, inspect.stdout[-2000:]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    versions = client.search_model_versions("name='textcls-deploy'")
    assert [str(v.version) for v in versions] == ["1"]
    assert str(client.get_model_version_by_alias("textcls-deploy", "champion").version) == "1"
    run_id = versions[0].run_id
    assert client.get_run(run_id).data.tags["prefect.flow_run_id"] == flow_run_id
