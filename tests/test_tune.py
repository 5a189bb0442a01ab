"""textcls tune: the search space against the schema (core, in memory), the CLI's bad-input messages, and one
whole search on a small slice (slow: trials, nested MLflow runs, resume, the final registered run)."""

from __future__ import annotations

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from flows.cli import main
from textcls_core.runtime.config import build_config, load_config
from textcls_core.runtime.errors import ConfigError
from textcls_core.training.search_space import apply, default_point, parse_space, suggest


def test_space_parses_ranges_and_choices_with_the_schemas_types():
    base = build_config({}, [])
    params, problems = parse_space({"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}, "tokenize.min_freq": {"low": 1, "high": 3},
                                    "model.kernel_sizes": {"choices": [[1, 2], [2, 3, 4]]}, "model.name": {"choices": ["textcnn", "bilstm"]}}, base)
    assert problems == []
    assert (params["train.lr"].kind, params["tokenize.min_freq"].kind, params["model.kernel_sizes"].kind) == ("float", "int", "choice")
    point = suggest(optuna.trial.FixedTrial({"train.lr": 0.003, "tokenize.min_freq": 2, "model.kernel_sizes": "[2, 3, 4]",
                                             "model.name": "bilstm"}), params)
    assert point == {"train.lr": 0.003, "tokenize.min_freq": 2, "model.kernel_sizes": [2, 3, 4], "model.name": "bilstm"}
    cfg = apply(base, point)  # list choices come back as lists, ints as ints, and the result is a validated config
    assert (cfg.train.lr, cfg.tokenize.min_freq, cfg.model.kernel_sizes, cfg.model.name) == (0.003, 2, [2, 3, 4], "bilstm")


def test_default_point_holds_the_config_values_inside_the_space():
    base = build_config({}, ["train.lr=0.002", "model.num_filters=128"])
    params, _ = parse_space({"train.lr": {"low": 1e-3, "high": 1e-2}, "model.num_filters": {"choices": [16, 32]},
                             "model.kernel_sizes": {"choices": [[1, 2, 3], [2, 3]]}}, base)
    # num_filters=128 is not a choice: the first trial keeps it out (Optuna samples it) instead of failing
    assert default_point(base, params) == {"train.lr": 0.002, "model.kernel_sizes": "[1, 2, 3]"}


@pytest.mark.parametrize("space,message", [
    ({"train.lrr": {"low": 1e-4, "high": 1e-2}}, "unknown key 'train.lrr'"),
    ({"train.lr": {"low": 1e-2, "high": 1e-4}}, "tune.space.train.lr: the range [0.01, 0.0001] is empty"),
    ({"model.kernel_sizes": {"choices": []}}, "choices is empty"),
    ({"split.val_fraction": {"low": 0.1, "high": 0.2}}, "'split.val_fraction' cannot be searched"),
    ({"clean.drop_duplicates": {"choices": [True, False]}}, "changes which rows are in the validation split"),
    ({"train.devices": {"low": 1, "high": 2}}, "'train.devices' cannot be searched"),
    ({"model.dropout": {"low": 0.1, "high": 1.5}}, "the value 1.5 is not a valid model.dropout"),
    ({"train.epochs": {"low": 1.5, "high": 4}}, "'train.epochs' is an integer"),
    ({"model.name": {"low": 1, "high": 2}}, "'model.name' is not a number, so it takes choices"),
    ({"train.lr": [0.001, 0.01]}, "give a range or choices"),
    ({"train.lr": {"low": 0.0, "high": 0.1, "log": True}}, "a log range needs low > 0"),
])
def test_bad_space_is_one_clear_config_error(space, message):
    with pytest.raises(ConfigError) as err:
        build_config({"tune": {"space": space}}, [])
    assert message in str(err.value)


def test_parallel_above_the_cores_and_storage_in_the_mlflow_store_are_refused():
    with pytest.raises(ConfigError, match=r"tune.parallel = 2 is above the 1 core"):
        build_config({}, ["run.cpus=1", "tune.parallel=2"])
    with pytest.raises(ConfigError, match="alembic_version"):
        build_config({}, ["tracking.uri=sqlite:///x.db", "tune.storage=sqlite:///x.db"])


