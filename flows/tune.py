"""The `tune-text-classifier` flow: analyze -> clean -> split once, then Optuna trials (tune.parallel at a time, as
Prefect tasks, each a nested MLflow run), then the best config through the normal `train-text-classifier` flow."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.futures import as_completed

from flows.train import train_text_classifier
from tasks.data import analyze_task, clean_task, split_task
from tasks.preflight import preflight_task
from tasks.runguard import guard_run
from tasks.tracking import client_for, finish_tracking, start_tracking, tune_flow_run_name
from tasks.tune import ask_trial, best_config, open_study_task, sampling_study, study_trials, tune_report_task, tune_trial_task
from textcls_core.runtime.config import Config
from textcls_core.runtime.procs import available_cpus, limit_thread_pools, resolve_cpus


@flow(name="tune-text-classifier", validate_parameters=True, flow_run_name=tune_flow_run_name)
def tune_text_classifier(config: Config = Config(), summary_path: str | None = None) -> dict[str, Any]:
    """Search tune.space with Optuna (TPE, median pruning on per-epoch validation), then train, evaluate and register
    the best config. Run the same command again to resume an interrupted study; point several workers at one
    tune.storage to share it."""
    started = time.perf_counter()
    preflight_task(config)  # a wrong path or column fails here, before an MLflow run or any work
    tracking = start_tracking(config)
    guard = guard_run(tracking, config.run, config.train.epochs,
                      resume_hint="the same `textcls tune` command (the study resumes from its database)")
    try:
        cpus = available_cpus(config.run.cpus)
        data_cfg = resolve_cpus(config)  # the data stages use every core the run may use
        limit_thread_pools(cpus)
        analysis = analyze_task(data_cfg.data, data_cfg.extra_columns(), data_cfg.run.seed, tracking, max_len=data_cfg.tokenize.max_len)
        cleaning = clean_task(analysis["raw_path"], data_cfg.clean, tracking, max_len=data_cfg.tokenize.max_len)
        split = split_task(cleaning["clean_path"], data_cfg.split, data_cfg.run.seed, tracking)
        study = open_study_task(config, tracking)
        # each trial gets its share of the cores (torch threads, jieba workers follow run.cpus)
        trial_base = config.model_copy(update={"run": config.run.model_copy(update={"cpus": max(1, cpus // config.tune.parallel)}),
                                               "tune": config.tune.model_copy(update={"parallel": 1})})
        sampler = sampling_study(study, config)
        in_flight: list[Any] = []
        results: list[dict[str, Any]] = []
        deadline = time.monotonic() + config.tune.timeout_s if config.tune.timeout_s else None
        exhausted = False
        while True:
            while not exhausted and len(in_flight) < config.tune.parallel and (deadline is None or time.monotonic() < deadline):
                drawn = ask_trial(sampler, trial_base)
                if drawn is None:
                    exhausted = True
                    break
                number, trial_id, point = drawn
                in_flight.append(tune_trial_task.submit(study, number, trial_id, point, trial_base, split["paths"], tracking))
            if not in_flight:
                break
            done = next(iter(as_completed(in_flight)))
            in_flight.remove(done)
            results.append(done.result())
        report = tune_report_task(study, config, tracking, started)
    except BaseException:
        finish_tracking(tracking, "FAILED")
        raise
    finally:
        guard.close()
    finish_tracking(tracking, "FINISHED")
    summary: dict[str, Any] = {"tune": report, "mlflow_run_id": tracking["run_id"], "run_dir": tracking["run_dir"],
                               "mlflow_tracking_uri": tracking["tracking_uri"], "trials_this_worker": len(results)}
    if config.tune.final_run:
        best = best_config(config, _best_trial(study, config, report["best_trial"]))
        final = train_text_classifier(config=best, summary_path=None)
        client_for(tracking["tracking_uri"]).set_tag(tracking["run_id"], "textcls.tune.final_run_id", final["mlflow_run_id"])
        client_for(tracking["tracking_uri"]).set_tag(final["mlflow_run_id"], "textcls.tune.run_id", tracking["run_id"])
        summary["final"] = final
    if summary_path:
        Path(summary_path).parent.mkdir(parents=True, exist_ok=True)
        Path(summary_path).write_text(json.dumps(summary, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return summary


def _best_trial(study: dict[str, Any], config: Config, number: int) -> Any:
    return next(t for t in study_trials(study, config) if t.number == number)
