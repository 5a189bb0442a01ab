"""Tune stage: an Optuna study over `tune.space`, one nested MLflow run per trial, the best config written out.

The study lives in its own database (`tune.storage`, default `optuna.db` beside a local MLflow store): Optuna and
MLflow both keep an `alembic_version` table, so never the MLflow store itself. With a heartbeat on the storage, a
trial whose process died is failed after the grace period, so an interrupted search resumes where it stopped and
several workers (on several machines, with a shared PostgreSQL URL) can draw trials from one study.

Trials score the validation split only (the network's best epoch on train.select_metric, or tfidf_lr's validation
score); the test split is read once, by the final run's report.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from mlflow.entities import Param as MlflowParam
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.candidates import fit_tfidf_in_process
from tasks.encode import encode_task
from tasks.encode_pretrained import encode_pretrained_task
from tasks.results import RunContext
from tasks.runguard import mark_stage
from tasks.tracking import client_for, get_run_logger, log_artifacts, log_metrics_now
from tasks.train import train_task
from textcls_core.dataset.split import class_labels
from textcls_core.runtime.config import Config
from textcls_core.runtime.config_reference import render_yaml
from textcls_core.runtime.errors import ConfigError, TextclsError
from textcls_core.runtime.procs import resolve_cpus
from textcls_core.runtime.redact import redact_uri, redact_values
from textcls_core.training.candidates import score
from textcls_core.training.search_space import apply, default_point, parse_space, suggest
from textcls_core.training.side_work import TfidfJob

HEARTBEAT_S = 30  # a live trial writes a heartbeat this often
GRACE_S = 180  # a RUNNING trial without a heartbeat for this long belongs to a dead process: it is failed
DEFAULT_MARK = "textcls.default_config"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)

optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from our own log instead
# the heartbeat (Optuna's way to fail trials of dead workers) is marked experimental and warns outside Study.optimize;
# the ask/tell loop here records the heartbeats itself
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def resolve_storage(storage: str, tracking_uri: str) -> str:
    """tune.storage, or sqlite optuna.db beside a local MLflow store (else in the working directory)."""
    if storage:
        url = storage
    elif tracking_uri.startswith("sqlite:///"):
        url = f"sqlite:///{Path(tracking_uri.removeprefix('sqlite:///')).resolve().parent / 'optuna.db'}"
    else:
        url = f"sqlite:///{(Path.cwd() / 'optuna.db').resolve()}"
    if url == tracking_uri:
        raise ConfigError("tune.storage is the MLflow store: Optuna and MLflow both keep an alembic_version table there. "
                          "Give the study its own database, e.g. --set tune.storage=sqlite:///optuna.db")
    return url


def study_name_for(cfg: Config) -> str:
    """tune.study_name, or one derived from what decides the trials' scores: the same command resumes its study,
    other data or another space starts a new one."""
    if cfg.tune.study_name:
        return cfg.tune.study_name
    keyed = {"data": cfg.data.model_dump(), "clean": cfg.clean.model_dump(), "split": cfg.split.model_dump(),
             "seed": cfg.run.seed, "tokenize": cfg.tokenize.model_dump(exclude={"workers"}),
             "model": cfg.model.model_dump(), "select_metric": cfg.train.select_metric, "space": cfg.tune.space,
             "train": cfg.train.model_dump(exclude={"num_threads", "progress", "retries", "resume", "checkpoint_every"})}
    digest = hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{cfg.registry.model_name}-{cfg.model.name}-{digest}"


def _storage(url: str) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                      engine_kwargs={"pool_pre_ping": True})


def load_study(url: str, name: str, cfg: Config, create: bool = False, seed_offset: int = 0) -> optuna.Study:
    """The study with our sampler and pruner. seed_offset: trials already in the study, so a resumed or second
    worker does not replay the first worker's random start points (a fresh study is reproducible from run.seed)."""
    sampler = optuna.samplers.TPESampler(seed=cfg.run.seed + seed_offset, n_startup_trials=cfg.tune.startup_trials)
    pruner: optuna.pruners.BasePruner = (optuna.pruners.MedianPruner(n_startup_trials=cfg.tune.startup_trials, n_warmup_steps=0)
                                         if cfg.tune.pruning else optuna.pruners.NopPruner())
    if create:
        return optuna.create_study(storage=_storage(url), study_name=name, direction="maximize", sampler=sampler,
                                   pruner=pruner, load_if_exists=True)
    return optuna.load_study(storage=_storage(url), study_name=name, sampler=sampler, pruner=pruner)


