"""Run summary: one JSON with what a user needs next, written to disk, MLflow and a Prefect artifact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.artifacts import run_artifact_key
from tasks.relabel import relabel_lineage
from tasks.results import Analysis, Candidates, Cleaning, Evaluation, Package, RunContext, Split, Stress, Trained
from tasks.runguard import mark_stage
from tasks.tracking import client_for
from textcls_core.registry.tracking_names import clip
from textcls_core.runtime.redact import redact_uri


def summary_markdown(s: dict[str, Any]) -> str:
    m = s["metrics"]
    lines = [
        f"## textcls run `{s['mlflow_run_id']}`",
        f"- test accuracy **{m['test_accuracy']:.4f}**, macro-F1 **{m['test_macro_f1']:.4f}** on {s['rows']['test']} texts",
        f"- rows: {s['rows']['read']} read, {s['rows']['kept']} kept, {s['rows']['dropped']} dropped {s['dropped_by_reason']}",
        *([f"- shipped **{s['candidates']['shipped']}**: {s['candidates']['reason']}"] if s.get("candidates") else []),
        f"- registered `{s['model_name']}` version {s['model_version']} as **@{s['model_alias']}** ({s['alias_reason']})",
        f"- files: `{s['run_dir']}`; badcases: `{s['reports']['badcases']}`",
        f"- MLflow UI: `{s['mlflow_ui_command']}`",
    ]
    if s.get("stress"):
        worst = sorted(s["stress"]["perturbations"], key=lambda r: -r["flip_rate"])[:3]
        lines.append(f"- stress ({s['stress']['n']} texts): highest flip rates "
                     + ", ".join(f"{r['perturbation']} {r['flip_rate']:.3f}" for r in worst) + f"; `{s['reports']['stress_html']}`")
    if s.get("relabel"):
        r = s["relabel"]
        lines.append(f"- data is a relabelled copy: {r['labels_changed']} labels changed, {r['rows_dropped']} rows dropped since its parent `{r['parent_path']}`")
    return "\n".join(lines) + "\n"


def _relabel_since_parent(tracking: RunContext) -> dict[str, Any] | None:
    """When the run's data file is a copy made by `textcls relabel apply`: how many labels changed since its parent
    (also tagged and logged on the run, so the MLflow UI shows it)."""
    client = client_for(tracking["tracking_uri"])
    path = client.get_run(tracking["run_id"]).data.tags.get("textcls.data_path", "")
    lineage = relabel_lineage(path, tracking["tracking_uri"], tracking["experiment_id"]) if path else None
    if lineage:
        client.set_tag(tracking["run_id"], "textcls.data_parent_sha256", lineage["parent_sha256"])
        client.set_tag(tracking["run_id"], "textcls.data_relabel_run_id", lineage["relabel_run_id"])
        client.log_metric(tracking["run_id"], "data_labels_changed_since_parent", lineage["labels_changed"])
    return lineage


@task(name="write-summary", cache_policy=NO_CACHE)
def summary_task(tracking: RunContext, analysis: Analysis, cleaning: Cleaning, split: Split,
                 trained: Trained | None, evaluation: Evaluation, package: Package,
                 summary_path: str | None = None, stress: Stress | None = None,
                 candidates: Candidates | None = None) -> dict[str, Any]:
    mark_stage("summary")  # watchdog: this stage's time bound starts now
    uri = tracking["tracking_uri"]
    shown_uri = redact_uri(uri)  # the summary is written, logged and printed: no credentials in it
    run_dir = Path(tracking["run_dir"])
    ui = f"mlflow ui --backend-store-uri {shown_uri}" if uri.startswith("sqlite") else f"open {shown_uri}"
    summary = {
        "mlflow_tracking_uri": shown_uri, "mlflow_run_id": tracking["run_id"], "mlflow_experiment_id": tracking["experiment_id"],
        "prefect_flow_run_id": str(flow_run.id) if flow_run.id else None,
        "metrics": evaluation["metrics"], "per_class": evaluation["per_class"],
        # no network trained (model.candidates without `model`, or model.name tfidf_lr): no epochs, CPU
        "best_epoch": trained["best_epoch"] if trained else None,
        "best_val_accuracy": trained["best_val_accuracy"] if trained else None, "device": trained["device"] if trained else "cpu",
        "rows": {"read": analysis["stats"]["rows_read"], "used": cleaning["rows_in"], "kept": cleaning["rows_kept"],
                 "dropped": cleaning["rows_dropped"], **split["rows"]},
        "dropped_by_reason": cleaning["dropped_by_reason"], "dataset_sha256": split["dataset_sha256"],
        "model_name": package["model_name"], "model_version": package["version"], "model_alias": package["alias"],
        "alias_reason": package["reason"], "gate_failures": package.get("gate_failures", []), "model_uri": package["model_uri"],
        **{k: v for k, v in package.items() if k.startswith("gate.")},  # n, interval, decision of the promotion gate (#10)
        "run_dir": str(run_dir),
        "champion_compared": evaluation.get("champion_version"),
        "reports": {"analysis": str(run_dir / "reports" / "analysis.md"), "dropped_rows": cleaning["dropped_path"],
                    "html": evaluation["report_path"], "relabel_queue": evaluation.get("relabel_queue_path"),
                    "metrics": str(Path(evaluation["dir"]) / "metrics.json"), "badcases": evaluation["badcases_path"],
                    "confusion_matrix": str(Path(evaluation["dir"]) / "confusion_matrix.png"),
                    "gate": str(run_dir / "evaluation" / "gate.md")},
        "mlflow_ui_command": ui,
    }
    if candidates:  # every candidate on validation and test, the shipped one marked and why (#14)
        summary["candidates"] = {"shipped": candidates["chosen_name"], "reason": candidates["reason"], "notes": candidates["notes"],
                                 "table": [{k: v for k, v in r.items() if k != "model_dir"} for r in candidates["table"]]}
        summary["reports"]["candidates"] = candidates["path"]
    if stress:  # the stress stage (#15): one row per perturbation, worst flip rate first in the markdown
        summary["stress"] = {"n": stress["n"], "clean": stress["clean"], "perturbations": stress["table"],
                             "seconds": stress["seconds"]}
        summary["reports"]["stress_html"] = stress["html_path"]
    summary["relabel"] = _relabel_since_parent(tracking)
    text = json.dumps(summary, ensure_ascii=False, indent=2)
    (run_dir / "summary.json").write_text(text, encoding="utf-8")
    if summary_path:
        Path(summary_path).parent.mkdir(parents=True, exist_ok=True)
        Path(summary_path).write_text(text, encoding="utf-8")
    client_for(uri).log_artifact(tracking["run_id"], str(run_dir / "summary.json"))
    # the run page's Description: the same markdown as the Prefect artifact
    client_for(uri).set_tag(tracking["run_id"], "mlflow.note.content", clip(summary_markdown(summary)))
    if flow_run.id:
        create_markdown_artifact(summary_markdown(summary), key=run_artifact_key("summary"), description="textcls run summary")
    return summary
