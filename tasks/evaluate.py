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

from tasks.registry import champion_classifier, load_registered_classifier
from tasks.tracking import client_for, dataset_for, get_run_logger, log_datasets, log_metrics_now
from tasks.runguard import mark_stage, parquet_rows
from textcls_core.baseline import out_of_fold_proba
from textcls_core.classifiers import load_classifier, proba_and_oov
from textcls_core.clean import drop_unusable_rows
from textcls_core.config import DataConfig, EvaluateConfig
from textcls_core.data import read_dataset
from textcls_core.errors import DataError
from textcls_core.evaluation_report import build_evaluation, flat_metrics, measure_latency, write_evaluation
from textcls_core.evaluate import compute_metrics
from textcls_core.label_issues import find_suspect_labels
from textcls_core.relabel import source_file_sha256
from textcls_core.split import hash_frame
from textcls_core.tracking_names import data_name


def _label_ids(frame: pd.DataFrame, labels: list[str]) -> np.ndarray:
    ids = {name: i for i, name in enumerate(labels)}
    return frame["label"].map(ids).to_numpy()


def aligned_proba(clf: Any, texts: list[str], labels: list[str], batch_size: int) -> np.ndarray:
    """Probabilities of `clf` re-ordered to `labels` (a class it does not know gets 0)."""
    probs = clf.predict_proba(texts, batch_size)
    out = np.zeros((len(texts), len(labels)))
    for j, name in enumerate(clf.labels):
        if name in labels:
            out[:, labels.index(name)] = probs[:, j]
    return out


def assess_classifier(clf: Any, test: pd.DataFrame, eval_cfg: EvaluateConfig, baseline: Any | None,
                      label_pool: pd.DataFrame | None, champion: Any | None, seed: int, log: Any,
                      source_sha256: str = ""):
    """Score clf (any model kind) on one labelled frame beside `baseline` (the run's tfidf_lr candidate, or None);
    the label-error search runs over `label_pool` (its queue records source_sha256, the file its row ids refer to,
    for `textcls relabel apply`)."""
    labels = clf.labels
    y = _label_ids(test, labels)
    texts = test["text"].tolist()
    # the model and the champion get what production gets, the raw text, and clean it with their own encoder
    raw = test["raw_text"].tolist() if "raw_text" in test.columns else texts
    probs, oov = proba_and_oov(clf, raw, eval_cfg.batch_size)  # a network encodes once, in eval() + inference_mode
    relabel = None
    baseline_probs = aligned_proba(baseline, raw, labels, eval_cfg.batch_size) if baseline is not None else None
    if eval_cfg.label_error_folds and label_pool is not None:
        pool_y = _label_ids(label_pool, labels)
        oof = out_of_fold_proba(label_pool["text"].tolist(), pool_y, len(labels), eval_cfg.label_error_folds, seed)
        relabel = find_suspect_labels(label_pool, pool_y, oof, labels, source_sha256)
        log.info("evaluate: %d suspected label errors in %d rows", len(relabel), len(label_pool))
    champion_probs = aligned_proba(champion, raw, labels, eval_cfg.batch_size) if champion is not None else None
    latency = measure_latency(lambda t: clf.predict_proba(t, eval_cfg.batch_size), raw, eval_cfg.latency_samples)
    return build_evaluation(test, y, probs, labels, oov, baseline_probs, champion_probs, relabel, latency)


def publish_evaluation(ev, out_dir: Path, title: str, eval_cfg: EvaluateConfig, tracking: dict[str, Any]) -> dict[str, Any]:
    """Write the files, log metrics and the folder to MLflow, and a markdown summary to Prefect."""
    files = write_evaluation(ev, out_dir, title, eval_cfg.report_max_rows)
    flat = flat_metrics(ev)
    log_metrics_now(tracking, flat)
    client_for(tracking["tracking_uri"]).log_artifacts(tracking["run_id"], str(out_dir), "evaluation")
    if flow_run.id:
        create_markdown_artifact(files["summary_md"].read_text(encoding="utf-8"), key="textcls-evaluation",
                                 description=title)
    return {"metrics": flat, "per_class": ev.metrics["per_class"], "dir": str(out_dir),
            "badcases_path": str(files["badcases"]), "report_path": str(files["report_html"]),
            "relabel_queue_path": str(files["relabel_queue"]) if "relabel_queue" in files else None,
            "n_test": ev.metrics["n"]}


