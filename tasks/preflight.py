"""Pre-flight task: the flows' first step (textcls_core/runtime/preflight.py), so deployments fail before any work too."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from textcls_core.runtime.config import Config
from textcls_core.runtime.preflight import preflight


@task(name="preflight", cache_policy=NO_CACHE)
def preflight_task(cfg: Config) -> None:
    preflight(cfg)
