"""MLflow run lifecycle and batched metric logging. The only place besides packaging that talks to MLflow."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from prefect import get_run_logger as _prefect_run_logger
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.runtime import flow_run

from tasks.results import RunContext
from textcls_core.registry.tracking_names import clip, data_name, run_name
from textcls_core.runtime.config import Config, build_config
from textcls_core.runtime.errors import ConfigError
from textcls_core.runtime.redact import redact_text, redact_uri, redact_values


def get_run_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a run; a plain logger when a task body is called through `.fn`."""
    try:
        return _prefect_run_logger()
    except MissingContextError:
        return logging.getLogger("textcls")


class RedactCredentials(logging.Filter):
    """Masks `scheme://user:password@` in log records (messages and tracebacks) before any handler ships them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if redact_text(message) != message:
            record.msg, record.args = redact_text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def redact_run_logs() -> None:
    """Put the filter on every handler that ships run logs (Prefect's API handler, the console): idempotent."""
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactCredentials) for f in handler.filters):
                handler.addFilter(RedactCredentials())


def resolve_tracking_uri(uri: str) -> str:
    """The configured URI; else $MLFLOW_TRACKING_URI (how a worker or container is pointed at a server);
    else a SQLite file in the working directory, made absolute because workers change directory."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path.cwd() / 'mlflow.db').resolve()}"


def client_for(tracking_uri: str) -> MlflowClient:
    # MLflow prints "View run <name> at: <tracking URI>/#/..." when a run ends: with the URI's credentials in it
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    mlflow.set_tracking_uri(tracking_uri)
    return MlflowClient(tracking_uri)


EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")  # the MLflow UI opens such an experiment on its runs


def _experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if EXPERIMENT_KIND[0] not in exp.tags:  # an experiment someone else created and marked stays as they marked it
            client.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        # artifacts beside the database, as an absolute URI: the default is relative to the current cwd
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return client.create_experiment(name, artifact_location=location, tags=dict([EXPERIMENT_KIND]))


def git_commit() -> str:
    """The commit of the code that runs, or '' outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def system_tags() -> dict[str, str]:
    """MLflow's own run tags, as `mlflow.start_run` sets them (user, source name and type, git commit when the
    entry point is in a checkout), plus the commit of this package's code when MLflow found none."""
    from mlflow.tracking.context.registry import resolve_tags

    tags = dict(resolve_tags({}))
    commit = git_commit()
    if commit:
        tags.setdefault("mlflow.source.git.commit", commit)
    return {k: clip(v) for k, v in tags.items()}


def config_from_parameters(parameters: dict[str, Any]) -> Config | None:
    value = parameters.get("config")
    if isinstance(value, Config):
        return value
    try:
        return build_config(value or {}) if isinstance(value, dict) else None
    except ConfigError:
        return None


def train_flow_run_name() -> str:
    """Flow run name of the train flow, also the MLflow run's name: `<model>-<data>-<YYYYmmdd-HHMMSS>`."""
    cfg = config_from_parameters(flow_run.parameters or {})
    return run_name(cfg.model.name, cfg.data.path) if cfg else run_name("textcls", "run")


def tune_flow_run_name() -> str:
    cfg = config_from_parameters(flow_run.parameters or {})
    return "tune-" + (run_name(cfg.model.name, cfg.data.path) if cfg else run_name("textcls", "run"))


