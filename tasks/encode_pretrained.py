"""Tokenize/encode stage for pretrained encoders: the model's own tokenizer (character-level for Chinese BERT)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.tracking import get_run_logger, log_artifacts, log_metrics_now
from textcls_core.config import ModelConfig, TokenizeConfig
from textcls_core.encoders import PretrainedEncoder, load_tokenizer, tokenize_with
from textcls_core.split import SPLITS


@task(name="encode-pretrained", cache_policy=NO_CACHE)
def encode_pretrained_task(split_paths: dict[str, str], tok_cfg: TokenizeConfig, model_cfg: ModelConfig,
                           tracking: dict[str, Any]) -> dict[str, Any]:
    """Write <split>.ids.parquet (row_id, ids, label_id) with the pretrained tokenizer, and labels.json."""
    out_dir = Path(tracking["run_dir"]) / "encoded"
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(model_cfg.pretrained)
    encoder = PretrainedEncoder(tokenizer, tok_cfg.max_len)
    frames = {name: pd.read_parquet(split_paths[name]) for name in SPLITS}
    labels = sorted(frames["train"]["label"].unique().tolist())
    label_ids = {name: i for i, name in enumerate(labels)}
    paths: dict[str, str] = {}
    metrics: dict[str, float] = {"vocab_size": encoder.vocab_size, "num_classes": len(labels)}
    for name in SPLITS:
        ids, cut = tokenize_with(tokenizer, frames[name]["text"].tolist(), tok_cfg.max_len)
        enc = pd.DataFrame({"row_id": frames[name]["row_id"], "ids": ids, "label_id": frames[name]["label"].map(label_ids)})
        if enc["label_id"].isna().any():  # the split guarantees every class is in train
            raise ValueError(f"{name} split has labels not seen in train")
        paths[name] = str(out_dir / f"{name}.ids.parquet")
        enc.to_parquet(paths[name], index=False)
        tokens = sum(len(x) for x in ids)
        metrics[f"{name}_oov_rate"] = sum(t == encoder.unk_id for x in ids for t in x) / max(tokens, 1)
        metrics[f"{name}_truncated_share"] = cut / max(len(ids), 1)
    (out_dir / "labels.json").write_text(json.dumps(labels, ensure_ascii=False), encoding="utf-8")
    log_metrics_now(tracking, metrics)
    vocab_report = Path(tracking["run_dir"]) / "reports" / "vocabulary.json"
    vocab_report.parent.mkdir(parents=True, exist_ok=True)
    vocab_report.write_text(json.dumps(metrics | {"tokenizer": str(model_cfg.pretrained)}, indent=2), encoding="utf-8")
    log_artifacts(tracking, [out_dir / "labels.json"], "encoded")
    log_artifacts(tracking, [vocab_report], "reports")
    get_run_logger().info("encode: tokenizer of %s (%d tokens), labels %s, [UNK] share val %.3f, cut val %.3f",
                          model_cfg.pretrained, encoder.vocab_size, labels, metrics["val_oov_rate"], metrics["val_truncated_share"])
    return {"paths": paths, "tokenizer_path": str(model_cfg.pretrained), "labels": labels, "pad_id": encoder.pad_id,
            "encoder": "pretrained"} | metrics
