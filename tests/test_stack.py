"""The production stack for real: docker/stack.sh starts PostgreSQL 15, an S3 server (moto here, MinIO in compose),
an MLflow server on PostgreSQL + S3, a Prefect server on PostgreSQL, a process pool and a worker, on loopback.

One module-scoped stack; the tests run in order: the round trip (deploy, run, registry in PostgreSQL, artifacts in the
bucket, `mlflow models serve` of @champion, no credentials anywhere), then a second run that the gate keeps out and
during whose training the MLflow server is stopped and started again.
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

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STACK = ROOT / "docker" / "stack.sh"
PGBIN = Path("/usr/lib/postgresql/15/bin")
# secrets the stack runs with; none of them may show up in what a run leaves behind
PG_PASSWORD, S3_SECRET, URI_PASSWORD = "pg-Secret-4711", "s3-Secret-4712", "uri-Secret-4713"
SMALL = {"data": {"max_rows": 600}, "model": {"embed_dim": 16, "num_filters": 8}, "tokenize": {"max_len": 48},
         "train": {"epochs": 1, "progress": False},
         "evaluate": {"label_error_folds": 0, "latency_samples": 0, "baseline": False}, "registry": {"model_name": "textcls-stack"}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sh(env, *args, timeout=300, check=True, cwd=ROOT) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not (PGBIN / "initdb").is_file():
        pytest.skip("PostgreSQL 15 binaries are not installed")
    tmp = tmp_path_factory.mktemp("stack")
    mlflow_port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "TEXTCLS_", "AWS_"))}
    env |= {"TEXTCLS_STACK_DIR": str(tmp / "stack"), "PYTHON": sys.executable, "MLFLOW_PORT": str(mlflow_port),
            "POSTGRES_PASSWORD": PG_PASSWORD, "MINIO_ROOT_PASSWORD": S3_SECRET, "PREFECT_WORKER_QUERY_SECONDS": "2",
            "TQDM_DISABLE": "1", "PATH": f"{BIN}:{env.get('PATH', '')}"}
    started = time.monotonic()
    try:
        _sh(env, "bash", str(STACK), "up", timeout=400)
        stack_env = env | dict(line.split("=", 1) for line in (tmp / "stack" / "stack.env").read_text().splitlines() if "=" in line)
        yield {"env": stack_env, "tmp": tmp, "up_seconds": time.monotonic() - started, "t0": started}
    finally:
        _sh(env, "bash", str(STACK), "down", "--purge", check=False, timeout=120)


def _run_deployment(env, config) -> str:
    r = _sh(env, str(BIN / "prefect"), "--no-prompt", "deployment", "run", "train-text-classifier/adhoc-train",
            "--param", f"config={json.dumps(config)}")
    return re.search(r"UUID: ([0-9a-f-]{36})", r.stdout).group(1)


def _api(env, path, body=None):
    """Prefect's REST API over plain HTTP: this test process keeps no Prefect client settings of its own."""
    req = urllib.request.Request(env["PREFECT_API_URL"] + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _wait_final(env, flow_run_id, seconds=600) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = _api(env, f"/flow_runs/{flow_run_id}")["state"]
        if state and state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return f"{state['type']}: {state.get('message')}"
        time.sleep(3)
    raise AssertionError(f"flow run {flow_run_id} not finished after {seconds} s")


def _flow_logs(env, flow_run_id) -> str:
    messages, offset = [], 0
    while True:  # 200 per page is the server's maximum: read on while pages are full
        page = _api(env, "/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200, "offset": offset})
        messages += [log["message"] for log in page]
        offset += 200
        if len(page) < 200:
            return "\n".join(messages)


def _psql(env, db, sql) -> str:
    return _sh(env | {"PGPASSWORD": env["POSTGRES_PASSWORD"]}, str(PGBIN / "psql"), "-h", "127.0.0.1", "-p", env["POSTGRES_PORT"],
               "-U", env["POSTGRES_USER"], "-d", db, "-At", "-c", sql).stdout


def _bucket(env):
    import boto3

    s3 = boto3.client("s3", endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=env["MLFLOW_BUCKET"]) for o in page.get("Contents", [])]
    return s3, keys


def _serve_and_predict(env, model_uri, texts):
    port = _free_port()
    with open(Path(env["TEXTCLS_STACK_DIR"]) / "logs" / "serve.log", "w") as log:
        proc = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
                                 "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps({"inputs": texts}).encode(),
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=10) as resp:
                    return json.loads(resp.read())
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "mlflow models serve did not answer"
                time.sleep(1)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_round_trip_deploy_run_register_serve_and_no_secret_left(stack):
    env = stack["env"] | {"MLFLOW_TRACKING_URI": f"http://textcls:{URI_PASSWORD}@127.0.0.1:{stack['env']['MLFLOW_PORT']}"}
    # the worker already runs with the stack's plain URI; this deployment run's worker env is the stack's, so the
    # credentials in the URI are tested through the CLI below (same code path: start_tracking, summary, logs)
    _sh(env, str(BIN / "prefect"), "--no-prompt", "deploy", "--name", "adhoc-train", timeout=300)
    flow_run_id = _run_deployment(env, SMALL)
    state = _wait_final(env, flow_run_id)
    assert state.startswith("COMPLETED"), state

    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("textcls-stack", "champion")
    assert str(champion.version) == "1"
    assert client.get_run(champion.run_id).data.tags["prefect.flow_run_id"] == flow_run_id
    # the registry lives in PostgreSQL, the artifacts in the bucket
    assert _psql(env, "mlflow", "SELECT name || ':' || version FROM model_versions").split() == ["textcls-stack:1"]
    s3, keys = _bucket(env)
    assert any(k.endswith("/MLmodel") for k in keys), keys[:20]
    assert any(f"/{champion.run_id}/artifacts/summary.json" in k for k in keys), keys[:20]
    # the run folder went to TEXTCLS_HOME (prefect.yaml job_variables), not to the deploy folder
    run_dir = Path(client.get_run(champion.run_id).data.tags["textcls.run_dir"])
    assert run_dir.parent == Path(env["TEXTCLS_HOME"]) / "runs" and (run_dir / "summary.json").is_file()
    assert not (ROOT / "runs" / run_dir.name).exists()

    served = _serve_and_predict(env, "models:/textcls-stack@champion", ["质量很好，非常满意", "太差了，很失望"])
    assert len(served["predictions"]) == 2 and {"label", "score"} <= set(served["predictions"][0])
    stack["served_after_s"] = time.monotonic() - stack["t0"]
    print(f"\nstack up {stack['up_seconds']:.0f} s; served champion {stack['served_after_s']:.0f} s after `stack.sh up` began")

    # credentials in the environment (PGPASSWORD, AWS secret) and in the tracking URI leave no trace
    cli_env = env | {"PGPASSWORD": PG_PASSWORD, "PREFECT_API_URL": env["PREFECT_API_URL"]}
    cli = _sh(cli_env, str(BIN / "textcls"), "run", "--config", str(ROOT / "conf" / "default.yaml"),
              "--set", "data.max_rows=600", "--set", "model.embed_dim=16", "--set", "model.num_filters=8",
              "--set", "tokenize.max_len=48", "--set", "train.epochs=1", "--set", "train.progress=false",
              "--set", "evaluate.label_error_folds=0", "--set", "evaluate.latency_samples=0", "--set", "evaluate.baseline=false",
              "--set", "registry.model_name=textcls-secret", "--set", f"run.output_dir={stack['tmp'] / 'secret-runs'}",
              "--set", f"tracking.uri={env['MLFLOW_TRACKING_URI']}", timeout=400)
    secrets = (PG_PASSWORD, S3_SECRET, URI_PASSWORD)
    assert "http://***@127.0.0.1" in cli.stdout
    leaks = [line for line in (cli.stdout + cli.stderr).splitlines() if any(s in line for s in secrets)]
    assert not leaks, leaks[:5]
    dump = _sh(env | {"PGPASSWORD": PG_PASSWORD}, str(PGBIN / "pg_dump"), "-h", "127.0.0.1", "-p", env["POSTGRES_PORT"],
               "-U", env["POSTGRES_USER"], "mlflow").stdout
    assert "textcls-secret" in dump and not any(s in dump for s in secrets)
    _, keys = _bucket(env)
    blobs = b"".join(s3.get_object(Bucket=env["MLFLOW_BUCKET"], Key=k)["Body"].read() for k in keys)
    assert not any(s.encode() in blobs for s in secrets)
    files = b"".join(p.read_bytes() for p in (stack["tmp"] / "secret-runs").rglob("*") if p.is_file())
    assert b'"mlflow_tracking_uri": "http://***@127.0.0.1' in files and not any(s.encode() in files for s in secrets)
    secret_flow_run = json.loads(next((stack["tmp"] / "secret-runs").glob("*/summary.json")).read_text())["prefect_flow_run_id"]
    for fid in (flow_run_id, secret_flow_run):
        logs = _flow_logs(env, fid)
        leaks = [line for line in logs.splitlines() if any(s in line for s in secrets)]
        assert "MLflow run" in logs and not leaks, leaks[:5]


