"""Candidates stage: train tfidf_lr, blend it with the network, score every candidate on validation and test, and
pick the one that ships (the best on validation; test is reported, never used to choose)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.data import record_cache_state
from tasks.monitor import model_oov
from tasks.results import Candidates, RunContext, SideWork, Split
from tasks.runguard import mark_stage, parquet_rows
from tasks.tracking import client_for, get_run_logger, log_artifacts, log_metrics_now
from textcls_core.dataset.split import SPLITS, class_labels
from textcls_core.modeling.classifiers import load_classifier
from textcls_core.modeling.ensemble import EnsembleClassifier, crossfit_proba, fit_weight
from textcls_core.runtime.config import CleanConfig, ModelConfig, RunConfig, TokenizeConfig
from textcls_core.runtime.watchdog import stage_bound
from textcls_core.training.candidates import choose_candidate, display_name, paired_se, plan_candidates, score
from textcls_core.training.side_work import SideProcess, TfidfJob, TfidfOutcome, run_tfidf_job
from textcls_core.training.side_work import raw_texts as _raw

_SIDE: dict[str, SideProcess] = {}  # running side processes of this flow process, by their output folder


def _job(split_paths: dict[str, str], labels: list[str], model_cfg: ModelConfig, tok_cfg: TokenizeConfig,
         clean_cfg: CleanConfig, select_metric: str, label_error_folds: int, seed: int, tracking: RunContext,
         scored: tuple[str, ...] = ("val", "test"), threads: int = 1) -> TfidfJob:
    return TfidfJob(split_paths, labels, model_cfg, tok_cfg, clean_cfg, select_metric,
                    str(Path(tracking["run_dir"]) / "candidates" / "side"), label_error_folds, seed,
                    tracking.get("cache_dir") or "", scored, threads)


def fit_tfidf_in_process(job: TfidfJob, tracking: RunContext, frames: dict[str, pd.DataFrame] | None = None) -> TfidfOutcome:
    """The side work run here, in this process (tune trials, a run without a side process); logs the cache state."""
    outcome = run_tfidf_job(job, frames)
    log_metrics_now(tracking, record_cache_state(tracking, "segment_tfidf", outcome.segment_cache))
    return outcome


@task(name="side-work", cache_policy=NO_CACHE)
def start_side_work_task(split_paths: dict[str, str], labels: list[str], model_cfg: ModelConfig, tok_cfg: TokenizeConfig,
                         clean_cfg: CleanConfig, select_metric: str, label_error_folds: int, seed: int,
                         tracking: RunContext) -> SideWork:
    """Start the work that does not need the network (the tfidf_lr candidate, the out-of-fold label-error
    probabilities) in a child process, to run while the network trains; the candidates stage collects it.
    labels: the encode stage's label order (the network's), so the probabilities line up. Returns at once with
    the child's output folder."""
    job = _job(split_paths, labels, model_cfg, tok_cfg, clean_cfg, select_metric, label_error_folds, seed, tracking)
    side = SideProcess(job)
    _SIDE[job.out_dir] = side
    get_run_logger().info("side-work: tfidf_lr candidate%s started in process %d beside training",
                          " and the label-error search" if label_error_folds else "", side.process.pid)
    return {"out_dir": job.out_dir, "pid": side.process.pid, "label_error_folds": label_error_folds}


def collect_side_work(side: SideWork | None, timeout_s: float) -> TfidfOutcome | None:
    """The side process's outcome (waits up to timeout_s); None when there is no process of this flow process to
    collect (then the caller computes the same thing in-process)."""
    if not side or side["out_dir"] not in _SIDE:
        return None
    proc = _SIDE.pop(side["out_dir"])
    waited = time.perf_counter()
    outcome = proc.result(timeout_s)
    get_run_logger().info("candidates: side work took %.1f s in its process (%s); waited %.1f s for it after training",
                          outcome.seconds, ", ".join(f"{k} {v:.1f} s" for k, v in outcome.timings.items()),
                          time.perf_counter() - waited)
    return outcome


def side_work_running() -> bool:
    return any(side.process.is_alive() for side in _SIDE.values())


class CoreShare:
    """Torch threads of in-process training while a side process runs: `threads` - 1, so the side process has a
    core of its own (on 2 cores, 2 torch threads beside a busy child ran at 0.4x their speed alone), and `threads`
    again once it has finished. Called from the training thread (torch's thread count is per calling thread)."""

    def __init__(self, threads: int):
        self.threads = max(1, threads)

    def wanted(self) -> int:
        return self.threads - 1 if self.threads > 1 and side_work_running() else self.threads

    def adjust(self) -> None:
        want = self.wanted()
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)

    def restore(self) -> None:
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)