def validation_metrics(clf: Any, val: pd.DataFrame, baseline: Any | None, eval_cfg: EvaluateConfig) -> dict[str, float]:
    """The shipped model and the tfidf_lr candidate (the baseline) on the validation split: val_/baseline_val_
    accuracy and macro_f1, which the promotion gate compares (registry.baseline_check)."""
    labels = clf.labels
    y = _label_ids(val, labels)
    raw = val["raw_text"].tolist() if "raw_text" in val.columns else val["text"].tolist()
    m = compute_metrics(y, clf.predict_proba(raw, eval_cfg.batch_size), labels)
    out = {"val_accuracy": float(m["accuracy"]), "val_macro_f1": float(m["macro_f1"])}
    if baseline is not None:
        b = compute_metrics(y, aligned_proba(baseline, raw, labels, eval_cfg.batch_size), labels)
        out |= {"baseline_val_accuracy": float(b["accuracy"]), "baseline_val_macro_f1": float(b["macro_f1"])}
    return out


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(model_dir: str, split_paths: dict[str, str], eval_cfg: EvaluateConfig, model_name: str,
                  seed: int, tracking: dict[str, Any], source_path: str = "",
                  candidates: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate the delivered artifact itself (same cleaning, segmentation and weights as the pyfunc).

    source_path: the data file the splits came from; its sha256 goes into the relabel queue.
    candidates: the candidates stage's result: its tfidf_lr folder is the baseline, its table goes into the report."""
    mark_stage("evaluate", parquet_rows(*split_paths.values()))  # watchdog: this stage's time bound starts now
    log = get_run_logger()
    clf = load_classifier(model_dir)
    baseline_dir = (candidates or {}).get("baseline_dir")
    baseline = load_classifier(baseline_dir) if eval_cfg.baseline and baseline_dir else None
    test, train, val = (pd.read_parquet(split_paths[k]) for k in ("test", "train", "val"))
    champ_version, champion = champion_classifier(model_name, tracking["tracking_uri"]) if eval_cfg.compare_champion else (None, None)
    if champ_version:
        log.info("evaluate: comparing with %s version %s (@champion) on the same test split", model_name, champ_version)
    ev = assess_classifier(clf, test, eval_cfg, baseline, pd.concat([train, val], ignore_index=True), champion, seed, log,
                           source_file_sha256(source_path))
    ev.extra["champion_version"] = champ_version
    if candidates:
        ev.extra["candidates"] = {k: candidates[k] for k in ("table", "chosen_name", "reason", "notes")}
    out = publish_evaluation(ev, Path(tracking["run_dir"]) / "evaluation", "textcls evaluation (test split)", eval_cfg, tracking)
    val_metrics = validation_metrics(clf, val, baseline, eval_cfg)  # the gate's not-worse-than-baseline check (#10)
    log_metrics_now(tracking, {k: v for k, v in val_metrics.items() if k.startswith("baseline_")})  # val_* has the epoch history
    out["metrics"] = out["metrics"] | val_metrics
    m = out["metrics"]
    log.info("evaluate: accuracy %.4f, macro-F1 %.4f (baseline %s), %d badcases of %d", m["test_accuracy"], m["test_macro_f1"],
             f"{m['baseline_test_accuracy']:.4f} accuracy" if "baseline_test_accuracy" in m else "off", len(ev.badcases), len(test))
    return out | {"champion_version": champ_version}


@task(name="evaluate-registered", cache_policy=NO_CACHE)
def evaluate_registered_task(model_uri: str, data_cfg: DataConfig, eval_cfg: EvaluateConfig, seed: int,
                             tracking: dict[str, Any]) -> dict[str, Any]:
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
    out = publish_evaluation(ev, out_dir, f"textcls evaluation of {model_uri} on {Path(data_cfg.path).name}", eval_cfg, tracking)
    log.info("evaluate: %s on %s: accuracy %.4f, macro-F1 %.4f, %d rows scored, %d dropped",
             model_uri, data_cfg.path, out["metrics"]["test_accuracy"], out["metrics"]["test_macro_f1"], len(frame), len(dropped))
    return out | {"model_uri": model_uri, "rows_read": len(df), "rows_scored": len(frame), "rows_dropped": len(dropped),
                  "mlflow_run_id": tracking["run_id"], "mlflow_tracking_uri": tracking["tracking_uri"]}
