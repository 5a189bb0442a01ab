"""Prefect artifacts of a run, for the flow run's Artifacts tab: tables (per-class metrics, the promotion gate's
checks, cleaning counts), links (the MLflow run, the registered model version, the HTML report), the registry
events the run emitted, and a progress bar updated once per training epoch.

Keys are `textcls-<flow>-<what>` (flow: train or evaluate), so the Artifacts page keeps one history per flow and
kind. Outside a Prefect run (a task's `.fn`) nothing is published; an API error is logged, never raised: artifacts
are for people to read, a training must not fail on them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from prefect import task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, TaskRunContext
from prefect.settings import get_current_settings

from tasks.events import GATE_FAILED, PROMOTED, REGISTERED
from tasks.results import RunContext
from tasks.tracking import client_for, get_run_logger

DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"  # where `mlflow ui` listens when the store is a local file
LogFn = Callable[[dict[str, float], int], None]


def artifact_key(flow: str, what: str) -> str:
    """`textcls-<flow>-<what>` in Prefect's key alphabet (lowercase letters, digits, dashes)."""
    key = re.sub(r"[^a-z0-9]+", "-", f"textcls-{flow}-{what}".lower())
    return key.strip("-")


def _in_run() -> bool:
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def _publish(create: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """create(*args, **kwargs) inside a run; None outside one or when the Prefect API refuses it (logged)."""
    if not _in_run():
        return None
    try:
        return create(*args, **kwargs)
    except Exception as exc:  # the API, not our data: the run goes on without this artifact
        get_run_logger().warning("Prefect artifact %s not published: %s", kwargs.get("key"), exc)
        return None


# -- what the tables hold (pure functions of the stage results) --

def per_class_rows(per_class: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """One row per class, in the model's label order: precision, recall, F1 (4 decimals), support."""
    return [{"class": str(name), **{k: round(float(m[k]), 4) for k in ("precision", "recall", "f1")},
             "support": int(m.get("support", 0))} for name, m in per_class.items()]


def gate_rows(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The promotion gate's checks as PASS/FAIL rows, in the order the gate ran them."""
    return [{"check": c["check"], "result": "PASS" if c["passed"] else "FAIL", "detail": str(c.get("detail", ""))}
            for c in checks]


def cleaning_rows(rows_in: int, rows_kept: int, dropped_by_reason: dict[str, int]) -> list[dict[str, Any]]:
    """Rows in, kept, dropped, then dropped per reason, each with its share of the rows in."""
    def row(what: str, n: int) -> dict[str, Any]:
        return {"rows": what, "count": int(n), "share": round(n / rows_in, 4) if rows_in else 0.0}

    dropped = sum(int(v) for v in dropped_by_reason.values())
    return [row("in", rows_in), row("kept", rows_kept), row("dropped", dropped),
            *(row(f"dropped: {reason}", n) for reason, n in sorted(dropped_by_reason.items(), key=lambda kv: -kv[1]))]


# -- where the links point --

def mlflow_ui_base(tracking_uri: str) -> str:
    """The MLflow UI behind a tracking URI: the server itself (credentials and query removed) when it is one;
    for a local store, $TEXTCLS_MLFLOW_UI_URL or where `mlflow ui` listens by default."""
    parts = urlsplit(tracking_uri)
    if parts.scheme in ("http", "https"):
        return urlunsplit((parts.scheme, parts.hostname + (f":{parts.port}" if parts.port else ""), parts.path.rstrip("/"), "", ""))
    return os.environ.get("TEXTCLS_MLFLOW_UI_URL", DEFAULT_MLFLOW_UI).rstrip("/")


def mlflow_run_url(base: str, experiment_id: str, run_id: str, artifact: str = "") -> str:
    url = f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{url}/artifacts/{quote(artifact)}" if artifact else url


def model_version_url(base: str, name: str, version: str) -> str:
    return f"{base}/#/models/{quote(name, safe='')}/versions/{version}"


def emitted_events(package: dict[str, Any]) -> list[tuple[str, str]]:
    """(event, resource id) of the registry events tasks/events.py emitted for this run's version."""
    resource = f"textcls.model.{package['model_name']}.{package['version']}"
    outcome = PROMOTED if package["alias"] == "champion" else GATE_FAILED
    return [(REGISTERED, resource), (outcome, resource)]


def events_markdown(events: list[tuple[str, str]], ui_url: str | None) -> str:
    """A table of the events with a link to Prefect's event feed filtered to each resource (when a UI is known)."""
    lines = ["## Registry events of this run", "",
             "Automations can react to them (prefect.yaml: batch-predict runs after `textcls.model.promoted`).", "",
             "| event | resource |", "|---|---|"]
    for event, resource in events:
        shown = f"`{resource}`"
        if ui_url:
            shown = f"[{resource}]({ui_url.rstrip('/')}/events?{urlencode({'resource': resource, 'events': event})})"
        lines.append(f"| `{event}` | {shown} |")
    return "\n".join(lines) + "\n"


# -- publishing --

def _link(url: str, text: str, key: str, description: str) -> Any:
    return _publish(create_link_artifact, url, link_text=text, key=key, description=description)


def _table(rows: list[dict[str, Any]], key: str, description: str) -> Any:
    return _publish(create_table_artifact, rows, key=key, description=description) if rows else None


def link_mlflow_run(tracking: RunContext, flow: str) -> Any:
    """The MLflow run as a link artifact (published at the start, so a running or failed flow run has it)."""
    base = mlflow_ui_base(tracking["tracking_uri"])
    return _link(mlflow_run_url(base, tracking["experiment_id"], tracking["run_id"]), f"MLflow run {tracking['run_id']}",
                 artifact_key(flow, "mlflow-run"), f"MLflow run of this {flow} flow run (metrics, parameters, files)")


def _link_report(tracking: RunContext, report_path: str, flow: str) -> Any:
    """The HTML report as the MLflow UI shows it (logged under evaluation/); the local file in the description."""
    base = mlflow_ui_base(tracking["tracking_uri"])
    url = mlflow_run_url(base, tracking["experiment_id"], tracking["run_id"], f"evaluation/{Path(report_path).name}")
    return _link(url, "HTML evaluation report", artifact_key(flow, "report"), f"also on disk: {report_path}")


@task(name="link-mlflow-run", cache_policy=NO_CACHE)
def link_mlflow_run_task(tracking: RunContext, flow: str) -> None:
    link_mlflow_run(tracking, flow)


@task(name="publish-artifacts", cache_policy=NO_CACHE)
def train_artifacts_task(tracking: RunContext, cleaning: dict[str, Any], evaluation: dict[str, Any],
                         package: dict[str, Any]) -> list[str]:
    """The train flow's tables, links and events; returns the keys published (none outside a run)."""
    flow = "train"
    base = mlflow_ui_base(tracking["tracking_uri"])
    name, version = package["model_name"], str(package["version"])
    published = [
        _table(per_class_rows(evaluation["per_class"]), artifact_key(flow, "per-class"),
               f"test split: per-class metrics of {name} v{version}"),
        _table(gate_rows(package.get("gate_checks", [])), artifact_key(flow, "gate-checks"),
               f"promotion gate of {name} v{version}: @{package['alias']}"),
        _table(cleaning_rows(cleaning["rows_in"], cleaning["rows_kept"], cleaning["dropped_by_reason"]),
               artifact_key(flow, "cleaning"), "cleaning: rows kept and dropped, by reason (data/dropped.csv in the run)"),
        _link(model_version_url(base, name, version), f"{name} version {version} (@{package['alias']})",
              artifact_key(flow, "model-version"), "the registered model version in the MLflow model registry"),
        _link_report(tracking, evaluation["report_path"], flow),
        _publish(create_markdown_artifact, events_markdown(emitted_events(package), get_current_settings().ui_url),
                 key=artifact_key(flow, "events"), description="textcls registry events emitted by this run"),
    ]
    keys = ["per-class", "gate-checks", "cleaning", "model-version", "report", "events"]
    return [artifact_key(flow, k) for k, made in zip(keys, published) if made is not None]


def _registered_version(model_uri: str, tracking_uri: str) -> tuple[str, str] | None:
    """(name, version) of `models:/name/version` or `models:/name@alias`; None for other URIs."""
    if not model_uri.startswith("models:/"):
        return None
    ref = model_uri.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        try:
            return name, str(client_for(tracking_uri).get_model_version_by_alias(name, alias).version)
        except Exception:  # moved or deleted since the evaluation: no link rather than a failed flow
            return None
    name, _, version = ref.partition("/")
    return (name, version) if version.isdigit() else None


@task(name="publish-artifacts", cache_policy=NO_CACHE)
def evaluate_artifacts_task(tracking: RunContext, result: dict[str, Any]) -> list[str]:
    """The evaluate flow's tables and links (keys textcls-evaluate-*); returns the keys published."""
    flow = "evaluate"
    read, scored = result["rows_read"], result["rows_scored"]
    published = {
        "per-class": _table(per_class_rows(result["per_class"]), artifact_key(flow, "per-class"),
                            f"per-class metrics of {result['model_uri']}"),
        "cleaning": _table(cleaning_rows(read, scored, {"unusable (no text or no label)": result["rows_dropped"]}),
                           artifact_key(flow, "cleaning"), "rows of the file: scored and dropped (evaluation/dropped.csv)"),
        "report": _link_report(tracking, result["report_path"], flow),
    }
    version = _registered_version(result["model_uri"], tracking["tracking_uri"])
    if version:
        url = model_version_url(mlflow_ui_base(tracking["tracking_uri"]), *version)
        published["model-version"] = _link(url, f"{version[0]} version {version[1]}", artifact_key(flow, "model-version"),
                                           f"the evaluated model ({result['model_uri']})")
    return [artifact_key(flow, k) for k, made in published.items() if made is not None]


class EpochProgress:
    """A progress artifact for training: 0 % at the start, epoch / epochs after each epoch's validation, 100 % when
    training ends (early stopping included). Wrap the training's metric callback with `wrap`."""

    def __init__(self, epochs: int, select_metric: str, key: str = artifact_key("train", "progress")):
        self.epochs, self.select_metric = epochs, select_metric
        self.artifact_id = _publish(create_progress_artifact, 0.0, key=key, description=f"training: epoch 0 of {epochs}")

    def wrap(self, log_fn: LogFn) -> LogFn:
        def log_and_report(metrics: dict[str, float], step: int) -> None:
            log_fn(metrics, step)
            if self.select_metric in metrics:  # the per-epoch validation row, once per epoch
                self.update(int(metrics.get("epoch", step)))
        return log_and_report

    def update(self, epoch: int) -> None:
        if self.artifact_id is not None:
            percent = 100.0 * min(epoch, self.epochs) / self.epochs
            _publish(update_progress_artifact, self.artifact_id, percent,
                     description=f"training: epoch {epoch} of {self.epochs}")

    def finish(self, epochs_run: int, stopped_early: bool) -> None:
        if self.artifact_id is not None:
            _publish(update_progress_artifact, self.artifact_id, 100.0,
                     description=f"training done: {epochs_run} of {self.epochs} epochs" + (" (stopped early)" if stopped_early else ""))


def run_artifact_key(what: str) -> str:
    """artifact_key for the flow this task runs in (train-text-classifier -> textcls-train-<what>, stress-text-classifier
    -> textcls-stress-<what>, ...), so a stage shared by several flows keeps one history per flow."""
    from prefect.runtime import flow_run

    name = str(flow_run.flow_name or "run").removesuffix("-text-classifier")
    return artifact_key(name, what)
