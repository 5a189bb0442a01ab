"""Packaging stage: log the pyfunc, register a new version, and give it `champion` or `challenger`."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.tracking import client_for, get_run_logger

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
CORE_DIR = Path(__file__).resolve().parent.parent / "textcls_core"
INPUT_EXAMPLE = ["这本书很好看", "质量太差了"]
# what the pyfunc imports at load time; versions pinned to this environment's
_REQUIREMENTS = ("torch", "jieba", "pandas", "numpy", "pydantic", "pyyaml", "scikit-learn", "mlflow")


def pip_requirements() -> list[str]:
    return [f"{name}=={version(name).split('+')[0]}" for name in _REQUIREMENTS]


def champion_metric(client: mlflow.MlflowClient, name: str, metric: str) -> tuple[str | None, float | None]:
    """(version, metric) of the current champion, or (None, None) when there is none."""
    try:
        mv = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None, None
    value = mv.tags.get(metric)
    return str(mv.version), float(value) if value is not None else None


@task(name="package", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def package_task(model_dir: str, metrics: dict[str, float], registry_cfg: Any, tracking: dict[str, Any],
                 tags: dict[str, str]) -> dict[str, Any]:
    """Log + register; `champion` when there is none or the new version beats it on registry.metric."""
    log = get_run_logger()
    client = client_for(tracking["tracking_uri"])
    name, metric = registry_cfg.model_name, registry_cfg.metric
    with mlflow.start_run(run_id=tracking["run_id"]):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(PYFUNC_FILE), artifacts={"model_dir": model_dir},
            code_paths=[str(CORE_DIR)], input_example=INPUT_EXAMPLE, pip_requirements=pip_requirements())
    mv = mlflow.register_model(info.model_uri, name, tags={**tags, **{k: str(v) for k, v in metrics.items()}})
    prev_version, prev_value = champion_metric(client, name, metric)
    new_value = metrics[metric]
    if prev_version is None or prev_value is None or new_value > prev_value:
        alias = "champion"
        reason = ("no champion yet" if prev_version is None
                  else f"{metric} {new_value:.4f} > champion v{prev_version} {prev_value if prev_value is not None else float('nan'):.4f}")
        if prev_version is not None:
            client.set_model_version_tag(name, mv.version, "previous_champion", prev_version)
    else:
        alias = "challenger"
        reason = f"{metric} {new_value:.4f} <= champion v{prev_version} {prev_value:.4f}"
    client.set_registered_model_alias(name, alias, mv.version)
    client.set_model_version_tag(name, mv.version, "alias_reason", reason)
    client.update_model_version(name, mv.version, description=f"{alias}: {reason}")
    log.info("package: registered %s version %s as @%s (%s)", name, mv.version, alias, reason)
    return {"model_name": name, "version": str(mv.version), "alias": alias, "reason": reason,
            "model_uri": f"models:/{name}@{alias}", "logged_model_uri": info.model_uri,
            "previous_champion": prev_version}
