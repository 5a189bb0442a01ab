"""Candidates (#14) through the tasks' `.fn`: every candidate scored, the best on validation shipped and evaluated,
tfidf_lr as the baseline, the report's candidate table, and the pyfunc loading whatever kind was chosen."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tasks.candidates import candidates_task
from tasks.data import analyze_task, clean_task, split_task
from tasks.encode import encode_task
from tasks.evaluate import evaluate_task
from tasks.pyfunc_model import TextclsModel
from tasks.train import train_task
from tests.conftest import small_config
from tests.test_tasks import _start_run
from textcls_core.modeling.classifiers import load_classifier, model_kind


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cand")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    # a network that has not learned much (1 epoch on a few hundred rows) beside tfidf_lr: the small-data case
    cfg = small_config(tmp, uri, "data.max_rows=400", "train.epochs=1", "evaluate.label_error_folds=0",
                       "evaluate.latency_samples=0", "evaluate.compare_champion=false")
    tracking = _start_run(cfg, tmp)
    analysis = analyze_task.fn(cfg.data, cfg.extra_columns(), cfg.run.seed, tracking)
    cleaning = clean_task.fn(analysis["raw_path"], cfg.clean, tracking)
    split = split_task.fn(cleaning["clean_path"], cfg.split, cfg.run.seed, tracking)
    encoded = encode_task.fn(split["paths"], cfg.tokenize, tracking, cfg.clean)
    trained = train_task.fn(encoded, cfg.model, cfg.train, cfg.tokenize, cfg.clean, cfg.run.seed, tracking)
    cands = candidates_task.fn(split["paths"], trained["model_dir"], cfg.model, cfg.tokenize, cfg.clean,
                               cfg.train.select_metric, cfg.evaluate.baseline, cfg.run.seed, tracking)
    evaluation = evaluate_task.fn(cands["model_dir"], split["paths"], cfg.evaluate, cfg.registry.model_name, cfg.run.seed,
                                  tracking, candidates=cands)
    return SimpleNamespace(cfg=cfg, tracking=tracking, split=split, trained=trained, cands=cands, evaluation=evaluation)


def _val_scores(o):
    return {r["candidate"]: r["val_accuracy"] for r in o.cands["table"]}


def test_every_candidate_scored_and_best_on_validation_ships(outputs):
    o = outputs
    table = {r["candidate"]: r for r in o.cands["table"]}
    assert set(table) == {"model", "tfidf_lr", "ensemble"} and all(r["compared"] for r in table.values())
    val = _val_scores(o)
    report = json.loads(open(o.cands["path"], encoding="utf-8").read())
    best = max(val, key=lambda c: (val[c], -["tfidf_lr", "model", "ensemble"].index(c)))
    # the best on validation ships, or a simpler candidate within one paired standard error of it
    assert o.cands["chosen"] == best or val[best] - val[o.cands["chosen"]] <= report["standard_errors"][o.cands["chosen"]]
    assert [r["candidate"] for r in o.cands["table"] if r["chosen"]] == [o.cands["chosen"]]
    assert o.cands["reason"].startswith(o.cands["chosen_name"])
    # what ships is the chosen folder, of the chosen kind
    kinds = {"model": "network", "tfidf_lr": "tfidf_lr", "ensemble": "ensemble"}
    assert model_kind(o.cands["model_dir"]) == kinds[o.cands["chosen"]]
    # the candidate's validation accuracy is the shipped artifact's own, recomputed by evaluation from raw text
    # (the ensemble's table entry is cross-fitted, so only the single models are compared exactly)
    m = o.evaluation["metrics"]
    if o.cands["chosen"] != "ensemble":
        assert m["val_accuracy"] == pytest.approx(val[o.cands["chosen"]])
    assert m["test_accuracy"] == pytest.approx(table[o.cands["chosen"]]["test_accuracy"])
    # the baseline keys are the tfidf_lr candidate, on validation (the gate's check) and test
    assert m["baseline_val_accuracy"] == pytest.approx(table["tfidf_lr"]["val_accuracy"])
    assert m["baseline_test_accuracy"] == pytest.approx(table["tfidf_lr"]["test_accuracy"])
    run = MlflowClient(o.tracking["tracking_uri"]).get_run(o.tracking["run_id"])
    assert run.data.tags["textcls.candidate"] == o.cands["chosen_name"]
    assert run.data.metrics["candidate_tfidf_lr_test_accuracy"] == pytest.approx(table["tfidf_lr"]["test_accuracy"])
    assert 0.0 <= run.data.metrics["ensemble_weight_model"] <= 1.0


def test_small_data_does_not_ship_an_untrained_network(outputs):
    """On a few hundred rows after one epoch the network is near chance; tfidf_lr or the ensemble ships."""
    o = outputs
    val = _val_scores(o)
    assert val["tfidf_lr"] > val["model"] + 0.05  # the premise: the network did not learn much
    assert o.cands["chosen"] in {"tfidf_lr", "ensemble"}
    report = json.loads(open(o.cands["path"], encoding="utf-8").read())
    assert report["chosen"] == o.cands["chosen"] and report["details"]["tfidf_lr"]["search"]


def test_report_and_metrics_json_show_the_candidates(outputs):
    o = outputs
    html = open(o.evaluation["report_path"], encoding="utf-8").read()
    assert "Candidates on validation and test" in html and o.cands["reason"] in html.replace("&#x27;", "'")
    for r in o.cands["table"]:
        assert r["name"] in html
    metrics = json.loads(open(o.evaluation["dir"] + "/metrics.json", encoding="utf-8").read())
    assert metrics["candidates"]["chosen_name"] == o.cands["chosen_name"] and len(metrics["candidates"]["table"]) == 3
    summary_md = open(o.evaluation["dir"] + "/summary.md", encoding="utf-8").read()
    assert f"shipped **{o.cands['chosen_name']}**" in summary_md


def test_pyfunc_loads_every_candidate_kind(outputs):
    """The pyfunc's loader dispatches on the folder's kind; its output equals the in-process model's."""
    o = outputs
    texts = pd.read_parquet(o.split["paths"]["test"])["raw_text"].tolist()[:20] + ["", "<b>好</b>" * 5000]
    for row in o.cands["table"]:
        model = TextclsModel()
        model.load_context(SimpleNamespace(artifacts={"model_dir": row["model_dir"]}))
        served = model.predict(None, texts)
        local = load_classifier(row["model_dir"]).predict(texts)
        assert len(served) == len(texts) and (served["label"] == local["label"]).all()
        assert np.abs(served.filter(like="prob_").to_numpy() - local.filter(like="prob_").to_numpy()).max() < 1e-6


