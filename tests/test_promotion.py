"""Trustworthy promotion (#10) through package_task.fn and the registry: same rows, the bootstrap decision and its
outcomes, fingerprints, the baseline check, one lock, idempotent retries, events.

The models are exact keyword classifiers (a TextCNN whose weights are set by hand), so which is better is known:
`good` is right on every row; `flawed` calls every text with 但是 negative, wrong on 1 row in 10.
"""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

import tasks.package as package_mod
from tasks.package import package_task
from tasks.registry import (
    HISTORY_TAG,
    champion_classifier,
    current_champion,
    load_version,
    lock_location,
    promote_version,
    read_log,
    registry_lock,
    rollback_champion,
)
from tasks.tracking import client_for
from tests.conftest import small_config
from textcls_core.dataset.fingerprint import FINGERPRINT_FILE
from textcls_core.modeling.networks import TextCNN
from textcls_core.modeling.predictor import TextClassifier
from textcls_core.runtime.config import CleanConfig, ModelConfig
from textcls_core.text.encoders import WordEncoder

ROWS = pd.DataFrame({"text": [f"订单{i} {'满意' if i % 2 == 0 else '失望'}{' 但是' if i % 5 == 0 else ''}" for i in range(900)],
                     "label": ["positive" if i % 2 == 0 else "negative" for i in range(900)]})


def keyword_model(directory, but_weight: float) -> str:
    """满意 -> positive, 失望 -> negative; 但是 adds but_weight to negative (0 = exact on ROWS)."""
    itos = ["<pad>", "<unk>", "满意", "失望", "但是"]
    cfg = ModelConfig(name="textcnn", embed_dim=8, num_filters=8, kernel_sizes=[1], dropout=0.0)
    net = TextCNN(len(itos), 2, 8, 8, [1], 0.0)
    with torch.no_grad():
        net.embedding.weight.zero_()
        for i, word in enumerate(("满意", "失望", "但是")):
            net.embedding.weight[itos.index(word), i] = 1.0
        net.convs[0].weight.copy_(torch.eye(8).unsqueeze(2))
        net.convs[0].bias.zero_()
        net.fc.weight.zero_()
        net.fc.bias.zero_()
        net.fc.weight[0, 1], net.fc.weight[0, 2], net.fc.weight[1, 0] = 1.0, but_weight, 1.0  # [negative, positive]
    TextClassifier(net, WordEncoder(itos, 32), ["negative", "positive"], cfg, CleanConfig()).save(directory)
    return str(directory)