@task(name="open-study", cache_policy=NO_CACHE)
def open_study_task(cfg: Config, tracking: RunContext) -> dict[str, Any]:
    """Create or resume the study; enqueue the config's own values as the first trial of a new study."""
    url = resolve_storage(cfg.tune.storage, tracking["tracking_uri"])
    name = study_name_for(cfg)
    params, problems = parse_space(cfg.tune.space, cfg)
    if problems:  # the schema checked it already; a study must never start on a space it would refuse
        raise ConfigError("; ".join(problems))
    if not params:
        raise ConfigError("tune.space is empty: name at least one key to search, e.g. --set 'tune.space={train.lr: {low: 0.0005, high: 0.01, log: true}}'")
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    study = load_study(url, name, cfg, create=True)
    stale = [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
    optuna.storages.fail_stale_trials(study)
    existing = study.get_trials(deepcopy=False)
    if not existing:  # the config's own values first: the study then measures the starting config beside the search
        point = default_point(cfg, params)
        study.enqueue_trial(point, user_attrs={DEFAULT_MARK: len(point) == len(params)})
    finished = len(existing)
    client = client_for(tracking["tracking_uri"])
    client.set_tag(tracking["run_id"], "textcls.kind", "tune")
    client.set_tag(tracking["run_id"], "textcls.tune.study", name)
    client.set_tag(tracking["run_id"], "textcls.tune.storage", redact_uri(url))
    get_run_logger().info("tune: study '%s' in %s: %s; %d trial(s) wanted, %d at a time, %d searched key(s)%s", name, redact_uri(url),
                          f"resumed with {finished} trial(s) in it" if existing else
                          "new, first trial = the config's own values" if len(default_point(cfg, params)) == len(params) else
                          "new, first trial = the config's values where they lie inside the space",
                          cfg.tune.trials, cfg.tune.parallel, len(params),
                          f"; {len(stale)} trial(s) left RUNNING by a dead worker will be failed after {GRACE_S} s" if stale else "")
    return {"storage": url, "study_name": name, "resumed": bool(existing), "finished_before": finished}  # trials of any state


def sampling_study(study_info: dict[str, Any], cfg: Config) -> optuna.Study:
    """The study this worker draws trials from, for the whole search (one sampler: its random state moves on)."""
    return load_study(study_info["storage"], study_info["study_name"], cfg, seed_offset=study_info["finished_before"])


def ask_trial(study: optuna.Study, cfg: Config) -> tuple[int, int, dict[str, Any]] | None:
    """Draw the next trial's point (None when the study already has tune.trials trials, this worker's included)."""
    optuna.storages.fail_stale_trials(study)
    counted = [t for t in study.get_trials(deepcopy=False) if t.state in (*FINISHED, optuna.trial.TrialState.RUNNING)]
    if len(counted) >= cfg.tune.trials:
        return None
    params, _ = parse_space(cfg.tune.space, cfg)
    trial = study.ask()
    study._storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]  # from now on it counts as alive
    return trial.number, trial._trial_id, suggest(trial, params)


def study_trials(study_info: dict[str, Any], cfg: Config) -> list[optuna.trial.FrozenTrial]:
    return load_study(study_info["storage"], study_info["study_name"], cfg).get_trials()


