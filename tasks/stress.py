"""Stress stage: the trained (or a registered) model on perturbed test texts; files, MLflow metrics, Prefect artifact."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.artifacts import run_artifact_key
from tasks.registry import load_registered_classifier
from tasks.results import RunContext, Stress
from tasks.runguard import mark_stage
from tasks.tracking import client_for, get_run_logger, log_metrics_now
from textcls_core.dataset.clean import drop_unusable_rows
from textcls_core.dataset.read import read_dataset
from textcls_core.evaluation.stress import (
    ProbaClassifier,
    StressResult,
    flat_stress_metrics,
    run_stress,
    sample_rows,
    stress_markdown,
    write_stress_report,
)
from textcls_core.modeling.classifiers import load_classifier
from textcls_core.runtime.config import DataConfig, StressConfig
from textcls_core.runtime.errors import DataError


def _raw_texts(frame: pd.DataFrame) -> list[str]:
    """What a caller would send: the file's raw text when the split keeps it, else the cleaned text."""
    column = "raw_text" if "raw_text" in frame.columns else "text"
    return frame[column].astype(str).tolist()


def _link_from_report(out_dir: Path) -> None:
    """Add a link to stress.html at the end of the evaluation report.html written before this stage (if there)."""
    report = out_dir / "report.html"
    if not report.is_file():
        return
    page = report.read_text(encoding="utf-8")
    link = '<h2>Stress tests</h2><p><a href="stress.html">stress.html</a>: accuracy, flips and confidence under perturbed text.</p>'
    if 'href="stress.html"' not in page and "</body>" in page:
        report.write_text(page.replace("<script>", link + "<script>", 1) if "<script>" in page else page.replace("</body>", link + "</body>"),
                          encoding="utf-8")


def publish_stress(clf: ProbaClassifier, frame: pd.DataFrame, cfg: StressConfig, seed: int, batch_size: int, out_dir: Path,
                   title: str, tracking: RunContext, max_rows: int = 1000, workers: int = 1,
                   model_dir: str = "") -> dict[str, Any]:
    """Run the perturbations on a seeded subsample, write the files, log metrics and files to MLflow."""
    result, seconds = compute_stress(clf, frame, cfg, seed, batch_size, workers, model_dir)
    return publish_stress_result(result, seconds, out_dir, title, tracking, max_rows)


def compute_stress(clf: ProbaClassifier, frame: pd.DataFrame, cfg: StressConfig, seed: int, batch_size: int,
                   workers: int = 1, model_dir: str = "", on_pool: Any = None) -> tuple[StressResult, float]:
    """run_stress on the seeded subsample of `frame`; (result, seconds)."""
    sample = sample_rows(frame, cfg.max_texts, seed)
    t0 = time.perf_counter()
    result = run_stress(clf, _raw_texts(sample), sample["label"].astype(str).tolist(), cfg, seed, batch_size,
                        workers=workers, model_dir=model_dir, on_pool=on_pool)
    return result, time.perf_counter() - t0


def publish_stress_result(result: StressResult, seconds: float, out_dir: Path, title: str, tracking: RunContext,
                          max_rows: int = 1000) -> dict[str, Any]:
    """Write stress.html/json/csv and the examples, log metrics and files to MLflow, add the Prefect artifact."""
    log = get_run_logger()
    files = write_stress_report(result, out_dir, title, max_rows)
    metrics = flat_stress_metrics(result) | {"stress_seconds": seconds}
    log_metrics_now(tracking, metrics)
    client = client_for(tracking["tracking_uri"])
    for key in ("html", "json", "table", "examples"):
        client.log_artifact(tracking["run_id"], str(files[key]), "evaluation")
    if flow_run.id:
        create_markdown_artifact(stress_markdown(result, title), key=run_artifact_key("stress"), description=title)
    worst = result.table.sort_values("flip_rate", ascending=False).head(3) if not result.table.empty else result.table
    log.info("stress: %d texts x %d perturbations in %.1f s; highest flip rates: %s", result.n, len(result.table), seconds,
             ", ".join(f"{r.perturbation} {r.flip_rate:.3f}" for r in worst.itertuples()) or "none")
    return {"metrics": metrics, "table": result.table.to_dict("records"), "clean": result.clean, "n": result.n,
            "html_path": str(files["html"]), "examples_path": str(files["examples"]), "seconds": seconds}


