"""Evaluation stage: the saved model on the test split, metrics, confusion matrix and badcases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.tracking import get_run_logger, log_artifacts, log_metrics_now
from textcls_core.config import EvaluateConfig
from textcls_core.evaluate import compute_metrics, confusion_frame, find_badcases, save_confusion_png
from textcls_core.predictor import TextClassifier


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(model_dir: str, test_path: str, eval_cfg: EvaluateConfig, tracking: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the delivered artifact itself (same cleaning, segmentation and weights as the pyfunc)."""
    out_dir = Path(tracking["run_dir"]) / "evaluation"
    out_dir.mkdir(parents=True, exist_ok=True)
    clf = TextClassifier.load(model_dir)
    test = pd.read_parquet(test_path)
    label_ids = {name: i for i, name in enumerate(clf.labels)}
    y_true = test["label"].map(label_ids).to_numpy()
    probs = clf.predict_proba(test["text"].tolist(), batch_size=eval_cfg.batch_size)  # inference_mode inside
    metrics = compute_metrics(y_true, probs.argmax(axis=1), clf.labels)
    cm = confusion_frame(metrics, clf.labels)
    cm.to_csv(out_dir / "confusion_matrix.csv", encoding="utf-8")
    save_confusion_png(cm, out_dir / "confusion_matrix.png")
    badcases = find_badcases(test, probs, y_true, clf.labels)
    badcases.to_csv(out_dir / "badcases.csv", index=False, encoding="utf-8")
    predictions = test[["row_id", "text", "label"]].assign(pred_label=[clf.labels[i] for i in probs.argmax(axis=1)],
                                                           confidence=probs.max(axis=1))
    predictions.to_parquet(out_dir / "test_predictions.parquet", index=False)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2), encoding="utf-8")
    flat = {"test_accuracy": metrics["accuracy"], "test_macro_f1": metrics["macro_f1"], "test_badcases": len(badcases)}
    for i, name in enumerate(clf.labels):
        for k in ("precision", "recall", "f1"):
            flat[f"test_{k}_class_{i}"] = metrics["per_class"][name][k]
    log_metrics_now(tracking, flat)
    log_artifacts(tracking, [out_dir / f for f in ("metrics.json", "confusion_matrix.csv", "confusion_matrix.png", "badcases.csv")], "evaluation")
    get_run_logger().info("evaluate: accuracy %.4f, macro-F1 %.4f, %d badcases of %d",
                          metrics["accuracy"], metrics["macro_f1"], len(badcases), len(test))
    return {"metrics": {k: v for k, v in flat.items()}, "per_class": metrics["per_class"], "dir": str(out_dir),
            "badcases_path": str(out_dir / "badcases.csv"), "n_test": int(len(test)), "mean_confidence": float(np.mean(probs.max(axis=1)))}
