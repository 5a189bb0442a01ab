"""One training run from encoded split files: datasets, model, collate function, the loop, the saved result.

Used in-process by the train task and, under torchrun, by every rank of textcls_core.training.distributed: the same
code builds the same model from the same files, so one process and N processes differ only in DistContext.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from textcls_core.modeling.networks import build_model, load_pretrained_model, min_batch_len, output_size
from textcls_core.runtime.config import ModelConfig, TrainConfig
from textcls_core.runtime.errors import ConfigError
from textcls_core.text.batching import EncodedDataset, collate_batch
from textcls_core.training.loop import (
    DistContext,
    LogFn,
    MessageFn,
    TrainResult,
    _no_log,
    _print,
    configure_torch,
    set_seed,
    train_model,
)


@dataclass
class FitSpec:
    """Everything a training process needs. In-process it carries the validated configs as they are; only the torchrun
    path writes it to JSON (to_json) and every rank reads it back (from_json), validated once there."""

    train_path: str
    val_path: str
    labels: list[str]
    model: ModelConfig
    train: TrainConfig
    max_len: int
    seed: int
    vocab_size: int = 0
    pad_id: int = 0
    checkpoint_path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # sha256 of the split contents and of the encoder (encode stage): a checkpoint of other data is refused on resume
    fingerprint: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:  # plain mappings (a JSON spec, a test) are validated here, once
        if not isinstance(self.model, ModelConfig):
            self.model = ModelConfig(**dict(self.model))
        if not isinstance(self.train, TrainConfig):
            self.train = TrainConfig(**dict(self.train))

    def to_json(self, path: str | Path) -> Path:
        data = {f.name: getattr(self, f.name) for f in fields(self)} | {"model": self.model.model_dump(),
                                                                        "train": self.train.model_dump()}
        Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        return Path(path)

    @classmethod
    def from_json(cls, path: str | Path) -> "FitSpec":
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


def load_encoded(path: str | Path) -> EncodedDataset:
    """An encoded split (row_id, ids, label_id) as a Dataset."""
    enc = pd.read_parquet(path)
    # Python ints, not numpy scalars: DataLoader workers started from a fork server get the dataset pickled, and
    # lists of numpy scalars pickle ~150x slower (benchmarks/pool_start_methods.py)
    return EncodedDataset([x.tolist() for x in enc["ids"]], enc["label_id"].astype(int).tolist())


def prepare_model(spec: FitSpec) -> tuple[nn.Module, Any]:
    """The freshly initialised (word models) or pretrained (transformer) network, and its collate function."""
    cfg = spec.model
    if cfg.name == "transformer":
        model = load_pretrained_model(cfg.pretrained, output_size(cfg, len(spec.labels)), spec.labels, spec.pad_id, cfg.dropout)
        limit = getattr(model.hf.config, "max_position_embeddings", None)
        if limit is not None and spec.max_len > limit:
            raise ConfigError(f"tokenize.max_len={spec.max_len} exceeds what '{cfg.pretrained}' can read "
                              f"(max_position_embeddings={limit}). Set tokenize.max_len to {limit} or less.")
    else:
        model = build_model(cfg, spec.vocab_size, len(spec.labels))
    buckets = tuple(spec.train.pad_buckets)
    collate = partial(collate_batch, max_len=spec.max_len, min_len=min_batch_len(cfg), pad_id=spec.pad_id, buckets=buckets)
    return model, collate


def fit(spec: FitSpec, device: torch.device, dist: DistContext | None = None, log_metrics: LogFn = _no_log,
        message: MessageFn = _print) -> tuple[nn.Module, TrainResult]:
    """Seed, build and train; the returned model holds the best epoch's weights."""
    set_seed(spec.seed)  # same initial weights in every process (DDP also broadcasts rank 0's)
    configure_torch(spec.train, device)
    model, collate = prepare_model(spec)
    result = train_model(model, load_encoded(spec.train_path), load_encoded(spec.val_path), spec.train, device,
                         len(spec.labels), collate, seed=spec.seed, log_metrics=log_metrics,
                         checkpoint_path=spec.checkpoint_path or None, dist=dist, message=message,
                         fingerprint=spec.fingerprint)
    return model, result