class BackgroundStress:
    """The stress computation of a run's chosen model in a thread of the flow process, started before the
    evaluation so the two overlap: the thread only loads the model and waits, the texts are perturbed and
    predicted in the pool's worker processes (run.cpus of them). `stress_task` collects it and does all the
    writing and logging; `stop()` cancels the pool's work and ends its processes (the flow failed elsewhere)."""

    def __init__(self, model_dir: str, test_path: str, cfg: StressConfig, batch_size: int, seed: int, workers: int):
        self.model_dir = model_dir
        self.pool: Any = None
        self.outcome: tuple[StressResult, float] | None = None
        self.error: BaseException | None = None
        self._args = (test_path, cfg, seed, batch_size, workers)
        self.thread = threading.Thread(target=self._run, name="textcls-stress", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        test_path, cfg, seed, batch_size, workers = self._args
        try:
            clf = load_classifier(self.model_dir, shared=True)
            self.outcome = compute_stress(clf, pd.read_parquet(test_path), cfg, seed, batch_size, workers, self.model_dir,
                                          on_pool=self._keep_pool)
        except BaseException as exc:  # noqa: BLE001  (re-raised by result() in the flow's thread)
            self.error = exc

    def _keep_pool(self, pool: Any) -> None:
        self.pool = pool

    def result(self) -> tuple[StressResult, float]:
        """Waits for the thread (the run's watchdog bounds the stress stage while it waits)."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        return self.outcome

    def stop(self) -> None:
        pool = self.pool
        if pool is None:
            return
        processes = list(getattr(pool, "_processes", {}).values())  # ProcessPoolExecutor keeps its workers here
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            if proc.is_alive():
                proc.terminate()


_BACKGROUND: dict[str, BackgroundStress] = {}


@task(name="start-stress", cache_policy=NO_CACHE)
def start_stress_task(model_dir: str, test_path: str, cfg: StressConfig, batch_size: int, seed: int, tracking: RunContext,
                      workers: int = 1) -> str | None:
    """Start the stress computation beside what follows (the evaluation, the drift profile); `stress_task` with the
    returned key collects it. Only with 2 or more cores (one runs the flow's own work); None otherwise or when off."""
    if not cfg.enabled or workers < 2:
        return None
    key = f"{tracking['run_id']}:{model_dir}"
    _BACKGROUND[key] = BackgroundStress(model_dir, test_path, cfg, batch_size, seed, workers)
    return key


def stop_background_stress() -> None:
    """Stop every stress computation still running in this process (the flow failed before collecting it)."""
    while _BACKGROUND:
        _BACKGROUND.popitem()[1].stop()


@task(name="stress", cache_policy=NO_CACHE)
def stress_task(model_dir: str, test_path: str, cfg: StressConfig, batch_size: int, seed: int,
                tracking: RunContext, workers: int = 1, started: str | None = None) -> Stress | None:
    """The trained artifact on perturbed texts of the test split; writes evaluation/stress.html. None when disabled.
    workers: processes the perturbations are shared out to (run.cpus), each with the model loaded once.
    started: the key from start_stress_task when the computation already runs beside the evaluation (collected here)."""
    mark_stage("stress")  # watchdog: this stage's time bound starts now (also while waiting for a started computation)
    if not cfg.enabled:
        return None
    out_dir = Path(tracking["run_dir"]) / "evaluation"
    title = "textcls stress tests (test split)"
    background = _BACKGROUND.pop(started, None) if started else None
    if background is not None:
        waited = time.perf_counter()
        result, seconds = background.result()
        get_run_logger().info("stress: computed beside the evaluation; waited %.1f s for it", time.perf_counter() - waited)
    else:
        result, seconds = compute_stress(load_classifier(model_dir, shared=True), pd.read_parquet(test_path), cfg, seed, batch_size,
                                         workers, model_dir)
    out = publish_stress_result(result, seconds, out_dir, title, tracking)
    _link_from_report(out_dir)
    return out


@task(name="stress-registered", cache_policy=NO_CACHE)
def stress_registered_task(model_uri: str, data_cfg: DataConfig, cfg: StressConfig, batch_size: int, seed: int,
                           tracking: RunContext) -> dict[str, Any]:
    """A registered model on perturbed texts of any labelled file (all of stress.perturbations and stress.rules)."""
    clf = load_registered_classifier(model_uri, tracking["tracking_uri"])
    df = read_dataset(data_cfg.path, data_cfg.text_column, data_cfg.label_column, data_cfg.encoding)
    frame, _ = drop_unusable_rows(df, clf.clean_cfg)
    unknown = sorted(set(frame["label"].astype(str)) - set(clf.labels))
    if unknown:
        raise DataError(f"Data file '{data_cfg.path}' has labels the model does not know: {unknown[:10]}; "
                        f"model {model_uri} predicts {clf.labels}. Map the labels or stress-test a model trained on them.")
    if frame.empty:
        raise DataError(f"Data file '{data_cfg.path}' has no row with both a text and a label.")
    client = client_for(tracking["tracking_uri"])
    for key, value in {"textcls.model_uri": model_uri, "textcls.flow": "stress"}.items():
        client.set_tag(tracking["run_id"], key, value)
    out_dir = Path(tracking["run_dir"]) / "evaluation"
    title = f"textcls stress tests of {model_uri} on {Path(data_cfg.path).name}"
    out = publish_stress(clf, frame, cfg, seed, batch_size, out_dir, title, tracking)
    return out | {"model_uri": model_uri, "rows_read": len(df), "rows_scored": len(frame),
                  "mlflow_run_id": tracking["run_id"], "mlflow_tracking_uri": tracking["tracking_uri"]}