def write_split(directory, train: slice, val: slice, test: slice) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in (("train", train), ("val", val), ("test", test)):
        paths[name] = str(directory / f"{name}.parquet")
        ROWS.iloc[rows].to_parquet(paths[name], index=False)
    return paths


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for the module (creating one takes seconds); each test gets its own model name in it."""
    tmp = tmp_path_factory.mktemp("promotion")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    exp = client_for(uri).create_experiment("promotion")
    models = {"good": keyword_model(tmp / "good", 0.0), "flawed": keyword_model(tmp / "flawed", 5.0)}
    split = write_split(tmp / "split", slice(0, 500), slice(500, 600), slice(600, 900))
    return {"tmp": tmp, "uri": uri, "exp": exp, "models": models, "split": split}


@pytest.fixture
def env(store, tmp_path, request):
    name = f"m-{request.node.name[5:40]}".replace("[", "-").replace("]", "")
    uri, exp, models = store["uri"], store["exp"], store["models"]
    cfg = small_config(tmp_path, uri, "registry.min_shared_rows=100", "registry.bootstrap_samples=500", f"registry.model_name={name}")
    client = client_for(uri)
    counter = iter(range(1000))

    def new_tracking() -> dict:
        run_dir = tmp_path / f"run{next(counter)}"
        run_dir.mkdir()
        return {"run_id": client.create_run(exp).info.run_id, "tracking_uri": uri, "experiment_id": exp, "run_dir": str(run_dir)}

    def package(model: str, split: dict | None, cfg=cfg, metrics: dict | None = None, tracking: dict | None = None,
                predictions: str | None = None):
        """One package step in a fresh MLflow run (as one flow run would), metrics as evaluate would give them."""
        tracking = tracking or new_tracking()
        m = {"test_macro_f1": 0.9, "test_accuracy": 0.9, "val_macro_f1": 0.9, "baseline_val_macro_f1": 0.9} | (metrics or {})
        folder = tmp_path / f"pkg-{tracking['run_id'][:8]}"  # each run ships its own folder (the fingerprint goes in it)
        if not folder.exists():
            shutil.copytree(models[model], folder)
        return package_task.fn(str(folder), m, {"negative": {"f1": 0.9}, "positive": {"f1": 0.9}}, cfg, tracking, {}, split,
                               predictions=predictions)

    return {"cfg": cfg, "client": MlflowClient(uri), "uri": uri, "package": package, "split": store["split"], "tmp": tmp_path,
            "name": name, "new_tracking": new_tracking}


@pytest.fixture
def events(monkeypatch):
    seen = []
    monkeypatch.setattr("tasks.events.emit_event", lambda **kw: seen.append(kw))
    monkeypatch.setattr("tasks.events._api_available", lambda: True)
    return seen


def test_same_rows_bootstrap_decides_and_records(env, events):
    first = env["package"]("flawed", env["split"])
    assert (first["version"], first["alias"], first["gate.outcome"]) == ("1", "champion", "no_champion")
    better = env["package"]("good", env["split"])
    assert better["alias"] == "champion" and better["gate.outcome"] == "compared"
    # both trained on rows 0-599: all 300 test rows are shared; good is right on all, flawed wrong on 30 positives with 但是
    assert better["gate.n_shared_rows"] == 300 and better["gate.metric"] == "macro_f1"
    assert better["gate.candidate"] == 1.0 and better["gate.ci_low"] > 0 and better["gate.ci_high"] <= better["gate.delta"] + 0.06
    worse = env["package"]("flawed", env["split"])
    assert worse["alias"] == "challenger" and worse["gate.ci_high"] < 0
    assert worse["gate_failures"] == [c["detail"] for c in worse["gate_checks"] if c["check"] == "champion"]

    client = env["client"]
    v2 = client.get_model_version(env["name"], "2")
    assert v2.tags["gate"] == "passed" and v2.tags["gate.n_shared_rows"] == "300" and float(v2.tags["gate.ci_low"]) > 0
    assert v2.description.startswith(f"### {env['name']} v2 — @champion") and "300 shared rows" in v2.description  # the model card
    assert client.get_registered_model(env["name"]).tags[HISTORY_TAG] == '["1"]'
    assert [(e["version"], e["action"]) for e in read_log(client, env["name"])] == [
        ("1", "registered"), ("1", "champion"), ("2", "registered"), ("2", "champion"), ("3", "registered"), ("3", "challenger")]
    # the fingerprint travels in the registered model: train + val texts, not test
    from tasks.registry import download_model_dir

    folder = download_model_dir(env["name"], "2", env["uri"], env["tmp"] / "dl")
    assert len(np.load(folder / FINGERPRINT_FILE)) == 600
    # the run's gate report and MLflow metrics
    gate_md = (env["tmp"] / "run1" / "evaluation" / "gate.md").read_text(encoding="utf-8")
    assert "n = 300" in gate_md and "| champion | PASS |" in gate_md
    # events: registered x3, promoted x2, gate.failed x1 with the reasons as a resource label
    kinds = [e["event"] for e in events]
    assert kinds.count("textcls.model.registered") == 3 and kinds.count("textcls.model.promoted") == 2
    failed = [e for e in events if e["event"] == "textcls.gate.failed"]
    assert len(failed) == 1 and failed[0]["resource"]["textcls.model.version"] == "3"
    assert "lower bound" in failed[0]["resource"]["textcls.reasons"] and failed[0]["resource"]["textcls.model.name"] == env["name"]


def test_overlap_is_excluded_and_too_few_rows_is_insufficient_evidence(env):
    env["package"]("flawed", write_split(env["tmp"] / "old", slice(0, 700), slice(700, 750), slice(750, 900)))
    # the candidate's test rows 600-899 minus the champion's training rows 0-749: 150 rows, under min_shared_rows 100? no: 150
    r = env["package"]("good", env["split"])
    assert r["gate.n_shared_rows"] == 150 and r["alias"] == "champion"
    strict = env["cfg"].model_copy(update={"registry": env["cfg"].registry.model_copy(update={"min_shared_rows": 400})})
    r = env["package"]("good", env["split"], cfg=strict)
    assert r["alias"] == "challenger" and r["gate.outcome"] == "insufficient_evidence" and r["gate.n_shared_rows"] == 300
    assert r["gate_failures"][0].startswith("insufficient evidence: 300 rows that neither model trained on")


def test_legacy_champion_without_fingerprint(env, tmp_path):
    env["package"]("flawed", None)  # registered the old way: no split given, so no fingerprint in the model
    r = env["package"]("good", env["split"])
    assert r["gate.overlap_known"] is False and "overlap unknown: v1 has no training fingerprint" in r["reason"]
    assert r["gate.n_shared_rows"] == 300 and r["alias"] == "champion"
    # with a fixed eval set, every version is scored on it (rows the candidate trained on are left out)
    eval_set = tmp_path / "eval.csv"
    ROWS.iloc[550:900].to_csv(eval_set, index=False)
    cfg = env["cfg"].model_copy(update={"registry": env["cfg"].registry.model_copy(update={"eval_set": str(eval_set)})})
    r = env["package"]("flawed", env["split"], cfg=cfg)
    assert r["gate.basis"].startswith("registry.eval_set eval.csv minus v2's training texts") and r["gate.n_shared_rows"] == 300
    assert r["alias"] == "challenger"


def test_model_at_chance_never_becomes_champion_when_the_baseline_is_far_better(env):
    # issue #2: no champion yet, but validation says the TF-IDF baseline is far better -> @challenger with the reason
    r = env["package"]("flawed", env["split"], metrics={"val_macro_f1": 0.50, "baseline_val_macro_f1": 0.97})
    assert r["alias"] == "challenger" and r["gate_failures"] == ["val_macro_f1 0.5000 >= TF-IDF baseline 0.9700 - margin 0.0200"]
    assert current_champion(env["client"], env["name"]) is None


def test_retry_after_registration_keeps_one_version(env, monkeypatch):
    calls = {"n": 0}
    real = package_mod.decide_promotion

    def fail_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("tracking server went away after register_model")
        return real(*args, **kwargs)

    monkeypatch.setattr(package_mod, "decide_promotion", fail_once)
    client = env["client"]
    tracking = env["new_tracking"]()
    with pytest.raises(ConnectionError):
        env["package"]("good", env["split"], tracking=tracking)
    again = env["package"]("good", env["split"], tracking=tracking)   # what Prefect's retry runs
    assert again["version"] == "1" and again["alias"] == "champion"
    assert [str(v.version) for v in client.search_model_versions(f"name = '{env['name']}'")] == ["1"]
    # a retry after the decision was recorded returns it without registering or deciding again
    assert env["package"]("good", env["split"], tracking=tracking)["version"] == "1" and calls["n"] == 2


@pytest.mark.parametrize("first", ["good", "flawed"])
def test_two_runs_registering_at_once(env, monkeypatch, first):
    """Both read "no champion" before either decides; the lock + re-read make the better one champion either way."""
    barrier = threading.Barrier(2, timeout=60)
    order = threading.Event()
    real_read, real_lock = package_mod.current_champion, package_mod.registry_lock
    seen = threading.local()

    def read_together(client, name):
        if not getattr(seen, "done", False):  # the optimistic read before the lock: both threads see the same state
            seen.done = True
            champion = real_read(client, name)
            barrier.wait()
            return champion
        return real_read(client, name)

    def lock_in_order(*args, **kwargs):
        # the first model takes the decision lock first (registration also locks; only the decision is ordered)
        if threading.current_thread().name != first and getattr(seen, "done", False):
            order.wait(60)
        return real_lock(*args, **kwargs)

    monkeypatch.setattr(package_mod, "current_champion", read_together)
    monkeypatch.setattr(package_mod, "registry_lock", lock_in_order)
    results = {}

    def run(model):
        results[model] = env["package"](model, env["split"])
        if model == first:
            order.set()

    threads = [threading.Thread(target=run, args=(m,), name=m) for m in ("good", "flawed")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert set(results) == {"good", "flawed"}
    client = env["client"]
    assert current_champion(client, env["name"]) == results["good"]["version"]
    log = read_log(client, env["name"])
    assert {e["version"] for e in log if e["action"] == "registered"} == {"1", "2"}
    if first == "flawed":   # flawed was champion for a moment: it stays in the history, good took over by the test
        assert client.get_registered_model(env["name"]).tags[HISTORY_TAG] == f'["{results["flawed"]["version"]}"]'
        assert results["good"]["gate.outcome"] == "compared"
    else:                   # flawed re-read the champion under the lock and was compared, not crowned
        assert results["flawed"]["alias"] == "challenger" and results["flawed"]["gate.outcome"] == "compared"


def test_promote_waits_for_the_lock_and_history_keeps_every_entry(env):
    env["package"]("flawed", env["split"])
    env["package"]("good", env["split"])
    client, uri = env["client"], env["uri"]
    done = threading.Event()
    with registry_lock(uri, env["name"]):
        t = threading.Thread(target=lambda: (promote_version(env["name"], "1", "hotfix", uri), done.set()))
        t.start()
        time.sleep(1.0)
        # while the lock is held, another writer moves the alias; the waiting promote must come after it
        client.set_registered_model_alias(env["name"], "champion", "2")
        still_waiting = not done.is_set()
    t.join(60)
    assert still_waiting and current_champion(client, env["name"]) == "1"
    assert rollback_champion(env["name"], "undo", uri) == ("1", "2")
    assert [e["action"] for e in read_log(client, env["name"])][-2:] == ["champion", "rollback"]


def test_lock_location_per_store(tmp_path):
    assert lock_location(f"sqlite:///{tmp_path}/mlflow.db") == ("file", str(tmp_path))
    assert lock_location("postgresql://u:p@db:5432/mlflow")[0] == "postgresql"
    assert lock_location("postgresql+psycopg2://u@db/mlflow")[0] == "postgresql"
    assert lock_location("http://mlflow:5000")[0] == "fallback"
    assert lock_location("http://mlflow:5000", "postgresql://u@db/mlflow")[0] == "postgresql"
    assert lock_location("http://mlflow:5000", str(tmp_path / "shared")) == ("file", str(tmp_path / "shared"))


def test_bad_eval_set_fails_before_any_work(tmp_path, monkeypatch, capsys):
    from flows.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", "--set", "registry.eval_set=missing.csv"]) == 2
    err = capsys.readouterr().err
    assert "registry.eval_set" in err and "missing.csv" in err and "Traceback" not in err
    (tmp_path / "bad.csv").write_text("review,label\n好,1\n", encoding="utf-8")
    assert main(["run", "--set", "registry.eval_set=bad.csv"]) == 2
    assert "registry.eval_set" in capsys.readouterr().err
    assert main(["run", "--set", "registry.confidence=1.2"]) == 2
    assert "registry.confidence = 1.2" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "runs").exists()


def test_regression_set_check_and_hand_promotion_errors(env, tmp_path):
    from textcls_core.runtime.errors import TextclsError

    env["package"]("flawed", env["split"])
    reg = tmp_path / "regression.csv"
    ROWS.iloc[600:700].to_csv(reg, index=False)   # 10 of these the flawed champion gets wrong, the good model none
    cfg = env["cfg"].model_copy(update={"registry": env["cfg"].registry.model_copy(update={"regression_set": str(reg),
                                                                                        "regression_tolerance": 0.0})})
    r = env["package"]("good", env["split"], cfg=cfg)
    check = [c for c in r["gate_checks"] if c["check"] == "regression_set"][0]
    assert check["passed"] and check["detail"] == "regression-set accuracy 1.0000 >= champion 0.9000 - 0.0000"
    with pytest.raises(TextclsError, match="has no version 99"):
        promote_version(env["name"], "99", "x", env["uri"])
    assert rollback_champion(env["name"], "bad canary", env["uri"]) == ("2", "1")
    with pytest.raises(TextclsError, match="no earlier champion"):
        rollback_champion(env["name"], "again", env["uri"])


def test_readme_automation_on_gate_failed_is_a_valid_prefect_automation():
    from pathlib import Path

    import yaml
    from prefect.events.schemas.automations import AutomationCore

    spec = yaml.safe_load((Path(__file__).resolve().parent.parent / "automations" / "gate_failed.yaml").read_text(encoding="utf-8"))
    automation = AutomationCore.model_validate(spec)
    assert automation.trigger.expect == {"textcls.gate.failed"} and automation.actions[0].type == "send-notification"


def test_the_champion_is_downloaded_once_for_the_evaluation_and_the_gate(env, monkeypatch):
    """A run scores the champion twice (the evaluation's comparison, then the gate): one download and load per
    version in the process. Another version, or a plain load, downloads again; the gate's outcome is unchanged."""
    import tasks.registry as registry_mod

    env["package"]("flawed", env["split"])
    downloads = []
    real = registry_mod.download_model_dir
    monkeypatch.setattr(registry_mod, "download_model_dir", lambda *a, **k: downloads.append(a[1]) or real(*a, **k))
    version, champion = champion_classifier(env["name"], env["uri"])  # as the evaluation does
    assert version == "1" and downloads == ["1"]
    r = env["package"]("good", env["split"])  # the gate compares with v1: the evaluation's object, no second download
    assert downloads == ["1"] and r["alias"] == "champion" and r["gate.champion_version"] == "1"
    assert load_version(env["name"], "1", env["uri"], shared=True)[0] is champion
    assert load_version(env["name"], "1", env["uri"])[0] is not champion and downloads == ["1", "1"]
    assert champion_classifier(env["name"], env["uri"])[0] == "2" and downloads == ["1", "1", "2"]


def test_the_gate_uses_the_evaluations_predictions_of_the_same_rows_and_champion(env):
    """The evaluation saves each test row's predicted label for the model and the champion it scored; the gate
    compares those instead of scoring the split again. The champion's are used only when they were made by the
    champion the gate compares, and a file made from other rows is not used at all."""
    from textcls_core.registry.gate_inputs import save_predictions

    env["package"]("flawed", env["split"])  # v1, the champion
    test = pd.read_parquet(env["split"]["test"])
    truth = test["label"].astype(str).tolist()
    saved = save_predictions(env["tmp"] / "gate", env["split"]["test"], truth, ["negative"] * len(test), "1")
    # the file says: the candidate is right on every row, the champion answers "negative" everywhere
    r = env["package"]("flawed", env["split"], predictions=str(saved))
    assert r["gate.candidate"] == 1.0 and r["gate.champion"] == pytest.approx(1 / 3, abs=1e-9)  # F1 2/3 and 0
    assert r["alias"] == "champion"
    # the champion is now v2; a file whose champion part was made by v1 gives only the candidate's rows
    again = env["package"]("flawed", env["split"], predictions=str(saved))
    assert again["gate.candidate"] == 1.0 and again["gate.champion_version"] == "2"
    scored = env["package"]("flawed", env["split"])  # no file: both scored here
    assert again["gate.champion"] == pytest.approx(scored["gate.candidate"])  # v2 (flawed), scored by the gate itself
    assert scored["gate.candidate"] < 1.0
    other = save_predictions(env["tmp"] / "gate-other", env["split"]["train"], truth, None, None)  # other rows: ignored
    ignored = env["package"]("flawed", env["split"], predictions=str(other))
    assert ignored["gate.candidate"] == pytest.approx(scored["gate.candidate"]) and ignored["gate.candidate"] < 1.0
