"""Model cards: the markdown a reviewer reads on a model version's page (and the registered model's) in MLflow.

A card says what the version was trained on, what it is, how it scored beside the run's baseline and the champion,
what the promotion gate decided and how to load and serve it. Pure: it formats facts the caller gathered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_DESCRIPTION = 5000  # MLflow keeps more, but the version page stays readable


@dataclass
class CardFacts:
    name: str
    version: str
    alias: str                                    # champion or challenger
    data_path: str
    rows: dict[str, int]                          # train / val / test
    labels: list[str]
    model_kind: str                               # e.g. "textcnn", "tfidf_lr", "ensemble(textcnn+tfidf_lr)"
    config_sha256: str
    dataset_sha256: str
    metrics: dict[str, float]                     # test_* and baseline_test_* (and val_*)
    per_class: dict[str, dict[str, float]]
    gate_checks: list[dict[str, Any]]
    gate_summary: dict[str, Any] = field(default_factory=dict)
    mlflow_run_id: str = ""
    git_commit: str = ""
    date_range: str = ""                          # e.g. "2026-01-01 .. 2026-11-28" when the data has a date column


def _num(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "–"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def version_card(f: CardFacts) -> str:
    m, g = f.metrics, f.gate_summary
    lines = [f"### {f.name} v{f.version} — @{f.alias}", "",
             f"**Data** `{_cell(f.data_path)}`: {sum(f.rows.values())} rows after cleaning "
             f"(train {f.rows.get('train', 0)}, val {f.rows.get('val', 0)}, test {f.rows.get('test', 0)}), "
             f"{len(f.labels)} classes: {', '.join(_cell(x) for x in f.labels[:20])}{' …' if len(f.labels) > 20 else ''}"
             + (f"; dates {f.date_range}" if f.date_range else "") + f". Data sha256 `{f.dataset_sha256[:16]}`.", "",
             f"**Model** {f.model_kind}; config sha256 `{f.config_sha256[:16]}`"
             + (f"; code `{f.git_commit[:10]}`" if f.git_commit else "") + (f"; MLflow run `{f.mlflow_run_id}`" if f.mlflow_run_id else "") + ".", "",
             "| test split | accuracy | macro-F1 |", "|---|---|---|",
             f"| this version | {_num(m.get('test_accuracy'))} | {_num(m.get('test_macro_f1'))} |"]
    if "baseline_test_accuracy" in m:
        lines.append(f"| tfidf_lr baseline (same run) | {_num(m.get('baseline_test_accuracy'))} | {_num(m.get('baseline_test_macro_f1'))} |")
    if g.get("gate.champion") is not None:
        lines.append(f"| champion v{g.get('gate.champion_version')} on {g.get('gate.n_shared_rows')} shared rows "
                     f"({g.get('gate.metric')}) | | {_num(g.get('gate.champion'))} (this version {_num(g.get('gate.candidate'))}) |")
    worst = sorted(f.per_class.items(), key=lambda kv: kv[1].get("f1", 0.0))[:5]
    if worst:
        lines += ["", "Lowest per-class F1: " + ", ".join(f"{_cell(k)} {_num(v.get('f1'))}" for k, v in worst) + "."]
    lines += ["", f"**Gate**: {'promoted to @champion' if f.alias == 'champion' else 'kept at @challenger'}.", ""]
    lines += [f"- {'PASS' if c.get('passed') else 'FAIL'} {_cell(c.get('detail', ''))}" for c in f.gate_checks]
    lines += ["", "**Use**", "```python", "import mlflow",
              f"model = mlflow.pyfunc.load_model('models:/{f.name}/{f.version}')",
              "model.predict(['质量很好，物流也快'])  # raw text in, label + probabilities out", "```",
              f"Serve: `mlflow models serve -m models:/{f.name}/{f.version} --env-manager local -p 5001`; "
              f"batch: `textcls predict --model models:/{f.name}/{f.version} --input file.csv --output scored.csv`."]
    text = "\n".join(lines)
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 20] + "\n\n…(cut)"


def registered_model_card(name: str, data_path: str, labels: list[str]) -> str:
    return (f"Chinese text classifier `{name}`, trained and gated by textcls on `{_cell(data_path)}` "
            f"({len(labels)} classes: {', '.join(_cell(x) for x in labels[:20])}{' …' if len(labels) > 20 else ''}).\n\n"
            f"- `@champion`: the version serving traffic; it changes only when the promotion gate proves a better model "
            f"on rows neither model trained on, or by `textcls promote` / `textcls rollback` (history in the "
            f"`textcls.champion_history` tag).\n- `@challenger`: the latest version the gate kept back; each version's "
            f"description is its model card (data, metrics beside baseline and champion, gate checks, how to load).\n"
            f"- Load: `mlflow.pyfunc.load_model('models:/{name}@champion')`.")