def stop_side_work() -> None:
    """Stop every side process this flow process started (a failed run must not leave one behind)."""
    while _SIDE:
        _SIDE.popitem()[1].stop()


@task(name="candidates", cache_policy=NO_CACHE)
def candidates_task(split_paths: dict[str, str], network_dir: str | None, model_cfg: ModelConfig, tok_cfg: TokenizeConfig,
                    clean_cfg: CleanConfig, select_metric: str, baseline: bool, seed: int,
                    tracking: RunContext, side: dict[str, Any] | None = None, label_error_folds: int = 0,
                    timeout_s: float = 900.0) -> Candidates:
    """Every candidate in model.candidates on the same splits; writes <run>/candidates/<name>/ and
    reports/candidates.json; returns the chosen model folder, the reason, the tfidf_lr folder (the baseline) and
    the out-of-fold label-error probabilities (oof_path, when label_error_folds > 0 and tfidf_lr was fitted).

    side: start_side_work_task's result: tfidf_lr was fitted in a child process while the network trained, and is
    collected here (waiting at most timeout_s); without it the same function runs here."""
    mark_stage("candidates", parquet_rows(split_paths["train"], split_paths["val"]))  # watchdog: this stage's bound starts now
    log = get_run_logger()
    run_dir = Path(tracking["run_dir"])
    plan = plan_candidates(model_cfg, baseline)
    frames = {name: pd.read_parquet(split_paths[name]) for name in SPLITS}
    network = load_classifier(network_dir) if network_dir else None
    labels = list(network.labels) if network is not None else class_labels(frames["train"])
    index = {name: i for i, name in enumerate(labels)}
    y = {name: frames[name]["label"].map(index).to_numpy() for name in SPLITS}
    dirs: dict[str, str] = {}
    probs: dict[str, dict[str, np.ndarray]] = {}
    facts: dict[str, Any] = {}
    val_oov: dict[str, np.ndarray | None] = {}  # per candidate, its validation texts' OOV shares (None: not measurable)
    if network is not None and network_dir:
        dirs["model"] = network_dir
        val_probs_model, val_oov["model"] = model_oov(network, _raw(frames["val"]))  # OOV: the drift profile's reference
        probs["model"] = {"val": val_probs_model, "test": network.predict_proba(_raw(frames["test"]))}
    tfidf, oof_path = None, None
    if plan.train_tfidf:
        outcome = collect_side_work(side, timeout_s)
        if outcome is None:
            job = _job(split_paths, labels, model_cfg, tok_cfg, clean_cfg, select_metric, label_error_folds, seed, tracking)
            outcome = fit_tfidf_in_process(job, tracking, frames)
        else:
            log_metrics_now(tracking, record_cache_state(tracking, "segment_tfidf", outcome.segment_cache)
                            | {"side_work_seconds": outcome.seconds})
        tfidf, probs["tfidf_lr"], val_oov["tfidf_lr"] = outcome.clf, outcome.probs, outcome.val_oov
        if list(tfidf.labels) != labels:  # both are the sorted train labels; a mismatch would misalign every column
            raise RuntimeError(f"tfidf_lr was fitted with labels {tfidf.labels}, the network with {labels}")
        dirs["tfidf_lr"] = str(tfidf.save(run_dir / "candidates" / "tfidf_lr"))
        if outcome.oof is not None:
            oof_path = run_dir / "candidates" / "label_error_oof.npz"
            np.savez(oof_path, oof=outcome.oof)
        shutil.rmtree(run_dir / "candidates" / "side", ignore_errors=True)  # its model and arrays are copied above
        facts["tfidf_lr"] = {"features": tfidf.settings.features, "c": tfidf.settings.c, "search": tfidf.search,
                             "fitted_on": tfidf.fitted_on}
        log.info("candidates: tfidf_lr picked features %s, C %g on validation%s", tfidf.settings.features, tfidf.settings.c,
                 "; refitted on train + validation" if tfidf.fitted_on == "train+val" else "")
    val_probs = {name: probs[name]["val"] for name in probs}
    if "ensemble" in plan.candidates and network is not None and tfidf is not None:
        w = fit_weight(probs["model"]["val"], probs["tfidf_lr"]["val"], y["val"])
        val_probs["ensemble"], half_weights = crossfit_proba(probs["model"]["val"], probs["tfidf_lr"]["val"], y["val"], seed)
        probs["ensemble"] = {"test": w * probs["model"]["test"] + (1 - w) * probs["tfidf_lr"]["test"]}
        ensemble = EnsembleClassifier(["model", "tfidf_lr"], [network, tfidf], [w, 1.0 - w])
        dirs["ensemble"] = str(ensemble.save(run_dir / "candidates" / "ensemble"))
        val_oov["ensemble"] = val_oov.get("model")  # an ensemble's OOV is its first member's (proba_and_oov)
        facts["ensemble"] = {"weight_model": w, "crossfit_weights": half_weights}
        log.info("candidates: ensemble weight %.2f on %s, %.2f on tfidf_lr (validation log loss)", w, model_cfg.name, 1 - w)
    names = {c: display_name(c, model_cfg) for c in probs}
    compared = [c for c in plan.candidates if c in probs]
    rows = {c: {"val": score(y["val"], val_probs[c], labels), "test": score(y["test"], probs[c]["test"], labels)} for c in probs}
    best = max(compared, key=lambda c: rows[c]["val"][select_metric.removeprefix("val_")])
    se = {c: paired_se(y["val"], val_probs[best], val_probs[c], select_metric, seed=seed) for c in compared if c != best}
    chosen, reason = choose_candidate({c: rows[c]["val"] for c in compared}, select_metric, names, se)
    if "ensemble" in rows:
        rows["ensemble"]["val_note"] = "cross-fitted: each half of validation scored with the weight fit on the other half"
    notes = list(plan.notes)
    if tfidf is not None and tfidf.fitted_on == "train+val":
        notes.append("tfidf_lr: validation picked its features and C with a fit on train (its validation scores); the "
                     "tfidf_lr that ships, alone or in the ensemble, was then fitted again on train + validation "
                     "(model.tfidf_refit), and its test scores are that model's")
    reference = run_dir / "candidates" / "val_reference.npz"  # the drift profile's: out of sample, no re-scoring
    reference.parent.mkdir(parents=True, exist_ok=True)
    np.savez(reference, probs=val_probs[chosen], **({"oov": val_oov[chosen]} if val_oov.get(chosen) is not None else {}))
    table = [{"candidate": c, "name": names[c], "chosen": c == chosen, "compared": c in compared, "model_dir": dirs[c],
              **{f"val_{k}": rows[c]["val"][k] for k in ("accuracy", "macro_f1", "log_loss", "roc_auc")},
              **{f"test_{k}": rows[c]["test"][k] for k in ("accuracy", "macro_f1", "log_loss", "roc_auc")}} for c in probs]
    report = {"chosen": chosen, "chosen_name": names[chosen], "reason": reason, "select_metric": select_metric,
              "notes": notes, "table": table, "details": facts, "standard_errors": se}
    path = run_dir / "reports" / "candidates.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=float), encoding="utf-8")
    log_artifacts(tracking, [path], "reports")
    metrics = {f"candidate_{c}_{split}_{k}": float(rows[c][split][k]) for c in rows for split in ("val", "test")
               for k in ("accuracy", "macro_f1") if rows[c][split][k] is not None}
    if "ensemble" in facts:
        metrics["ensemble_weight_model"] = facts["ensemble"]["weight_model"]
    log_metrics_now(tracking, metrics)
    client_for(tracking["tracking_uri"]).set_tag(tracking["run_id"], "textcls.candidate", names[chosen])
    log.info("candidates: ships %s (%s)", names[chosen], reason)
    for note in notes:
        log.info("candidates: %s", note)
    return {"chosen": chosen, "chosen_name": names[chosen], "model_dir": dirs[chosen], "reason": reason,
            "baseline_dir": dirs.get("tfidf_lr"), "table": table, "notes": notes, "path": str(path),
            "oof_path": str(oof_path) if oof_path else None, "val_reference": str(reference)}



def candidates_bound(run_cfg: RunConfig, split: Split) -> float:
    """The candidates stage's watchdog bound (run.stage_timeout_s, scaled by the rows): also the longest wait for
    the side process."""
    return stage_bound("candidates", run_cfg.stage_timeout_s, sum(split["rows"].values()), run_cfg.stage_timeout_rows)