@task(name="start-tracking", cache_policy=NO_CACHE)
def start_tracking(cfg: Config, resume_run_id: str | None = None) -> RunContext:
    """Create the MLflow run (tagged with the Prefect flow run id, and vice versa) and the run folder.

    With resume_run_id, reopen that run and its folder instead: training then resumes from its checkpoint.
    """
    redact_run_logs()
    uri = resolve_tracking_uri(cfg.tracking.uri)
    client = client_for(uri)
    exp_id = _experiment_id(client, cfg.tracking.experiment, uri)
    prefect_id = str(flow_run.id) if flow_run.id else ""
    if resume_run_id:
        run = client.get_run(resume_run_id)
        if run.info.status == "FINISHED":
            raise ConfigError(f"MLflow run {resume_run_id} finished; there is nothing to resume. Start a new run instead.")
        run_id, exp_id = run.info.run_id, run.info.experiment_id
        run_dir = Path(run.data.tags["textcls.run_dir"])
        cfg = run_config(run_dir)  # the run's own settings (its cache folder among them)
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, "textcls.resumed_by_prefect_flow_run_id", prefect_id)
    else:
        name = flow_run.name or run_name(cfg.model.name, cfg.data.path)  # the same name in Prefect and MLflow
        run = client.create_run(exp_id, run_name=name, tags={
            **system_tags(), "prefect.flow_run_id": prefect_id, "prefect.flow_run_name": flow_run.name or "",
            "textcls.data_path": clip(redact_uri(cfg.data.path))})
        run_id = run.info.run_id
        # credentials in a URI (tracking.uri, an s3:// data path) never reach MLflow or the run folder
        params = [Param(k, str(redact_values(v))[:6000]) for k, v in cfg.flat().items()]
        for i in range(0, len(params), 100):
            client.log_batch(run_id, params=params[i : i + 100])
        client.log_dict(run_id, redact_values(cfg.model_dump()), "config/resolved_config.yaml")
        run_dir = (Path(cfg.run.output_dir) / f"{datetime.now():%Y%m%d-%H%M%S}-{run_id[:8]}").resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(  # what --resume reads back
            json.dumps(redact_values(cfg.model_dump(mode="json")), ensure_ascii=False, indent=2), encoding="utf-8")
        (run_dir / "mlflow_run.json").write_text(json.dumps({"run_id": run_id, "tracking_uri": redact_uri(uri)}), encoding="utf-8")
        client.set_tag(run_id, "textcls.run_dir", str(run_dir))
    if prefect_id:
        _tag_flow_run(prefect_id, f"mlflow_run_id:{run_id}")
    get_run_logger().info("MLflow run %s%s in experiment '%s' at %s; files in %s", run_id, " (resumed)" if resume_run_id else "",
                          cfg.tracking.experiment, redact_uri(uri), run_dir)
    return {"run_id": run_id, "tracking_uri": uri, "experiment_id": exp_id, "run_dir": str(run_dir), "run_name": run.info.run_name,
            "prefect_flow_run_id": prefect_id,
            # the data-stage cache (empty = off); absolute, because workers change directory
            "cache_dir": str(Path(cfg.run.cache_dir).resolve()) if cfg.run.cache else ""}


def _tag_flow_run(flow_run_id: str, tag: str) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        current = client.read_flow_run(flow_run_id)
        client.update_flow_run(flow_run_id, tags=sorted(set(current.tags) | {tag}))


@task(name="finish-tracking", cache_policy=NO_CACHE)
def finish_tracking(tracking: RunContext, status: str = "FINISHED") -> None:
    client_for(tracking["tracking_uri"]).set_terminated(tracking["run_id"], status)


class MetricLogger:
    """log_metrics(metrics, step) callback for core loops: buffers and sends MLflow batches."""

    def __init__(self, tracking: RunContext, flush_every: int = 200):
        self.client = client_for(tracking["tracking_uri"])
        self.run_id = tracking["run_id"]
        self.flush_every = flush_every
        self.buffer: list[Metric] = []

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        ts = int(time.time() * 1000)
        self.buffer += [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        if len(self.buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        for i in range(0, len(self.buffer), 1000):
            self.client.log_batch(self.run_id, metrics=self.buffer[i : i + 1000])
        self.buffer = []


def log_metrics_now(tracking: RunContext, metrics: dict[str, float], step: int = 0) -> None:
    logger = MetricLogger(tracking)
    logger(metrics, step)
    logger.flush()


def log_artifacts(tracking: RunContext, paths: list[str | Path], artifact_path: str) -> None:
    client = client_for(tracking["tracking_uri"])
    for p in paths:
        client.log_artifact(tracking["run_id"], str(p), artifact_path)


def resolve_resume(target: str, tracking_uri: str) -> tuple[Config, str]:
    """The config and MLflow run id of an interrupted run, from its run folder or its MLflow run id."""
    folder = Path(target)
    if folder.is_dir():
        facts_path = folder / "mlflow_run.json"
        if not facts_path.is_file():
            raise ConfigError(f"--resume: '{target}' is not a textcls run folder (no mlflow_run.json). Pass runs/<run> or an MLflow run id.")
        run_id = json.loads(facts_path.read_text(encoding="utf-8"))["run_id"]
    else:
        run_id = target
        try:
            folder = Path(client_for(tracking_uri).get_run(run_id).data.tags["textcls.run_dir"])
        except Exception:
            raise ConfigError(f"--resume: '{target}' is neither a run folder nor an MLflow run id in {redact_uri(tracking_uri)}. "
                              "Pass runs/<run> or the run id printed by textcls run.") from None
    cfg = run_config(folder)
    facts_path = folder / "mlflow_run.json"
    if not cfg.tracking.uri and facts_path.is_file():  # the store the run lives in, wherever textcls is started from
        stored = json.loads(facts_path.read_text(encoding="utf-8"))["tracking_uri"]
        cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"uri": stored})})
    cfg = _with_credentials(cfg, tracking_uri)
    try:
        status = client_for(resolve_tracking_uri(cfg.tracking.uri)).get_run(run_id).info.status
    except Exception:
        raise ConfigError(f"--resume: MLflow run {run_id} is not in {redact_uri(resolve_tracking_uri(cfg.tracking.uri))}. "
                          "Point tracking.uri (or MLFLOW_TRACKING_URI) at the store the run was logged to.") from None
    if status == "FINISHED":
        raise ConfigError(f"--resume: MLflow run {run_id} finished; there is nothing to resume. Start a new run instead.")
    return cfg, run_id