class _Heartbeat:
    """Records the trial's heartbeat every HEARTBEAT_S seconds while it trains."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_id: int):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(storage, trial_id), daemon=True, name=f"optuna-heartbeat-{trial_id}")
        self._thread.start()

    def _beat(self, storage: optuna.storages.RDBStorage, trial_id: int) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # a storage hiccup must not kill the trial; the next beat retries
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _child_tracking(parent: dict[str, Any], run_id: str, number: int) -> dict[str, Any]:
    return {**parent, "run_id": run_id, "run_dir": str(Path(parent["run_dir"]) / "trials" / f"trial-{number:03d}")}


def _score_tfidf(cfg: Config, split_paths: dict[str, str], tracking: RunContext) -> float:
    frames = {name: pd.read_parquet(split_paths[name]) for name in ("train", "val")}
    labels = class_labels(frames["train"])
    index = {name: i for i, name in enumerate(labels)}
    y = {name: frames[name]["label"].map(index).to_numpy() for name in ("train", "val")}
    job = TfidfJob(split_paths, labels, cfg.model, cfg.tokenize, cfg.clean, cfg.train.select_metric,
                   str(Path(tracking["run_dir"]) / "candidates" / "side"), cache_dir=tracking.get("cache_dir") or "", scored=("val",))
    probs = fit_tfidf_in_process(job, tracking, frames).probs
    return float(score(y["val"], probs["val"], labels)[cfg.train.select_metric.removeprefix("val_")])


@task(name="tune-trial", cache_policy=NO_CACHE)
def tune_trial_task(study_info: dict[str, Any], number: int, trial_id: int, point: dict[str, Any], base: Config,
                    split_paths: dict[str, str], tracking: RunContext) -> dict[str, Any]:
    """Train one point of the space, report each epoch's validation score to Optuna (which may prune it), tell the
    study the outcome, and record it as a nested MLflow run under the tune run."""
    log = get_run_logger()
    study = load_study(study_info["storage"], study_info["study_name"], base)
    trial = optuna.trial.Trial(study, trial_id)
    beat = _Heartbeat(study._storage, trial_id)  # type: ignore[attr-defined]
    client = client_for(tracking["tracking_uri"])
    started = time.perf_counter()
    out: dict[str, Any] = {"number": number, "params": point, "value": None, "error": "", "epochs": 0}
    run_id = ""
    try:
        try:
            cfg = resolve_cpus(apply(base, point))
        except ConfigError as exc:  # a combination the schema refuses (e.g. a kernel wider than tokenize.max_len)
            raise TextclsError(" ".join(str(exc).splitlines()[1:2]).strip(" -") or str(exc)) from None
        run = client.create_run(tracking["experiment_id"], run_name=f"{tracking.get('run_name') or 'tune'}-trial-{number:03d}", tags={
            "mlflow.parentRunId": tracking["run_id"], "textcls.kind": "tune-trial", "textcls.tune.study": study_info["study_name"],
            "textcls.tune.trial": str(number), "prefect.flow_run_id": tracking.get("prefect_flow_run_id", "")})
        run_id = out["mlflow_run_id"] = run.info.run_id
        child = _child_tracking(tracking, run_id, number)
        Path(child["run_dir"]).mkdir(parents=True, exist_ok=True)
        params = [MlflowParam(k, str(redact_values(v))[:6000]) for k, v in cfg.flat().items()]
        for i in range(0, len(params), 100):
            client.log_batch(run_id, params=params[i : i + 100])
        if cfg.model.name == "tfidf_lr":
            mark_stage("candidates")
            value = _score_tfidf(cfg, split_paths, child)
        else:
            def report(epoch: int, metrics: dict[str, float]) -> None:
                out["epochs"] = epoch
                trial.report(float(metrics[cfg.train.select_metric]), epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"epoch {epoch}: {cfg.train.select_metric} {metrics[cfg.train.select_metric]:.4f} "
                                             "below the median of earlier trials at this epoch")

            if cfg.model.name == "transformer":
                encoded = encode_pretrained_task.fn(split_paths, cfg.tokenize, cfg.model, child, cfg.clean)
            else:
                encoded = encode_task.fn(split_paths, cfg.tokenize, child, cfg.clean)
            trained = train_task.fn(encoded, cfg.model, cfg.train, cfg.tokenize, cfg.clean, cfg.run.seed, child, epoch_hook=report)
            value, out["epochs"] = float(trained["best_score"]), trained["epochs_run"]
        study.tell(trial, value)
        out.update(state="COMPLETE", value=value)
    except optuna.TrialPruned as exc:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        out.update(state="PRUNED", error=str(exc))
    except Exception as exc:  # one failing trial is recorded and the search goes on
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        out.update(state="FAIL", error=f"{type(exc).__name__}: {exc}" if not isinstance(exc, TextclsError) else str(exc))
    finally:
        beat.stop()
    out["seconds"] = round(time.perf_counter() - started, 1)
    if run_id:
        metrics = {"tune_trial_seconds": out["seconds"], "tune_trial_epochs": out["epochs"]}
        if out["value"] is not None:
            metrics[f"tune_{base.train.select_metric}"] = out["value"]
        log_metrics_now({**tracking, "run_id": run_id}, metrics)
        client.set_tag(run_id, "textcls.tune.state", out["state"])
        if out["error"]:
            client.set_tag(run_id, "textcls.tune.note", out["error"][:5000])
        client.set_terminated(run_id, "FAILED" if out["state"] == "FAIL" else "FINISHED")
        trial_dir = Path(tracking["run_dir"]) / "trials" / f"trial-{number:03d}"
        for heavy in ("model", "encoded", "checkpoints", "encoder", "candidates"):  # the final run retrains the best point
            shutil.rmtree(trial_dir / heavy, ignore_errors=True)
    shown = ", ".join(f"{k}={_short(v)}" for k, v in point.items())
    result = f"{base.train.select_metric} {out['value']:.4f}" if out["value"] is not None else out["error"]
    log.info("tune: trial %d %s in %.0f s (%s): %s", number, out["state"], out["seconds"], shown, result)
    return out


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def best_config(base: Config, best: optuna.trial.FrozenTrial) -> Config:
    """The base config with the best trial's values (categorical values stored as JSON decoded)."""
    params, _ = parse_space(base.tune.space, base)
    point = {k: (json.loads(v) if params[k].encoded else v) for k, v in best.params.items() if k in params}
    return apply(base, point)