def test_gate_keeps_champion_and_mlflow_restart_mid_training_loses_no_metric(stack):
    env = stack["env"]
    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    # enough steps that training is still going when the server goes down; the gate demands a +0.5 margin: no promotion
    config = SMALL | {"data": {"max_rows": 1500},
                      "train": {"epochs": 6, "patience": 0, "batch_size": 16, "checkpoint_every": 10, "progress": False},
                      "registry": {"model_name": "textcls-stack", "min_improvement": 0.5}}
    flow_run_id = _run_deployment(env, config)
    deadline = time.monotonic() + 300
    run_id = None
    while time.monotonic() < deadline:  # training has begun once its first mid-epoch checkpoint is written
        runs = client.search_runs([client.get_experiment_by_name("textcls").experiment_id],
                                  f"tags.`prefect.flow_run_id` = '{flow_run_id}'")
        run_dir = runs[0].data.tags.get("textcls.run_dir") if runs else None  # tagged right after the run is created
        if run_dir and Path(run_dir, "checkpoints", "last.pt").is_file():
            run_id = runs[0].info.run_id
            break
        state = _api(env, f"/flow_runs/{flow_run_id}")["state"]
        assert state["type"] in ("SCHEDULED", "PENDING", "RUNNING"), f"the run ended before its training started: {state}"
        time.sleep(0.3)
    assert run_id, "training never started"
    _sh(env, "bash", str(STACK), "stop", "mlflow")
    time.sleep(10)  # the flow keeps training and logging against a stopped server
    _sh(env, "bash", str(STACK), "start", "mlflow", timeout=240)
    state = _wait_final(env, flow_run_id)
    # what happens: MLflow's client retries each request with backoff, so the run finishes and every metric lands
    assert state.startswith("COMPLETED"), state
    history = json.loads(Path(client.get_run(run_id).data.tags["textcls.run_dir"], "reports", "train_history.json").read_text())
    assert len(history) == 6
    epochs = sorted(client.get_metric_history(run_id, "epoch"), key=lambda m: m.step)
    assert [m.value for m in epochs] == [row["epoch"] for row in history]  # one point per epoch, none lost, none doubled
    for name in ("val_accuracy", "train_loss"):  # on the same global-step axis as the epoch metric
        assert sorted(m.step for m in client.get_metric_history(run_id, name)) == [m.step for m in epochs]
    running = client.get_metric_history(run_id, "train_loss_running")
    assert len(running) == len({m.step for m in running}) >= 6
    assert client.get_run(run_id).info.status == "FINISHED"
    v2 = client.get_model_version("textcls-stack", "2")
    assert v2.tags["gate"] == "failed"
    assert str(client.get_model_version_by_alias("textcls-stack", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("textcls-stack", "challenger").version) == "2"
