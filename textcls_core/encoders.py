"""Text -> token ids, the same way at training and at prediction time.

- WordEncoder: jieba words and a vocabulary built from the training split (<pad>=0, <unk>=1);
- PretrainedEncoder: the tokenizer that ships with a pretrained model (character-level for Chinese BERT).
Both take cleaned texts and return id lists cut to max_len, never padded (batches are padded by collate_batch).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from textcls_core.errors import ConfigError
from textcls_core.tokenize import PAD_ID, UNK_ID, encode_tokens, segment_texts


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
