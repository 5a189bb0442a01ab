"""The `batch-predict` flow: score a file with a registered model (by default the champion)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.predict import predict_task
from tasks.tracking import resolve_tracking_uri
from textcls_core.runtime.config import MonitorConfig


@flow(name="batch-predict", validate_parameters=True)
def batch_predict(input_path: str, output_path: str, model_uri: str = "models:/textcls-sentiment@champion",
                  text_column: str = "text", tracking_uri: str = "", batch_size: int = 256,
                  monitor: MonitorConfig = MonitorConfig(), experiment: str = "textcls") -> dict[str, Any]:
    """Read input_path, predict every row, write output_path (.csv or .parquet) with pred_* columns; with
    monitor.on_predict, also check the file for drift against the model's training profile (<output>.drift/)."""
    return predict_task(model_uri, input_path, output_path, text_column, resolve_tracking_uri(tracking_uri), batch_size,
                        monitor, experiment)
