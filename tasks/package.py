"""Packaging stage: log the pyfunc, register a new version with its provenance, and run the promotion gate."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.registry import champion_classifier, champion_metric, set_champion
from tasks.tracking import client_for, get_run_logger
from textcls_core.config import Config
from textcls_core.data import read_dataset
from textcls_core.gate import check_promotion
from textcls_core.predictor import TextClassifier

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
CORE_DIR = Path(__file__).resolve().parent.parent / "textcls_core"
INPUT_EXAMPLE = ["这本书很好看", "质量太差了"]
# what the pyfunc imports at load time; versions pinned to this environment's
_REQUIREMENTS = ("torch", "jieba", "pandas", "numpy", "pydantic", "pyyaml", "scikit-learn", "mlflow")


_PRETRAINED_REQUIREMENTS = ("transformers", "tokenizers", "safetensors")


def pip_requirements(pretrained: bool = False) -> list[str]:
    names = _REQUIREMENTS + (_PRETRAINED_REQUIREMENTS if pretrained else ())
    return [f"{name}=={version(name).split('+')[0]}" for name in names]


def config_sha256(cfg: Config) -> str:
    return hashlib.sha256(json.dumps(cfg.model_dump(), sort_keys=True).encode()).hexdigest()


def git_commit() -> str:
    """The commit of the code that trained the model, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _regression_accuracies(cfg: Config, model_dir: str, champion: TextClassifier | None) -> tuple[float, float | None]:
    d = cfg.data
    frame = read_dataset(cfg.registry.regression_set, d.text_column, d.label_column, d.encoding)
    texts, truth = frame["text"].tolist(), frame["label"].to_numpy()

    def acc(clf: TextClassifier) -> float:
        return float((clf.predict(texts)["label"].to_numpy() == truth).mean())

    return acc(TextClassifier.load(model_dir)), (acc(champion) if champion is not None else None)


@task(name="package", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def package_task(model_dir: str, metrics: dict[str, float], per_class: dict[str, dict], cfg: Config,
                 tracking: dict[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    """Log + register; `champion` only when every gate check passes, else `challenger`, reasons recorded."""
    log = get_run_logger()
    client = client_for(tracking["tracking_uri"])
    reg = cfg.registry
    name, metric = reg.model_name, reg.metric
    with mlflow.start_run(run_id=tracking["run_id"]):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(PYFUNC_FILE), artifacts={"model_dir": model_dir},
            code_paths=[str(CORE_DIR)], input_example=INPUT_EXAMPLE, pip_requirements=pip_requirements(cfg.model.name == "transformer"))
    provenance = {**tags, "config_sha256": config_sha256(cfg), "git_commit": git_commit()}
    mv = mlflow.register_model(info.model_uri, name, tags={**provenance, **{k: str(v) for k, v in metrics.items()}})
    prev_version, prev_value = champion_metric(client, name, metric)
    regression = None
    if reg.regression_set:
        _, champion = champion_classifier(name, tracking["tracking_uri"]) if prev_version else (None, None)
        regression = _regression_accuracies(cfg, model_dir, champion)
    gate = check_promotion(metric, metrics[metric], {k: v["f1"] for k, v in per_class.items()}, prev_value,
                           reg.min_metric, reg.min_class_f1, reg.min_improvement, regression, reg.regression_tolerance)
    reason = gate.describe()
    version_ = str(mv.version)
    if gate.passed:
        alias = "champion"
        set_champion(client, name, version_, reason)
    else:
        alias = "challenger"
        client.set_registered_model_alias(name, "challenger", version_)
    client.set_model_version_tag(name, version_, "gate", "passed" if gate.passed else "failed")
    client.set_model_version_tag(name, version_, "gate_checks", reason[:5000])
    client.update_model_version(name, version_, description=f"{alias}: {reason}")
    log.info("package: registered %s version %s as @%s (%s)", name, version_, alias, reason)
    return {"model_name": name, "version": version_, "alias": alias, "reason": reason,
            "gate_failures": gate.reasons, "gate_checks": gate.checks,
            "model_uri": f"models:/{name}@{alias}", "logged_model_uri": info.model_uri, "previous_champion": prev_version}
