"""Never hang (#20): cores from affinity + cgroup quota, per-stage bounds, the watchdog and the clean stop.

The guard's exit is injected (exit_fn) so the test process survives what ends a real run with os._exit;
tests/test_clean_stop.py does it with real `textcls run` subprocesses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from tasks.runguard import RunGuard, mark_stage, parquet_rows
from textcls_core.runtime.config import RunConfig, build_config
from textcls_core.runtime.errors import ConfigError
from textcls_core.runtime.procs import available_cpus, resolve_cpus
from textcls_core.runtime.watchdog import Watchdog, check_stage_timeouts, stage_bound


def test_available_cpus_takes_the_cgroup_quota_under_the_affinity(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # docker --cpus=1.5
    assert available_cpus(0, tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(0, tmp_path) == affinity
    assert available_cpus(3, tmp_path) == 3  # run.cpus wins
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert available_cpus(0, v1) == affinity


def test_run_cpus_fills_only_the_zero_settings():
    cfg = resolve_cpus(build_config({}, ["run.cpus=3", "train.num_threads=1"]))
    assert (cfg.tokenize.workers, cfg.train.num_threads) == (3, 1)


def test_stage_bounds_scale_with_rows_and_epochs():
    bounds = {"default": 100.0, "train": 60.0}
    assert stage_bound("package", bounds, rows=10**7) == 100  # not a data-size stage
    assert stage_bound("clean", bounds, rows=50_000, rows_per_bound=100_000) == 100  # never below the bound
    assert stage_bound("clean", bounds, rows=300_000, rows_per_bound=100_000) == 300
    assert stage_bound("train", bounds, rows=200_000, rows_per_bound=100_000, epochs=3) == 360
    assert stage_bound("evaluate", {"train": 5.0}, rows=1) == 900  # no default given: the schema's


@pytest.mark.parametrize("value, needle", [
    ("{trian: 60}", "unknown stage 'trian'"), ("{train: 0}", "must be a number of seconds > 0"),
    ("{default: -5}", "must be a number of seconds > 0"), ("{train: soon}", "valid number"),
])
def test_bad_stage_timeouts_fail_before_any_work(value, needle):
    with pytest.raises(ConfigError, match="run.stage_timeout_s") as err:
        build_config({}, [f"run.stage_timeout_s={value}"])
    assert needle in str(err.value)
    assert check_stage_timeouts({"default": 1.0, "evaluate": 2}) == []


def _stuck_in_pool_join(release: threading.Event) -> None:
    release.wait()


def test_watchdog_dumps_every_thread_and_expires_once(tmp_path):
    now = [0.0]
    fired = []
    release = threading.Event()
    stuck = threading.Thread(target=_stuck_in_pool_join, args=(release,), name="stuck-worker", daemon=True)
    stuck.start()
    try:
        dog = Watchdog(lambda stage, rows: {"start": 5.0, "evaluate": 10.0 + rows}[stage], fired.append,
                       log_dir=tmp_path, clock=lambda: now[0])
        dog.enter("evaluate", rows=2)
        now[0] = 12.0
        assert dog.check() is None  # 12 s of a 12 s bound: not yet
        now[0] = 12.5
        expiry = dog.check()
        assert expiry is not None and (expiry.stage, expiry.bound_s) == ("evaluate", 12.0)
        assert dog.check() is None and fired == [expiry]  # once
        assert dog.stage_times() == [{"stage": "start", "seconds": 0.0}, {"stage": "evaluate", "seconds": 12.5}]
        stacks = expiry.stacks_path.read_text()
        assert "_stuck_in_pool_join" in stacks and "test_watchdog_dumps_every_thread" in stacks
    finally:
        release.set()


def _run(tracking_uri: str, tmp_path) -> dict:
    client = MlflowClient(tracking_uri)
    exp = client.create_experiment("guard")
    run_id = client.create_run(exp).info.run_id
    return {"run_id": run_id, "tracking_uri": tracking_uri, "run_dir": str(tmp_path / "run"), "prefect_flow_run_id": ""}


def test_stack_dump_keeps_the_caller_of_a_deep_import(tmp_path):
    """faulthandler keeps a thread's 100 innermost frames: a stage stuck 150 frames deep (an import chain) would hide
    the stage's own function. The dump also writes every whole stack, so the outer caller is named."""
    from textcls_core.runtime.watchdog import dump_stacks

    release, ready = threading.Event(), threading.Event()

    def deep(n: int) -> None:
        if n:
            deep(n - 1)
        else:
            ready.set()
            release.wait(30)

    def stage_function_at_the_bottom() -> None:
        deep(150)

    t = threading.Thread(target=stage_function_at_the_bottom, name="deep-stage")
    t.start()
    try:
        assert ready.wait(10)
        text = dump_stacks(tmp_path / "stacks.txt").read_text(encoding="utf-8")
    finally:
        release.set()
        t.join(10)
    whole = text[text.index("Whole stacks"):]
    assert "stage_function_at_the_bottom" in whole and "Thread deep-stage" in whole
    assert "stage_function_at_the_bottom" not in text[: text.index("Whole stacks")]  # faulthandler's part cut it off


