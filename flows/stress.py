"""The `stress-text-classifier` flow: a registered model on perturbed texts of any labelled file."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.stress import stress_registered_task
from tasks.tracking import finish_tracking, start_tracking
from textcls_core.runtime.config import Config


@flow(name="stress-text-classifier", validate_parameters=True)
def stress_text_classifier(model_uri: str, config: Config = Config()) -> dict[str, Any]:
    """Accuracy, macro-F1, flip rate and confidence change of model_uri under config.stress perturbations of config.data."""
    tracking = start_tracking(config)
    try:
        result = stress_registered_task(model_uri, config.data, config.stress, config.evaluate.batch_size, config.run.seed,
                                        tracking)
    except BaseException:
        finish_tracking(tracking, "FAILED")
        raise
    finish_tracking(tracking, "FINISHED")
    return result
