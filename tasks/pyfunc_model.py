"""MLflow "model from code": the pyfunc that wraps the shipped classifier (TextClassifier, tfidf_lr or ensemble).

Logged by tasks/package.py with the model folder as the artifact `model_dir`. The input is a list of
strings (a one-column DataFrame is converted by MLflow), so `mlflow models serve` accepts
{"inputs": ["...", "..."]}. The output has one row per text: label, score, prob_<label> per class.

Bounded work per request: at most serve.max_texts texts (logged as the model's model_config; more -> HTTP 400),
and every text is cut to what the model reads before cleaning and segmentation (TextEncoder). Over HTTP, MLflow
checks the list[str] type hint first: null or number items get a 400 naming them; called directly, predict scores
null as an empty text and a number as its string form.
"""

from __future__ import annotations

import time

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import DEADLINE_EXCEEDED
from mlflow.pyfunc import PythonModel

DEFAULT_MAX_TEXTS = 1000  # serve.max_texts's default, for models logged without a model_config
DEFAULT_REQUEST_TIMEOUT_S = 10.0  # serve.request_timeout_s's default, likewise
DEADLINE_CHUNK = 256  # texts scored between deadline checks: the classifier's own batch, so results are unchanged


class TextclsModel(PythonModel):
    def load_context(self, context) -> None:
        from textcls_core.modeling.classifiers import (
            load_classifier,  # network, tfidf_lr or ensemble folder, by model.json's kind
        )

        self.classifier = load_classifier(context.artifacts["model_dir"])
        self.max_texts = int((getattr(context, "model_config", None) or {}).get("max_texts", DEFAULT_MAX_TEXTS))
        self.request_timeout_s = float((getattr(context, "model_config", None) or {}).get("request_timeout_s", DEFAULT_REQUEST_TIMEOUT_S))

    def predict(self, context, model_input: list[str], params=None) -> pd.DataFrame:
        from textcls_core.dataset.clean import as_text

        texts = model_input[model_input.columns[0]].tolist() if isinstance(model_input, pd.DataFrame) else list(model_input)
        if len(texts) > self.max_texts:  # MLflow answers INVALID_PARAMETER_VALUE with HTTP 400
            raise MlflowException.invalid_parameter_value(
                f"{len(texts)} texts in one request; this model accepts at most {self.max_texts} (serve.max_texts). "
                "Send them in several requests, or log the model with a higher serve.max_texts.")
        # the deadline (serve.request_timeout_s): a worker thread cannot be cancelled from outside, so the request
        # checks its own clock between chunks and gives up with HTTP 504 instead of working on after the client left
        texts = [as_text(t) for t in texts]
        timeout_s = getattr(self, "request_timeout_s", DEFAULT_REQUEST_TIMEOUT_S)
        deadline = time.monotonic() + timeout_s
        parts = []
        for start in range(0, max(len(texts), 1), DEADLINE_CHUNK):
            if parts and time.monotonic() > deadline:
                raise MlflowException(
                    f"request stopped after {timeout_s:g} s (serve.request_timeout_s) with {start} of "
                    f"{len(texts)} texts scored. Send fewer texts per request, or log the model with a higher "
                    "serve.request_timeout_s.", error_code=DEADLINE_EXCEEDED)
            parts.append(self.classifier.predict(texts[start : start + DEADLINE_CHUNK]))
        return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


mlflow.models.set_model(TextclsModel())
