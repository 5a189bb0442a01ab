"""Evaluation stage: model, baseline (the tfidf_lr candidate) and champion on the same test split; badcases; label
errors; the candidates table; HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.artifacts import artifact_key
from tasks.registry import champion_classifier, load_registered_classifier
from tasks.results import Candidates, Evaluation, RunContext
from tasks.runguard import mark_stage, parquet_rows
from tasks.tracking import client_for, dataset_for, get_run_logger, log_datasets, log_metrics_now
from textcls_core.dataset.clean import drop_unusable_rows
from textcls_core.dataset.read import read_dataset
from textcls_core.dataset.relabel import source_file_sha256
from textcls_core.dataset.split import hash_frame
from textcls_core.evaluation.assemble import flat_metrics, write_evaluation
from textcls_core.evaluation.assessment import assess_classifier, candidate_val_metrics, validation_metrics
from textcls_core.modeling.classifiers import load_classifier
from textcls_core.registry.gate_inputs import save_predictions
from textcls_core.registry.tracking_names import data_name
from textcls_core.runtime.config import DataConfig, EvaluateConfig
from textcls_core.runtime.errors import DataError


def publish_evaluation(ev, out_dir: Path, title: str, eval_cfg: EvaluateConfig, tracking: RunContext,
                       flow: str = "train") -> dict[str, Any]:
    """Write the files, log metrics and the folder to MLflow, and a markdown summary to Prefect (key per flow:
    textcls-train-evaluation or textcls-evaluate-evaluation)."""
    files = write_evaluation(ev, out_dir, title, eval_cfg.report_max_rows)
    flat = flat_metrics(ev)
    log_metrics_now(tracking, flat)
    client_for(tracking["tracking_uri"]).log_artifacts(tracking["run_id"], str(out_dir), "evaluation")
    if flow_run.id:
        create_markdown_artifact(files["summary_md"].read_text(encoding="utf-8"), key=artifact_key(flow, "evaluation"),
                                 description=title)
    return {"metrics": flat, "per_class": ev.metrics["per_class"], "dir": str(out_dir),
            "badcases_path": str(files["badcases"]), "report_path": str(files["report_html"]),
            "relabel_queue_path": str(files["relabel_queue"]) if "relabel_queue" in files else None,
            "n_test": ev.metrics["n"]}


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(model_dir: str, split_paths: dict[str, str], eval_cfg: EvaluateConfig, model_name: str,
                  seed: int, tracking: RunContext, source_path: str = "",
                  candidates: Candidates | None = None) -> Evaluation:
    """Evaluate the delivered artifact itself (same cleaning, segmentation and weights as the pyfunc).

    source_path: the data file the splits came from; its sha256 goes into the relabel queue.
    candidates: the candidates stage's result: its tfidf_lr folder is the baseline, its table goes into the report."""
    mark_stage("evaluate", parquet_rows(*split_paths.values()))  # watchdog: this stage's time bound starts now
    log = get_run_logger()
    clf = load_classifier(model_dir, shared=True)
    baseline_dir = (candidates or {}).get("baseline_dir")
    # the same object as clf when tfidf_lr ships (the same folder): its scores are then taken once, not twice
    baseline = load_classifier(baseline_dir, shared=True) if eval_cfg.baseline and baseline_dir else None
    test, train, val = (pd.read_parquet(split_paths[k]) for k in ("test", "train", "val"))
    champ_version, champion = champion_classifier(model_name, tracking["tracking_uri"]) if eval_cfg.compare_champion else (None, None)
    if champ_version:
        log.info("evaluate: comparing with %s version %s (@champion) on the same test split", model_name, champ_version)
    oof_path = (candidates or {}).get("oof_path")
    oof = np.load(oof_path, allow_pickle=False)["oof"] if oof_path else None  # tfidf_lr's features, computed beside training
    ev = assess_classifier(clf, test, eval_cfg, baseline, pd.concat([train, val], ignore_index=True), champion, seed, log,
                           source_file_sha256(source_path), oof=oof)
    ev.extra["champion_version"] = champ_version
    if candidates:
        ev.extra["candidates"] = {k: candidates[k] for k in ("table", "chosen_name", "reason", "notes")}
    out = publish_evaluation(ev, Path(tracking["run_dir"]) / "evaluation", "textcls evaluation (test split)", eval_cfg, tracking)
    out["predictions_path"] = str(save_predictions(Path(tracking["run_dir"]) / "gate", split_paths["test"], ev.predicted,
                                                   ev.champion_predicted, champ_version))
    # the gate's not-worse-than-baseline check (#10): out-of-sample validation scores. A refitted tfidf_lr has seen
    # validation, so the candidates stage's scores (train-only fit; the ensemble cross-fitted) are used when they exist
    val_metrics = (candidate_val_metrics(candidates["table"], eval_cfg.baseline) if candidates and candidates.get("table")
                   else validation_metrics(clf, val, baseline, eval_cfg))
    log_metrics_now(tracking, {k: v for k, v in val_metrics.items() if k.startswith("baseline_")})  # val_* has the epoch history
    out["metrics"] = out["metrics"] | val_metrics
    m = out["metrics"]
    log.info("evaluate: accuracy %.4f, macro-F1 %.4f (baseline %s), %d badcases of %d", m["test_accuracy"], m["test_macro_f1"],
             f"{m['baseline_test_accuracy']:.4f} accuracy" if "baseline_test_accuracy" in m else "off", len(ev.badcases), len(test))
    return out | {"champion_version": champ_version}