def test_tfidf_lr_alone_needs_no_network(outputs):
    """model.name=tfidf_lr: one candidate, no network folder; the plan says why the ensemble is skipped."""
    o = outputs
    cfg = o.cfg.model_copy(update={"model": o.cfg.model.model_copy(update={"name": "tfidf_lr"})})
    alone = candidates_task.fn(o.split["paths"], None, cfg.model, cfg.tokenize, cfg.clean, cfg.train.select_metric,
                               cfg.evaluate.baseline, cfg.run.seed, o.tracking)
    assert alone["chosen"] == "tfidf_lr" and [r["candidate"] for r in alone["table"]] == ["tfidf_lr"]
    assert alone["reason"].endswith("(the only candidate)") and "ensemble skipped" in alone["notes"][0]
    assert model_kind(alone["model_dir"]) == "tfidf_lr" and alone["baseline_dir"] == alone["model_dir"]


def test_side_process_gives_exactly_what_the_sequential_fit_gives(outputs, tmp_path):
    """#19: tfidf_lr and the label-error probabilities computed in the child process beside training equal the
    in-process (sequential) computation: same settings picked, same probabilities, same out-of-fold rows."""
    from textcls_core.training.side_work import SideProcess, TfidfJob, run_tfidf_job

    o = outputs
    labels = load_classifier(o.trained["model_dir"]).labels
    job = TfidfJob(o.split["paths"], labels, o.cfg.model, o.cfg.tokenize, o.cfg.clean, o.cfg.train.select_metric,
                   str(tmp_path / "side"), label_error_folds=3, seed=o.cfg.run.seed)
    here = run_tfidf_job(job)
    there = SideProcess(job).result(timeout_s=300)
    assert (there.clf.settings.features, there.clf.settings.c) == (here.clf.settings.features, here.clf.settings.c)
    for split in ("val", "test"):
        np.testing.assert_allclose(there.probs[split], here.probs[split], atol=1e-9)
    n_pool = len(pd.read_parquet(o.split["paths"]["train"])) + len(pd.read_parquet(o.split["paths"]["val"]))
    assert here.oof.shape == (n_pool, len(labels))
    np.testing.assert_allclose(there.oof, here.oof, atol=1e-9)
    np.testing.assert_allclose(here.oof.sum(axis=1), 1.0, atol=1e-9)
    # and the candidates stage's own tfidf_lr (fitted in-process by the fixture) is the same model
    table = {r["candidate"]: r for r in o.cands["table"]}
    val_acc = float((here.probs["val"].argmax(1) == pd.read_parquet(o.split["paths"]["val"])["label"].map(
        {name: i for i, name in enumerate(labels)}).to_numpy()).mean())
    assert table["tfidf_lr"]["val_accuracy"] == pytest.approx(val_acc, abs=1e-12)