def _with_credentials(cfg: Config, tracking_uri: str) -> Config:
    """Run folders keep the tracking URI without its user info: put back the caller's credentials for the same store."""
    stored = cfg.tracking.uri
    if "***@" not in stored:
        return cfg
    if redact_uri(tracking_uri) != stored:
        raise ConfigError(f"--resume: the run was logged to {stored}, whose credentials are not stored in the run folder. "
                          "Set TEXTCLS_TRACKING__URI or MLFLOW_TRACKING_URI to that URI, with its credentials, and resume again.")
    return cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"uri": tracking_uri})})


def run_config(run_dir: str | Path) -> Config:
    """The config a run was started with (runs/<run>/config.json): a resumed run keeps its own settings."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"--resume: {path} is missing, so the run's settings are unknown. "
                          "Resume from the machine (or shared storage) that holds the run folder, or start a new run.")
    return build_config(json.loads(path.read_text(encoding="utf-8")), source=str(path))


def dataset_for(frame: Any, name: str, sha256: str, source_path: str) -> Any:
    """An MLflow dataset for one split (or an evaluated file): the text and label columns, label as targets, and
    a digest that fits MLflow's 36-character column (the first 32 hex digits of the content sha256)."""
    import warnings

    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource

    cols = [c for c in ("text", "label") if c in frame.columns]
    shown = redact_uri(source_path)
    with warnings.catch_warnings():  # MLflow warns when a local path matches several source kinds; it picks one
        warnings.simplefilter("ignore")
        try:
            source: Any = shown if Path(source_path).is_file() else CodeDatasetSource({"mlflow.source.name": clip(shown, 500)})
            return mlflow.data.from_pandas(frame[cols], source=source, targets="label" if "label" in cols else None,
                                           name=clip(name, 500), digest=sha256[:32])
        except Exception:  # a source kind MLflow cannot resolve here: named, not resolved
            return mlflow.data.from_pandas(frame[cols], source=CodeDatasetSource({"mlflow.source.name": clip(shown, 500)}),
                                           targets="label" if "label" in cols else None, name=clip(name, 500), digest=sha256[:32])


def log_datasets(tracking: RunContext, items: list[tuple[Any, str, str]]) -> None:
    """Log (dataset, context, full sha256) as the run's inputs: the Datasets column and per-dataset metrics use
    them; the full hash goes into each dataset's profile (the digest keeps 32 hex digits)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for ds, context, sha256 in items:
        e = ds._to_mlflow_entity()
        profile = {**json.loads(e.profile or "{}"), "sha256": sha256}
        entity = Dataset(name=e.name, digest=e.digest, source_type=e.source_type, source=e.source, schema=e.schema,
                         profile=json.dumps(profile))
        inputs.append(DatasetInput(entity, tags=[InputTag("mlflow.data.context", context)]))
    client_for(tracking["tracking_uri"]).log_inputs(tracking["run_id"], datasets=inputs)


def split_datasets(tracking: RunContext, split_paths: dict[str, str], sha256: dict[str, str]) -> dict[str, Any]:
    """train / val / test as MLflow datasets named `<data>-<split>` (the run's data path is their source)."""
    import pandas as pd

    path = client_for(tracking["tracking_uri"]).get_run(tracking["run_id"]).data.tags.get("textcls.data_path", "")
    base = data_name(path) if path else "data"
    return {split: dataset_for(pd.read_parquet(p, columns=["text", "label"]), f"{base}-{split}", sha256[split], path)
            for split, p in split_paths.items()}


@contextmanager
def system_metrics(tracking: RunContext, interval_s: float = 5.0) -> Iterator[None]:
    """CPU, memory, disk, network (and GPU when pynvml finds one) as `system/*` metrics of the run while the block
    runs: MLflow's own monitor, sampling every interval_s. Never fails the block: a monitor that cannot start is skipped."""
    monitor = None
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no start/stop lines in the run log
        monitor = SystemMetricsMonitor(tracking["run_id"], sampling_interval=interval_s, tracking_uri=tracking["tracking_uri"])
        monitor.start()
    except Exception as exc:  # e.g. psutil missing in a stripped image
        get_run_logger().warning("system metrics not logged: %s", exc)
        monitor = None
    try:
        yield
    finally:
        if monitor is not None:
            monitor.finish()
