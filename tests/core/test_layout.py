"""#18: textcls_core grouped by role; the flat names of before the move still import, as the same module objects."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import textcls_core

CORE = Path(textcls_core.__file__).parent


def test_every_module_lives_in_a_role_folder():
    flat = sorted(p.name for p in CORE.glob("*.py") if p.name != "__init__.py")
    assert flat == [], f"modules outside a role folder: {flat}"
    folders = {p.parent.name for p in CORE.glob("*/*.py")}
    assert folders == {"runtime", "dataset", "text", "modeling", "training", "evaluation", "registry"}


@pytest.mark.parametrize("old", sorted(textcls_core.MOVED))
def test_flat_name_is_the_moved_module(old):
    new = importlib.import_module(f"textcls_core.{textcls_core.MOVED[old]}")
    aliased = importlib.import_module(f"textcls_core.{old}")
    assert aliased is new
    assert new.__spec__.name == f"textcls_core.{textcls_core.MOVED[old]}"  # the alias did not overwrite it
    assert Path(new.__file__).parent.parent == CORE


def test_from_import_through_the_flat_name_and_pickles_keep_new_paths():
    from textcls_core.config import CleanConfig
    from textcls_core.predictor import TextClassifier  # what models packaged before the move import

    from textcls_core.modeling.predictor import TextClassifier as Now

    assert TextClassifier is Now
    cfg = pickle.loads(pickle.dumps(CleanConfig()))
    assert type(cfg).__module__ == "textcls_core.runtime.config"


def test_flat_names_in_a_fresh_process():
    code = ("import textcls_core.clean as c, textcls_core.dataset.clean as d, textcls_core.classifiers as k;"
            "assert c is d and k.load_classifier; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_an_unknown_flat_name_still_fails():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("textcls_core.no_such_module")
