"""The networks. Each maps padded token ids [B, T] (pads at the end) to logits [B, C] ([B, 1] for a single binary logit).

- TextCNN over jieba word ids (Kim, 2014): the article's model family for word input;
- BiLSTM with attention pooling over jieba word ids;
- a Hugging Face encoder for sequence classification, loaded with `from_pretrained` from a local folder or hub name.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from textcls_core.runtime.errors import ConfigError
from textcls_core.text.tokenize import PAD_ID

if TYPE_CHECKING:  # annotations only: the engine runs without pydantic (benchmarks/gpu_check.py)
    from textcls_core.runtime.config import ModelConfig


def _small_embedding(vocab_size: int, embed_dim: int, std: float) -> nn.Embedding:
    # torch's default N(0, 1) makes every rare word a large random feature; a small init lets the
    # words that training sees often dominate. A reasoned default, not one picked on the test split: compare
    # values on validation only (benchmarks/candidates.py --set model.embed_init_std=... prints val beside test).
    emb = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
    with torch.no_grad():
        emb.weight.normal_(0.0, std)
        emb.weight[PAD_ID].zero_()
    return emb


class TextCNN(nn.Module):
    """Embedding -> parallel 1-D convolutions -> max-over-time pooling -> dropout -> linear."""

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 128, num_filters: int = 128,
                 kernel_sizes: tuple[int, ...] | list[int] = (1, 2, 3), dropout: float = 0.5, embed_init_std: float = 0.1):
        super().__init__()
        self.embedding = _small_embedding(vocab_size, embed_dim, embed_init_std)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, num_filters, k) for k in kernel_sizes)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_filters * len(kernel_sizes), num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids).transpose(1, 2)  # [B, E, T]
        # Only windows that end inside the text are pooled, so padding a batch never changes a prediction.
        # Pads sit at the end (collate_batch); a text shorter than k keeps its one window starting at 0.
        lengths = (ids != PAD_ID).sum(dim=1, keepdim=True)  # [B, 1]
        pooled = []
        for conv in self.convs:
            h = torch.relu(conv(x))  # [B, F, T-k+1]
            k = conv.kernel_size[0]
            valid = torch.arange(h.size(2), device=ids.device).unsqueeze(0) < (lengths.clamp(min=k) - k + 1)
            pooled.append(h.masked_fill(~valid.unsqueeze(1), float("-inf")).amax(dim=2))
        return self.fc(self.dropout(torch.cat(pooled, dim=1)))  # [B, C] logits


class BiLSTMAttention(nn.Module):
    """Embedding -> bidirectional LSTM over packed sequences -> attention pooling over real tokens -> linear.

    Packing means the LSTM never reads a pad, and the attention softmax is masked, so padding a batch
    never changes a prediction.
    """

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 128, hidden_size: int = 128,
                 num_layers: int = 1, dropout: float = 0.5, embed_init_std: float = 0.1):
        super().__init__()
        self.embedding = _small_embedding(vocab_size, embed_dim, embed_init_std)
        self.lstm = nn.LSTM(embed_dim, hidden_size, num_layers=num_layers, batch_first=True, bidirectional=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.attn = nn.Linear(2 * hidden_size, 1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * hidden_size, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != PAD_ID  # [B, T]
        lengths = mask.sum(dim=1).clamp(min=1)  # an empty text keeps one (pad) step so packing accepts it
        packed = pack_padded_sequence(self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=ids.size(1))  # [B, T, 2H]
        valid = torch.arange(ids.size(1), device=ids.device).unsqueeze(0) < lengths.unsqueeze(1)
        scores = self.attn(h).squeeze(-1).masked_fill(~valid, float("-inf"))
        weights = torch.softmax(scores, dim=1).unsqueeze(-1)  # [B, T, 1]
        return self.fc(self.dropout((weights * h).sum(dim=1)))


class PretrainedClassifier(nn.Module):
    """A Hugging Face `AutoModelForSequenceClassification` behind the same ids -> logits interface.

    The attention mask is derived from the pad id, so batches padded by collate_batch need nothing else.
    """

    def __init__(self, hf_model: nn.Module, pad_id: int):
        super().__init__()
        self.hf = hf_model
        self.pad_id = pad_id

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=ids, attention_mask=(ids != self.pad_id).long()).logits


def output_size(cfg: ModelConfig, num_classes: int) -> int:
    """Logits per text: 1 for a binary task with a single logit (BCE), else one per class."""
    if cfg.binary_head == "single_logit":
        if num_classes != 2:
            raise ConfigError(f"model.binary_head=single_logit needs exactly 2 classes, the data has {num_classes}. "
                              "Use model.binary_head=two_logits.")
        return 1
    return num_classes


def build_model(cfg: ModelConfig, vocab_size: int, num_classes: int) -> nn.Module:
    """A word model (textcnn or bilstm) named by model.name, freshly initialised."""
    out = output_size(cfg, num_classes)
    if cfg.name == "textcnn":
        return TextCNN(vocab_size, out, cfg.embed_dim, cfg.num_filters, cfg.kernel_sizes, cfg.dropout, cfg.embed_init_std)
    if cfg.name == "bilstm":
        return BiLSTMAttention(vocab_size, out, cfg.embed_dim, cfg.hidden_size, cfg.num_layers, cfg.dropout, cfg.embed_init_std)
    raise ConfigError(f"model.name={cfg.name!r} is not a word model; load it with load_pretrained_model.")


def min_batch_len(cfg: ModelConfig) -> int:
    """The narrowest batch the model accepts: the widest convolution for TextCNN, else 1."""
    return max(cfg.kernel_sizes) if cfg.name == "textcnn" else 1


def load_pretrained_model(source: str | Path, num_outputs: int, labels: list[str] | None = None,
                          pad_id: int = 0, dropout: float | None = None) -> PretrainedClassifier:
    """`AutoModelForSequenceClassification.from_pretrained` with a head of num_outputs logits (fresh if the sizes differ).

    A local folder is read as is; any other name goes to the Hugging Face hub (or its local cache).
    """
    import transformers
    from transformers import AutoConfig, AutoModelForSequenceClassification

    transformers.logging.set_verbosity_error()  # the load report lists the fresh head on every run
    labels = labels if labels and len(labels) == num_outputs else [f"LABEL_{i}" for i in range(num_outputs)]
    kwargs: dict = {"num_labels": num_outputs, "id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
    if dropout is not None:
        kwargs["classifier_dropout"] = dropout
    try:
        config = AutoConfig.from_pretrained(str(source), **kwargs)
        hf = AutoModelForSequenceClassification.from_pretrained(str(source), config=config, ignore_mismatched_sizes=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(_pretrained_hint(source, exc)) from None
    logging.getLogger("textcls").debug("loaded %s (%s)", source, type(hf).__name__)
    return PretrainedClassifier(hf, pad_id)


def _pretrained_hint(source: str | Path, exc: Exception) -> str:
    where = f"folder '{source}'" if Path(source).exists() else f"'{source}' (not a local folder, so it was looked up on the Hugging Face hub)"
    return (f"model.pretrained: could not load a model from {where}: {str(exc).splitlines()[0]} "
            "Point model.pretrained at a folder written by save_pretrained (config.json, weights, tokenizer files), "
            "or download the model on a machine with hub access and copy the folder here.")


def logits_to_proba(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities [B, C] in float32: softmax, or [1 - p, p] for a single binary logit."""
    logits = logits.float()
    if logits.size(1) == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)
