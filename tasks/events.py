"""Prefect events for registry decisions, so ops can build automations (notify, page, deploy) on them.

    textcls.model.registered   a new version exists (alias still to be decided)
    textcls.model.promoted     a version took @champion (by the gate, `textcls promote` or `textcls rollback`)
    textcls.gate.failed        the gate kept a version at @challenger; the reasons are in the resource

The resource is the model version: `textcls.model.<name>.<version>`, with labels textcls.model.name,
textcls.model.version and textcls.reasons (resource labels are strings). Outside a Prefect API (no server,
no PREFECT_API_URL, not inside a run) nothing is emitted, so the CLI and `.fn` calls work without one.
"""

from __future__ import annotations

from typing import Any

from prefect.context import FlowRunContext, TaskRunContext
from prefect.events import emit_event
from prefect.settings import get_current_settings

REGISTERED, PROMOTED, GATE_FAILED = "textcls.model.registered", "textcls.model.promoted", "textcls.gate.failed"
_MAX_LABEL = 2000  # keep events small; the full reasons are on the model version


def _api_available() -> bool:
    """A configured PREFECT_API_URL or a running flow/task (which has one). Without either, Prefect would start a
    temporary server just to receive the event (tens of seconds for `textcls promote`), and nobody listens to it."""
    return bool(get_current_settings().api.url) or FlowRunContext.get() is not None or TaskRunContext.get() is not None


def model_resource(name: str, version: str, reasons: list[str] | None = None) -> dict[str, str]:
    return {"prefect.resource.id": f"textcls.model.{name}.{version}", "prefect.resource.name": f"{name} v{version}",
            "textcls.model.name": name, "textcls.model.version": str(version),
            "textcls.reasons": "; ".join(reasons or [])[:_MAX_LABEL]}


def emit_model_event(event: str, name: str, version: str, reasons: list[str] | None = None, mlflow_run_id: str = "",
                     payload: dict[str, Any] | None = None) -> Any:
    """Emit one registry event; returns the Event (None when events are off or there is no Prefect API to send to)."""
    if not _api_available():
        return None
    related = [{"prefect.resource.id": f"mlflow.run.{mlflow_run_id}", "prefect.resource.role": "mlflow-run"}] if mlflow_run_id else []
    return emit_event(event=event, resource=model_resource(name, version, reasons), related=related, payload=payload or {})
