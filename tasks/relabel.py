"""Relabel stage: apply a reviewed queue, log the corrected data set as a new MLflow dataset version that points to
its parent, and (for the next training run) look that lineage up again by the file's sha256."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.tracking import _experiment_id, client_for, get_run_logger
from textcls_core.dataset.read import read_table
from textcls_core.dataset.relabel import relabel_file, source_file_sha256
from textcls_core.runtime.config import DataConfig

OUTPUT_TAG = "textcls.relabel.output_sha256"  # run tag of a relabel run: the corrected file's sha256
PARENT_TAG = "textcls.relabel.parent_sha256"


def _digest(sha256: str) -> str:
    return sha256[:16]  # MLflow's dataset digest column is short; the full sha256 is in the input tags


@task(name="relabel-apply", cache_policy=NO_CACHE)
def relabel_task(queue_path: str, data_cfg: DataConfig, output_path: str, tracking_uri: str, experiment: str) -> dict[str, Any]:
    """Write the corrected copy, its changelog and lineage JSON beside it, and an MLflow run with both dataset versions."""
    log = get_run_logger()
    result, lineage = relabel_file(queue_path, data_cfg.path, output_path or None, data_cfg.text_column,
                                   data_cfg.label_column, data_cfg.encoding)
    out = Path(lineage["path"])
    changelog_path = out.with_name(f"{out.stem}.changelog.csv")
    lineage_path = out.with_name(f"{out.stem}.lineage.json")
    result.changelog.to_csv(changelog_path, index=False, encoding="utf-8")
    client = client_for(tracking_uri)
    exp_id = _experiment_id(client, experiment, tracking_uri)
    name = Path(data_cfg.path).stem
    with mlflow.start_run(experiment_id=exp_id, run_name=f"relabel-{name}") as run:
        parent = mlflow.data.from_pandas(read_table(Path(data_cfg.path), data_cfg.encoding), source=lineage["parent_path"],
                                         name=name, digest=_digest(lineage["parent_sha256"]))
        child = mlflow.data.from_pandas(result.table, source=lineage["path"], name=name, digest=_digest(lineage["sha256"]),
                                        targets=data_cfg.label_column)
        mlflow.log_input(parent, context="parent", tags={"textcls.sha256": lineage["parent_sha256"]})
        mlflow.log_input(child, context="relabeled", tags={
            "textcls.sha256": lineage["sha256"], "textcls.parent_digest": _digest(lineage["parent_sha256"]),
            "textcls.parent_sha256": lineage["parent_sha256"], "textcls.parent_path": lineage["parent_path"]})
        mlflow.set_tags({OUTPUT_TAG: lineage["sha256"], PARENT_TAG: lineage["parent_sha256"], "textcls.flow": "relabel",
                         "textcls.data_path": lineage["parent_path"], "textcls.relabel.output_path": lineage["path"],
                         "prefect.flow_run_id": str(flow_run.id) if flow_run.id else ""})
        mlflow.log_metrics({f"relabel_{k}": float(v) for k, v in result.counts.items()})
        lineage |= {"mlflow_run_id": run.info.run_id, "mlflow_tracking_uri": tracking_uri, "changelog_path": str(changelog_path)}
        lineage_path.write_text(json.dumps(lineage, ensure_ascii=False, indent=2), encoding="utf-8")
        mlflow.log_artifact(str(changelog_path), "relabel")
        mlflow.log_artifact(str(lineage_path), "relabel")
    c = result.counts
    text = (f"## textcls relabel of `{name}`\n- {c['relabelled']} labels changed, {c['dropped']} rows dropped, {c['kept']} kept "
            f"({c['undecided']} undecided) of {c['rows_in']} rows\n- corrected copy: `{out}`\n- changelog: `{changelog_path}`\n")
    if flow_run.id:
        create_markdown_artifact(text, key="textcls-relabel", description="relabel round")
    log.info("relabel: %s -> %s: %d relabelled, %d dropped, %d kept (%d undecided)", data_cfg.path, out,
             c["relabelled"], c["dropped"], c["kept"], c["undecided"])
    return lineage | {"lineage_path": str(lineage_path)}


def relabel_lineage(data_path: str, tracking_uri: str, experiment_id: str) -> dict[str, Any] | None:
    """If data_path is a corrected copy made by `textcls relabel apply` (found by its sha256 on a relabel run in the
    experiment), how it differs from its parent; else None."""
    sha = source_file_sha256(data_path)
    if not sha:
        return None
    runs = client_for(tracking_uri).search_runs([experiment_id], filter_string=f"tags.`{OUTPUT_TAG}` = '{sha}'",
                                                max_results=1, order_by=["attributes.start_time DESC"])
    if not runs:
        return None
    r = runs[0]
    return {"parent_sha256": r.data.tags.get(PARENT_TAG, ""), "parent_path": r.data.tags.get("textcls.data_path", ""),
            "labels_changed": int(r.data.metrics.get("relabel_relabelled", 0)),
            "rows_dropped": int(r.data.metrics.get("relabel_dropped", 0)), "relabel_run_id": r.info.run_id}
