"""Concurrent runs sharing a machine's cores (#19): combined training throughput against one run alone.

Scenarios, one after the other on the same machine, each `--rounds` times in alternating order:
- alone: one `textcls run` with every core (run.cpus=0);
- N together (`--together 2 3`): N identical runs started at the same instant, each with run.cpus = cores // N
  (at least 1), as the README recommends for splitting a machine.
Every run is the default config with `train.epochs=1` (as in the issue's measurement), its own MLflow store, output
folder and no data cache, so runs share nothing but the CPU; `model.candidates=[model]` and `evaluate.baseline=false`
so no tfidf_lr process runs beside training in any scenario (training throughput is what is compared), and the
stages after training are skipped where they can be (stress, latency, champion).
Throughput: the `samples/s` of the epoch line each run prints (train texts / wall seconds of the epoch's training
loop, textcls_core/training/loop.py). Combined = the sum over the runs that trained together; ratio = combined / alone.

Run on a quiet machine:  .venv/bin/python benchmarks/concurrent_runs.py --together 2 3 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from textcls_core.runtime.procs import available_cpus

EPOCH = re.compile(r"epoch 1/1: .* (\d+) samples/s")
SETTINGS = ["train.epochs=1", "run.cache=false", "model.candidates=[model]", "evaluate.baseline=false",
            "registry.baseline_check=false", "stress.enabled=false", "evaluate.latency_samples=0",
            "evaluate.label_error_folds=0", "evaluate.compare_champion=false"]


def _start(workdir: Path, cpus: int) -> subprocess.Popen:
    workdir.mkdir(parents=True)
    args = [str(Path(sys.executable).parent / "textcls"), "run", "--config", str(Path("conf/default.yaml").resolve())]
    for s in SETTINGS + [f"run.cpus={cpus}", f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}", f"run.output_dir={workdir / 'runs'}"]:
        args += ["--set", s]
    env = os.environ | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_HOME": str(workdir / "prefect"), "TQDM_DISABLE": "1"}
    return subprocess.Popen(args, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _scenario(root: Path, runs: int, cpus: int) -> list[float]:
    procs = [_start(root / f"run{i}-{time.monotonic_ns()}", cpus) for i in range(runs)]
    rates = []
    for p in procs:
        out, _ = p.communicate(timeout=3600)
        found = EPOCH.findall(out)
        if p.returncode != 0 or not found:
            raise SystemExit(f"a run failed (exit {p.returncode}):\n{out[-3000:]}")
        rates.append(float(found[-1]))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--together", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cores = available_cpus()
    root = Path(tempfile.mkdtemp(prefix="textcls-concurrent-"))
    results: dict[str, list[float]] = {"alone": []}
    detail: dict[str, list[list[float]]] = {"alone": []}
    try:
        for r in range(args.rounds):
            order = ["alone", *map(str, args.together)]
            for name in (order if r % 2 == 0 else order[::-1]):
                n = 1 if name == "alone" else int(name)
                rates = _scenario(root, n, 0 if n == 1 else max(1, cores // n))
                results.setdefault(name, []).append(sum(rates))
                detail.setdefault(name, []).append(rates)
                print(f"round {r + 1} {name:>5}: " + " + ".join(f"{x:.0f}" for x in rates) + f" = {sum(rates):.0f} samples/s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    alone = statistics.median(results["alone"])
    print(f"\n{cores} cores; median combined training throughput over {args.rounds} rounds:")
    print(f"  alone (run.cpus={cores}): {alone:.0f} samples/s")
    for n in args.together:
        combined = statistics.median(results[str(n)])
        print(f"  {n} together (run.cpus={max(1, cores // n)} each): {combined:.0f} samples/s = {combined / alone:.2f}x alone")
    print(f"{platform.machine()}, python {platform.python_version()}")


if __name__ == "__main__":
    main()
