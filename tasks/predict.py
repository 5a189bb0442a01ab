"""Batch prediction: a file in, the same rows out with label, score and per-class probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.monitor import load_model_and_profile, model_oov, publish_drift
from tasks.registry import load_registered_classifier
from tasks.tracking import get_run_logger
from textcls_core.dataset.read import read_table
from textcls_core.evaluation.drift import compare_with_profile
from textcls_core.runtime.config import MonitorConfig
from textcls_core.runtime.errors import DataError


@task(name="batch-predict", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def predict_task(model_uri: str, input_path: str, output_path: str, text_column: str, tracking_uri: str,
                 batch_size: int = 256, monitor_cfg: MonitorConfig | None = None, experiment: str = "textcls") -> dict[str, Any]:
    """Score every row; with monitor_cfg.on_predict, also compare the file with the model's training profile (drift)."""
    src, dst = Path(input_path), Path(output_path)
    if dst.suffix.lower() not in {".csv", ".parquet"}:
        raise DataError(f"Output '{dst.name}' must end in .csv or .parquet.")
    if not src.is_file():
        raise DataError(f"Input file '{src}' does not exist.")
    if src.stat().st_size == 0:
        raise DataError(f"Data file '{src}' is empty. It needs a header row and at least one row of text.")
    frame = read_table(src)  # the same readers and encoding detection as training data
    if text_column not in frame.columns:
        raise DataError(f"Input file '{src}' has no column '{text_column}'; columns found: {', '.join(map(repr, frame.columns))}. "
                        "Pass --text-column.")
    texts = frame[text_column].fillna("").astype(str).tolist()
    drift = None
    if monitor_cfg is not None and monitor_cfg.on_predict:
        clf, profile = load_model_and_profile(model_uri, tracking_uri)
        probs, oov = model_oov(clf, texts)  # one encoding pass serves the predictions and the OOV check
        preds = pd.DataFrame({"label": [clf.labels[i] for i in probs.argmax(axis=1)] if len(probs) else [],
                              "score": probs.max(axis=1) if len(probs) else []})
        for j, name in enumerate(clf.labels):
            preds[f"prob_{name}"] = probs[:, j]
        if profile is None:
            get_run_logger().warning("batch-predict: %s carries no training profile; drift is not checked", model_uri)
        else:
            checks = compare_with_profile(profile, texts, probs, oov, monitor_cfg)
            drift = publish_drift(checks, len(texts), model_uri, input_path, tracking_uri, experiment,
                                  dst.with_name(f"{dst.stem}.drift"), "batch-predict")
    else:
        clf = load_registered_classifier(model_uri, tracking_uri)
        preds = clf.predict(texts, batch_size)
    out = pd.concat([frame.reset_index(drop=True), preds.add_prefix("pred_")], axis=1)
    dst.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(dst, index=False) if dst.suffix.lower() == ".parquet" else out.to_csv(dst, index=False, encoding="utf-8")
    counts = preds["label"].value_counts().to_dict()
    get_run_logger().info("batch-predict: %d rows from %s scored with %s -> %s %s", len(out), src, model_uri, dst, counts)
    return {"rows": len(out), "output": str(dst), "label_counts": {str(k): int(v) for k, v in counts.items()}, "model_uri": model_uri,
            "drift": drift}
