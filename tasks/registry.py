"""The MLflow registry: loading registered models, moving the champion alias, promote and rollback.

Every registration and alias change for one model name runs under `registry_lock` (MLflow has no
compare-and-set on aliases): a file lock beside a local store, a PostgreSQL advisory lock when the store is
PostgreSQL, and for other backends a lock in `registry.lock_uri` (or, failing that, this machine only, with
a warning). Whoever holds the lock re-reads the champion before deciding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import yaml
from filelock import FileLock, Timeout
from mlflow.exceptions import MlflowException

from tasks.events import PROMOTED, emit_model_event
from tasks.tracking import client_for
from textcls_core.dataset.fingerprint import load_fingerprint
from textcls_core.modeling.classifiers import load_classifier
from textcls_core.modeling.predictor import TextClassifier
from textcls_core.runtime.errors import TextclsError
from textcls_core.runtime.redact import redact_uri

_log = logging.getLogger("textcls.registry")
LOG_TAG_PREFIX = "textcls.log."  # registered-model tags textcls.log.000001...: append-only audit of registry changes
FALLBACK_LOCK_DIR = Path.home() / ".cache" / "textcls" / "locks"


class RegistryLockTimeout(TextclsError):
    """Another run or a promote/rollback held the registry lock for longer than registry.lock_timeout_s."""


def _lock_key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]


def lock_location(tracking_uri: str, lock_uri: str = "") -> tuple[str, str]:
    """(kind, where) of the lock for a store: ("postgresql", uri) or ("file", folder). Exposed for docs and tests."""
    target = lock_uri or tracking_uri
    parsed = urlparse(target)
    scheme = parsed.scheme.split("+")[0]
    if scheme in ("postgresql", "postgres"):
        return "postgresql", target
    if scheme == "sqlite":
        db = target.split(":///", 1)[1] if ":///" in target else ""
        if db and db != ":memory:":
            return "file", str(Path(db).resolve().parent)
    if scheme == "file":
        return "file", str(Path(parsed.path).resolve())
    if scheme == "" and target:
        return "file", str(Path(target).resolve())
    # MLflow server (http/https), MySQL, ...: nothing on this machine every writer sees. Documented fallback.
    return "fallback", str(FALLBACK_LOCK_DIR)


@contextmanager
def registry_lock(tracking_uri: str, name: str, lock_uri: str = "", timeout_s: float = 1800) -> Iterator[str]:
    """Hold the one lock for registering and aliasing `name`; yields a short description of the lock taken."""
    kind, where = lock_location(tracking_uri, lock_uri)
    if kind == "postgresql":
        with _advisory_lock(where, name, timeout_s):
            yield f"postgresql advisory lock ({urlparse(where).hostname})"
        return
    if kind == "fallback":
        _log.warning("registry lock for %s: the store %s offers no lock this machine can take for every writer; using a "
                     "lock in %s that serialises writers on THIS machine only. Set registry.lock_uri to the server's "
                     "PostgreSQL backend URI or to a folder all writers share.", name, tracking_uri, where)
    folder = Path(where)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".textcls-registry-{_lock_key(name)}.lock"
    lock = FileLock(str(path), timeout=timeout_s)
    try:
        lock.acquire()
    except Timeout:
        raise RegistryLockTimeout(f"Registry lock {path} for '{name}' was held by another run or promote/rollback for more "
                                  f"than {timeout_s:.0f} s. Wait for it to finish, or raise registry.lock_timeout_s.") from None
    try:
        yield f"file lock {path}"
    finally:
        lock.release()


def _with_installed_driver(uri: str) -> str:
    """postgresql://... names no driver; SQLAlchemy's default (psycopg 3) may not be the one installed (psycopg2)."""
    import importlib.util

    scheme, _, rest = uri.partition("://")
    if "+" in scheme:
        return uri
    for module in ("psycopg", "psycopg2"):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{module}://{rest}"
    return uri


@contextmanager
def _advisory_lock(uri: str, name: str, timeout_s: float) -> Iterator[None]:
    """pg_advisory_lock on a key derived from the model name, held by one session; the server releases it
    if this process dies, so a crashed run never leaves the registry locked."""
    import sqlalchemy

    key = int.from_bytes(hashlib.sha256(f"textcls-registry:{name}".encode()).digest()[:8], "big", signed=True)
    engine = sqlalchemy.create_engine(_with_installed_driver(uri), poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            deadline = time.monotonic() + timeout_s
            while not conn.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                conn.rollback()
                if time.monotonic() > deadline:
                    raise RegistryLockTimeout(f"PostgreSQL advisory lock for '{name}' was held by another run or promote/rollback "
                                              f"for more than {timeout_s:.0f} s. Wait for it, or raise registry.lock_timeout_s.")
                time.sleep(0.5)
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
    finally:
        engine.dispose()


def append_log(client, name: str, version: str, action: str, reason: str, by: str = "") -> str:
    """Append one entry to the model's audit log (call with the registry lock held); returns its tag key."""
    tags = client.get_registered_model(name).tags
    seq = 1 + max((int(k.removeprefix(LOG_TAG_PREFIX)) for k in tags if k.startswith(LOG_TAG_PREFIX)), default=0)
    key = f"{LOG_TAG_PREFIX}{seq:06d}"
    entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "version": str(version), "action": action,
             "by": by, "reason": reason[:1500]}
    client.set_registered_model_tag(name, key, json.dumps(entry, ensure_ascii=False))
    return key


def read_log(client, name: str) -> list[dict]:
    """The audit log, oldest first."""
    tags = client.get_registered_model(name).tags
    return [json.loads(tags[k]) for k in sorted(k for k in tags if k.startswith(LOG_TAG_PREFIX))]