@pytest.mark.parametrize("args,message", [
    (["--set", "tune.space={train.lrr: {low: 0.001, high: 0.01}}"], "Did you mean 'train.lr'"),
    (["--set", "tune.space={train.lr: {low: 0.01, high: 0.001}}"], "is empty; low must be below high"),
    (["--set", "tune.parallel=4096"], "tune.parallel = 4096 is above the"),
    (["--set", "model.candidates=[model, bert]"], "model.candidates.1 = 'bert'"),
])
def test_tune_cli_bad_input_exits_2_before_any_server(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["tune", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.startswith("textcls: error:")
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()


@pytest.mark.slow
def test_tune_flow_nested_runs_resume_and_final_registration(tmp_path, prefect_server):
    from flows.tune import tune_text_classifier
    from tests.conftest import small_config

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = "tune.space={train.lr: {low: 0.0005, high: 0.02, log: true}, model.num_filters: {choices: [8, 16, 32]}}"
    common = [space, "tune.startup_trials=2", "stress.enabled=false", "evaluate.label_error_folds=0", "registry.model_name=textcls-tune"]
    first = tune_text_classifier(config=small_config(tmp_path, uri, *common, "tune.trials=3", "tune.parallel=2"))

    t = first["tune"]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("textcls").experiment_id
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{first['mlflow_run_id']}'")
    assert len(children) == 3 and t["trials"]["total"] == 3
    assert {r.data.tags["textcls.tune.state"] for r in children} <= {"COMPLETE", "PRUNED"}
    # each trial carries its own parameters and its per-epoch validation curve (the compare view needs both)
    assert len({r.data.params["train.lr"] for r in children}) == 3
    done = next(r for r in children if r.data.tags["textcls.tune.state"] == "COMPLETE")
    epochs = sorted(client.get_metric_history(done.info.run_id, "epoch"), key=lambda m: m.step)
    assert [m.value for m in epochs] == [1, 2]
    assert sorted(m.step for m in client.get_metric_history(done.info.run_id, "val_accuracy")) == [m.step for m in epochs]
    # the study is in its own database beside the MLflow store, never in it
    study = optuna.load_study(study_name=t["study_name"], storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert len(study.trials) == 3 and study.trials[0].user_attrs.get("textcls.default_config") is True
    from sqlalchemy import create_engine, inspect

    assert "trials" not in inspect(create_engine(uri)).get_table_names()
    # the best config is a complete, valid YAML holding the best trial's values, and it was trained and registered
    best = load_config(t["best_config_path"])
    best_trial = max((x for x in study.trials if x.value is not None), key=lambda x: x.value)
    assert t["best_value"] == pytest.approx(best_trial.value)
    assert best.train.lr == pytest.approx(best_trial.params["train.lr"]) and best.model.num_filters == best_trial.params["model.num_filters"]
    assert set(yaml.safe_load(open(t["best_config_path"], encoding="utf-8"))) >= {"run", "data", "model", "train", "tune"}
    final = first["final"]
    assert client.get_model_version("textcls-tune", final["model_version"]).run_id == final["mlflow_run_id"]
    assert client.get_run(final["mlflow_run_id"]).data.tags["textcls.tune.run_id"] == first["mlflow_run_id"]
    assert float(client.get_run(final["mlflow_run_id"]).data.params["train.lr"]) == pytest.approx(best_trial.params["train.lr"])

    # the same command with more trials resumes the study: only the missing trials run
    second = tune_text_classifier(config=small_config(tmp_path, uri, *common, "tune.trials=5", "tune.parallel=1", "tune.final_run=false"))
    assert second["tune"]["study_name"] == t["study_name"] and second["trials_this_worker"] == 2
    assert len(optuna.load_study(study_name=t["study_name"], storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials) == 5
    assert "final" not in second
