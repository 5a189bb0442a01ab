"""No fork of a threaded process (#20), tested the way the hang happens.

A forked child inherits locks other threads held at that instant; cleanlab's default pool once hung an
evaluation that way. Here os.fork fails whenever another thread is alive, and every pooled step (jieba pool,
cleanlab, DataLoader workers) plus the whole default flow must still run. Fork servers and spawn start their
processes with fork_exec / posix_spawn, not os.fork, so they pass; a fork-started pool does not.
"""

from __future__ import annotations

import multiprocessing
import os
import threading

import numpy as np
import pytest

from tests.conftest import small_config


@pytest.fixture
def no_threaded_fork(monkeypatch):
    """os.fork raises while other threads run; a helper thread makes sure this process is threaded."""
    real_fork = os.fork
    forks: list[int] = []

    def guarded_fork():
        if threading.active_count() > 1:
            raise RuntimeError(f"os.fork() with {threading.active_count()} threads alive")
        forks.append(1)
        return real_fork()

    stop = threading.Event()
    helper = threading.Thread(target=stop.wait, name="like-prefects-event-loop", daemon=True)
    helper.start()
    monkeypatch.setattr(os, "fork", guarded_fork)
    yield forks
    stop.set()


def test_the_patch_catches_a_fork_started_pool(no_threaded_fork):
    """Proof the fixture finds the bug: cleanlab's default pool and a fork pool both fail under it."""
    from cleanlab.filter import find_label_issues

    with pytest.raises(RuntimeError, match="os.fork"):
        with multiprocessing.get_context("fork").Pool(1) as pool:
            pool.map(abs, [1])
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=60)
    with pytest.raises(RuntimeError, match="os.fork"):
        find_label_issues(labels=np.arange(60) % 3, pred_probs=probs, n_jobs=2)


def test_jieba_pool_and_label_search_run_without_fork(no_threaded_fork, tiny_df):
    from textcls_core.evaluation.label_issues import find_suspect_labels
    from textcls_core.text.tokenize import segment_texts

    texts = tiny_df["text"].tolist() * 3
    assert segment_texts(texts, workers=2, min_parallel=1) == segment_texts(texts, workers=1)
    y = np.array([0] * 12 + [1] * 12)
    probs = np.tile([[0.9, 0.1]], (24, 1))
    probs[12:] = [0.2, 0.8]
    probs[0] = [0.05, 0.95]  # a positive row the out-of-fold model is sure is negative
    queue = find_suspect_labels(tiny_df, y, probs, ["positive", "negative"])
    assert queue["row_id"].tolist() == [0]


def test_dataloader_workers_start_without_fork(no_threaded_fork, tmp_path):
    import pandas as pd

    from textcls_core.training.fit import FitSpec, fit

    rows = 64
    frame = pd.DataFrame({"ids": [[2 + i % 7, 3 + i % 5, 4] for i in range(rows)], "label_id": [i % 2 for i in range(rows)]})
    frame.to_parquet(tmp_path / "train.parquet")
    frame.head(16).to_parquet(tmp_path / "val.parquet")
    spec = FitSpec(train_path=str(tmp_path / "train.parquet"), val_path=str(tmp_path / "val.parquet"), labels=["a", "b"],
                   model={"name": "textcnn", "embed_dim": 8, "num_filters": 4, "kernel_sizes": [1, 2]},
                   train={"epochs": 2, "batch_size": 16, "num_workers": 2, "progress": False}, max_len=8, seed=0,
                   vocab_size=10, pad_id=0)
    model, result = fit(spec, __import__("torch").device("cpu"))
    assert len(result.history) == 2 and result.best_val_accuracy >= 0


def test_default_flow_runs_without_fork(prefect_server, tmp_path, tracking_uri, no_threaded_fork):
    from flows.train import train_text_classifier

    cfg = small_config(tmp_path, tracking_uri, "data.max_rows=600", "train.epochs=1", "evaluate.latency_samples=0",
                       "train.num_workers=1")
    summary = train_text_classifier(config=cfg)
    assert summary["metrics"]["test_accuracy"] > 0.5
    assert summary["metrics"]["suspected_label_errors"] >= 0  # cleanlab's label search ran in the flow
