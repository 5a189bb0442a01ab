"""Reading models back from the MLflow registry."""

from __future__ import annotations

import mlflow
from mlflow.exceptions import MlflowException

from tasks.tracking import client_for
from textcls_core.errors import TextclsError
from textcls_core.predictor import TextClassifier


def load_registered_classifier(model_uri: str, tracking_uri: str) -> TextClassifier:
    """The TextClassifier inside a registered pyfunc (models:/name@alias or models:/name/version)."""
    client_for(tracking_uri)
    try:
        return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().classifier
    except MlflowException as exc:
        raise TextclsError(f"Model '{model_uri}' cannot be loaded from {tracking_uri}: {exc.message.splitlines()[0]} "
                           "Check the name and alias/version in the MLflow UI (Models).") from None


def champion_classifier(name: str, tracking_uri: str) -> tuple[str | None, TextClassifier | None]:
    """(version, classifier) of the current @champion, or (None, None) when there is none."""
    client = client_for(tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None, None
    return str(mv.version), load_registered_classifier(f"models:/{name}/{mv.version}", tracking_uri)
