"""Data stages on the built-in corpus: first run vs re-run with the data-stage cache, and with the cache off.

    python benchmarks/data_cache.py

Runs the analyze, clean, split and encode task bodies (`.fn`, no Prefect server) with the default config into
a fresh MLflow store and a fresh cache folder under a temporary directory, three times, each into its own
MLflow run: cache off (run.cache=false), first run (fills the cache), re-run (unchanged data and config),
after an unreported warm-up run on 2,000 rows (imports, jieba's dictionary, matplotlib).
Times are per stage, MLflow logging and file copies included; 'segmentation' is the jieba part of encode
(vocabulary and ids are built on every run and are not in the data-stage total).
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import tasks.encode  # noqa: E402
from tasks.data import analyze_task, clean_task, split_task  # noqa: E402
from tasks.tracking import client_for  # noqa: E402
from textcls_core.runtime.config import Config  # noqa: E402

STAGES = ("analyze", "clean", "split", "segmentation")


def run_once(cfg: Config, tmp: Path, name: str, cache_dir: str) -> dict[str, float]:
    client = client_for(cfg.tracking.uri)
    exp = client.get_experiment_by_name("bench") or client.get_experiment(client.create_experiment("bench"))
    run = client.create_run(exp.experiment_id, run_name=name)
    run_dir = tmp / "runs" / name
    run_dir.mkdir(parents=True)
    tracking = {"run_id": run.info.run_id, "tracking_uri": cfg.tracking.uri, "experiment_id": exp.experiment_id,
                "run_dir": str(run_dir), "cache_dir": cache_dir}
    times: dict[str, float] = {}
    segment = tasks.encode.segment_splits

    def timed_segment(*a, **kw):
        t0 = time.perf_counter()
        out = segment(*a, **kw)
        times["segmentation"] = time.perf_counter() - t0
        return out

    tasks.encode.segment_splits = timed_segment
    try:
        t0 = time.perf_counter()
        analysis = analyze_task.fn(cfg.data, cfg.extra_columns(), cfg.run.seed, tracking)
        times["analyze"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cleaning = clean_task.fn(analysis["raw_path"], cfg.clean, tracking)
        times["clean"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        split = split_task.fn(cleaning["clean_path"], cfg.split, cfg.run.seed, tracking)
        times["split"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        tasks.encode.encode_task.fn(split["paths"], cfg.tokenize, tracking)
        times["encode_total"] = time.perf_counter() - t0
    finally:
        tasks.encode.segment_splits = segment
    tags = client.get_run(run.info.run_id).data.tags
    times["cache"] = "/".join(tags[f"textcls.cache.{s}"] for s in ("analyze", "clean", "split", "segment"))  # type: ignore[assignment]
    return times


def main() -> None:
    import jieba
    import mlflow
    import pandas
    import prefect

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cfg = Config()
        cfg.tracking.uri = f"sqlite:///{tmp / 'mlflow.db'}"
        cfg.train.progress = False
        print(f"python {platform.python_version()}, pandas {pandas.__version__}, jieba {jieba.__version__}, "
              f"prefect {prefect.__version__}, mlflow {mlflow.__version__}; {os.cpu_count()} cores, {platform.machine()}; "
              f"tokenize.workers={cfg.tokenize.workers}")
        # warm-up (not reported): imports, jieba's dictionary and matplotlib load once per process
        warm = cfg.model_copy(deep=True)
        warm.data.max_rows = 2000
        run_once(warm, tmp, "warm-up", "")
        runs = {"cache off": run_once(cfg, tmp, "off", ""),
                "first run": run_once(cfg, tmp, "first", str(tmp / "cache")),
                "re-run": run_once(cfg, tmp, "rerun", str(tmp / "cache"))}
        for name, t in runs.items():
            total = sum(t[s] for s in STAGES)
            print(f"{name:9s}  " + "  ".join(f"{s} {t[s]:6.2f} s" for s in STAGES)
                  + f"  | data stages {total:6.2f} s  (encode task total {t['encode_total']:.2f} s; cache {t['cache']})")
        first, again = (sum(runs[k][s] for s in STAGES) for k in ("first run", "re-run"))
        print(f"re-run / first run = {again / first:.1%} ({again:.2f} s vs {first:.2f} s)")


if __name__ == "__main__":
    main()
