"""#18: a model packaged before a change still loads and predicts after it.

tests/fixtures/packaged_textcnn_v1 is an MLflow pyfunc folder written by `textcls run` on 2026-11-30 (a tiny TextCNN,
embed 16, 8 filters, trained 2 epochs on 301 built-in reviews; its code/ holds the textcls_core of that day) with
expected.json, its own predictions then. It must give the same probabilities
- in a fresh process, where MLflow puts the model's bundled code first on sys.path, and
- in a process that has already imported today's textcls_core (the champion re-score in `textcls run` does this:
  the model then runs on the current package, so a renamed module or field breaks it here first).
A refactor that moves modules keeps re-export shims at the old paths until this passes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "fixtures" / "packaged_textcnn_v1"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))

SCRIPT = """
import json, sys
import mlflow
out = mlflow.pyfunc.load_model(sys.argv[1]).predict(json.loads(sys.argv[2]))
cols = [c for c in out.columns if c.startswith("prob_")]
print(json.dumps({"labels": out["label"].tolist(), "probs": out[cols].to_numpy().tolist(), "columns": cols}))
"""


def _check(got: dict) -> None:
    assert got["columns"] == EXPECTED["columns"]
    assert got["labels"] == EXPECTED["labels"]
    np.testing.assert_allclose(np.array(got["probs"]), np.array(EXPECTED["probs"]), atol=1e-6)


def test_old_model_predicts_the_same_in_a_fresh_process(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(FIXTURE), json.dumps(EXPECTED["texts"], ensure_ascii=False)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _check(json.loads(done.stdout.strip().splitlines()[-1]))


def test_old_model_predicts_the_same_after_the_current_package_is_imported(monkeypatch):
    import mlflow

    monkeypatch.setattr(sys, "path", list(sys.path))  # MLflow prepends the model's code/: undone after the test

    import textcls_core.modeling.classifiers  # noqa: F401  (today's package first, as in the champion re-score)

    out = mlflow.pyfunc.load_model(str(FIXTURE)).predict(EXPECTED["texts"])
    cols = [c for c in out.columns if c.startswith("prob_")]
    _check({"labels": out["label"].tolist(), "probs": out[cols].to_numpy().tolist(), "columns": cols})
    assert "fixtures" not in sys.modules["textcls_core.modeling.classifiers"].__file__  # it really ran on today's package
    # the model imported the flat name textcls_core.classifiers: the alias served today's module, not a second copy
    assert sys.modules["textcls_core.classifiers"] is sys.modules["textcls_core.modeling.classifiers"]
    for name, module in list(sys.modules.items()):  # nothing later tests import may come from the fixture's copy
        if str(FIXTURE) in (getattr(module, "__file__", None) or ""):
            del sys.modules[name]
