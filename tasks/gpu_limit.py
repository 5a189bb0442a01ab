"""The GPU limit: a Prefect global concurrency limit whose slots are GPUs, occupied per device by a training.

    prefect gcl create textcls-gpu --limit 4      # this machine (or pool of workers) has 4 GPUs

A training on GPU holds `train.devices` slots (the processes torchrun starts on this node, one GPU each) while it
runs; trainings that do not fit wait for slots. A CPU training takes none. Without the limit (the temporary local
server, a server nobody configured) training simply runs. A training that asks for more slots than the limit has
could never start: it fails at once with a message, instead of waiting forever.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError  # what prefect.concurrency raises (not re-exported)
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import ObjectNotFound

from tasks.tracking import get_run_logger
from textcls_core.runtime.errors import ConfigError

GPU_LIMIT = "textcls-gpu"


def gpu_slots(devices: int, device_type: str) -> int:
    """Slots a training takes on this node: one per GPU process, none on CPU."""
    return devices if device_type == "cuda" else 0


def _too_many(name: str, limit: int, slots: int) -> ConfigError:
    return ConfigError(
        f"train.devices={slots} asks for {slots} slots of the Prefect concurrency limit '{name}', which has only {limit}: "
        f"this training could never start. Set train.devices to at most {limit}, or raise the limit to the GPUs the "
        f"workers have: prefect gcl update {name} --limit {slots}")


def _read_limit(name: str) -> Any | None:
    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return None


def _holder() -> ConcurrencyLeaseHolder | None:
    """The task run (else flow run) holding the slots, shown with the lease on the limit's page."""
    task_ctx, flow_ctx = TaskRunContext.get(), FlowRunContext.get()
    if task_ctx is not None:
        return ConcurrencyLeaseHolder(type="task_run", id=task_ctx.task_run.id)
    if flow_ctx is not None and flow_ctx.flow_run is not None:
        return ConcurrencyLeaseHolder(type="flow_run", id=flow_ctx.flow_run.id)
    return None


@contextmanager
def occupy_gpus(slots: int, name: str = GPU_LIMIT) -> Iterator[None]:
    """Hold `slots` slots of the limit `name` for the duration of the block (waiting while other trainings hold
    them). No-op for 0 slots, outside a Prefect run (a task's `.fn`) and when the limit does not exist or is
    inactive; raises ConfigError at once when the limit is smaller than `slots`."""
    if slots <= 0 or (FlowRunContext.get() is None and TaskRunContext.get() is None):
        yield
        return
    log = get_run_logger()
    limit = _read_limit(name)
    if limit is None or not limit.active:
        log.info("train: no active Prefect concurrency limit '%s': training without GPU slots "
                 "(to queue trainings per GPU: prefect gcl create %s --limit <GPUs>)", name, name)
        yield
        return
    if slots > limit.limit:
        raise _too_many(name, limit.limit, slots)
    log.info("train: taking %d of %d slots of the concurrency limit '%s' (%d in use now; waits while they are taken)",
             slots, limit.limit, name, limit.active_slots)
    with ExitStack() as held:
        try:  # only the acquisition: errors of the training itself pass through untouched
            held.enter_context(concurrency(name, occupy=slots, strict=False, holder=_holder(),
                                           raise_on_lease_renewal_failure=False))  # a renewal hiccup must not end training
        except ConcurrencySlotAcquisitionError:  # the limit shrank below `slots` after it was read
            fresh = _read_limit(name)
            if fresh is not None and fresh.active and slots > fresh.limit:
                raise _too_many(name, fresh.limit, slots) from None
            raise
        yield