def test_refit_ships_the_train_and_val_fit_but_validation_scores_stay_out_of_sample(outputs, tmp_path):
    """model.tfidf_refit (default on): the tfidf_lr that ships (and scores test) is fitted on train + val; everything
    that judges on validation reads the train-only fit's scores: the candidates table, the gate's baseline check
    (evaluate's val_ and baseline_val_ metrics) and the drift profile's reference. Re-scoring validation with the
    refitted model would be in-sample, and this data shows how much that inflates it."""
    import shutil

    from tasks.monitor import profile_task
    from textcls_core.training.side_work import TfidfJob, run_tfidf_job

    o = outputs
    labels = load_classifier(o.trained["model_dir"]).labels
    frames = {k: pd.read_parquet(o.split["paths"][k]) for k in ("train", "val", "test")}
    y_val = frames["val"]["label"].map({name: i for i, name in enumerate(labels)}).to_numpy()

    def job(refit: bool, name: str) -> TfidfJob:
        return TfidfJob(o.split["paths"], labels, o.cfg.model.model_copy(update={"tfidf_refit": refit}), o.cfg.tokenize,
                        o.cfg.clean, o.cfg.train.select_metric, str(tmp_path / name), seed=o.cfg.run.seed)

    refit, train_only = run_tfidf_job(job(True, "a")), run_tfidf_job(job(False, "b"))
    assert (refit.clf.fitted_on, train_only.clf.fitted_on) == ("train+val", "train")
    np.testing.assert_allclose(refit.probs["val"], train_only.probs["val"], atol=1e-12)  # the choice's scores
    np.testing.assert_allclose(refit.val_oov, train_only.val_oov, atol=1e-12)
    np.testing.assert_allclose(refit.probs["test"], refit.clf.predict_proba(frames["test"]["raw_text"].tolist()), atol=1e-9)
    assert len(refit.clf.blocks["char"].vocab) > len(train_only.clf.blocks["char"].vocab)  # val's n-grams joined
    in_sample = float((refit.clf.predict_proba(frames["val"]["raw_text"].tolist()).argmax(1) == y_val).mean())
    out_of_sample = float((refit.probs["val"].argmax(1) == y_val).mean())
    assert in_sample > out_of_sample  # why validation must not be re-scored with the refitted model

    # the run's own stages: the fixture's tfidf_lr was refitted, and evaluate took the table's validation scores
    table = {r["candidate"]: r for r in o.cands["table"]}
    assert load_classifier(table["tfidf_lr"]["model_dir"]).fitted_on == "train+val"
    assert any("train + validation" in n for n in o.cands["notes"])
    m = o.evaluation["metrics"]
    chosen = table[o.cands["chosen"]]
    assert (m["val_accuracy"], m["val_macro_f1"]) == (chosen["val_accuracy"], chosen["val_macro_f1"])
    assert (m["baseline_val_accuracy"], m["baseline_val_macro_f1"]) == (table["tfidf_lr"]["val_accuracy"],
                                                                        table["tfidf_lr"]["val_macro_f1"])
    assert m["baseline_val_accuracy"] == pytest.approx(out_of_sample, abs=1e-12)

    # the drift profile's reference: the shipped candidate's out-of-sample validation scores, not the model's own
    ref = np.load(o.cands["val_reference"])
    model_dir = shutil.copytree(table["tfidf_lr"]["model_dir"], tmp_path / "shipped")
    np.savez(tmp_path / "ref.npz", probs=refit.probs["val"], oov=refit.val_oov)
    profile = json.loads(open(profile_task.fn(str(model_dir), o.split["paths"], o.cfg.monitor, 0, o.tracking,
                                              reference=str(tmp_path / "ref.npz")), encoding="utf-8").read())
    assert profile["confidence"]["mean"] == pytest.approx(float(refit.probs["val"].max(axis=1).mean()), abs=1e-12)
    assert profile["oov"]["mean"] == pytest.approx(float(refit.val_oov.mean()), abs=1e-12)
    in_sample_oov = refit.clf.predict_proba_oov(frames["val"]["raw_text"].tolist())[1]
    assert float(in_sample_oov.mean()) < profile["oov"]["mean"]  # the refitted vocabulary has seen validation
    assert ref["probs"].shape == (len(frames["val"]), len(labels))
    # the run's own reference carries the shipped candidate's OOV shares, so the profile stage scores nothing again
    from tasks.monitor import model_oov

    network_oov = model_oov(load_classifier(o.trained["model_dir"]), frames["val"]["raw_text"].tolist())[1]
    expected_oov = refit.val_oov if o.cands["chosen"] == "tfidf_lr" else network_oov  # an ensemble: its network's
    np.testing.assert_allclose(ref["oov"], expected_oov, atol=1e-12)


def test_side_process_failure_is_reported_with_its_cause(outputs, tmp_path):
    from textcls_core.training.side_work import SideProcess, TfidfJob

    o = outputs
    job = TfidfJob({**o.split["paths"], "train": str(tmp_path / "missing.parquet")}, ["a", "b"], o.cfg.model,
                   o.cfg.tokenize, o.cfg.clean, o.cfg.train.select_metric, str(tmp_path / "side"))
    with pytest.raises(RuntimeError, match="missing.parquet"):
        SideProcess(job).result(timeout_s=120)


def test_network_predictions_do_not_depend_on_batch_order(outputs):
    """Prediction batches texts in length order and puts the rows back: any input order gives each text the
    probabilities it gets alone."""
    clf = load_classifier(outputs.trained["model_dir"])
    texts = pd.read_parquet(outputs.split["paths"]["test"])["raw_text"].tolist()[:60] + ["好", "", "非常" * 200]
    together = clf.predict_proba(texts, 16)
    alone = np.vstack([clf.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    perm = np.random.default_rng(0).permutation(len(texts))
    np.testing.assert_allclose(clf.predict_proba([texts[i] for i in perm], 16), together[perm], atol=1e-5)