def version_for_run(client, name: str, run_id: str) -> str | None:
    """The version of `name` registered from MLflow run `run_id` (a retried package step reuses it)."""
    try:
        found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except MlflowException:
        return None
    versions = sorted((int(v.version) for v in found), reverse=False)
    return str(versions[0]) if versions else None


def download_model_dir(name: str, version: str, tracking_uri: str, dst: str | Path) -> Path:
    """Download a registered version and return its TextClassifier folder (the pyfunc's `model_dir` artifact)."""
    client_for(tracking_uri)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(dst)))
    except MlflowException as exc:
        raise TextclsError(f"Model version {name}/{version} cannot be downloaded from {tracking_uri}: "
                           f"{exc.message.splitlines()[0]}") from None
    flavor = yaml.safe_load((local / "MLmodel").read_text(encoding="utf-8"))["flavors"]["python_function"]
    return local / flavor["artifacts"]["model_dir"]["path"]


def load_model_folder(folder: str | Path):
    """The classifier saved in a model folder, whatever its kind (network, tfidf_lr, ensemble)."""

    return load_classifier(folder)


_VERSIONS: dict[tuple, tuple[Any, object]] = {}
_VERSIONS_MAX = 2  # the champion a run compares with (and at most one more)


def load_version(name: str, version: str, tracking_uri: str, shared: bool = False) -> tuple[TextClassifier, object]:
    """(classifier, training fingerprint or None) of a registered version; None = registered before fingerprints.

    shared=True: one download and load per version in this process (a run's evaluation and its promotion gate
    both score the champion). A version's files never change once registered; the key also holds its creation
    time, so a store rebuilt at the same address is not mistaken for the old one. Only for callers that predict
    and never change the object."""
    key = None
    if shared:
        try:
            mv = client_for(tracking_uri).get_model_version(name, str(version))
            key = (tracking_uri, name, str(version), mv.creation_timestamp, mv.run_id)
        except MlflowException:
            key = None  # the download below fails with the usual message
        if key is not None and key in _VERSIONS:
            return _VERSIONS[key]
    folder = download_model_dir(name, version, tracking_uri, tempfile.mkdtemp(prefix=f"textcls-{_lock_key(name)}-v{version}-"))
    loaded = load_model_folder(folder), load_fingerprint(folder)
    if key is not None:
        while len(_VERSIONS) >= _VERSIONS_MAX:
            _VERSIONS.pop(next(iter(_VERSIONS)))
        _VERSIONS[key] = loaded
    return loaded


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
    return str(mv.version), load_version(name, str(mv.version), tracking_uri, shared=True)[0]  # the gate reuses it


HISTORY_TAG = "textcls.champion_history"  # registered-model tag: JSON list of earlier champion versions


def _history(client, name: str) -> list[str]:
    raw = client.get_registered_model(name).tags.get(HISTORY_TAG, "[]")
    return [str(v) for v in json.loads(raw)]


def current_champion(client, name: str) -> str | None:
    """The version @champion points to, or None when there is none (or no such model yet)."""
    try:
        return str(client.get_model_version_by_alias(name, "champion").version)
    except MlflowException:
        return None


def set_champion(client, name: str, version: str, reason: str, by: str = "", mlflow_run_id: str = "") -> str | None:
    """Move @champion to version (call with the registry lock held), remembering the previous champion so
    rollback is one command; the audit log gets an entry and a textcls.model.promoted event is emitted."""
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
    client.set_model_version_tag(name, str(version), "champion_reason", reason[:5000])
    append_log(client, name, version, "champion", f"from v{previous or '-'}: {reason}", by)
    emit_model_event(PROMOTED, name, str(version), [reason], mlflow_run_id, {"previous_champion": previous, "by": by})
    return previous


def promote_version(name: str, version: str, reason: str, tracking_uri: str, lock_uri: str = "",
                    lock_timeout_s: float = 1800) -> str | None:
    """A human's decision: make version the champion (the gate is not consulted). Waits for the registry lock."""
    client = client_for(tracking_uri)
    try:
        client.get_model_version(name, str(version))
    except MlflowException:
        raise TextclsError(f"Registered model '{name}' has no version {version}. List versions in the MLflow UI (Models > {name}).") from None
    with registry_lock(tracking_uri, name, lock_uri, lock_timeout_s):
        previous = set_champion(client, name, str(version), f"promoted by hand: {reason}", by="textcls promote")
        client.update_model_version(name, str(version), description=f"champion (promoted by hand): {reason}")
    return previous


def rollback_champion(name: str, reason: str, tracking_uri: str, lock_uri: str = "", lock_timeout_s: float = 1800) -> tuple[str, str]:
    """Give @champion back to the previous champion; returns (from_version, to_version). Waits for the registry lock."""
    client = client_for(tracking_uri)
    try:
        client.get_registered_model(name)
    except MlflowException:
        raise TextclsError(f"There is no registered model '{name}'. Check registry.model_name and tracking.uri.") from None
    with registry_lock(tracking_uri, name, lock_uri, lock_timeout_s):
        history = _history(client, name)  # read under the lock: a concurrent change cannot drop an entry
        current = current_champion(client, name)
        if not history:
            raise TextclsError(f"'{name}' has no earlier champion to roll back to (current champion: {current}).")
        target = history.pop()
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        client.set_registered_model_alias(name, "champion", target)
        client.set_model_version_tag(name, target, "champion_reason", f"rollback from v{current}: {reason}")
        if current is not None:
            client.set_model_version_tag(name, current, "rolled_back", reason)
        append_log(client, name, target, "rollback", f"from v{current}: {reason}", "textcls rollback")
    emit_model_event(PROMOTED, name, target, [f"rollback from v{current}: {reason}"], payload={"previous_champion": current,
                                                                                               "by": "textcls rollback"})
    return str(current), target
