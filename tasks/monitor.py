"""Drift stages: write the training profile into the model folder before packaging; compare a new file with the
profile of a registered version (Prefect table artifact, MLflow monitor run, event `textcls.drift.detected`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run

from tasks.results import RunContext
from tasks.runguard import mark_stage
from tasks.tracking import _experiment_id, client_for, get_run_logger, log_artifacts
from textcls_core.evaluation.drift import (
    PROFILE_FILE,
    DriftCheck,
    build_profile,
    compare_with_profile,
    drift_table,
    load_profile,
    read_texts,
    save_profile,
)
from textcls_core.modeling.classifiers import load_classifier, proba_and_oov
from textcls_core.runtime.config import MonitorConfig
from textcls_core.runtime.errors import TextclsError

DRIFT_EVENT = "textcls.drift.detected"


def model_oov(clf: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities, per-text OOV rate) in one encoding pass: <unk> ids of a network's vocabulary or tokenizer,
    unseen words (or characters) of tfidf_lr, an ensemble's first member. OOV is None for a model with neither
    (the drift check then reports it as not measurable instead of failing)."""
    measurable = (hasattr(clf, "members") or hasattr(clf, "predict_proba_oov")
                  or getattr(getattr(clf, "encoder", None), "unk_id", None) is not None)
    if not measurable:
        return np.asarray(clf.predict_proba(texts)), None
    probs, oov = proba_and_oov(clf, texts)
    return np.asarray(probs), np.asarray(oov)


@task(name="drift-profile", cache_policy=NO_CACHE)
def profile_task(model_dir: str, split_paths: dict[str, str], monitor_cfg: MonitorConfig, seed: int,
                 tracking: RunContext, reference: str | None = None) -> str:
    """drift_profile.json in the model folder (so every registered version carries it), also logged to the run.

    reference: the candidates stage's val_reference.npz: the shipped candidate's out-of-sample validation
    probabilities and OOV shares (tfidf_lr's from its train-only fit; no "oov" when the model has no vocabulary).
    They replace the shipped model's own scores of validation, which are in-sample when tfidf_lr was refitted on
    train + validation and would make production text look drifted (higher OOV, lower confidence) from day one.
    Without it (a caller that has no candidates stage), the model scores validation here."""
    mark_stage("profile")  # watchdog: this stage's time bound starts now
    clf = load_classifier(model_dir, shared=True)  # any shipped kind: network, tfidf_lr or ensemble
    train, val = (pd.read_parquet(split_paths[k]) for k in ("train", "val"))
    # what production sends is the raw text (splits keep it as raw_text since the encoder cleans it itself)
    raw = {k: (f["raw_text"] if "raw_text" in f.columns else f["text"]).tolist() for k, f in (("train", train), ("val", val))}
    if reference:
        with np.load(reference, allow_pickle=False) as saved:
            probs, oov = saved["probs"], (saved["oov"] if "oov" in saved.files else None)
    else:
        probs, oov = model_oov(clf, raw["val"])
    profile = build_profile(raw["train"], train["label"].tolist(), list(clf.labels), probs, oov, monitor_cfg.sample_size, seed)
    path = save_profile(profile, model_dir)
    log_artifacts(tracking, [path], "drift")
    get_run_logger().info("drift-profile: %d train texts, %d validation texts -> %s", profile["n_train"], profile["n_reference"], path)
    return str(path)


def load_model_and_profile(model_uri: str, tracking_uri: str) -> tuple[Any, dict[str, Any] | None]:
    """The classifier of a registered version and its training profile (None for versions registered without one)."""
    client_for(tracking_uri)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
        clf = mlflow.pyfunc.load_model(str(local)).unwrap_python_model().classifier
    except MlflowException as exc:
        raise TextclsError(f"Model '{model_uri}' cannot be loaded from {tracking_uri}: {exc.message.splitlines()[0]} "
                           "Check the name and alias/version in the MLflow UI (Models).") from None
    found = sorted(local.glob(f"artifacts/*/{PROFILE_FILE}"))
    return clf, (load_profile(found[0]) if found else None)


