"""One guard per training run: a stage watchdog and a clean stop on SIGTERM / Ctrl-C.

Both end the run the same way, and on purpose not through Python's normal shutdown: the flow's main thread may
be blocked for ever (a pool join, a C call), and on Prefect's temporary server a terminated process can hang at
exit draining queues into a server that is already gone. So the guard marks the MLflow run (FAILED for a
passed bound, KILLED for a stop) and the Prefect flow run, kills the run's child processes, prints one line
saying how to resume, and leaves with os._exit. The checkpoint in <run>/checkpoints stays for --resume.

Tasks call `mark_stage(name, ...)` as their first line; without an active guard (a task called through
`.fn`, another flow) it does nothing.
"""

from __future__ import annotations

import contextvars
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil  # noqa: F401  (loaded now for kill_child_processes: a stuck thread may hold the import lock later)
from mlflow.entities import RunTag
from prefect.client.orchestration import get_client
from prefect.states import Cancelled, Failed

from tasks.results import RunContext
from tasks.tracking import client_for, get_run_logger
from textcls_core.runtime.config import RunConfig
from textcls_core.runtime.procs import kill_child_processes
from textcls_core.runtime.watchdog import Expiry, Watchdog, stage_bound

EXIT_STAGE_TIMEOUT = 3
STOP_BACKSTOP_S = 25.0  # whatever happens while marking the runs, the process is gone this long after the signal
_CALL_TIMEOUT_S = 10.0  # marking one run (MLflow, Prefect) while stopping; a dead server must not hold the exit
_current: contextvars.ContextVar["RunGuard | None"] = contextvars.ContextVar("textcls_run_guard", default=None)


def parquet_rows(*paths: str) -> int:
    """Rows in Parquet files, from their footers (no data read): the size a stage's bound scales with."""
    import pyarrow.parquet as pq

    total = 0
    for p in paths:
        try:
            total += pq.ParquetFile(p).metadata.num_rows
        except Exception:  # a missing or non-Parquet file: the bound just is not scaled by it
            pass
    return total


def file_rows_estimate(path: str, bytes_per_row: int = 50) -> int:
    """Rows a data file may hold, guessed from its size before it is read (generous: short rows guess high,
    so the analysis bound errs loose); 0 for the builtin corpus or a missing file."""
    try:
        return os.path.getsize(path) // bytes_per_row
    except OSError:
        return 0


def mark_stage(stage: str, rows: int = 0) -> None:
    """The run enters `stage` (its bound starts now; rows: the data size it works on, 0 = keep the last known)."""
    guard = _current.get()
    if guard is not None:
        guard.hold_if_ending()
        guard.watchdog.enter(stage, rows or None)


def _with_timeout(fn: Callable[[], Any], timeout_s: float) -> bool:
    """Run fn in a daemon thread and wait at most timeout_s (a tracking server that is down cannot stall the
    exit); True when it finished without error."""
    done: list[bool] = []
    t = threading.Thread(target=lambda: done.append(_quietly(fn)), daemon=True)
    t.start()
    t.join(timeout_s)
    return bool(done and done[0])


def _quietly(fn: Callable[[], Any]) -> bool:
    try:
        fn()
        return True
    except Exception as exc:  # the process is ending; say what could not be recorded and go on
        _say(f"textcls: could not record the stop ({type(exc).__name__}: {str(exc)[:200]})")
        return False


