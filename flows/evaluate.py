"""The `evaluate-text-classifier` flow: score any registered model on any labelled file."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.artifacts import evaluate_artifacts_task, link_mlflow_run_task
from tasks.evaluate import evaluate_registered_task
from tasks.tracking import finish_tracking, start_tracking
from textcls_core.runtime.config import Config


@flow(name="evaluate-text-classifier", validate_parameters=True)
def evaluate_text_classifier(model_uri: str, config: Config = Config()) -> dict[str, Any]:
    """Metrics, badcases, suspected label errors and an HTML report for model_uri on config.data."""
    tracking = start_tracking(config)
    try:
        link_mlflow_run_task(tracking, "evaluate")
        result = evaluate_registered_task(model_uri, config.data, config.evaluate, config.run.seed, tracking)
        evaluate_artifacts_task(tracking, result)
    except BaseException:
        finish_tracking(tracking, "FAILED")
        raise
    finish_tracking(tracking, "FINISHED")
    return result
