"""Data stages: analyze, clean, split (and the segmentation helper of encode). Each reads and writes files in
the run folder and logs to MLflow.

The compute of each stage goes through an on-disk cache (textcls_core.dataset.cache) keyed by the content hash of its
input, the config slice that shapes its output and the code that computes it; the task then copies the
stage's files into the run folder and logs them, so a re-run with unchanged data and settings skips the
work but every MLflow run still gets every metric, tag and artifact of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.artifacts import run_artifact_key
from tasks.results import Analysis, Cleaning, RunContext, Split
from tasks.runguard import file_rows_estimate, mark_stage, parquet_rows
from tasks.tracking import client_for, get_run_logger, log_artifacts, log_datasets, log_metrics_now, split_datasets
from textcls_core.dataset.analyze import format_report, profile_parquet, save_analysis_html
from textcls_core.dataset.cache import Entry, StageCache, code_version, file_sha256, fingerprint, segment_with_cache
from textcls_core.dataset.clean import check_quality, clean_parquet
from textcls_core.dataset.ingest import ingest
from textcls_core.dataset.split import SPLITS, hash_frame, remove_cross_split_duplicates, split_by_hash, split_dataset
from textcls_core.runtime.config import CleanConfig, DataConfig, SplitConfig

REPORT_FILES = ("json", "md", "html")
# what each stage's output depends on besides its input and config: a change here re-computes it
_ANALYZE_CODE = ("textcls_core.dataset.read", "textcls_core.dataset.ingest", "textcls_core.dataset.columnar", "textcls_core.dataset.analyze", "textcls_core.text.tokenize", "textcls_core.evaluation.html", "textcls_core.dataset.split",
                 "tasks.data")  # split: hash_frame makes the cached raw_sha256


def stage_cache(tracking: RunContext) -> StageCache:
    """The data-stage cache of this run: tracking["cache_dir"], set by start_tracking from run.cache and
    run.cache_dir ("" or absent = off: no folder is ever picked behind the caller's back)."""
    return StageCache.at(tracking.get("cache_dir") or None)


def record_cache_state(tracking: RunContext, stage: str, state: str, where: str = "") -> dict[str, float]:
    """Tag textcls.cache.<stage> = hit | miss | off, log it, and return the cache_hit_<stage> metric to log."""
    client_for(tracking["tracking_uri"]).set_tag(tracking["run_id"], f"textcls.cache.{stage}", state)
    get_run_logger().info("%s: cache %s%s", stage, state, f" ({where})" if where else "")
    return {f"cache_hit_{stage}": 1.0 if state == "hit" else 0.0}


def _record_cache(tracking: RunContext, stage: str, cache: StageCache, entry: Entry | None, hit: bool) -> dict[str, float]:
    state = "off" if cache.root is None else "hit" if hit else "miss"
    return record_cache_state(tracking, stage, state, str(entry.path) if entry is not None and not entry.scratch else "")


def _write_report(stats: dict[str, Any], lengths: pd.DataFrame, out_dir: Path, stem: str, title: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(stats, ensure_ascii=False, indent=2), encoding="utf-8")
    (out_dir / f"{stem}.md").write_text(format_report(stats, title), encoding="utf-8")
    save_analysis_html(stats, lengths, out_dir / f"{stem}.html", title)


def _place_report(entry: Entry, run_dir: Path, stem: str, title: str) -> list[Path]:
    """Copy a report into the run folder and publish its markdown as a Prefect artifact (every run)."""
    files = [entry.copy_to(f"{stem}.{ext}", run_dir / "reports" / f"{stem}.{ext}") for ext in REPORT_FILES]
    if flow_run.id:
        create_markdown_artifact(f"```\n{files[1].read_text(encoding='utf-8')}```\n", key=run_artifact_key(stem), description=title)
    return files


def _source_id(path: str, cache: StageCache) -> dict[str, str]:
    """What identifies the input: the builtin's name (its package version is in code_version), or the file's
    content hash and format; a missing file gets no hash (reading it then fails with the clear error)."""
    if path.startswith("builtin:"):
        return {"builtin": path}
    p = Path(path)
    return {"sha256": cache.file_sha256(p), "format": p.suffix.lower()} if p.is_file() else {"missing": path}


@task(name="analyze", cache_policy=NO_CACHE)
def analyze_task(data_cfg: DataConfig, extra_columns: list[str], seed: int, tracking: RunContext,
                 max_len: int = 256) -> Analysis:
    """Read the source once (to raw.parquet), then report class balance, lengths, duplicates, conflicts."""
    mark_stage("analyze", file_rows_estimate(data_cfg.path))  # watchdog: this stage's time bound starts now
    run_dir = Path(tracking["run_dir"])
    cache = stage_cache(tracking)
    title = "Dataset analysis (before cleaning)"

    def build(folder: Path) -> dict[str, Any]:
        # a chunk at a time: the file is never held whole (benchmarks/large_file.py)
        stats, raw_hash, lengths = ingest(data_cfg, extra_columns, seed, max_len, folder / "raw.parquet")
        _write_report(stats, lengths, folder, "analysis", title)
        return {"stats": stats, "raw_sha256": raw_hash}

    key = fingerprint("analyze", _source_id(data_cfg.path, cache), data_cfg.model_dump(exclude={"path", "chunk_rows"}),
                      list(extra_columns), seed, max_len, code_version(*_ANALYZE_CODE)) if cache.root else ""
    entry = cache.run("analyze", key, build, scratch=run_dir / "data")
    raw_path = entry.copy_to("raw.parquet", run_dir / "data" / "raw.parquet")
    files = _place_report(entry, run_dir, "analysis", title)
    entry.release()
    stats, raw_hash = entry.meta["stats"], entry.meta["raw_sha256"]
    client_for(tracking["tracking_uri"]).set_tag(tracking["run_id"], "textcls.raw_data_sha256", raw_hash)
    hit = _record_cache(tracking, "analyze", cache, entry, entry.hit)
    log_metrics_now(tracking, {"data_rows_read": stats["rows_read"], "data_rows": stats["rows_sampled"], "data_classes": stats["classes"],
                               "data_conflicting_texts": stats["conflicting_texts"], "data_duplicate_rows": stats["duplicate_rows"]} | hit)
    log_artifacts(tracking, files, "reports")
    get_run_logger().info("analyze: %d rows, %d classes %s", stats["rows_sampled"], stats["classes"], stats["class_counts"])
    return {"raw_path": str(raw_path), "stats": stats, "raw_sha256": raw_hash}


@task(name="clean", cache_policy=NO_CACHE)
def clean_task(raw_path: str, clean_cfg: CleanConfig, tracking: RunContext, max_len: int = 256, workers: int = 1) -> Cleaning:
    """Normalise (each text cut to what a `max_len`-token model reads) and filter; every dropped row goes to
    dropped.csv with its reason. clean.parquet keeps the original text beside the model text (raw_text).
    workers: jieba processes for the after-cleaning analysis's token sample (the report is the same for any number)."""
    mark_stage("clean", parquet_rows(raw_path))  # watchdog: this stage's time bound starts now
    run_dir = Path(tracking["run_dir"])
    cache = stage_cache(tracking)

    def build(folder: Path) -> dict[str, Any]:
        counts, rules = clean_parquet(raw_path, clean_cfg, max_len, folder)  # a batch at a time, in two passes
        (folder / "cleaning.json").write_text(json.dumps(counts | {"rules": rules}, ensure_ascii=False, indent=2), encoding="utf-8")
        return counts | {"rules": rules}

    # the gates (max_drop_share, min_class_examples) do not change the output: they are checked on every run
    key = fingerprint("clean", file_sha256(raw_path), clean_cfg.model_dump(exclude={"max_drop_share", "min_class_examples"}), max_len,
                      code_version("textcls_core.dataset.clean", "textcls_core.dataset.columnar", "tasks.data")) if cache.root else ""
    entry = cache.run("clean", key, build, scratch=run_dir / "data")
    kept_path = entry.copy_to("clean.parquet", run_dir / "data" / "clean.parquet")
    dropped_path = entry.copy_to("dropped.csv", run_dir / "data" / "dropped.csv")
    report_path = entry.copy_to("cleaning.json", run_dir / "reports" / "cleaning.json")
    entry.release()
    counts = {k: entry.meta[k] for k in ("rows_in", "rows_kept", "rows_dropped", "dropped_by_reason")}
    reasons = counts["dropped_by_reason"]
    hit = _record_cache(tracking, "clean", cache, entry, entry.hit)
    log_metrics_now(tracking, {"clean_rows_kept": counts["rows_kept"], "clean_rows_dropped": counts["rows_dropped"]}
                    | {f"clean_dropped_{k}": v for k, v in reasons.items()} | hit)
    log_artifacts(tracking, [dropped_path, report_path], "data")
    log = get_run_logger()
    for r in entry.meta["rules"]:
        if r["changed"] or r["dropped"]:
            log.info("clean rule %-28s changed %6d  dropped %6d", r["rule"], r["changed"], r["dropped"])
    log.info("clean: %d in = %d kept + %d dropped %s", counts["rows_in"], counts["rows_kept"], counts["rows_dropped"], reasons)
    # after dropped.csv is written, so the user can see why; the labels are all the gates need
    check_quality(counts["rows_in"], pd.read_parquet(kept_path, columns=["label"]), clean_cfg)
    title = "Dataset analysis (after cleaning)"

    def build_after(folder: Path) -> dict[str, Any]:
        after, lengths = profile_parquet(kept_path, max_len=max_len, workers=workers)  # the same report on what training will see
        _write_report(after, lengths, folder, "analysis_after_cleaning", title)
        return {"stats": after}

    after_entry = cache.run("analysis_after_cleaning", fingerprint(key, code_version(*_ANALYZE_CODE)) if key else "",
                            build_after, scratch=run_dir / "data")
    files = _place_report(after_entry, run_dir, "analysis_after_cleaning", title)
    after_entry.release()
    log_artifacts(tracking, files, "reports")
    log_metrics_now(tracking, {"data_recommended_max_len": after_entry.meta["stats"]["recommended_max_len"]})
    return {"clean_path": str(kept_path), "dropped_path": str(dropped_path)} | counts


@task(name="split", cache_policy=NO_CACHE)
def split_task(clean_path: str, split_cfg: SplitConfig, seed: int, tracking: RunContext) -> Split:
    """Stratified train/val/test Parquet files with content hashes logged to MLflow."""
    mark_stage("split", parquet_rows(clean_path))  # watchdog: this stage's time bound starts now
    run_dir = Path(tracking["run_dir"])
    cache = stage_cache(tracking)

    def build(folder: Path) -> dict[str, Any]:
        df = pd.read_parquet(clean_path)
        if split_cfg.mode == "hash":  # stable across snapshots: the gate compares models on rows neither trained on
            parts = split_by_hash(df, split_cfg.val_fraction, split_cfg.test_fraction, split_cfg.hash_salt)
        else:
            parts = split_dataset(df, split_cfg.val_fraction, split_cfg.test_fraction, seed,
                                  f"meta_{split_cfg.column}" if split_cfg.column else "",
                                  f"meta_{split_cfg.group_column}" if split_cfg.group_column else "", split_cfg.missing_group)
        parts, leaked = remove_cross_split_duplicates(parts)  # a no-op for the default split, which splits by text
        if len(leaked):
            leaked.to_csv(folder / "leakage_removed.csv", index=False, encoding="utf-8")
        for name in SPLITS:
            parts[name].to_parquet(folder / f"{name}.parquet", index=False)
        return {"sha256": {n: hash_frame(parts[n]) for n in SPLITS}, "rows": {n: len(parts[n]) for n in SPLITS},
                "dataset_sha256": hash_frame(df), "leakage_removed": len(leaked)}

    key = fingerprint("split", file_sha256(clean_path), split_cfg.model_dump(), seed,
                      code_version("textcls_core.dataset.split", "textcls_core.dataset.fingerprint", "tasks.data")) if cache.root else ""
    entry = cache.run("split", key, build, scratch=run_dir / "data")
    out: dict[str, Any] = {"paths": {n: str(entry.copy_to(f"{n}.parquet", run_dir / "data" / f"{n}.parquet")) for n in SPLITS},
                           "sha256": entry.meta["sha256"], "rows": entry.meta["rows"],
                           "dataset_sha256": entry.meta["dataset_sha256"], "leakage_removed": entry.meta["leakage_removed"]}
    if out["leakage_removed"]:
        entry.copy_to("leakage_removed.csv", run_dir / "data" / "leakage_removed.csv")
        get_run_logger().warning("split: removed %d val/test rows whose text is also in an earlier split", out["leakage_removed"])
    entry.release()
    client = client_for(tracking["tracking_uri"])
    client.set_tag(tracking["run_id"], "textcls.dataset_sha256", out["dataset_sha256"])
    for name in SPLITS:
        client.set_tag(tracking["run_id"], f"textcls.{name}_sha256", out["sha256"][name])
    hit = _record_cache(tracking, "split", cache, entry, entry.hit)
    log_metrics_now(tracking, {f"split_{k}_rows": v for k, v in out["rows"].items()} | hit)
    datasets = split_datasets(tracking, out["paths"], out["sha256"])  # the run's Datasets column in the MLflow UI
    log_datasets(tracking, [(datasets[name], {"val": "validation"}.get(name, name), out["sha256"][name]) for name in SPLITS])
    (run_dir / "data" / "splits.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
    log_artifacts(tracking, [run_dir / "data" / "splits.json"], "data")
    get_run_logger().info("split: %s", out["rows"])
    return out


def segment_splits(texts_by_split: dict[str, list[str]], workers: int, tracking: RunContext,
                   record_as: str = "segment") -> dict[str, list[list[str]]]:
    """jieba tokens per split for the encode stage (texts already prepared by the encoder): every split in one
    parallel pass (tokenize.workers), cached by the content hash of the texts (jieba's version and the
    segmentation code are in the key). record_as: the stage name of the cache tag/metric (the candidates stage
    reads the same entry and must not overwrite the encode stage's record)."""
    cache = stage_cache(tracking)
    names = [name for name in SPLITS if name in texts_by_split]  # tune's tfidf_lr trials pass train and val only
    texts = [t for name in names for t in texts_by_split[name]]
    tokens, state = segment_with_cache(texts, workers, cache, Path(tracking["run_dir"]))
    log_metrics_now(tracking, record_cache_state(tracking, record_as, state))
    out, start = {}, 0
    for name in names:
        n = len(texts_by_split[name])
        out[name], start = tokens[start : start + n], start + n
    return out
