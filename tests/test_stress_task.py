"""The stress task through `.fn`: a small real TextClassifier, a test split on disk, a fresh MLflow store."""

from __future__ import annotations

import json

import pandas as pd
from mlflow import MlflowClient

from tasks.stress import stress_task
from tests.conftest import NEG, POS
from textcls_core.modeling.predictor import TextClassifier, build_model
from textcls_core.runtime.config import CleanConfig, ModelConfig, StressConfig
from textcls_core.text.encoders import WordEncoder
from textcls_core.training.loop import set_seed


def test_stress_task_writes_files_logs_metrics_and_links_the_report(tmp_path, tracking_uri):
    set_seed(0)
    itos = ["<pad>", "<unk>", "质量", "很", "好", "太", "差", "了", "物流", "快", "慢"]
    mcfg = ModelConfig(embed_dim=8, num_filters=4, kernel_sizes=[1, 2])
    TextClassifier(build_model(mcfg, len(itos), 2), WordEncoder(itos, 32), ["negative", "positive"], mcfg, CleanConfig()).save(tmp_path / "m")
    texts = POS + NEG
    # raw_text is what a caller sends (here with a URL); the task must perturb and score that, not the cleaned text
    test = pd.DataFrame({"text": texts, "raw_text": [t + " http://x.cn" for t in texts],
                         "label": ["positive"] * len(POS) + ["negative"] * len(NEG)})
    test.to_parquet(tmp_path / "test.parquet")
    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("t")).info.run_id
    run_dir = tmp_path / "run"
    (run_dir / "evaluation").mkdir(parents=True)
    (run_dir / "evaluation" / "report.html").write_text("<html><body><h1>r</h1><script>x</script></body></html>", encoding="utf-8")
    tracking = {"run_id": run_id, "tracking_uri": tracking_uri, "run_dir": str(run_dir)}
    cfg = StressConfig(max_texts=10, perturbations=["empty", "one_char"], top_examples=3)

    out = stress_task.fn(str(tmp_path / "m"), str(tmp_path / "test.parquet"), cfg, 8, 0, tracking)

    assert out["n"] == 10 and [r["perturbation"] for r in out["table"]] == ["empty", "one_char"]
    written = json.loads((run_dir / "evaluation" / "stress.json").read_text(encoding="utf-8"))
    assert written["perturbations"] == json.loads(json.dumps(out["table"]))
    examples = pd.read_csv(out["examples_path"])
    assert len(examples) == 6 and examples["original"].str.endswith("http://x.cn").all()
    assert (examples.loc[examples.perturbation == "one_char", "perturbed"].str.len() == 1).all()
    metrics = client.get_run(run_id).data.metrics
    assert metrics["stress_texts"] == 10 and metrics["stress_one_char_flip_rate"] == out["metrics"]["stress_one_char_flip_rate"]
    report = (run_dir / "evaluation" / "report.html").read_text(encoding="utf-8")
    assert report.count('href="stress.html"') == 1 and report.index("stress.html") < report.index("<script>")
    assert {"evaluation/stress.html", "evaluation/stress.json"} <= {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert stress_task.fn(str(tmp_path / "m"), str(tmp_path / "test.parquet"), StressConfig(enabled=False), 8, 0, tracking) is None


def _small_run(tmp_path, tracking_uri, name):
    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment(name)).info.run_id
    run_dir = tmp_path / name
    (run_dir / "evaluation").mkdir(parents=True)
    return client, {"run_id": run_id, "tracking_uri": tracking_uri, "run_dir": str(run_dir)}


def test_stress_started_beside_the_evaluation_gives_the_in_place_result(tmp_path, tracking_uri):
    """#19: start_stress_task computes in worker processes while the flow evaluates; stress_task collects it. The
    table, the examples and the logged metrics are those of the stress computed in place, sequentially."""
    from tasks.stress import _BACKGROUND, start_stress_task

    set_seed(0)
    itos = ["<pad>", "<unk>", "质量", "很", "好", "太", "差", "了", "物流", "快", "慢"]
    mcfg = ModelConfig(embed_dim=8, num_filters=4, kernel_sizes=[1, 2])
    TextClassifier(build_model(mcfg, len(itos), 2), WordEncoder(itos, 32), ["negative", "positive"], mcfg, CleanConfig()).save(tmp_path / "m")
    pd.DataFrame({"text": POS + NEG, "label": ["positive"] * len(POS) + ["negative"] * len(NEG)}).to_parquet(tmp_path / "t.parquet")
    cfg = StressConfig(max_texts=12, perturbations=["all"], top_examples=2)
    model, test = str(tmp_path / "m"), str(tmp_path / "t.parquet")

    client_a, in_place = _small_run(tmp_path, tracking_uri, "in_place")
    seq = stress_task.fn(model, test, cfg, 8, 3, in_place, workers=1)
    client_b, beside = _small_run(tmp_path, tracking_uri, "beside")
    assert start_stress_task.fn(model, test, cfg, 8, 3, beside, workers=1) is None  # one core: computed in place later
    key = start_stress_task.fn(model, test, cfg, 8, 3, beside, workers=2)
    assert key in _BACKGROUND
    par = stress_task.fn(model, test, cfg, 8, 3, beside, workers=2, started=key)
    assert key not in _BACKGROUND
    assert par["table"] == seq["table"] and par["clean"] == seq["clean"] and par["n"] == seq["n"] == 12
    assert pd.read_csv(par["examples_path"]).equals(pd.read_csv(seq["examples_path"]))
    ma, mb = client_a.get_run(in_place["run_id"]).data.metrics, client_b.get_run(beside["run_id"]).data.metrics
    assert {k: v for k, v in ma.items() if k != "stress_seconds"} == {k: v for k, v in mb.items() if k != "stress_seconds"}


def test_background_stress_stops_its_workers(tmp_path):
    """A flow that fails while the stress runs beside it stops the pool: its worker processes end."""
    import time

    from tasks.stress import BackgroundStress

    set_seed(0)
    itos = ["<pad>", "<unk>", "质量", "很", "好", "太", "差", "了"]
    mcfg = ModelConfig(embed_dim=8, num_filters=4, kernel_sizes=[1, 2])
    TextClassifier(build_model(mcfg, len(itos), 2), WordEncoder(itos, 32), ["negative", "positive"], mcfg, CleanConfig()).save(tmp_path / "m")
    pd.DataFrame({"text": (POS + NEG) * 50, "label": (["positive"] * len(POS) + ["negative"] * len(NEG)) * 50}).to_parquet(tmp_path / "t.parquet")
    job = BackgroundStress(str(tmp_path / "m"), str(tmp_path / "t.parquet"), StressConfig(max_texts=0, long_chars=20000), 8, 0, 2)
    deadline = time.monotonic() + 60
    while not (job.pool is not None and getattr(job.pool, "_processes", None)) and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = list(job.pool._processes.values())
    assert workers
    job.stop()
    for proc in workers:
        proc.join(10)
    assert not any(p.is_alive() for p in workers)
    job.thread.join(30)
    assert not job.thread.is_alive()
