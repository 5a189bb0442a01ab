"""Soak test (#20): many short runs, concurrent pairs, then a served model under mixed good and bad requests.

    # the full soak of the issue (about an hour and a half on 2 cores)
    .venv/bin/python benchmarks/soak.py --runs 30 --pairs 10 --serve-minutes 20
    # a reduced one
    .venv/bin/python benchmarks/soak.py --runs 5 --pairs 2 --serve-minutes 3

Each run is a real `textcls run` process (conf/default.yaml, train.epochs=1 unless --set says otherwise) with
its own hard limit (--run-timeout): a run past it is killed and counted as a hang. Reported: completions,
failures by kind (exit code), the slowest stage over all runs (from <run>/logs/stage_times.json), machine
memory before and after; for serving: answers by HTTP status per request kind, the server's RSS at start and
end, and how long the server took to exit after SIGTERM. The goal: 0 hangs, 0 unexplained failures, flat memory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
EXIT_KINDS = {0: "ok", 2: "user error", 3: "stage timeout (watchdog)", 130: "interrupted", 143: "stopped (SIGTERM)"}


def _env() -> dict[str, str]:
    return {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "TQDM_DISABLE": "1",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}


def start_run(work: Path, index: int, sets: list[str]) -> tuple[subprocess.Popen, Path, float]:
    summary = work / f"summary-{index}.json"
    base = [f"run.output_dir={work / 'runs'}", f"run.cache_dir={work / 'cache'}", f"tracking.uri=sqlite:///{work / 'mlflow.db'}",
            "train.epochs=1", "train.progress=false", "registry.model_name=textcls-soak"]
    cmd = [sys.executable, "-m", "flows.cli", "run", "--config", "conf/default.yaml", "--summary", str(summary),
           *[a for s in [*base, *sets] for a in ("--set", s)]]
    log = open(work / f"run-{index}.log", "w")
    return subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT), summary, time.monotonic()


def finish_run(proc: subprocess.Popen, summary: Path, started: float, limit_s: float) -> dict:
    try:
        rc = proc.wait(timeout=max(1.0, limit_s - (time.monotonic() - started)))
        kind = EXIT_KINDS.get(rc, f"crash (exit {rc})")
    except subprocess.TimeoutExpired:
        # past the limit: stop it the way an operator would (SIGTERM: the run's guard marks it KILLED and writes
        # its stage times), and only if that does not end it within 30 s is it a hang
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
            rc, kind = proc.returncode, "over --run-timeout, stopped cleanly by SIGTERM"
        except subprocess.TimeoutExpired:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()
            rc, kind = None, "HANG (SIGTERM did not end it; killed)"
    out = {"rc": rc, "kind": kind, "seconds": round(time.monotonic() - started, 1)}
    run_dirs = sorted((summary.parent / "runs").glob("*/logs/stage_times.json"), key=lambda p: p.stat().st_mtime)
    if summary.is_file():
        s = json.loads(summary.read_text(encoding="utf-8"))
        out["accuracy"] = s["metrics"]["test_accuracy"]
        run_dirs = [Path(s["run_dir"]) / "logs" / "stage_times.json"]
    if run_dirs and run_dirs[-1].is_file():  # the newest run folder's stage times (this run's, when runs are sequential)
        out["stages"] = json.loads(run_dirs[-1].read_text(encoding="utf-8"))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: bytes, timeout: float = 120) -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        return -1 if "timed out" not in str(e) else -2


def _requests(max_texts: int) -> dict[str, bytes]:
    good = ["质量很好，非常满意", "物流太慢，包装破损", "客服耐心，解决问题快", "味道难吃"]
    return {
        "good (1-50 texts)": b"",  # built per request
        "malformed JSON": b'{"inputs": ["a", ',
        "empty inputs": b'{"inputs": []}',
        "non-string items": b'{"inputs": [null, 12, {"a": 1}]}',
        "too many texts": json.dumps({"inputs": good * (max_texts // len(good) + 1)}).encode(),
        "1,000,000-character text": json.dumps({"inputs": ["好" * 1_000_000]}, ensure_ascii=False).encode(),
    }


def serve_phase(work: Path, minutes: float, max_texts: int) -> dict:
    port = _free_port()
    env = {**_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # --env-manager local runs uvicorn from PATH
    cmd = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", "models:/textcls-soak@champion",
           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(cmd, cwd=work, env=env, stdout=open(work / "serve.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/invocations"
    deadline = time.monotonic() + 300
    while _post(url, b'{"inputs": ["ok"]}', timeout=5) != 200:
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not come up; see {work / 'serve.log'}")
        time.sleep(2)

    def tree_rss() -> float:
        procs = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        return sum(p.memory_info().rss for p in procs) / 2**20

    rss_start, kinds, answers = tree_rss(), _requests(max_texts), Counter()
    rng = random.Random(0)
    good = ["质量很好，非常满意", "物流太慢，包装破损", "客服耐心，解决问题快", "味道难吃", "不推荐"]
    end = time.monotonic() + minutes * 60
    slowest = 0.0
    while time.monotonic() < end:
        kind = rng.choices(list(kinds), weights=[70, 6, 6, 6, 6, 6])[0]
        body = kinds[kind] or json.dumps({"inputs": rng.choices(good, k=rng.randint(1, 50))}, ensure_ascii=False).encode()
        t0 = time.monotonic()
        answers[(kind, _post(url, body))] += 1
        slowest = max(slowest, time.monotonic() - t0)
    rss_end = tree_rss()
    t0 = time.monotonic()
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=60)
        stop_s = round(time.monotonic() - t0, 1)
    except subprocess.TimeoutExpired:
        server.kill()
        stop_s = None
    leftovers = [p.pid for p in psutil.process_iter(["cmdline"]) if f"--port {port}" in " ".join(p.info["cmdline"] or [])]
    return {"answers": {f"{k} -> {s}": n for (k, s), n in sorted(answers.items())}, "slowest_request_s": round(slowest, 1),
            "server_rss_mib_start": round(rss_start), "server_rss_mib_end": round(rss_end),
            "sigterm_to_exit_s": stop_s, "server_processes_left": leftovers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="sequential runs")
    parser.add_argument("--pairs", type=int, default=10, help="times two runs start together")
    parser.add_argument("--serve-minutes", type=float, default=20)
    parser.add_argument("--run-timeout", type=float, default=1800, help="a run past this is killed and counted as a hang")
    parser.add_argument("--set", action="append", default=[], help="extra config overrides for every run")
    parser.add_argument("--workdir", default="soak-work")
    args = parser.parse_args()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    mem_start = psutil.virtual_memory().available / 2**30
    results, index = [], 0
    for _ in range(args.runs):
        results.append(finish_run(*start_run(work, index, args.set), args.run_timeout))
        index += 1
        print(f"run {index}: {results[-1]['kind']} in {results[-1]['seconds']} s", flush=True)
    for _ in range(args.pairs):
        pair = [start_run(work, index + i, args.set) for i in range(2)]
        index += 2
        results += [finish_run(*p, args.run_timeout) for p in pair]
        print(f"pair: {results[-2]['kind']} ({results[-2]['seconds']} s), {results[-1]['kind']} ({results[-1]['seconds']} s)", flush=True)
    mem_end = psutil.virtual_memory().available / 2**30
    stage_max: dict[str, float] = {}
    for r in results:
        for st in r.get("stages", []):
            stage_max[st["stage"]] = max(stage_max.get(st["stage"], 0.0), st["seconds"])
    report = {"runs": len(results), "by_kind": dict(Counter(r["kind"] for r in results)),
              "run_seconds_min_median_max": sorted(r["seconds"] for r in results)[:: max(1, len(results) // 2)] if results else [],
              "slowest_stage": max(stage_max.items(), key=lambda kv: kv[1]) if stage_max else None,
              "stage_max_seconds": stage_max, "machine_available_gib_start_end": [round(mem_start, 1), round(mem_end, 1)]}
    if args.serve_minutes > 0 and any(r["kind"] == "ok" for r in results):
        from textcls_core.runtime.config import load_config

        report["serve"] = serve_phase(work, args.serve_minutes, load_config("conf/default.yaml").serve.max_texts)
    print(json.dumps(report, indent=1, ensure_ascii=False))
    (work / "soak_report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
