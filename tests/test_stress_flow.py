"""Stress tests end to end: the stage in a training run (files, MLflow metrics, summary, flip-rate gate) and
`textcls stress` on the registered model."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.cli import main
from flows.train import train_text_classifier
from tests.conftest import NEG, POS, small_config
from textcls_core.runtime.config import BUILTIN_PERTURBATIONS


@pytest.fixture(scope="module")
def gated_run(tmp_path_factory, prefect_server):
    """One small run whose flip-rate gate cannot pass on `empty` (every empty text gets one label)."""
    tmp = tmp_path_factory.mktemp("stress-flow")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = small_config(tmp, uri, "stress.max_texts=60", "registry.max_flip_rate={default: 1.0, empty: 0.0}",
                       "stress.rules=[{name: de_typo, char_map: {的: 地, 很: 狠}, rate: 1.0}]")
    return tmp, uri, train_text_classifier(config=cfg)


@pytest.mark.slow
def test_stage_writes_report_metrics_and_summary(gated_run):
    tmp, uri, summary = gated_run
    stress = summary["stress"]
    names = [r["perturbation"] for r in stress["perturbations"]]
    assert names == [*BUILTIN_PERTURBATIONS, "de_typo"] and stress["n"] == 60
    rows = {r["perturbation"]: r for r in stress["perturbations"]}
    assert rows["empty"]["changed_rate"] == 1.0 and rows["empty"]["flip_rate"] > 0
    # nfkc cleaning maps full-width forms back: the model sees the same words for letters/digits
    assert rows["fullwidth"]["flip_rate"] <= rows["empty"]["flip_rate"]
    page = open(summary["reports"]["stress_html"], encoding="utf-8").read()
    assert "Most changed: homophone" in page and "de_typo" in page
    report = open(summary["reports"]["html"], encoding="utf-8").read()
    assert 'href="stress.html"' in report

    client = MlflowClient(uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.metrics["stress_empty_flip_rate"] == pytest.approx(rows["empty"]["flip_rate"])
    assert run.data.metrics["stress_texts"] == 60
    assert {"evaluation/stress.html", "evaluation/stress.json"} <= {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}


@pytest.mark.slow
def test_flip_rate_gate_keeps_a_brittle_model_challenger(gated_run):
    _, _, summary = gated_run
    # the gate: empty flips > 0.0 -> a failed check -> @challenger, with the reason recorded on the version
    assert summary["model_alias"] == "challenger"
    assert any("stress flip rate empty" in f for f in summary["gate_failures"])
    assert "PASS stress flip rate homophone" in summary["alias_reason"]


@pytest.mark.slow
def test_stress_cli_on_the_registered_model(gated_run, tmp_path, capsys):
    tmp, uri, summary = gated_run
    data = tmp_path / "reviews.csv"
    pd.DataFrame({"text": POS + NEG, "label": ["positive"] * len(POS) + ["negative"] * len(NEG)}).to_csv(data, index=False)
    code = main(["stress", "--model", "models:/textcls-test/1", "--data", str(data), "--set", f"tracking.uri={uri}",
                 "--set", f"run.output_dir={tmp_path / 'runs'}", "--set", "stress.perturbations=[empty, truncate_half]"])
    out = capsys.readouterr().out
    assert code == 0 and "truncate_half" in out and "24 of 24 usable rows" in out
    result = json.loads(next((tmp_path / "runs").glob("*/evaluation/stress.json")).read_text(encoding="utf-8"))
    assert [p["perturbation"] for p in result["perturbations"]] == ["empty", "truncate_half"] and result["n"] == 24


def test_stress_cli_rejects_bad_names_before_work(tmp_path, capsys):
    data = tmp_path / "d.csv"
    pd.DataFrame({"text": ["好"], "label": ["positive"]}).to_csv(data, index=False)
    code = main(["stress", "--model", "models:/x@champion", "--data", str(data), "--set", "stress.perturbations=[homofone]",
                 "--set", "stress.rate=2"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown perturbation ['homofone']" in err and "stress.rate = 2" in err


@pytest.mark.slow
def test_served_model_answers_bad_requests_with_4xx_or_a_full_answer(gated_run, tmp_path, monkeypatch):
    """benchmarks/serve_load.py against the real `mlflow models serve` of the registered version, briefly."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import serve_load

    _, uri, _ = gated_run
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "load.json"
    code = serve_load.main(["--model", "models:/textcls-test/1", "--tracking-uri", uri, "--concurrency", "2",
                            "--seconds", "3", "--json", str(out)])
    result = json.loads(out.read_text(encoding="utf-8"))
    statuses = {r["request"]: r["status"] for r in result["bad_requests"]}
    assert all(400 <= statuses[k] < 500 for k in ("malformed JSON", "null", "wrong field name", "not JSON (plain text)")), statuses
    assert all(r["acceptable"] for r in result["bad_requests"]), statuses
    assert result["levels"][0]["ok"] > 0 and not any(k.startswith("5") for k in result["background"]["statuses"])
    assert result["batch"]["batch_status"] == 200 and code == 0
