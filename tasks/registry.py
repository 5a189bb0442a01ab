"""The MLflow registry: loading registered models, moving the champion alias, promote and rollback."""

from __future__ import annotations

import json

import mlflow
from mlflow.exceptions import MlflowException

from tasks.tracking import client_for
from textcls_core.errors import TextclsError
from textcls_core.predictor import TextClassifier
from textcls_core.redact import redact_uri


def load_registered_classifier(model_uri: str, tracking_uri: str) -> TextClassifier:
    """The TextClassifier inside a registered pyfunc (models:/name@alias or models:/name/version)."""
    client_for(tracking_uri)
    try:
        return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().classifier
    except MlflowException as exc:
        raise TextclsError(f"Model '{model_uri}' cannot be loaded from {redact_uri(tracking_uri)}: {exc.message.splitlines()[0]} "
                           "Check the name and alias/version in the MLflow UI (Models).") from None


def champion_classifier(name: str, tracking_uri: str) -> tuple[str | None, TextClassifier | None]:
    """(version, classifier) of the current @champion, or (None, None) when there is none."""
    client = client_for(tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None, None
    return str(mv.version), load_registered_classifier(f"models:/{name}/{mv.version}", tracking_uri)


HISTORY_TAG = "textcls.champion_history"  # registered-model tag: JSON list of earlier champion versions


def _history(client, name: str) -> list[str]:
    raw = client.get_registered_model(name).tags.get(HISTORY_TAG, "[]")
    return [str(v) for v in json.loads(raw)]


def champion_metric(client, name: str, metric: str) -> tuple[str | None, float | None]:
    """(version, value of the version's `metric` tag) of the current champion, or (None, None) when there is none."""
    try:
        mv = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None, None
    value = mv.tags.get(metric)
    return str(mv.version), float(value) if value is not None else None


def current_champion(client, name: str) -> str | None:
    return champion_metric(client, name, "")[0]


def set_champion(client, name: str, version: str, reason: str) -> str | None:
    """Move @champion to version, remembering the previous champion so rollback is one command."""
    previous = current_champion(client, name)
    if previous == str(version):
        return previous
    if previous is not None:
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(_history(client, name) + [previous]))
        client.set_model_version_tag(name, str(version), "previous_champion", previous)
        try:
            if str(client.get_model_version_by_alias(name, "challenger").version) == str(version):
                client.delete_registered_model_alias(name, "challenger")
        except MlflowException:
            pass
    client.set_registered_model_alias(name, "champion", str(version))
    client.set_model_version_tag(name, str(version), "champion_reason", reason)
    return previous


def promote_version(name: str, version: str, reason: str, tracking_uri: str) -> str | None:
    """A human's decision: make version the champion (the gate is not consulted)."""
    client = client_for(tracking_uri)
    try:
        client.get_model_version(name, str(version))
    except MlflowException:
        raise TextclsError(f"Registered model '{name}' has no version {version}. List versions in the MLflow UI (Models > {name}).") from None
    previous = set_champion(client, name, str(version), f"promoted by hand: {reason}")
    client.update_model_version(name, str(version), description=f"champion (promoted by hand): {reason}")
    return previous


def rollback_champion(name: str, reason: str, tracking_uri: str) -> tuple[str, str]:
    """Give @champion back to the previous champion; returns (from_version, to_version)."""
    client = client_for(tracking_uri)
    try:
        history = _history(client, name)
    except MlflowException:
        raise TextclsError(f"There is no registered model '{name}'. Check registry.model_name and tracking.uri.") from None
    current = current_champion(client, name)
    if not history:
        raise TextclsError(f"'{name}' has no earlier champion to roll back to (current champion: {current}).")
    target = history.pop()
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_registered_model_alias(name, "champion", target)
    client.set_model_version_tag(name, target, "champion_reason", f"rollback from v{current}: {reason}")
    if current is not None:
        client.set_model_version_tag(name, current, "rolled_back", reason)
    return str(current), target
