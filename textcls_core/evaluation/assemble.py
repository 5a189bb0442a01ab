"""One evaluation, assembled and written: metrics, baseline, champion diff, badcases, label errors, HTML.

`build_evaluation` is pure; `write_evaluation` writes every file into one folder and returns the paths.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from textcls_core.evaluation.html import image_html, render_report, table_html
from textcls_core.evaluation.metrics import (
    compare_with_champion,
    compute_metrics,
    confusion_frame,
    expected_calibration_error,
    find_badcases,
    group_badcases,
    length_bucket,
    save_confusion_png,
    save_reliability_png,
    slice_metrics,
)
from textcls_core.registry.tracking_names import per_class_keys
from textcls_core.text.tokenize import cold_segmentation

SUMMARY_KEYS = ("accuracy", "macro_f1", "weighted_f1", "roc_auc", "pr_auc", "log_loss", "ece")


@dataclass
class Evaluation:
    labels: list[str]
    metrics: dict[str, Any]
    reliability: pd.DataFrame
    slices: pd.DataFrame
    badcases: pd.DataFrame
    badcase_groups: dict[str, pd.DataFrame]
    baseline: dict[str, Any] | None = None
    champion: dict[str, Any] | None = None
    relabel_queue: pd.DataFrame | None = None
    latency: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # per row of the frame, the label each model predicted (the champion's from its own classes); the promotion
    # gate compares the same two columns instead of scoring the test split again
    predicted: list[str] | None = None
    champion_predicted: list[str] | None = None


def measure_latency(predict: Callable[[list[str]], Any], texts: Sequence[str], single: int = 200) -> dict[str, float]:
    """Batch throughput over all texts, and single-text latency p50/p99 over the first `single` texts; segmentation is
    cold (the texts were predicted moments before, and jieba's block memo would otherwise answer from memory)."""
    texts = list(texts)
    with cold_segmentation():
        t0 = time.perf_counter()
        predict(texts)
        batch_s = time.perf_counter() - t0
        out = {"batch_texts_per_s": len(texts) / batch_s if batch_s > 0 else float("inf"), "batch_seconds": batch_s}
        if single:
            times = []
            for t in texts[:single]:
                t0 = time.perf_counter()
                predict([t])
                times.append((time.perf_counter() - t0) * 1000)
            out |= {"single_p50_ms": float(np.percentile(times, 50)), "single_p99_ms": float(np.percentile(times, 99))}
    return out


def build_evaluation(frame: pd.DataFrame, y_true: np.ndarray, probs: np.ndarray, labels: list[str],
                     oov: np.ndarray | None = None, baseline_probs: np.ndarray | None = None,
                     champion_probs: np.ndarray | None = None, relabel_queue: pd.DataFrame | None = None,
                     latency: dict[str, float] | None = None) -> Evaluation:
    """Everything a reviewer reads, from predictions on one labelled frame (text, row_id, meta_* columns)."""
    y_true = np.asarray(y_true)
    metrics = compute_metrics(y_true, probs, labels)
    _, reliability = expected_calibration_error(y_true, probs)
    lengths = frame["text"].str.len().to_numpy()
    slices = [slice_metrics(frame, y_true, probs, length_bucket(lengths), "length_bucket")]
    slices += [slice_metrics(frame, y_true, probs, frame[c], c.removeprefix("meta_")) for c in frame.columns if c.startswith("meta_")]
    badcases = find_badcases(frame, probs, y_true, labels, oov)
    baseline = compute_metrics(y_true, baseline_probs, labels) if baseline_probs is not None else None
    champion = compare_with_champion(frame, y_true, probs, champion_probs, labels) if champion_probs is not None else None
    return Evaluation(labels, metrics, reliability, pd.concat(slices, ignore_index=True), badcases, group_badcases(badcases),
                      baseline, champion, relabel_queue, latency)


def flat_metrics(ev: Evaluation, prefix: str = "test_") -> dict[str, float]:
    """Scalar metrics for MLflow: model, baseline, champion deltas, latency."""
    out = {f"{prefix}{k}": float(ev.metrics[k]) for k in SUMMARY_KEYS if ev.metrics.get(k) is not None}
    out[f"{prefix}badcases"] = float(len(ev.badcases))
    for k in ("precision", "recall", "f1"):  # named by class: test_f1/正面 (escaped to what MLflow accepts)
        for name, key in per_class_keys(f"{prefix}{k}", ev.labels).items():
            out[key] = ev.metrics["per_class"][name][k]
    if ev.baseline:
        out |= {f"baseline_{prefix}{k}": float(ev.baseline[k]) for k in SUMMARY_KEYS if ev.baseline.get(k) is not None}
    if ev.champion:
        out |= {f"vs_champion_delta_{k}": float(v) for k, v in ev.champion["delta"].items()}
        out |= {"vs_champion_newly_wrong": float(len(ev.champion["newly_wrong"])),
                "vs_champion_newly_right": float(len(ev.champion["newly_right"]))}
    if ev.relabel_queue is not None:
        out["suspected_label_errors"] = float(len(ev.relabel_queue))
    if ev.latency:
        out |= {f"latency_{k}": float(v) for k, v in ev.latency.items()}
    return out


def _comparison_table(ev: Evaluation) -> pd.DataFrame:
    cols = {"model": ev.metrics}
    if ev.baseline:
        cols["tfidf_lr candidate (baseline)"] = ev.baseline
    if ev.champion:
        cols["current champion"] = ev.champion["champion"]
    rows = [{"metric": k, **{name: m.get(k) for name, m in cols.items()}} for k in SUMMARY_KEYS]
    return pd.DataFrame(rows)


def table_markdown(df: pd.DataFrame) -> str:
    """A small frame as a markdown table (floats with 4 decimals)."""
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def candidates_frame(candidates: dict[str, Any]) -> pd.DataFrame:
    """One row per candidate: validation and test scores, the shipped one marked (the choice uses validation only)."""
    rows = [{"candidate": r["name"], "shipped": "yes" if r["chosen"] else "",
             **{k: r[k] for k in r if k.startswith(("val_", "test_"))}} for r in candidates["table"]]
    return pd.DataFrame(rows)


def summary_markdown(ev: Evaluation, title: str) -> str:
    """Short markdown for a Prefect artifact: the numbers a reviewer decides on."""
    m = ev.metrics
    lines = [f"## {title}", "", "| metric | model | baseline | champion |", "|---|---|---|---|"]
    for k in SUMMARY_KEYS:
        b = ev.baseline.get(k) if ev.baseline else None
        c = ev.champion["champion"].get(k) if ev.champion else None
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        lines.append(f"| {k} | {fmt(m.get(k))} | {fmt(b)} | {fmt(c)} |")
    lines.append("")
    if ev.extra.get("candidates"):
        cands = ev.extra["candidates"]
        lines.append(f"- shipped **{cands['chosen_name']}**: {cands['reason']}")
        lines += ["", table_markdown(candidates_frame(cands)), ""]
    lines.append(f"- {len(ev.badcases)} misclassified of {m['n']} texts; top confusion: "
                 + (f"{ev.badcase_groups['confusion_pair'].iloc[0, 0]} ({ev.badcase_groups['confusion_pair'].iloc[0, 1]})" if len(ev.badcases) else "none"))
    if ev.champion:
        lines.append(f"- vs champion: {len(ev.champion['newly_wrong'])} newly wrong, {len(ev.champion['newly_right'])} newly right, "
                     f"macro-F1 delta {ev.champion['delta']['macro_f1']:+.4f}")
    if ev.relabel_queue is not None:
        lines.append(f"- {len(ev.relabel_queue)} training examples with a suspected label error (relabel_queue.csv)")
    if ev.latency:
        lines.append(f"- {ev.latency['batch_texts_per_s']:.0f} texts/s batched" + (
            f"; single text p50 {ev.latency['single_p50_ms']:.1f} ms, p99 {ev.latency['single_p99_ms']:.1f} ms" if "single_p50_ms" in ev.latency else ""))
    return "\n".join(lines) + "\n"


def write_evaluation(ev: Evaluation, out_dir: str | Path, title: str, max_rows: int = 1000) -> dict[str, Path]:
    """Write metrics.json, CSVs, PNGs, summary.md and a self-contained report.html into out_dir."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def csv(name: str, df: pd.DataFrame) -> None:
        files[name] = d / f"{name}.csv"
        df.to_csv(files[name], index=name.startswith("confusion"), encoding="utf-8")

    metrics = {"model": ev.metrics, "baseline": ev.baseline, "latency": ev.latency, "candidates": ev.extra.get("candidates"),
               "champion": {k: ev.champion[k] for k in ("champion", "delta", "delta_per_class")} if ev.champion else None}
    files["metrics"] = d / "metrics.json"
    files["metrics"].write_text(json.dumps(metrics, ensure_ascii=False, indent=2), encoding="utf-8")
    cm, cmn = confusion_frame(ev.metrics, ev.labels), confusion_frame(ev.metrics, ev.labels, normalized=True)
    csv("confusion_matrix", cm)
    csv("confusion_matrix_normalized", cmn)
    files["confusion_png"] = save_confusion_png(cm, d / "confusion_matrix.png")
    files["confusion_norm_png"] = save_confusion_png(cmn, d / "confusion_matrix_normalized.png", "Confusion matrix (row-normalised)")
    files["reliability_png"] = save_reliability_png(ev.reliability, ev.metrics["ece"], d / "reliability.png")
    csv("reliability", ev.reliability)
    csv("slices", ev.slices)
    csv("badcases", ev.badcases)
    for name, g in ev.badcase_groups.items():
        csv(f"badcases_by_{name}", g)
    if ev.relabel_queue is not None:
        csv("relabel_queue", ev.relabel_queue)
    if ev.champion:
        csv("newly_wrong", ev.champion["newly_wrong"])
        csv("newly_right", ev.champion["newly_right"])
    files["summary_md"] = d / "summary.md"
    files["summary_md"].write_text(summary_markdown(ev, title), encoding="utf-8")

    per_class = pd.DataFrame([{"class": k, **v} for k, v in ev.metrics["per_class"].items()])
    sections = []
    if ev.extra.get("candidates"):
        cands = ev.extra["candidates"]
        notes = "".join(f"<p>{html.escape(n)}</p>" for n in cands.get("notes", []))
        sections.append(("Candidates on validation and test", f"<p>Shipped: <b>{html.escape(cands['chosen_name'])}</b>. "
                         f"{html.escape(cands['reason'])}. The choice uses validation only; test is reported.</p>{notes}"
                         + table_html(candidates_frame(cands))))
    sections += [("Model vs baseline vs champion", table_html(_comparison_table(ev))),
                ("Per class", table_html(per_class)),
                ("Confusion matrix", image_html(files["confusion_png"], "confusion") + image_html(files["confusion_norm_png"], "normalised")),
                ("Calibration", image_html(files["reliability_png"], "reliability") + table_html(ev.reliability)),
                ("Slices", table_html(ev.slices))]
    if ev.latency:
        sections.append(("Latency and throughput", table_html(pd.DataFrame([ev.latency]), float_format="{:.2f}")))
    if ev.champion:
        delta = pd.DataFrame([{"metric": k, "candidate - champion": v} for k, v in ev.champion["delta"].items()]
                             + [{"metric": f"{c} {k}", "candidate - champion": v} for c, dv in ev.champion["delta_per_class"].items() for k, v in dv.items()])
        sections += [("Against the champion: deltas", table_html(delta)),
                     (f"Newly wrong ({len(ev.champion['newly_wrong'])})", table_html(ev.champion["newly_wrong"], max_rows)),
                     (f"Newly right ({len(ev.champion['newly_right'])})", table_html(ev.champion["newly_right"], max_rows))]
    sections += [(f"Badcases by {name.replace('_', ' ')}", table_html(g)) for name, g in ev.badcase_groups.items()]
    sections.append((f"Badcases ({len(ev.badcases)}), highest loss first", table_html(ev.badcases, max_rows)))
    if ev.relabel_queue is not None:
        sections.append((f"Suspected label errors in train+val ({len(ev.relabel_queue)}), relabel queue",
                         table_html(ev.relabel_queue, max_rows)))
    files["report_html"] = d / "report.html"
    files["report_html"].write_text(render_report(title, sections), encoding="utf-8")
    return files
