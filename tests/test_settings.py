"""TEXTCLS_ environment settings (precedence: --set / flow parameters > YAML > environment > defaults) and URI redaction."""

import json
import logging

import pytest

from textcls_core.runtime.config import Config, build_config, load_config
from textcls_core.runtime.errors import ConfigError
from textcls_core.runtime.redact import redact_text, redact_uri, redact_values


def test_environment_fills_only_what_yaml_and_set_leave_out(monkeypatch, tmp_path):
    monkeypatch.setenv("TEXTCLS_RUN__OUTPUT_DIR", "/data/runs")
    monkeypatch.setenv("TEXTCLS_TRAIN__EPOCHS", "3")
    monkeypatch.setenv("TEXTCLS_MODEL__KERNEL_SIZES", "[2, 4]")
    monkeypatch.setenv("TEXTCLS_HOME", "/data")  # no `__`: not a config key, left alone
    assert Config().run.output_dir == "/data/runs"  # environment over defaults
    cfg = build_config({"train": {"epochs": 5}})  # YAML / flow parameter over environment
    assert (cfg.train.epochs, cfg.run.output_dir, cfg.model.kernel_sizes) == (5, "/data/runs", [2, 4])
    assert build_config({"train": {"epochs": 5}}, ["train.epochs=7"]).train.epochs == 7  # --set over everything
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("run:\n  output_dir: from-yaml\n", encoding="utf-8")
    cfg = load_config(yaml_file)
    assert (cfg.run.output_dir, cfg.train.epochs) == ("from-yaml", 3)
    # a flow parameter arrives as a partial dict: Prefect validates it into Config, the environment fills the rest
    assert Config.model_validate({"data": {"max_rows": 600}}).run.output_dir == "/data/runs"
    # a complete, stored config (config.json of a resumed run) is not changed by the environment
    stored = Config.model_validate(json.loads(Config.model_validate({"train": {"epochs": 2}}).model_dump_json()))
    assert stored.train.epochs == 2


def test_unknown_or_bad_environment_variable_is_a_clear_config_error(monkeypatch):
    monkeypatch.setenv("TEXTCLS_TRAIN__EPOCHZ", "3")
    with pytest.raises(ConfigError, match="TEXTCLS_TRAIN__EPOCHZ: unknown key 'train.epochz'; did you mean TEXTCLS_TRAIN__EPOCHS"):
        build_config({})
    monkeypatch.delenv("TEXTCLS_TRAIN__EPOCHZ")
    monkeypatch.setenv("TEXTCLS_TRAIN__EPOCHS", "three")
    with pytest.raises(ConfigError, match=r"train.epochs = 'three'.*\n.*TEXTCLS_SECTION__KEY"):
        build_config({})


def test_unresolved_prefect_placeholder_counts_as_unset(monkeypatch):
    # prefect.yaml's job_variables template {{ $TEXTCLS_HOME }}; deployed without it, the default applies
    monkeypatch.setenv("TEXTCLS_RUN__CACHE_DIR", "{{ $TEXTCLS_HOME }}/cache")
    assert build_config({}).run.cache_dir == ".textcls_cache"


@pytest.mark.parametrize(("uri", "expected"), [
    ("postgresql://textcls:s3cr%40t@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
    ("http://alice:pw@127.0.0.1:5000", "http://***@127.0.0.1:5000"),
    ("https://token@host/path?x=1", "https://***@host/path?x=1"),
    ("postgresql://db/mlflow?user=u&password=pw", "postgresql://db/mlflow?user=u&password=***"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("builtin:snownlp-sentiment", "builtin:snownlp-sentiment"),
])
def test_redact_uri_drops_user_info_and_secret_query_values(uri, expected):
    assert redact_uri(uri) == expected


def test_redaction_in_text_values_and_run_logs():
    msg = "cannot reach postgresql+psycopg2://u:hunter2@db/mlflow (timeout); retry http://a:b@h:1/x"
    assert redact_text(msg) == "cannot reach postgresql+psycopg2://***@db/mlflow (timeout); retry http://***@h:1/x"
    cfg = build_config({}, ["tracking.uri=postgresql://u:hunter2@db/mlflow"])
    assert "hunter2" not in json.dumps(redact_values(cfg.model_dump()))
    from tasks.tracking import RedactCredentials

    record = logging.LogRecord("prefect.task_runs", logging.INFO, __file__, 1, "tracking at %s", ("http://u:hunter2@h",), None)
    try:
        raise RuntimeError("no route to http://u:hunter2@h/api")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    RedactCredentials().filter(record)
    assert logging.Formatter().format(record).count("hunter2") == 0
    assert record.getMessage() == "tracking at http://***@h"


def test_resume_puts_back_the_callers_credentials_for_the_same_store():
    from tasks.tracking import _with_credentials

    stored = build_config({}, ["tracking.uri=http://***@127.0.0.1:5000"])
    assert _with_credentials(stored, "http://u:pw@127.0.0.1:5000").tracking.uri == "http://u:pw@127.0.0.1:5000"
    with pytest.raises(ConfigError, match="credentials are not stored"):
        _with_credentials(stored, "http://127.0.0.1:6000")
