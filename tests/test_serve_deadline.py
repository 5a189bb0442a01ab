"""Bounded requests (#20): the served pyfunc stops a request at serve.request_timeout_s with HTTP 504."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from tasks.pyfunc_model import DEADLINE_CHUNK, TextclsModel
from textcls_core.runtime.config import build_config
from textcls_core.runtime.errors import ConfigError


class _SlowClassifier:
    """Stands in for a model whose batches take a while (a huge request on a busy server)."""

    def __init__(self, seconds_per_batch: float):
        self.seconds = seconds_per_batch
        self.batches: list[int] = []

    def predict(self, texts: list[str]) -> pd.DataFrame:
        time.sleep(self.seconds)
        self.batches.append(len(texts))
        return pd.DataFrame({"label": ["pos"] * len(texts), "text_len": [len(t) for t in texts]})


def _model(seconds: float, timeout_s: float) -> TextclsModel:
    model = TextclsModel()
    model.classifier, model.max_texts, model.request_timeout_s = _SlowClassifier(seconds), 10_000, timeout_s
    return model


def test_a_request_past_its_deadline_stops_with_504_and_says_how_to_raise_it():
    model = _model(0.05, timeout_s=0.01)
    with pytest.raises(MlflowException) as err:
        model.predict(None, ["好评"] * (DEADLINE_CHUNK * 4))
    assert err.value.get_http_status_code() == 504
    assert "serve.request_timeout_s" in err.value.message and f"{DEADLINE_CHUNK} of {DEADLINE_CHUNK * 4}" in err.value.message
    assert model.classifier.batches == [DEADLINE_CHUNK]  # it stopped working, not just answering


def test_a_request_within_its_deadline_is_scored_whole_in_order():
    model = _model(0.0, timeout_s=30)
    texts = [f"{'好' * (i % 7)}" for i in range(DEADLINE_CHUNK * 2 + 5)]
    out = model.predict(None, texts)
    assert out["text_len"].tolist() == [len(t) for t in texts]
    assert model.classifier.batches == [DEADLINE_CHUNK, DEADLINE_CHUNK, 5]


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_bad_request_timeout_fails_before_any_work(value):
    with pytest.raises(ConfigError, match="serve.request_timeout_s"):
        build_config({}, [f"serve.request_timeout_s={value}"])