def _say(line: str) -> None:
    """Write straight to the stderr file descriptor: no logging or stream lock a blocked thread might hold."""
    try:
        os.write(2, (line + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


class RunGuard:
    """Watchdog + signal handlers for one run; `close()` disarms both."""

    def __init__(self, tracking: RunContext, run_cfg: RunConfig, epochs: int = 1,
                 exit_fn: Callable[[int], None] = os._exit, handle_signals: bool = True, poll_s: float = 1.0,
                 resume_hint: str = ""):
        self.tracking = tracking
        self._resume_hint = resume_hint
        self.run_dir = Path(tracking["run_dir"])
        self.log_dir = self.run_dir / "logs"
        self._exit = exit_fn
        self._ending = threading.Lock()
        self._ended = threading.Event()  # set only if exit_fn returns (tests pass one that records the code)
        bounds, per = dict(run_cfg.stage_timeout_s), run_cfg.stage_timeout_rows
        self.watchdog = Watchdog(lambda stage, rows: stage_bound(stage, bounds, rows, per, epochs), self._on_expire,
                                 log_dir=self.log_dir, poll_s=poll_s)
        self._previous: dict[int, Any] = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        self._token = _current.set(self)
        self.watchdog.start()

    def hold_if_ending(self) -> None:
        """The flow's own thread, when the guard is already ending the run (a bound passed, SIGTERM): wait here for
        the exit instead of going on, so a run that finishes its last stages while the guard marks it FAILED or
        KILLED cannot mark itself FINISHED after that (the guard's backstop timer guarantees the exit)."""
        if self._ending.locked():
            self._ended.wait()

    def close(self) -> None:
        self.hold_if_ending()
        self.watchdog.stop()
        self._write_stage_times()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        try:
            _current.reset(self._token)
        except ValueError:  # closed from another context: clear it there
            _current.set(None)

    def _write_stage_times(self) -> None:
        """<run>/logs/stage_times.json: seconds per stage in order (ops and benchmarks/soak.py read the slowest)."""
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            (self.log_dir / "stage_times.json").write_text(json.dumps(self.watchdog.stage_times(), indent=1), encoding="utf-8")
        except OSError:
            pass

    def resume_hint(self) -> str:
        return self._resume_hint or f"textcls run --resume {self.run_dir}"

    def _on_expire(self, expiry: Expiry) -> None:
        where = f"; stacks of all threads in {expiry.stacks_path}" if expiry.stacks_path else ""
        message = (f"stage '{expiry.stage}' passed its time bound of {expiry.bound_s:.3g} s (run.stage_timeout_s, scaled "
                   f"to the data){where}. If the stage is just slow, raise it: "
                   f"--set 'run.stage_timeout_s={{default: 900, {expiry.stage}: {max(2 * expiry.bound_s, 60):.0f}}}'")
        self.end("FAILED", message, EXIT_STAGE_TIMEOUT, {"textcls.failure_stage": expiry.stage,
                                                         "textcls.failure_bound_s": f"{expiry.bound_s:.0f}"})

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        self.end("KILLED", f"stopped by {name} during stage '{self.watchdog.stage}'", 128 + signum,
                 {"textcls.stopped_stage": self.watchdog.stage, "textcls.stopped_by": name})

    def end(self, status: str, message: str, exit_code: int, tags: dict[str, str]) -> None:
        """Mark the MLflow and Prefect runs, kill child processes, print one line, exit. Runs once."""
        if not self._ending.acquire(blocking=False):
            return
        started = time.monotonic()
        backstop = threading.Timer(STOP_BACKSTOP_S, lambda: self._exit(exit_code))
        backstop.daemon = True
        backstop.start()
        self.watchdog.stop()
        self._write_stage_times()
        marked = _with_timeout(lambda: self._mark_mlflow(status, message, tags), _CALL_TIMEOUT_S)
        if self.tracking.get("prefect_flow_run_id"):
            _with_timeout(lambda: self._mark_prefect(status, message), _CALL_TIMEOUT_S)
        kill_child_processes(timeout_s=2.0)
        checkpoint = self.run_dir / "checkpoints" / "last.pt"
        kept = "checkpoint kept" if checkpoint.is_file() else "no training checkpoint yet"
        mark = f"marked {status}" if marked else f"could not be marked {status} in time"
        _say(f"textcls: {message}. MLflow run {self.tracking['run_id']} {mark}; {kept}; "
             f"resume with: {self.resume_hint()}  ({time.monotonic() - started:.1f} s to stop)")
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        self._exit(exit_code)
        self._ended.set()

    def _mark_mlflow(self, status: str, message: str, tags: dict[str, str]) -> None:
        # everything used here is imported up front: a stuck thread may hold the import lock
        client = client_for(self.tracking["tracking_uri"])
        run_id = self.tracking["run_id"]
        all_tags = {"textcls.end_reason": message[:5000], "textcls.resume_command": self.resume_hint(), **tags}
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in all_tags.items()])
        client.set_terminated(run_id, status)

    def _mark_prefect(self, status: str, message: str) -> None:
        state = Cancelled(message=message) if status == "KILLED" else Failed(message=message)
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(self.tracking["prefect_flow_run_id"], state, force=True)


def guard_run(tracking: RunContext, run_cfg: RunConfig, epochs: int = 1, resume_hint: str = "") -> RunGuard:
    """Arm the watchdog and the stop handlers for this run (the flow closes the guard when the run ends).
    resume_hint: how to go on after a stop (default: `textcls run --resume <run folder>`)."""
    guard = RunGuard(tracking, run_cfg, epochs, resume_hint=resume_hint)
    bounds = ", ".join(f"{k} {v:.0f} s" for k, v in run_cfg.stage_timeout_s.items())
    get_run_logger().info("watchdog armed: %s (per %d rows; train per epoch); SIGTERM or Ctrl-C stops cleanly, "
                          "resume with: %s", bounds, run_cfg.stage_timeout_rows, guard.resume_hint())
    return guard
