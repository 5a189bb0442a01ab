"""The deliverable model: network + the run's TextEncoder (cleaning, bounds, vocab or tokenizer) + label map; RAW text
in, label out.

The evaluation stage, the champion re-score, batch prediction and the MLflow pyfunc all use this class with raw
text, so what is evaluated is what ships. Saved as plain files: model.json (labels, max_len, model and cleaning
settings), encoder.json (the encoder's settings) plus, for word models, weights.pt (a state dict, loaded with
weights_only=True) and vocab.json; for pretrained encoders, hf/ (save_pretrained of the fine-tuned model and its
tokenizer, with id2label). Folders saved before encoder.json existed load with the same cleaning and bounds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from textcls_core.modeling.networks import (
    PretrainedClassifier,
    build_model,
    load_pretrained_model,
    logits_to_proba,
    min_batch_len,
    output_size,
)
from textcls_core.modeling.proba import proba_frame
from textcls_core.runtime.config import CleanConfig, ModelConfig
from textcls_core.text.batching import EncodedDataset, collate_batch
from textcls_core.text.encoders import ENCODER_FILE, PretrainedEncoder, TextEncoder, WordEncoder

FORMAT_VERSION = 2

__all__ = ["TextClassifier", "build_model"]


@dataclass
class TextClassifier:
    model: nn.Module
    encoder: TextEncoder  # a bare WordEncoder/PretrainedEncoder is wrapped with clean_cfg
    labels: list[str]
    model_cfg: ModelConfig
    clean_cfg: CleanConfig | None = None  # taken from the TextEncoder when omitted
    device: torch.device = torch.device("cpu")

    def __post_init__(self) -> None:
        if not isinstance(self.encoder, TextEncoder):
            self.encoder = TextEncoder(self.clean_cfg or CleanConfig(), self.encoder)
        elif self.clean_cfg is not None and self.clean_cfg != self.encoder.clean_cfg:
            raise ValueError("clean_cfg differs from the encoder's cleaning settings; pass the encoder alone")
        self.clean_cfg = self.encoder.clean_cfg
        self.model.to(self.device).eval()

    @property
    def max_len(self) -> int:
        return self.encoder.max_len

    def encode(self, texts: list[str]) -> list[list[int]]:
        """RAW texts (any item type; None -> "") -> ids, exactly as at training time (TextEncoder.encode)."""
        return self.encoder.encode(texts)

    def predict_proba_ids(self, ids: list[list[int]], batch_size: int = 256) -> np.ndarray:
        """Class probabilities [N, C] for already-encoded texts, in input order.

        Texts are batched in length order, so a batch pads to about its own texts' length rather than to the longest
        text among 256 random ones; the models ignore padding (masked pooling, packed LSTM, attention mask), so this
        changes the work, not the predictions."""
        collate = partial(collate_batch, max_len=self.max_len, min_len=min_batch_len(self.model_cfg), pad_id=self.encoder.pad_id)
        order = np.argsort([len(x) for x in ids], kind="stable")
        loader = DataLoader(EncodedDataset([ids[i] for i in order]), batch_size=batch_size, shuffle=False, collate_fn=collate)
        out = []
        self.model.eval()
        with torch.inference_mode():  # no graph, no memory growth over a long evaluation
            for batch_ids, _ in loader:
                out.append(logits_to_proba(self.model(batch_ids.to(self.device))).cpu())
        if not out:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        probs = np.empty((len(ids), len(self.labels)), dtype=np.float32)
        probs[order] = torch.cat(out).numpy()
        return probs

    def predict_proba(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        return self.predict_proba_ids(self.encode(texts), batch_size)

    def predict(self, texts: list[str], batch_size: int = 256) -> pd.DataFrame:
        """One row per text: label, score (its probability) and prob_<label> for every class."""
        return proba_frame(self.predict_proba(list(texts), batch_size), self.labels)

    def save(self, directory: str | Path) -> Path:
        """Write the model folder (see the module docstring)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        if isinstance(self.model, PretrainedClassifier):
            self.model.hf.save_pretrained(str(d / "hf"))
        else:
            torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, d / "weights.pt")
        self.encoder.save(d)
        meta = {"format_version": FORMAT_VERSION, "encoder": self.encoder.kind, "labels": self.labels, "max_len": self.max_len,
                "model": self.model_cfg.model_dump(), "clean": self.encoder.clean_cfg.model_dump()}
        (d / "model.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> "TextClassifier":
        d = Path(directory)
        meta = json.loads((d / "model.json").read_text(encoding="utf-8"))
        model_cfg, labels, max_len = ModelConfig(**meta["model"]), list(meta["labels"]), int(meta["max_len"])
        model: nn.Module
        if (d / ENCODER_FILE).is_file():
            encoder = TextEncoder.load(d)
        else:  # a folder from before encoder.json: the same settings, from model.json
            tokens = PretrainedEncoder.load(d, max_len) if meta.get("encoder") == "pretrained" else WordEncoder.load(d, max_len)
            encoder = TextEncoder(CleanConfig(**meta["clean"]), tokens)
        if encoder.kind == "pretrained":
            model = load_pretrained_model(d / "hf", output_size(model_cfg, len(labels)), labels, encoder.pad_id)
        else:
            model = build_model(model_cfg, encoder.vocab_size, len(labels))
            model.load_state_dict(torch.load(d / "weights.pt", map_location="cpu", weights_only=True))
        return cls(model, encoder, labels, model_cfg, device=torch.device(device))
