"""Tokenize/encode stage: jieba words, vocabulary from train only, token ids per split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.data import segment_splits
from tasks.tracking import get_run_logger, log_artifacts, log_metrics_now
from textcls_core.config import TokenizeConfig
from textcls_core.split import SPLITS
from textcls_core.tokenize import build_vocab, encode_tokens, oov_rate


def write_encoded(frames: dict[str, pd.DataFrame], ids: dict[str, list[list[int]]], labels: list[str],
                  metrics: dict[str, Any], tracking: dict[str, Any]) -> dict[str, str]:
    """Write <split>.ids.parquet (row_id, ids, label_id) and labels.json; log the metrics and reports/vocabulary.json."""
    out_dir = Path(tracking["run_dir"]) / "encoded"
    out_dir.mkdir(parents=True, exist_ok=True)
    label_ids = {name: i for i, name in enumerate(labels)}
    paths = {}
    for name in SPLITS:
        enc = pd.DataFrame({"row_id": frames[name]["row_id"], "ids": ids[name], "label_id": frames[name]["label"].map(label_ids)})
        if enc["label_id"].isna().any():  # a label absent from train cannot be learned; split guarantees this never happens
            raise ValueError(f"{name} split has labels not seen in train")
        paths[name] = str(out_dir / f"{name}.ids.parquet")
        enc.to_parquet(paths[name], index=False)
    (out_dir / "labels.json").write_text(json.dumps(labels, ensure_ascii=False), encoding="utf-8")
    log_metrics_now(tracking, {k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    vocab_report = Path(tracking["run_dir"]) / "reports" / "vocabulary.json"  # vocab size, OOV of val/test vs train
    vocab_report.parent.mkdir(parents=True, exist_ok=True)
    vocab_report.write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding="utf-8")
    log_artifacts(tracking, [out_dir / "labels.json"], "encoded")
    log_artifacts(tracking, [vocab_report], "reports")
    return paths


@task(name="encode", cache_policy=NO_CACHE)
def encode_task(split_paths: dict[str, str], tok_cfg: TokenizeConfig, tracking: dict[str, Any]) -> dict[str, Any]:
    """jieba words per split, a vocabulary from train only (vocab.json), token ids cut to max_len."""
    frames = {name: pd.read_parquet(split_paths[name]) for name in SPLITS}
    tokens = segment_splits(frames, tok_cfg.workers, tracking)  # parallel jieba, cached by the texts' content hash
    itos = build_vocab(tokens["train"], tok_cfg.min_freq, tok_cfg.max_vocab)
    stoi = {w: i for i, w in enumerate(itos)}
    labels = sorted(frames["train"]["label"].unique().tolist())
    ids = {name: encode_tokens(tokens[name], stoi, tok_cfg.max_len) for name in SPLITS}
    metrics: dict[str, Any] = {"vocab_size": len(itos), "num_classes": len(labels)}
    for name in SPLITS:
        metrics[f"{name}_oov_rate"] = oov_rate(tokens[name], stoi)
        metrics[f"{name}_truncated_share"] = sum(len(t) > tok_cfg.max_len for t in tokens[name]) / max(len(ids[name]), 1)
    vocab_path = Path(tracking["run_dir"]) / "encoded" / "vocab.json"
    paths = write_encoded(frames, ids, labels, metrics, tracking)
    vocab_path.write_text(json.dumps(itos, ensure_ascii=False), encoding="utf-8")
    get_run_logger().info("encode: vocab %d, labels %s, oov val %.3f", len(itos), labels, metrics["val_oov_rate"])
    return {"paths": paths, "vocab_path": str(vocab_path), "labels": labels} | metrics
