"""Data stages: analyze, clean, split. Each reads and writes files in the run folder and logs to MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.tracking import client_for, get_run_logger, log_artifacts, log_metrics_now
from textcls_core.analyze import analyze_dataset, format_report, save_analysis_html
from textcls_core.clean import check_quality, clean_dataset
from textcls_core.config import CleanConfig, DataConfig, SplitConfig
from textcls_core.data import read_dataset, sample_rows
from textcls_core.split import SPLITS, hash_frame, remove_cross_split_duplicates, split_dataset


def _write_report(stats: dict[str, Any], df: pd.DataFrame, out_dir: Path, stem: str, title: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    js.write_text(json.dumps(stats, ensure_ascii=False, indent=2), encoding="utf-8")
    md.write_text(format_report(stats, title), encoding="utf-8")
    html = save_analysis_html(stats, df, out_dir / f"{stem}.html", title)
    if flow_run.id:
        create_markdown_artifact(f"```\n{md.read_text(encoding='utf-8')}```\n", key=stem.replace("_", "-"), description=title)
    return [js, md, html]


@task(name="analyze", cache_policy=NO_CACHE)
def analyze_task(data_cfg: DataConfig, extra_columns: list[str], seed: int, tracking: dict[str, Any]) -> dict[str, Any]:
    """Read the source once (to raw.parquet), then report class balance, lengths, duplicates, conflicts."""
    run_dir = Path(tracking["run_dir"])
    df = read_dataset(data_cfg.path, data_cfg.text_column, data_cfg.label_column, data_cfg.encoding, extra_columns)
    rows_read = len(df)
    df = sample_rows(df, data_cfg.max_rows, seed)
    raw_path = run_dir / "data" / "raw.parquet"
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(raw_path, index=False)
    stats = analyze_dataset(df, seed=seed) | {"rows_read": rows_read, "rows_sampled": len(df)}
    files = _write_report(stats, df, run_dir / "reports", "analysis", "Dataset analysis (before cleaning)")
    raw_hash = hash_frame(df)
    client_for(tracking["tracking_uri"]).set_tag(tracking["run_id"], "textcls.raw_data_sha256", raw_hash)
    log_metrics_now(tracking, {"data_rows_read": rows_read, "data_rows": len(df), "data_classes": stats["classes"],
                               "data_conflicting_texts": stats["conflicting_texts"], "data_duplicate_rows": stats["duplicate_rows"]})
    log_artifacts(tracking, files, "reports")
    get_run_logger().info("analyze: %d rows, %d classes %s", len(df), stats["classes"], stats["class_counts"])
    return {"raw_path": str(raw_path), "stats": stats, "raw_sha256": raw_hash}


@task(name="clean", cache_policy=NO_CACHE)
def clean_task(raw_path: str, clean_cfg: CleanConfig, tracking: dict[str, Any]) -> dict[str, Any]:
    """Normalise and filter; every dropped row goes to dropped.csv with its reason."""
    run_dir = Path(tracking["run_dir"])
    df = pd.read_parquet(raw_path)
    kept, dropped, rules = clean_dataset(df, clean_cfg)
    kept_path, dropped_path = run_dir / "data" / "clean.parquet", run_dir / "data" / "dropped.csv"
    kept.to_parquet(kept_path, index=False)
    dropped.to_csv(dropped_path, index=False, encoding="utf-8")
    reasons = {str(k): int(v) for k, v in dropped["reason"].value_counts().sort_index().items()}
    counts = {"rows_in": len(df), "rows_kept": len(kept), "rows_dropped": len(dropped), "dropped_by_reason": reasons}
    (run_dir / "reports" / "cleaning.json").write_text(json.dumps(counts | {"rules": rules}, ensure_ascii=False, indent=2), encoding="utf-8")
    log_metrics_now(tracking, {"clean_rows_kept": len(kept), "clean_rows_dropped": len(dropped)}
                    | {f"clean_dropped_{k}": v for k, v in reasons.items()})
    log_artifacts(tracking, [dropped_path, run_dir / "reports" / "cleaning.json"], "data")
    log = get_run_logger()
    for r in rules:
        if r["changed"] or r["dropped"]:
            log.info("clean rule %-28s changed %6d  dropped %6d", r["rule"], r["changed"], r["dropped"])
    log.info("clean: %d in = %d kept + %d dropped %s", len(df), len(kept), len(dropped), reasons)
    check_quality(len(df), kept, clean_cfg)  # after dropped.csv is written, so the user can see why
    after = analyze_dataset(kept)  # the same report on what training will see
    files = _write_report(after, kept, run_dir / "reports", "analysis_after_cleaning", "Dataset analysis (after cleaning)")
    log_artifacts(tracking, files, "reports")
    log_metrics_now(tracking, {"data_recommended_max_len": after["recommended_max_len"]})
    return {"clean_path": str(kept_path), "dropped_path": str(dropped_path)} | counts


@task(name="split", cache_policy=NO_CACHE)
def split_task(clean_path: str, split_cfg: SplitConfig, seed: int, tracking: dict[str, Any]) -> dict[str, Any]:
    """Stratified train/val/test Parquet files with content hashes logged to MLflow."""
    run_dir = Path(tracking["run_dir"])
    df = pd.read_parquet(clean_path)
    parts = split_dataset(df, split_cfg.val_fraction, split_cfg.test_fraction, seed,
                          f"meta_{split_cfg.column}" if split_cfg.column else "",
                          f"meta_{split_cfg.group_column}" if split_cfg.group_column else "")
    parts, leaked = remove_cross_split_duplicates(parts)  # a no-op for the default split, which splits by text
    if len(leaked):
        leaked.to_csv(run_dir / "data" / "leakage_removed.csv", index=False, encoding="utf-8")
        get_run_logger().warning("split: removed %d val/test rows whose text is also in an earlier split", len(leaked))
    out: dict[str, Any] = {"paths": {}, "sha256": {}, "rows": {}}
    for name in SPLITS:
        path = run_dir / "data" / f"{name}.parquet"
        parts[name].to_parquet(path, index=False)
        out["paths"][name], out["sha256"][name], out["rows"][name] = str(path), hash_frame(parts[name]), len(parts[name])
    out["dataset_sha256"] = hash_frame(df)
    out["leakage_removed"] = len(leaked)
    client = client_for(tracking["tracking_uri"])
    client.set_tag(tracking["run_id"], "textcls.dataset_sha256", out["dataset_sha256"])
    for name in SPLITS:
        client.set_tag(tracking["run_id"], f"textcls.{name}_sha256", out["sha256"][name])
    log_metrics_now(tracking, {f"split_{k}_rows": v for k, v in out["rows"].items()})
    (run_dir / "data" / "splits.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
    log_artifacts(tracking, [run_dir / "data" / "splits.json"], "data")
    get_run_logger().info("split: %s", out["rows"])
    return out
