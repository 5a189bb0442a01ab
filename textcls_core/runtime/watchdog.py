"""A per-run watchdog: every stage gets a time bound, and a stage that passes it ends the run loudly.

Prefect's task timeouts cannot interrupt a thread blocked in a pool join or a C call, so the watchdog is a
separate daemon thread that only watches a clock. The stage in progress is set by `enter(stage, rows)`; when its
bound passes, the watchdog writes every thread's stack (faulthandler) and calls `on_expire` once, which in a
real run marks the runs FAILED and ends the process (tasks/runguard.py).
"""

from __future__ import annotations

import faulthandler
import math
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

# Stage names a bound may be given for (run.stage_timeout_s); `default` covers every stage not named.
STAGES = ("start", "analyze", "clean", "split", "encode", "train", "candidates", "evaluate", "profile", "stress", "package", "summary")
# Stages whose work grows with the number of rows: their bound scales with rows / run.stage_timeout_rows.
ROW_SCALED = ("analyze", "clean", "split", "encode", "train", "candidates", "evaluate")
DEFAULT_STAGE_TIMEOUT_S = {"default": 900.0, "train": 1800.0}


def check_stage_timeouts(bounds: Mapping[str, float]) -> list[str]:
    """Problems with a run.stage_timeout_s mapping (unknown stage, bound <= 0 or not finite); [] when fine."""
    problems = []
    for name, value in bounds.items():
        if name != "default" and name not in STAGES:
            problems.append(f"run.stage_timeout_s has an unknown stage '{name}'; stages are default, {', '.join(STAGES)}")
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
            problems.append(f"run.stage_timeout_s.{name} = {value!r}: a bound must be a number of seconds > 0")
    return problems


def stage_bound(stage: str, bounds: Mapping[str, float], rows: int = 0, rows_per_bound: int = 100_000,
                epochs: int = 1) -> float:
    """Seconds allowed for `stage`: its own bound (else `default`), times max(1, rows / rows_per_bound) for the
    stages whose work grows with the data, and times the epochs for training (the train bound is per epoch)."""
    seconds = float(bounds.get(stage, bounds.get("default", DEFAULT_STAGE_TIMEOUT_S["default"])))
    if stage in ROW_SCALED and rows > rows_per_bound > 0:
        seconds *= rows / rows_per_bound
    if stage == "train":
        seconds *= max(1, epochs)
    return seconds


@dataclass(frozen=True)
class Expiry:
    """What passed its bound: the stage, the bound in seconds and where the stacks were written."""

    stage: str
    bound_s: float
    elapsed_s: float
    stacks_path: Path | None


def dump_stacks(path: Path) -> Path:
    """Every thread's Python stack into `path`: first faulthandler's (it writes without taking the GIL-holding thread's
    locks, but keeps only a thread's 100 innermost frames: a stage stuck in a deep import, 100 frames of importlib,
    hides the code that called it), then each thread's whole stack, outermost call first, with the thread's name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f"textcls watchdog: stacks of all threads at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        faulthandler.dump_traceback(fh, all_threads=True)
        fh.write("\nWhole stacks (outermost call first):\n")
        names = {t.ident: t.name for t in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            fh.write(f"\nThread {names.get(ident, '?')} ({ident:#x}):\n{''.join(traceback.format_stack(frame))}")
    return path


class Watchdog:
    """Watches one run's stage clock in a daemon thread; calls on_expire(Expiry) once when a bound passes."""

    def __init__(self, bound_for: Callable[[str, int], float], on_expire: Callable[[Expiry], None],
                 log_dir: Path | None = None, poll_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self._bound_for = bound_for
        self._on_expire = on_expire
        self._log_dir = log_dir
        self._poll_s = poll_s
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stage = "start"
        self.rows = 0
        self._started = clock()
        self._bound = bound_for("start", 0)
        self.expired: Expiry | None = None
        self._history: list[tuple[str, float]] = [("start", self._started)]

    def enter(self, stage: str, rows: int | None = None) -> None:
        """The run moved on to `stage` (rows: the data size it works on, when known; kept for later stages)."""
        with self._lock:
            if rows:
                self.rows = rows
            self.stage, self._started = stage, self._clock()
            self._history.append((stage, self._started))
            self._bound = self._bound_for(stage, self.rows)

    def stage_times(self) -> list[dict[str, float | str]]:
        """Seconds spent in each stage so far, in order (the last one up to now)."""
        with self._lock:
            marks = [*self._history, ("", self._clock())]
        return [{"stage": s, "seconds": round(t1 - t0, 3)} for (s, t0), (_, t1) in zip(marks[:-1], marks[1:])]

    def remaining_s(self) -> float:
        with self._lock:
            return self._bound - (self._clock() - self._started)

    def check(self) -> Expiry | None:
        """Expire when the stage's bound has passed (called by the thread; callable directly in tests)."""
        with self._lock:
            elapsed = self._clock() - self._started
            if self.expired is not None or elapsed <= self._bound:
                return None
            stage, bound = self.stage, self._bound
        stacks = dump_stacks(self._log_dir / f"watchdog-{stage}-stacks.txt") if self._log_dir else None
        self.expired = Expiry(stage, bound, elapsed, stacks)
        self._on_expire(self.expired)
        return self.expired

    def start(self) -> "Watchdog":
        self._thread = threading.Thread(target=self._loop, name="textcls-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._poll_s):
            if self.check() is not None:
                return
