"""Text -> token ids, the same way at training, evaluation and prediction time.

- TextEncoder: THE encoder of a run, from RAW text: cleaning settings + per-text bounds (clean.prepare_texts) +
  one of the two below. Built and saved once by the encode stage (<run>/encoded/encoder/), copied into the model
  folder, and used by training, evaluation, the champion re-score, batch prediction and the pyfunc.
- WordEncoder: jieba words and a vocabulary built from the training split (<pad>=0, <unk>=1);
- PretrainedEncoder: the tokenizer that ships with a pretrained model (character-level for Chinese BERT).
The last two take cleaned texts; all return id lists cut to max_len, never padded (batches are padded by collate_batch).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from textcls_core.dataset.clean import prepare_texts, text_limits
from textcls_core.runtime.config import CleanConfig
from textcls_core.runtime.errors import ConfigError, DataError
from textcls_core.text.tokenize import PAD_ID, UNK_ID, build_vocab, encode_tokens, oov_rate, segment_texts

ENCODER_FILE = "encoder.json"
ENCODER_FORMAT = 1


class WordEncoder:
    kind = "words"
    pad_id, unk_id = PAD_ID, UNK_ID

    def __init__(self, itos: list[str], max_len: int):
        self.itos, self.max_len = itos, max_len
        self.stoi = {w: i for i, w in enumerate(itos)}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return encode_tokens(segment_texts(texts), self.stoi, self.max_len)

    def save(self, directory: Path) -> None:
        (directory / "vocab.json").write_text(json.dumps(self.itos, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, max_len: int) -> "WordEncoder":
        return cls(json.loads((directory / "vocab.json").read_text(encoding="utf-8")), max_len)


def fit_word_encoder(words: dict[str, list[list[str]]], max_len: int, min_freq: int = 2,
                     max_vocab: int = 50000) -> tuple[WordEncoder, dict[str, list[list[int]]], dict[str, float]]:
    """The word models' encoding of a run's splits: a vocabulary from the train split's jieba words only, every split's
    ids cut to max_len, and per split the out-of-vocabulary share and the share of texts longer than max_len.
    `words`: split name -> the jieba words of its prepared texts."""
    encoder = WordEncoder(build_vocab(words["train"], min_freq, max_vocab), max_len)
    ids = {name: encode_tokens(tokens, encoder.stoi, max_len) for name, tokens in words.items()}
    metrics: dict[str, float] = {"vocab_size": encoder.vocab_size}
    for name, tokens in words.items():
        metrics[f"{name}_oov_rate"] = oov_rate(tokens, encoder.stoi)
        metrics[f"{name}_truncated_share"] = sum(len(t) > max_len for t in tokens) / max(len(tokens), 1)
    return encoder, ids, metrics


def load_tokenizer(source: str | Path) -> Any:
    """`AutoTokenizer.from_pretrained` with a message that says what to do when it fails."""
    import transformers
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()
    try:
        return AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"model.pretrained: could not load a tokenizer from '{source}': {str(exc).splitlines()[0]} "
                          "The folder needs the tokenizer files saved with the model (vocab.txt or tokenizer.json).") from None


def tokenize_with(tokenizer: Any, texts: Sequence[str], max_len: int) -> tuple[list[list[int]], int]:
    """Ids with the model's special tokens, cut to max_len keeping the closing special token; and how many were cut."""
    ids = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    cut = 0
    out = []
    for x in ids:
        if len(x) > max_len:
            x = x[: max_len - 1] + x[-1:]  # [CLS] ... [SEP]: the closing token stays
            cut += 1
        out.append(x)
    return out, cut


class PretrainedEncoder:
    kind = "pretrained"

    def __init__(self, tokenizer: Any, max_len: int):
        self.tokenizer, self.max_len = tokenizer, max_len
        if tokenizer.pad_token_id is None:
            raise ConfigError("model.pretrained: the tokenizer defines no pad token; pick an encoder model (BERT, RoBERTa, ...).")
        self.pad_id = int(tokenizer.pad_token_id)
        self.unk_id = int(tokenizer.unk_token_id) if tokenizer.unk_token_id is not None else -1

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return tokenize_with(self.tokenizer, texts, self.max_len)[0]

    def save(self, directory: Path) -> None:
        self.tokenizer.save_pretrained(str(directory / "hf"))

    @classmethod
    def load(cls, directory: Path, max_len: int) -> "PretrainedEncoder":
        return cls(load_tokenizer(directory / "hf"), max_len)


