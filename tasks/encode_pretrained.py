"""Tokenize/encode stage for pretrained encoders: the model's own tokenizer (character-level for Chinese BERT)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.encode import prepare_splits, save_encoder, write_encoded
from tasks.results import Encoded, RunContext
from tasks.runguard import mark_stage, parquet_rows
from tasks.tracking import get_run_logger
from textcls_core.dataset.split import SPLITS, class_labels
from textcls_core.runtime.config import CleanConfig, ModelConfig, TokenizeConfig
from textcls_core.text.encoders import PretrainedEncoder, TextEncoder, load_tokenizer, tokenize_with


@task(name="encode-pretrained", cache_policy=NO_CACHE)
def encode_pretrained_task(split_paths: dict[str, str], tok_cfg: TokenizeConfig, model_cfg: ModelConfig,
                           tracking: RunContext, clean_cfg: CleanConfig = CleanConfig()) -> Encoded:
    """The run's TextEncoder around the pretrained model's tokenizer; token ids per split from the raw texts
    ([CLS] ... [SEP], cut to max_len)."""
    mark_stage("encode", parquet_rows(*split_paths.values()))  # watchdog: this stage's time bound starts now
    encoder = PretrainedEncoder(load_tokenizer(model_cfg.pretrained), tok_cfg.max_len)
    text_encoder = TextEncoder(clean_cfg, encoder)
    frames = {name: pd.read_parquet(split_paths[name]) for name in SPLITS}
    texts = prepare_splits(text_encoder, frames)
    labels = class_labels(frames["train"])
    ids: dict[str, list[list[int]]] = {}
    metrics: dict[str, Any] = {"vocab_size": encoder.vocab_size, "num_classes": len(labels)}
    for name in SPLITS:
        ids[name], cut = tokenize_with(encoder.tokenizer, texts[name], tok_cfg.max_len)
        tokens = sum(len(x) for x in ids[name])
        metrics[f"{name}_oov_rate"] = sum(t == encoder.unk_id for x in ids[name] for t in x) / max(tokens, 1)  # [UNK] share
        metrics[f"{name}_truncated_share"] = cut / max(len(ids[name]), 1)
    paths = write_encoded(frames, ids, labels, metrics | {"tokenizer": str(model_cfg.pretrained)}, tracking)
    saved = save_encoder(text_encoder, frames, tracking)
    get_run_logger().info("encode: tokenizer of %s (%d tokens), labels %s, [UNK] share val %.3f, cut val %.3f",
                          model_cfg.pretrained, encoder.vocab_size, labels, metrics["val_oov_rate"], metrics["val_truncated_share"])
    return {"paths": paths, "tokenizer_path": str(model_cfg.pretrained), "labels": labels, "pad_id": encoder.pad_id,
            "encoder": "pretrained"} | saved | metrics