@task(name="evaluate-registered", cache_policy=NO_CACHE)
def evaluate_registered_task(model_uri: str, data_cfg: DataConfig, eval_cfg: EvaluateConfig, seed: int,
                             tracking: RunContext) -> dict[str, Any]:
    """Evaluate a registered model on any labelled file: metrics, badcases, label errors in that file, report."""
    log = get_run_logger()
    clf = load_registered_classifier(model_uri, tracking["tracking_uri"])
    df = read_dataset(data_cfg.path, data_cfg.text_column, data_cfg.label_column, data_cfg.encoding, data_cfg.metadata_columns)
    frame, dropped = drop_unusable_rows(df, clf.clean_cfg)
    unknown = sorted(set(frame["label"]) - set(clf.labels))
    if unknown:
        raise DataError(f"Data file '{data_cfg.path}' has labels the model does not know: {unknown[:10]}; "
                        f"model {model_uri} predicts {clf.labels}. Map the labels or evaluate a model trained on them.")
    if frame.empty:
        raise DataError(f"Data file '{data_cfg.path}' has no row with both a text and a label.")
    out_dir = Path(tracking["run_dir"]) / "evaluation"
    out_dir.mkdir(parents=True, exist_ok=True)
    dropped.to_csv(out_dir / "dropped.csv", index=False, encoding="utf-8")
    client = client_for(tracking["tracking_uri"])
    for key, value in {"textcls.model_uri": model_uri, "textcls.flow": "evaluate"}.items():
        client.set_tag(tracking["run_id"], key, value)
    file_sha = source_file_sha256(data_cfg.path) or hash_frame(frame)
    log_datasets(tracking, [(dataset_for(frame, f"{data_name(data_cfg.path)}-evaluation", file_sha, data_cfg.path), "evaluation", file_sha)])
    ev = assess_classifier(clf, frame, eval_cfg, None, frame if eval_cfg.label_error_folds else None, None, seed, log,
                           source_file_sha256(data_cfg.path))
    out = publish_evaluation(ev, out_dir, f"textcls evaluation of {model_uri} on {Path(data_cfg.path).name}", eval_cfg, tracking,
                             flow="evaluate")
    log.info("evaluate: %s on %s: accuracy %.4f, macro-F1 %.4f, %d rows scored, %d dropped",
             model_uri, data_cfg.path, out["metrics"]["test_accuracy"], out["metrics"]["test_macro_f1"], len(frame), len(dropped))
    return out | {"model_uri": model_uri, "rows_read": len(df), "rows_scored": len(frame), "rows_dropped": len(dropped),
                  "mlflow_run_id": tracking["run_id"], "mlflow_tracking_uri": tracking["tracking_uri"]}
