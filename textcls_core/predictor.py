"""The deliverable model: weights + vocab + label map + cleaning settings, and text-in/label-out predict.

The evaluation stage and the MLflow pyfunc both use this class, so what is evaluated is what ships.
Saved as plain files: weights.pt (a state dict, loaded with weights_only=True), vocab.json, model.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from textcls_core.batching import EncodedDataset, collate_batch
from textcls_core.clean import normalize_texts
from textcls_core.config import CleanConfig, ModelConfig
from textcls_core.models import TextCNN
from textcls_core.tokenize import encode_tokens, segment_texts

FORMAT_VERSION = 1


def build_model(cfg: ModelConfig, vocab_size: int, num_classes: int) -> TextCNN:
    """The network named by model.name, freshly initialised."""
    return TextCNN(vocab_size, num_classes, cfg.embed_dim, cfg.num_filters, cfg.kernel_sizes, cfg.dropout, cfg.embed_init_std)


@dataclass
class TextClassifier:
    model: torch.nn.Module
    itos: list[str]
    labels: list[str]
    model_cfg: ModelConfig
    clean_cfg: CleanConfig
    max_len: int
    device: torch.device = torch.device("cpu")

    def __post_init__(self) -> None:
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.model.to(self.device).eval()

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Clean, segment and map texts to ids exactly as at training time."""
        cleaned = normalize_texts([str(t) if t is not None else "" for t in texts], self.clean_cfg)
        return encode_tokens(segment_texts(cleaned), self.stoi, self.max_len)

    def predict_proba_ids(self, ids: list[list[int]], batch_size: int = 256) -> np.ndarray:
        """Class probabilities [N, C] for already-encoded texts, in input order."""
        loader = DataLoader(EncodedDataset(ids), batch_size=batch_size, shuffle=False,
                            collate_fn=partial(collate_batch, max_len=self.max_len, min_len=max(self.model_cfg.kernel_sizes)))
        out = []
        self.model.eval()
        with torch.inference_mode():
            for batch_ids, _ in loader:
                out.append(torch.softmax(self.model(batch_ids.to(self.device)).float(), dim=1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.labels)), dtype=np.float32)

    def predict_proba(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        return self.predict_proba_ids(self.encode(texts), batch_size)

    def predict(self, texts: list[str], batch_size: int = 256) -> pd.DataFrame:
        """One row per text: label, score (its probability) and prob_<label> for every class."""
        probs = self.predict_proba(list(texts), batch_size)
        best = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=int)
        frame = pd.DataFrame({"label": [self.labels[i] for i in best], "score": probs[np.arange(len(best)), best]})
        for j, name in enumerate(self.labels):
            frame[f"prob_{name}"] = probs[:, j]
        return frame

    def save(self, directory: str | Path) -> Path:
        """Write weights.pt, vocab.json and model.json into directory."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, d / "weights.pt")
        (d / "vocab.json").write_text(json.dumps(self.itos, ensure_ascii=False), encoding="utf-8")
        meta = {"format_version": FORMAT_VERSION, "labels": self.labels, "max_len": self.max_len,
                "model": self.model_cfg.model_dump(), "clean": self.clean_cfg.model_dump()}
        (d / "model.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> "TextClassifier":
        d = Path(directory)
        meta = json.loads((d / "model.json").read_text(encoding="utf-8"))
        itos = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
        model_cfg = ModelConfig(**meta["model"])
        model = build_model(model_cfg, len(itos), len(meta["labels"]))
        model.load_state_dict(torch.load(d / "weights.pt", map_location="cpu", weights_only=True))
        return cls(model, itos, list(meta["labels"]), model_cfg, CleanConfig(**meta["clean"]), int(meta["max_len"]), torch.device(device))
