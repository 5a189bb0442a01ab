"""The `relabel-apply` flow: a reviewed relabel queue -> corrected copy of the data, changelog, MLflow dataset version."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.relabel import relabel_task
from tasks.tracking import resolve_tracking_uri
from textcls_core.runtime.config import Config


@flow(name="relabel-apply", validate_parameters=True)
def relabel_apply(queue_path: str, config: Config = Config(), output_path: str = "") -> dict[str, Any]:
    """Apply queue_path's decisions to config.data.path; output_path defaults to <stem>.relabeled<ext> beside it."""
    return relabel_task(queue_path, config.data, output_path, resolve_tracking_uri(config.tracking.uri), config.tracking.experiment)