def check_pretrained_source(source: str) -> None:
    """Fail fast, before a server or a run starts, when model.pretrained names a local folder that cannot work.

    Hub names (no path separator, not an existing folder) are left to from_pretrained, which may find them
    in the local Hugging Face cache.
    """
    path = Path(source).expanduser()
    looks_like_path = source.startswith((".", "/", "~")) or "\\" in source or source.count("/") > 1
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model.pretrained: folder '{source}' has no config.json. Point it at a folder written by "
                              "save_pretrained (config.json, model weights, tokenizer files).")
    elif path.exists() or looks_like_path:
        raise ConfigError(f"model.pretrained: '{source}' is not an existing folder. Pass the folder that holds the "
                          "pretrained model's config.json, weights and tokenizer files.")


class TextEncoder:
    """Raw text -> token ids: cleaning (to the fixpoint), the per-text bounds, then segmentation + vocabulary or
    the pretrained tokenizer, cut to max_len. Saved as encoder.json + vocab.json (word models) or hf/ (tokenizer)."""

    def __init__(self, clean_cfg: CleanConfig, tokens: WordEncoder | PretrainedEncoder, workers: int = 1):
        self.clean_cfg, self.tokens, self.workers = clean_cfg, tokens, workers

    kind = property(lambda self: self.tokens.kind)
    max_len = property(lambda self: self.tokens.max_len)
    pad_id = property(lambda self: self.tokens.pad_id)
    unk_id = property(lambda self: self.tokens.unk_id)
    vocab_size = property(lambda self: self.tokens.vocab_size)

    def prepare(self, texts: Iterable[object]) -> list[str]:
        """Raw inputs (any type; None -> "") -> the cleaned, bounded text the model reads."""
        return prepare_texts(texts, self.clean_cfg, self.max_len)

    def encode_prepared(self, texts: Sequence[str]) -> list[list[int]]:
        if isinstance(self.tokens, WordEncoder):
            return encode_tokens(segment_texts(texts, self.workers), self.tokens.stoi, self.max_len)
        return self.tokens.encode(texts)

    def encode(self, texts: Iterable[object]) -> list[list[int]]:
        """Raw texts -> ids; the same path for training, evaluation and serving."""
        return self.encode_prepared(self.prepare(texts))

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.tokens.save(d)
        raw_limit, clean_limit = text_limits(self.max_len)
        meta = {"format": ENCODER_FORMAT, "kind": self.kind, "max_len": self.max_len, "clean": self.clean_cfg.model_dump(),
                "raw_char_limit": raw_limit, "clean_char_limit": clean_limit}
        (d / ENCODER_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2, sort_keys=True), encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path, workers: int = 1) -> "TextEncoder":
        d = Path(directory)
        meta = json.loads((d / ENCODER_FILE).read_text(encoding="utf-8"))
        tokens: WordEncoder | PretrainedEncoder
        if meta["kind"] == "pretrained":
            tokens = PretrainedEncoder.load(d, int(meta["max_len"]))
        else:
            tokens = WordEncoder.load(d, int(meta["max_len"]))
        return cls(CleanConfig(**meta["clean"]), tokens, workers)


def encoder_files(directory: str | Path) -> list[Path]:
    """The files of a saved TextEncoder (encoder.json, vocab.json or hf/...), sorted."""
    d = Path(directory)
    files = [d / ENCODER_FILE]
    files += [d / "vocab.json"] if (d / "vocab.json").is_file() else sorted(p for p in (d / "hf").rglob("*") if p.is_file())
    return files


def encoder_sha256(directory: str | Path) -> str:
    """sha256 over a saved encoder's files (names and bytes): what a checkpoint records to refuse another encoder."""
    d = Path(directory)
    if not (d / ENCODER_FILE).is_file():
        raise DataError(f"'{d}' holds no saved encoder ({ENCODER_FILE}). Run the encode stage again.")
    h = hashlib.sha256()
    for f in encoder_files(d):
        h.update(str(f.relative_to(d)).encode("utf-8") + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()
