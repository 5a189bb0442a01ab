"""MLflow "model from code": the pyfunc that wraps textcls_core.predictor.TextClassifier.

Logged by tasks/package.py with the model folder as the artifact `model_dir`. The input is a list of
strings (a one-column DataFrame is converted by MLflow), so `mlflow models serve` accepts
{"inputs": ["...", "..."]}. The output has one row per text: label, score, prob_<label> per class.
"""

from __future__ import annotations

import pandas as pd
import mlflow
from mlflow.pyfunc import PythonModel


class TextclsModel(PythonModel):
    def load_context(self, context) -> None:
        from textcls_core.predictor import TextClassifier

        self.classifier = TextClassifier.load(context.artifacts["model_dir"])

    def predict(self, context, model_input: list[str], params=None) -> pd.DataFrame:
        return self.classifier.predict([t if isinstance(t, str) else "" for t in model_input])


mlflow.models.set_model(TextclsModel())
