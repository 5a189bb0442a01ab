"""Packaging stage: log the pyfunc, register a new version with its provenance, and run the promotion gate.

Idempotent: a retried step finds the version its MLflow run already registered and reuses it; once the gate
decision is recorded (version tag `gate`), a retry returns it. Registration and the alias change run under the
registry lock, with the champion re-read after the lock is taken (tasks/registry.py).
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.artifacts import run_artifact_key
from tasks.events import GATE_FAILED, REGISTERED, emit_model_event
from tasks.registry import (
    append_log,
    current_champion,
    load_version,
    registry_lock,
    set_champion,
    version_for_run,
)
from tasks.results import Package, RunContext
from tasks.runguard import mark_stage, parquet_rows
from tasks.tracking import client_for, get_run_logger, git_commit, log_metrics_now, split_datasets
from textcls_core.dataset.fingerprint import build_fingerprint, load_fingerprint, save_fingerprint, unseen_mask
from textcls_core.dataset.read import read_dataset
from textcls_core.evaluation.stress import flip_rate_checks, read_flip_rates
from textcls_core.modeling.classifiers import load_classifier
from textcls_core.registry.gate import ALREADY_CHAMPION, NO_CHAMPION, Comparison, GateResult, compare_on_rows, decide_promotion
from textcls_core.registry.gate_inputs import SavedPredictions
from textcls_core.registry.model_card import CardFacts, registered_model_card, version_card
from textcls_core.runtime.config import Config
from textcls_core.runtime.errors import DataError
from textcls_core.runtime.redact import redact_uri

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
CORE_DIR = Path(__file__).resolve().parent.parent / "textcls_core"
INPUT_EXAMPLE = ["这本书很好看", "质量太差了"]
# what the pyfunc imports at load time; versions pinned to this environment's
# psutil: textcls_core.runtime.procs (imported by tokenize) reads the CPU quota with it; the fresh-virtualenv test found it missing
_REQUIREMENTS = ("torch", "jieba", "pandas", "numpy", "pydantic", "pyyaml", "scikit-learn", "mlflow", "psutil")


_PRETRAINED_REQUIREMENTS = ("transformers", "tokenizers", "safetensors")


def pip_requirements(pretrained: bool = False, t2s: bool = False) -> list[str]:
    """What the pyfunc imports in a fresh environment: the core stack, the transformers stack for pretrained
    encoders, and OpenCC when cleaning converts traditional to simplified (the encoder runs it on every request)."""
    names = _REQUIREMENTS + (_PRETRAINED_REQUIREMENTS if pretrained else ()) + (("opencc",) if t2s else ())
    return [f"{name}=={version(name).split('+')[0]}" for name in names]


def config_sha256(cfg: Config) -> str:
    return hashlib.sha256(json.dumps(cfg.model_dump(), sort_keys=True).encode()).hexdigest()


def _regression_accuracies(cfg: Config, candidate, champion) -> tuple[float, float | None]:
    d = cfg.data
    frame = read_dataset(cfg.registry.regression_set, d.text_column, d.label_column, d.encoding)
    texts, truth = frame["text"].tolist(), frame["label"].to_numpy()

    def acc(clf) -> float:
        return float((clf.predict(texts)["label"].to_numpy() == truth).mean())

    return acc(candidate), (acc(champion) if champion is not None else None)


def read_eval_set(cfg: Config) -> pd.DataFrame:
    """registry.eval_set as (text, label) rows with both present; a clear error when it cannot be used."""
    d = cfg.data
    frame = read_dataset(cfg.registry.eval_set, d.text_column, d.label_column, d.encoding)
    frame = frame[frame["text"].astype(str).str.strip().ne("") & frame["label"].notna()].reset_index(drop=True)
    if frame.empty:
        raise DataError(f"registry.eval_set '{cfg.registry.eval_set}' has no row with both a text and a label. "
                        f"Point it at a labelled file with columns {d.text_column!r} and {d.label_column!r}.")
    return frame[["text", "label"]].astype({"label": str})


def _predicted_ids(clf, texts: list[str], labels: list[str], batch_size: int) -> np.ndarray:
    """argmax class of clf per text, as an index into `labels` (-1 for a class `labels` does not have)."""
    probs = clf.predict_proba(texts, batch_size)
    own = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=int)
    index = np.array([labels.index(n) if n in labels else -1 for n in clf.labels])
    return index[own]


def _write_gate_report(gate: GateResult, result: dict[str, Any], tracking: RunContext) -> Path:
    """gate.json + gate.md in the run folder and MLflow (evaluation/), and a Prefect markdown artifact."""
    out = Path(tracking["run_dir"]) / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gate.json").write_text(json.dumps(result, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    s = gate.summary()
    lines = [f"## Promotion gate: `{result['model_name']}` v{result['version']} -> @{result['alias']}", "",
             f"- comparison: {s['gate.outcome']} ({s['gate.basis'] or 'no champion'}), n = {s['gate.n_shared_rows']}"]
    if "gate.ci_low" in s:
        lines.append(f"- {s['gate.metric']}: candidate {s['gate.candidate']:.4f}, champion v{s['gate.champion_version']} "
                     f"{s['gate.champion']:.4f}, delta {s['gate.delta']:+.4f}, interval [{s['gate.ci_low']:+.4f}, "
                     f"{s['gate.ci_high']:+.4f}] at {s['gate.confidence']:.0%} one-sided, p = {s['gate.p_value']:.3f}")
    lines += ["", "| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c['check']} | {'PASS' if c['passed'] else 'FAIL'} | {c['detail']} |" for c in gate.checks]
    (out / "gate.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    client = client_for(tracking["tracking_uri"])
    for f in ("gate.json", "gate.md"):
        client.log_artifact(tracking["run_id"], str(out / f), "evaluation")
    if flow_run.id:
        create_markdown_artifact("\n".join(lines), key=run_artifact_key("gate"), description="textcls promotion gate")
    return out / "gate.json"


def _link_test_metrics(model_id: str, metrics: dict[str, float], tracking: RunContext,
                       split_paths: dict[str, str] | None) -> None:
    """The test metrics again, tied to the Logged Model and to the test dataset: the model page, the version page
    and the dataset view then show them (the run keeps its own copy from the evaluate stage)."""
    test = {k: float(v) for k, v in metrics.items() if k.startswith(("test_", "baseline_test_")) and isinstance(v, (int, float))}
    if not split_paths or not test:
        return
    sha = client_for(tracking["tracking_uri"]).get_run(tracking["run_id"]).data.tags.get("textcls.test_sha256", "")
    dataset = split_datasets(tracking, {"test": split_paths["test"]}, {"test": sha})["test"] if sha else None
    mlflow.log_metrics(test, model_id=model_id, dataset=dataset)


def _card(name: str, version: str, alias: str, cfg: Config, candidate: Any, metrics: dict[str, float],
          per_class: dict[str, dict], gate: Any, tracking: RunContext, tags: dict[str, str],
          split_paths: dict[str, str] | None) -> str:
    rows = {k: parquet_rows(p) for k, p in (split_paths or {}).items()}
    kind = getattr(candidate, "kind", None) or cfg.model.name
    run = client_for(tracking["tracking_uri"]).get_run(tracking["run_id"])
    facts = CardFacts(name=name, version=version, alias=alias, data_path=redact_uri(cfg.data.path), rows=rows,
                      labels=[str(x) for x in candidate.labels], model_kind=run.data.tags.get("textcls.candidate", str(kind)),
                      config_sha256=config_sha256(cfg), dataset_sha256=tags.get("dataset_sha256", ""), metrics=metrics,
                      per_class=per_class, gate_checks=gate.checks, gate_summary=gate.summary(), mlflow_run_id=tracking["run_id"],
                      git_commit=git_commit())
    return version_card(facts)


@task(name="package", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def package_task(model_dir: str, metrics: dict[str, float], per_class: dict[str, dict], cfg: Config,
                 tracking: RunContext, tags: dict[str, str], split_paths: dict[str, str] | None = None,
                 predictions: str | None = None) -> Package:
    """Log + register; `champion` only when every gate check passes, else `challenger`, reasons recorded.

    split_paths: the run's train/val/test Parquet files: train+val make the version's training fingerprint, the
    test split is where candidate and champion are compared (unless registry.eval_set is set).
    predictions: the evaluation's per-row predictions of the test split (registry/gate_inputs.py); the gate uses
    them instead of scoring the split again, the champion's only when they were made by the champion it compares.
    """
    mark_stage("package")  # watchdog: this stage's time bound starts now
    log = get_run_logger()
    uri, run_id = tracking["tracking_uri"], tracking["run_id"]
    client = client_for(uri)
    reg = cfg.registry
    name, metric = reg.model_name, reg.metric

    def locked():
        return registry_lock(uri, name, reg.lock_uri, reg.lock_timeout_s)

    version_ = version_for_run(client, name, run_id)
    if version_ is not None:
        recorded = Path(tracking["run_dir"]) / "evaluation" / "gate.json"
        if "gate" in client.get_model_version(name, version_).tags and recorded.is_file():
            log.info("package: %s version %s was registered and gated by this run in an earlier attempt; reusing it", name, version_)
            return json.loads(recorded.read_text(encoding="utf-8"))
        log.info("package: reusing %s version %s, registered by this run in an earlier attempt", name, version_)
    else:
        if split_paths:  # which texts this version has seen, shipped inside the model (a tag would be capped)
            seen = [pd.read_parquet(split_paths[k], columns=["text"])["text"].astype(str).tolist() for k in ("train", "val")]
            save_fingerprint(model_dir, build_fingerprint(*seen))
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(PYFUNC_FILE), artifacts={"model_dir": model_dir},
                code_paths=[str(CORE_DIR)], input_example=INPUT_EXAMPLE, model_config=cfg.serve.model_dump(),
                pip_requirements=pip_requirements(cfg.model.name == "transformer", cfg.clean.traditional_to_simplified))
            _link_test_metrics(info.model_id, metrics, tracking, split_paths)
        # version tags are provenance only; the metrics live on the Logged Model and the run, tied to the test dataset
        provenance = {**tags, "config_sha256": config_sha256(cfg), "git_commit": git_commit() or "unknown"}
        with locked():
            mv = mlflow.register_model(info.model_uri, name, tags=provenance)
            version_ = str(mv.version)
            append_log(client, name, version_, "registered", f"MLflow run {run_id}", run_id)
        emit_model_event(REGISTERED, name, version_, mlflow_run_id=run_id, payload={"metrics": {k: metrics[k] for k in (metric,) if k in metrics}})

    # rows to compare on: the fixed eval set, or this run's test split (never trained on by this run)
    candidate = load_classifier(model_dir, shared=True)  # the stages before loaded it: one load per run
    labels = list(candidate.labels)
    if reg.eval_set:
        rows, where = read_eval_set(cfg), f"registry.eval_set {Path(reg.eval_set).name}"
    elif split_paths:
        rows, where = pd.read_parquet(split_paths["test"]), "test split"
    else:
        rows, where = pd.DataFrame({"text": [], "label": []}), "no rows (no split given)"
    keep = rows["label"].astype(str).isin(labels).to_numpy()
    saved = SavedPredictions(predictions if split_paths and not reg.eval_set else None,
                             (split_paths or {}).get("test"), len(keep))
    rows = rows[keep].reset_index(drop=True)
    texts = rows["text"].astype(str).tolist()  # matched against fingerprints (the cleaned text both were built from)
    inputs = rows["raw_text"].astype(str).tolist() if "raw_text" in rows.columns else texts  # what the models are given
    y = np.array([labels.index(str(v)) for v in rows["label"]], dtype=np.int64)
    batch = cfg.evaluate.batch_size
    position = {n: i for i, n in enumerate(labels)}

    def ids(predicted: np.ndarray) -> np.ndarray:  # saved labels -> indices into labels (-1: a class it lacks)
        return np.array([position.get(str(n), -1) for n in predicted[keep]], dtype=np.int64)

    if saved.model is not None:
        cand_pred = ids(saved.model)
    else:
        cand_pred = _predicted_ids(candidate, inputs, labels, batch) if texts else np.zeros(0, dtype=np.int64)
    cand_fp = load_fingerprint(model_dir)
    compared: dict[str | None, tuple[Comparison, Any]] = {}

    def compare(champ_version: str | None) -> tuple[Comparison, Any]:
        """Candidate vs this champion on rows neither trained on (memoised: re-used when the champion did not change)."""
        if champ_version not in compared:
            if champ_version is None:
                compared[None] = (Comparison(NO_CHAMPION, ""), None)
            elif champ_version == version_:  # an earlier attempt of this step already made it champion
                compared[champ_version] = (Comparison(ALREADY_CHAMPION, "set by an earlier attempt of this step", 0, champ_version), None)
            else:
                champion, champ_fp = load_version(name, champ_version, uri, shared=True)  # loaded by the evaluation
                shared = unseen_mask(texts, champ_fp, cand_fp if reg.eval_set else None)
                if champ_fp is None:
                    basis = f"{where}; overlap unknown: v{champ_version} has no training fingerprint"
                else:
                    basis = f"{where} minus v{champ_version}'s training texts" + (" and this run's" if reg.eval_set else "")
                scored = saved.for_champion(champ_version)  # the evaluation's, when it scored this same version
                if scored is not None:
                    champ_pred = ids(scored)
                else:
                    champ_pred = _predicted_ids(champion, inputs, labels, batch) if texts else np.zeros(0, dtype=np.int64)
                comparison = compare_on_rows(y, cand_pred, champ_pred, shared, len(labels), champ_version, basis,
                                             champ_fp is not None, metric.removeprefix("test_"), reg.min_shared_rows,
                                             reg.bootstrap_samples, reg.confidence, reg.min_improvement)
                compared[champ_version] = (comparison, champion)
        return compared[champ_version]

    compare(current_champion(client, name))  # the slow part (download + scoring), before taking the lock
    val_name = metric.replace("test_", "val_", 1)
    baseline = (metrics.get(val_name, float("nan")), metrics.get(f"baseline_{val_name}"), reg.baseline_margin) if reg.baseline_check else None
    if baseline is not None and val_name not in metrics:
        baseline = (0.0, None, reg.baseline_margin)  # evaluate gave no validation metrics: recorded as skipped
    # -- stress gate hook (#15, tasks/stress.py): registry.max_flip_rate against this run's evaluation/stress.json --
    stress_checks = flip_rate_checks(read_flip_rates(Path(tracking["run_dir"]) / "evaluation" / "stress.json"), reg.max_flip_rate)
    # -- end of the stress gate hook --
    with locked() as lock_name:
        champ_now = current_champion(client, name)  # re-read under the lock: MLflow has no compare-and-set on aliases
        comparison, champion = compare(champ_now)
        regression = _regression_accuracies(cfg, candidate, champion) if reg.regression_set else None
        gate = decide_promotion(metric, metrics[metric], {k: v["f1"] for k, v in per_class.items()}, comparison,
                                reg.min_metric, reg.min_class_f1, reg.min_improvement, reg.min_shared_rows, baseline,
                                regression, reg.regression_tolerance, stress_checks)
        reason = gate.describe()
        if gate.passed:
            alias = "champion"
            set_champion(client, name, version_, reason, by=run_id, mlflow_run_id=run_id)
        else:
            alias = "challenger"
            client.set_registered_model_alias(name, "challenger", version_)
            append_log(client, name, version_, "challenger", "; ".join(gate.reasons), run_id)
        summary = gate.summary()
        for key, value in summary.items():
            if value is not None:
                client.set_model_version_tag(name, version_, key, str(value))
        client.set_model_version_tag(name, version_, "gate_checks", reason[:5000])
        client.update_model_version(name, version_, description=_card(name, version_, alias, cfg, candidate, metrics, per_class,
                                                                      gate, tracking, tags, split_paths))
        if not client.get_registered_model(name).description:
            client.update_registered_model(name, description=registered_model_card(name, redact_uri(cfg.data.path), labels))
        client.set_model_version_tag(name, version_, "gate", "passed" if gate.passed else "failed")  # written last: the decision is complete
    log.info("package: registered %s version %s as @%s under the %s (%s)", name, version_, alias, lock_name, reason)
    if not gate.passed:
        emit_model_event(GATE_FAILED, name, version_, gate.reasons, run_id, {"checks": gate.checks, **summary})
    log_metrics_now(tracking, {k.replace(".", "_"): float(v) for k, v in summary.items()
                               if isinstance(v, (int, float)) and not isinstance(v, bool)})
    result = {"model_name": name, "version": version_, "alias": alias, "reason": reason,
              "gate_failures": gate.reasons, "gate_checks": gate.checks,
              "model_uri": f"models:/{name}@{alias}", "model_version_uri": f"models:/{name}/{version_}",
              "previous_champion": champ_now, **summary}
    _write_gate_report(gate, result, tracking)
    return result
