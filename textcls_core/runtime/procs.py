"""Cores and child processes: how many workers a run may start, how they start, and how to stop them.

Why a start method matters: the flow process runs threads (Prefect's event loop and log shippers, torch's
pools). `fork` copies a threaded process with whatever locks other threads held at that instant; a child that
needs such a lock blocks for ever (a forked cleanlab worker once hung an evaluation for 9 minutes). Every pool
here therefore starts its workers from a fork server or by spawn, or runs in-process.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the engine imports this module and must not need pydantic
    from textcls_core.runtime.config import Config

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_quota_cpus(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs granted by a cgroup quota (v2 cpu.max, else v1 cfs quota/period); None when unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def available_cpus(requested: int = 0, cgroup_root: Path = CGROUP_ROOT) -> int:
    """The cores this process may use: run.cpus when set (> 0), else the CPU affinity mask capped by the
    cgroup CPU quota (a container with --cpus=2 on a 64-core host gets 2, not 64); at least 1."""
    if requested > 0:
        return requested
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota_cpus(cgroup_root)
    if quota is not None:
        n = min(n, max(1, int(quota)))  # a 1.5-CPU quota runs 1 busy worker well, 2 would be throttled
    return max(1, n)


def resolve_cpus(cfg: "Config") -> "Config":
    """The run's config with run.cpus applied where 0 means "all": tokenize.workers and train.num_threads
    become available_cpus(run.cpus) (an explicit value stays), so jieba workers and torch threads fit the
    cores this run may use, a container's cgroup quota included. The flow also sizes the BLAS/OpenMP pools
    (limit_thread_pools) and starts the side process beside training only with 2 cores or more."""
    cpus = available_cpus(cfg.run.cpus)
    return cfg.model_copy(update={
        "tokenize": cfg.tokenize.model_copy(update={"workers": cfg.tokenize.workers or cpus}),
        "train": cfg.train.model_copy(update={"num_threads": cfg.train.num_threads or cpus})})


def limit_thread_pools(cpus: int) -> None:
    """Size this process's BLAS and OpenMP pools (numpy, scipy and scikit-learn's solvers) to the run's cores.
    Without it each library starts one thread per machine core, and two runs sharing a machine each run twice
    the threads there are cores for. torch's own pool is sized by train.num_threads (configure_torch)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=max(1, cpus))


def safe_mp_context(preload: list[str] | None = None) -> multiprocessing.context.BaseContext:
    """A start method that is safe in a process with threads: a fork server (a clean single-threaded
    process that forks the workers, with `preload` modules imported once), else spawn (Windows, macOS)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    if preload:
        ctx.set_forkserver_preload(preload)
    _forget_reaped_forkserver()
    return ctx


_WARM: dict[str, tuple[str, ...]] = {}


def start_fork_server(preload: list[str]) -> bool:
    """Start the fork server now, in the background, with `preload` imported in it: the pools and side processes a
    run starts later (jieba workers, the tfidf_lr side process, the stress workers) then fork from a process that has
    already imported their modules, instead of the first of them waiting seconds for the server's imports. Returns at
    once (the server imports on its own core while this process goes on); False where there is no fork server."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    _forget_reaped_forkserver()
    server = forkserver._forkserver
    if server._forkserver_pid is None:  # a running server keeps the modules it started with
        ctx.set_forkserver_preload(preload)
        forkserver.ensure_running()
        _WARM["pid"] = (str(server._forkserver_pid), *preload)
    return True


def fork_server_preloaded(module: str) -> bool:
    """True when this process's fork server is running and was started by start_fork_server with `module`."""
    warm = _WARM.get("pid")
    if not warm:
        return False
    from multiprocessing import forkserver

    pid = forkserver._forkserver._forkserver_pid
    return pid is not None and warm[0] == str(pid) and module in warm[1:]


def _forget_reaped_forkserver() -> None:
    """multiprocessing keeps the fork server's pid and re-checks it with waitpid before each new worker. When the
    server was killed and reaped by someone else (kill_child_processes waits on it), that check raises
    ChildProcessError and no pool can start again in this process; forgetting it lets the next pool start a new one."""
    from multiprocessing import forkserver

    server = forkserver._forkserver
    with server._lock:
        if server._forkserver_pid is None:
            return
        try:
            if os.waitpid(server._forkserver_pid, os.WNOHANG)[0] == 0:
                return  # alive
        except ChildProcessError:
            pass  # reaped elsewhere
        try:
            os.close(server._forkserver_alive_fd)
        except (OSError, TypeError):
            pass
        server._forkserver_pid = server._forkserver_alive_fd = server._forkserver_address = None


def kill_child_processes(pid: int | None = None, timeout_s: float = 3.0) -> list[int]:
    """SIGTERM every descendant of `pid` (default: this process), SIGKILL those still alive after
    timeout_s; returns the pids found. A hung pool worker or torchrun must not outlive its run."""
    import psutil  # here, not at the top: the training engine imports this module on machines without psutil

    try:
        children = psutil.Process(pid or os.getpid()).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(children, timeout=timeout_s)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    if children and "forkserver" in multiprocessing.get_all_start_methods():
        _forget_reaped_forkserver()  # the fork server was among them: the next pool in this process starts a new one
    return [c.pid for c in children]