def publish_drift(checks: list[DriftCheck], n_rows: int, model_uri: str, data_path: str, tracking_uri: str, experiment: str,
                  out_dir: Path, flow: str) -> dict[str, Any]:
    """Report files, an MLflow run with one metric per check, a Prefect table artifact, and the event on drift."""
    drifted = [c.check for c in checks if c.drift]
    rows = drift_table(checks)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"model_uri": model_uri, "data_path": str(Path(data_path).resolve()), "rows": n_rows, "drift_detected": bool(drifted),
              "drifted": drifted, "checks": rows}
    (out_dir / "drift_report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    pd.DataFrame(rows).to_csv(out_dir / "drift_report.csv", index=False, encoding="utf-8")
    client = client_for(tracking_uri)
    exp_id = _experiment_id(client, experiment, tracking_uri)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"monitor-{Path(data_path).stem}") as run:
        mlflow.set_tags({"textcls.flow": flow, "textcls.model_uri": model_uri, "textcls.data_path": report["data_path"],
                         "prefect.flow_run_id": str(flow_run.id) if flow_run.id else ""})
        metrics = {f"drift_{c.check}": c.value for c in checks if c.value is not None}
        metrics |= {f"drift_{c.check}_detected": float(c.drift) for c in checks}
        mlflow.log_metrics(metrics | {"drift_detected": float(bool(drifted)), "drift_rows": float(n_rows)})
        mlflow.log_artifacts(str(out_dir), "drift")
    report["mlflow_run_id"] = run.info.run_id
    if flow_run.id:
        create_table_artifact(rows, key="textcls-drift", description=f"drift of {Path(data_path).name} vs the training profile of {model_uri}")
    event_id = None
    if drifted:
        name = model_uri.removeprefix("models:/").split("@")[0].split("/")[0]
        event = emit_event(DRIFT_EVENT, resource={"prefect.resource.id": f"textcls.model.{name}", "prefect.resource.name": model_uri},
                           payload={"data_path": report["data_path"], "drifted": drifted, "mlflow_run_id": run.info.run_id,
                                    "checks": {c.check: c.value for c in checks}})
        event_id = str(event.id) if event is not None else None
    log = get_run_logger()
    for c in checks:
        log.info("drift %-18s %s %s (threshold %s)%s", c.check, c.statistic,
                 "n/a" if c.value is None else f"{c.value:.4f}", c.threshold, "  DRIFT" if c.drift else "")
    return report | {"event_id": event_id, "report_path": str(out_dir / "drift_report.json")}


def check_file_drift(clf: Any, profile: dict[str, Any], texts: list[str], monitor_cfg: MonitorConfig) -> list[DriftCheck]:
    probs, oov = model_oov(clf, texts)
    return compare_with_profile(profile, texts, probs, oov, monitor_cfg)


@task(name="monitor", cache_policy=NO_CACHE)
def monitor_task(model_uri: str, data_path: str, text_column: str, encoding: str, monitor_cfg: MonitorConfig,
                 tracking_uri: str, experiment: str, output_dir: str) -> dict[str, Any]:
    """Score a new (unlabelled) file and compare it with the registered version's training profile."""
    texts = read_texts(data_path, text_column, encoding)  # bad input fails before the model is fetched
    clf, profile = load_model_and_profile(model_uri, tracking_uri)
    if profile is None:
        raise TextclsError(f"Model '{model_uri}' carries no training profile ({PROFILE_FILE}); it was registered before drift "
                           "monitoring existed. Retrain it (textcls run) to register a version with a profile.")
    checks = check_file_drift(clf, profile, texts, monitor_cfg)
    out_dir = Path(output_dir) / f"monitor-{Path(data_path).stem}"
    return publish_drift(checks, len(texts), model_uri, data_path, tracking_uri, experiment, out_dir, "monitor")