@task(name="tune-report", cache_policy=NO_CACHE)
def tune_report_task(study_info: dict[str, Any], base: Config, tracking: RunContext, started_at: float) -> dict[str, Any]:
    """trials.csv, best_config.yaml and the tune run's metrics: best and default-config validation scores."""
    log = get_run_logger()
    trials = study_trials(study_info, base)
    run_dir = Path(tracking["run_dir"])
    (run_dir / "reports").mkdir(parents=True, exist_ok=True)
    rows = [{"number": t.number, "state": t.state.name, "value": t.value, "default_config": bool(t.user_attrs.get(DEFAULT_MARK)),
             "seconds": (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None,
             "epochs": max(t.intermediate_values) if t.intermediate_values else None,
             **{f"param {k}": v for k, v in t.params.items()}} for t in trials]
    table = pd.DataFrame(rows)
    trials_path = run_dir / "reports" / "tune_trials.csv"
    table.to_csv(trials_path, index=False, encoding="utf-8")
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
        raise TextclsError(f"tune: no trial of study '{study_info['study_name']}' completed ({len(trials)} trial(s): "
                           f"{sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)} pruned, {len(failed)} failed); "
                           f"see {trials_path} and the trial runs in MLflow. Widen tune.space or raise tune.trials.")
    best = max(complete, key=lambda t: float(t.value))  # ties: the earlier trial (max keeps the first)
    default = next((t for t in trials if t.user_attrs.get(DEFAULT_MARK)), None)  # None when a config value lies outside the space
    cfg = best_config(base, best)
    header = (f"# textcls config found by `textcls tune` (study '{study_info['study_name']}', trial {best.number} of {len(trials)}):\n"
              f"# validation {base.train.select_metric} {best.value:.4f}"
              + (f" vs {default.value:.4f} for the starting config (trial {default.number})" if default and default.value is not None else "")
              + f".\n# Launch:   textcls run --config {run_dir / 'best_config.yaml'}\n"
              f"# Written {datetime.now():%Y-%m-%d %H:%M}; every key is listed. Schema: textcls_core/runtime/config.py")
    body = yaml.safe_dump(redact_values(cfg.model_dump(mode="json")), allow_unicode=True, sort_keys=False)
    best_path = run_dir / "best_config.yaml"
    best_path.write_text(render_yaml(header + "\n\n" + body), encoding="utf-8")
    counts = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
    metric = base.train.select_metric
    metrics = {f"tune_best_{metric}": float(best.value), "tune_best_trial": best.number, "tune_trials": len(trials),
               "tune_trials_complete": counts["COMPLETE"], "tune_trials_pruned": counts["PRUNED"], "tune_trials_failed": counts["FAIL"],
               "tune_seconds": round(time.perf_counter() - started_at, 1)}
    if default is not None and default.value is not None:
        metrics[f"tune_default_{metric}"] = float(default.value)
    log_metrics_now(tracking, metrics)
    for step, t in enumerate(sorted(complete, key=lambda t: t.number)):  # the search's progress as a chart
        log_metrics_now(tracking, {f"tune_trial_{metric}": float(t.value)}, step=t.number)
    log_artifacts(tracking, [trials_path], "reports")
    log_artifacts(tracking, [best_path], "config")
    changed = {k: v for k, v in cfg.flat().items() if base.flat().get(k) != v}
    log.info("tune: best trial %d, %s %.4f%s; changed keys %s; written to %s", best.number, metric, best.value,
             f" (starting config {default.value:.4f})" if default is not None and default.value is not None else "",
             json.dumps(changed, ensure_ascii=False, default=str), best_path)
    return {"study_name": study_info["study_name"], "storage": redact_uri(study_info["storage"]), "best_trial": best.number,
            "best_value": float(best.value), "default_value": float(default.value) if default is not None and default.value is not None else None,
            "select_metric": metric, "trials": counts | {"total": len(trials)}, "best_config_path": str(best_path),
            "trials_path": str(trials_path), "changed": changed, "best_config": cfg.model_dump(mode="json"),
            "seconds": metrics["tune_seconds"]}

