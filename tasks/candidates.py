"""Candidates stage: train tfidf_lr, blend it with the network, score every candidate on validation and test, and
pick the one that ships (the best on validation; test is reported, never used to choose)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.data import segment_splits
from tasks.runguard import mark_stage, parquet_rows
from tasks.tracking import client_for, get_run_logger, log_artifacts, log_metrics_now
from textcls_core.candidates import choose_candidate, display_name, paired_se, plan_candidates, score
from textcls_core.classifiers import load_classifier
from textcls_core.clean import prepare_texts
from textcls_core.config import CleanConfig, ModelConfig, TokenizeConfig
from textcls_core.ensemble import EnsembleClassifier, crossfit_proba, fit_weight
from textcls_core.split import SPLITS
from textcls_core.tfidf_model import TfidfSettings, fit_tfidf_lr


def _raw(frame: pd.DataFrame) -> list[str]:
    return frame["raw_text" if "raw_text" in frame.columns else "text"].tolist()


def _fit_tfidf(frames: dict[str, pd.DataFrame], y: dict[str, np.ndarray], labels: list[str], model_cfg: ModelConfig,
               tok_cfg: TokenizeConfig, clean_cfg: CleanConfig, select_metric: str, tracking: dict[str, Any],
               scored: tuple[str, ...] = ("val", "test")):
    """tfidf_lr fitted on train, settings picked on val; returns it and its probabilities on the `scored` splits
    (`textcls tune` trials pass ("val",): the search never reads the test split)."""
    splits = ("train", "val", *[s for s in scored if s != "val"])
    prepared = {name: prepare_texts(_raw(frames[name]), clean_cfg, tok_cfg.max_len) for name in splits}
    words = None
    if any("word" in fs for fs in model_cfg.tfidf_features):  # the encode stage's segmentation: a cache hit
        words = segment_splits(prepared, tok_cfg.workers, tracking, record_as="segment_tfidf")
    base = TfidfSettings(model_cfg.tfidf_char_ngrams, model_cfg.tfidf_word_ngrams, model_cfg.tfidf_min_df, tok_cfg.max_len)
    clf = fit_tfidf_lr(prepared["train"], y["train"], prepared["val"], y["val"], labels, clean_cfg, base,
                       model_cfg.tfidf_features, model_cfg.tfidf_c, select_metric,
                       words=(words["train"], words["val"]) if words else None, prepared=True)
    probs = {name: clf.proba_from_features(clf.features(prepared[name], words[name] if words else None)) for name in scored}
    return clf, probs


@task(name="candidates", cache_policy=NO_CACHE)
def candidates_task(split_paths: dict[str, str], network_dir: str | None, model_cfg: ModelConfig, tok_cfg: TokenizeConfig,
                    clean_cfg: CleanConfig, select_metric: str, baseline: bool, seed: int,
                    tracking: dict[str, Any]) -> dict[str, Any]:
    """Every candidate in model.candidates on the same splits; writes <run>/candidates/<name>/ and
    reports/candidates.json; returns the chosen model folder, the reason, and the tfidf_lr folder (the baseline)."""
    mark_stage("candidates", parquet_rows(split_paths["train"], split_paths["val"]))  # watchdog: this stage's bound starts now
    log = get_run_logger()
    run_dir = Path(tracking["run_dir"])
    plan = plan_candidates(model_cfg, baseline)
    frames = {name: pd.read_parquet(split_paths[name]) for name in SPLITS}
    network = load_classifier(network_dir) if network_dir else None
    labels = list(network.labels) if network is not None else sorted(frames["train"]["label"].unique().tolist())
    index = {name: i for i, name in enumerate(labels)}
    y = {name: frames[name]["label"].map(index).to_numpy() for name in SPLITS}
    dirs: dict[str, str] = {}
    probs: dict[str, dict[str, np.ndarray]] = {}
    facts: dict[str, Any] = {}
    if network is not None and network_dir:
        dirs["model"] = network_dir
        probs["model"] = {name: network.predict_proba(_raw(frames[name])) for name in ("val", "test")}
    tfidf = None
    if plan.train_tfidf:
        tfidf, probs["tfidf_lr"] = _fit_tfidf(frames, y, labels, model_cfg, tok_cfg, clean_cfg, select_metric, tracking)
        dirs["tfidf_lr"] = str(tfidf.save(run_dir / "candidates" / "tfidf_lr"))
        facts["tfidf_lr"] = {"features": tfidf.settings.features, "c": tfidf.settings.c, "search": tfidf.search}
        log.info("candidates: tfidf_lr picked features %s, C %g on validation", tfidf.settings.features, tfidf.settings.c)
    val_probs = {name: probs[name]["val"] for name in probs}
    if "ensemble" in plan.candidates and network is not None and tfidf is not None:
        w = fit_weight(probs["model"]["val"], probs["tfidf_lr"]["val"], y["val"])
        val_probs["ensemble"], half_weights = crossfit_proba(probs["model"]["val"], probs["tfidf_lr"]["val"], y["val"], seed)
        probs["ensemble"] = {"test": w * probs["model"]["test"] + (1 - w) * probs["tfidf_lr"]["test"]}
        ensemble = EnsembleClassifier(["model", "tfidf_lr"], [network, tfidf], [w, 1.0 - w])
        dirs["ensemble"] = str(ensemble.save(run_dir / "candidates" / "ensemble"))
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
    table = [{"candidate": c, "name": names[c], "chosen": c == chosen, "compared": c in compared, "model_dir": dirs[c],
              **{f"val_{k}": rows[c]["val"][k] for k in ("accuracy", "macro_f1", "log_loss", "roc_auc")},
              **{f"test_{k}": rows[c]["test"][k] for k in ("accuracy", "macro_f1", "log_loss", "roc_auc")}} for c in probs]
    report = {"chosen": chosen, "chosen_name": names[chosen], "reason": reason, "select_metric": select_metric,
              "notes": plan.notes, "table": table, "details": facts, "standard_errors": se}
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
    for note in plan.notes:
        log.info("candidates: %s", note)
    return {"chosen": chosen, "chosen_name": names[chosen], "model_dir": dirs[chosen], "reason": reason,
            "baseline_dir": dirs.get("tfidf_lr"), "table": table, "notes": plan.notes, "path": str(path)}
