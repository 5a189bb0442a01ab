"""The `monitor` flow: compare a new file with the training profile of a registered version (drift watch)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.monitor import monitor_task
from tasks.tracking import resolve_tracking_uri
from textcls_core.runtime.config import Config


@flow(name="monitor", validate_parameters=True)
def monitor(data_path: str, model_uri: str = "", config: Config = Config()) -> dict[str, Any]:
    """Drift of data_path (column config.data.text_column) against model_uri (default: @champion of
    config.registry.model_name); emits `textcls.drift.detected` when a config.monitor threshold is crossed."""
    uri = model_uri or f"models:/{config.registry.model_name}@champion"
    return monitor_task(uri, data_path, config.data.text_column, config.data.encoding, config.monitor,
                        resolve_tracking_uri(config.tracking.uri), config.tracking.experiment, config.run.output_dir)