def test_a_passed_bound_fails_the_run_kills_children_and_exits(tmp_path, tracking_uri):
    tracking = _run(tracking_uri, tmp_path)
    exits = []
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    guard = RunGuard(tracking, RunConfig(stage_timeout_s={"default": 60, "evaluate": 0.3}), exit_fn=exits.append,
                     handle_signals=False, poll_s=0.05)
    try:
        mark_stage("evaluate", parquet_rows("missing.parquet"))
        deadline = time.monotonic() + 60
        while not exits and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        guard.close()
        if child.poll() is None:
            child.kill()
    assert exits == [3]
    child.wait(timeout=10)  # gone (the guard killed and reaped it), long before its 120 s sleep
    run = MlflowClient(tracking_uri).get_run(tracking["run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["textcls.failure_stage"] == "evaluate"
    reason = run.data.tags["textcls.end_reason"]
    assert "stage 'evaluate' passed its time bound" in reason and "run.stage_timeout_s" in reason
    assert "watchdog-evaluate-stacks.txt" in reason
    assert (tmp_path / "run" / "logs" / "watchdog-evaluate-stacks.txt").stat().st_size > 0


def test_sigterm_marks_the_run_killed_with_the_stage_and_resume_command(tmp_path, tracking_uri, capfd):
    tracking = _run(tracking_uri, tmp_path)
    exits = []
    before = signal.getsignal(signal.SIGTERM)
    guard = RunGuard(tracking, RunConfig(), exit_fn=exits.append)
    try:
        mark_stage("train")
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 30
        while not exits and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        guard.close()
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    assert exits == [128 + signal.SIGTERM]
    run = MlflowClient(tracking_uri).get_run(tracking["run_id"])
    assert run.info.status == "KILLED"
    assert run.data.tags["textcls.stopped_stage"] == "train"
    err = capfd.readouterr().err
    assert f"resume with: textcls run --resume {tmp_path / 'run'}" in err and "Traceback" not in err


def test_mark_stage_without_a_guard_does_nothing():
    mark_stage("train", 10)  # a task called through .fn


def test_the_flow_thread_waits_while_the_guard_ends_the_run(tmp_path, tracking_uri):
    """A run whose last stages finish while the guard is ending it must not go on to mark itself FINISHED: the flow's
    thread waits in close()/mark_stage until the guard has exited (here: until exit_fn returned)."""
    tracking = _run(tracking_uri, tmp_path)
    exits = []

    def slow_exit(code: int) -> None:
        time.sleep(1.0)
        exits.append(code)

    guard = RunGuard(tracking, RunConfig(stage_timeout_s={"default": 60, "evaluate": 0.2}), exit_fn=slow_exit,
                     handle_signals=False, poll_s=0.05)
    mark_stage("evaluate")
    deadline = time.monotonic() + 30
    while not guard._ending.locked() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert guard._ending.locked() and not exits  # the guard is ending the run, not done yet
    guard.close()  # the flow's thread reaching its end: it must wait for the guard
    assert exits == [3]
    assert MlflowClient(tracking_uri).get_run(tracking["run_id"]).info.status == "FAILED"
