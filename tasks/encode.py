"""Encode stage: builds THE run's TextEncoder from raw text (cleaning settings, per-text bounds, jieba words and a
vocabulary from train only, max_len), saves it once to <run>/encoded/encoder/, and writes token ids per split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.data import segment_splits
from tasks.results import Encoded, RunContext
from tasks.runguard import mark_stage, parquet_rows
from tasks.tracking import get_run_logger, log_artifacts, log_metrics_now
from textcls_core.dataset.split import SPLITS, class_labels, hash_frame
from textcls_core.runtime.config import CleanConfig, TokenizeConfig
from textcls_core.text.encoders import TextEncoder, WordEncoder, encoder_sha256, fit_word_encoder


def raw_texts(frame: pd.DataFrame) -> list[str]:
    """The original texts of a split (raw_text), or its text column for split files written before raw_text existed."""
    return frame["raw_text" if "raw_text" in frame.columns else "text"].tolist()


def save_encoder(encoder: TextEncoder, frames: dict[str, pd.DataFrame], tracking: RunContext) -> dict[str, Any]:
    """Save the encoder once; return its folder and the fingerprint a checkpoint records (split contents + encoder)."""
    encoder_dir = encoder.save(Path(tracking["run_dir"]) / "encoded" / "encoder")
    columns = ("raw_text", "text", "label")
    fingerprint = {f"{name}_sha256": hash_frame(frames[name], tuple(c for c in columns if c in frames[name].columns))
                   for name in SPLITS} | {"encoder_sha256": encoder_sha256(encoder_dir)}
    (encoder_dir.parent / "fingerprint.json").write_text(json.dumps(fingerprint, indent=2), encoding="utf-8")
    log_artifacts(tracking, [encoder_dir.parent / "fingerprint.json"], "encoded")
    return {"encoder_dir": str(encoder_dir), "fingerprint": fingerprint}


def prepare_splits(encoder: TextEncoder, frames: dict[str, pd.DataFrame]) -> dict[str, list[str]]:
    """Each split's raw texts through the encoder's cleaning and bounds; warns when that is not the clean stage's text
    (it is the same function; a difference means the clean stage ran with other settings)."""
    texts = {name: encoder.prepare(raw_texts(frames[name])) for name in SPLITS}
    differ = sum(a != b for name in SPLITS for a, b in zip(texts[name], frames[name]["text"].tolist()))
    if differ:
        get_run_logger().warning("encode: %d texts clean differently than in the clean stage (other clean/tokenize settings?); "
                                 "the encoder's version is used", differ)
    return texts


def write_encoded(frames: dict[str, pd.DataFrame], ids: dict[str, list[list[int]]], labels: list[str],
                  metrics: dict[str, Any], tracking: RunContext) -> dict[str, str]:
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
def encode_task(split_paths: dict[str, str], tok_cfg: TokenizeConfig, tracking: RunContext,
                clean_cfg: CleanConfig = CleanConfig()) -> Encoded:
    """The run's TextEncoder from the splits' raw texts: jieba words, a vocabulary from train only, ids cut to max_len."""
    mark_stage("encode", parquet_rows(*split_paths.values()))  # watchdog: this stage's time bound starts now
    frames = {name: pd.read_parquet(split_paths[name]) for name in SPLITS}
    probe = TextEncoder(clean_cfg, WordEncoder([], tok_cfg.max_len))  # cleaning + bounds; the vocabulary comes next
    texts = prepare_splits(probe, frames)
    tokens = segment_splits(texts, tok_cfg.workers, tracking)  # parallel jieba, cached by the texts' content hash
    words, ids, metrics = fit_word_encoder(tokens, tok_cfg.max_len, tok_cfg.min_freq, tok_cfg.max_vocab)
    labels = class_labels(frames["train"])
    metrics = {"vocab_size": metrics.pop("vocab_size"), "num_classes": len(labels)} | metrics
    vocab_path = Path(tracking["run_dir"]) / "encoded" / "vocab.json"
    paths = write_encoded(frames, ids, labels, metrics, tracking)
    vocab_path.write_text(json.dumps(words.itos, ensure_ascii=False), encoding="utf-8")
    saved = save_encoder(TextEncoder(clean_cfg, words), frames, tracking)
    get_run_logger().info("encode: vocab %d, labels %s, oov val %.3f, encoder %s", words.vocab_size, labels, metrics["val_oov_rate"],
                          saved["encoder_dir"])
    return {"paths": paths, "vocab_path": str(vocab_path), "labels": labels} | saved | metrics
