"""The logged model's own requirements are complete (#11): a fresh virtualenv with nothing but the model folder's
requirements.txt (no project install, no site packages) loads the pyfunc and predicts, for a word model with
traditional-to-simplified cleaning on (OpenCC runs on every request)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.package import CORE_DIR, INPUT_EXAMPLE, PYFUNC_FILE, pip_requirements
from textcls_core.modeling.predictor import TextClassifier, build_model
from textcls_core.runtime.config import CleanConfig, ModelConfig
from textcls_core.text.encoders import TextEncoder, WordEncoder


def test_requirements_follow_the_settings():
    names = lambda reqs: {r.split("==")[0].lower() for r in reqs}  # noqa: E731
    assert "opencc" in names(pip_requirements(t2s=True)) and "opencc" not in names(pip_requirements())
    assert {"transformers", "tokenizers", "safetensors"} <= names(pip_requirements(pretrained=True))
    assert all("==" in r for r in pip_requirements(True, True))


def _word_model(tmp_path: Path) -> TextClassifier:
    import torch

    torch.manual_seed(0)
    itos = ["<pad>", "<unk>", "这", "本书", "质量", "很", "好", "差"]
    mcfg = ModelConfig(embed_dim=8, num_filters=4, kernel_sizes=[1, 2])
    encoder = TextEncoder(CleanConfig(traditional_to_simplified=True), WordEncoder(itos, 16))
    return TextClassifier(build_model(mcfg, len(itos), 2), encoder, ["negative", "positive"], mcfg)


def _fresh_venv_predict(clf: TextClassifier, tmp_path: Path, texts: list, pretrained: bool, t2s: bool) -> tuple[list[dict], float, float]:
    """Log clf as package_task does, install only its requirements.txt into a new virtualenv, predict there."""
    import mlflow

    model_dir = clf.save(tmp_path / "model_dir")
    logged = tmp_path / "pyfunc"
    mlflow.pyfunc.save_model(str(logged), python_model=str(PYFUNC_FILE), artifacts={"model_dir": str(model_dir)},
                             code_paths=[str(CORE_DIR)], input_example=INPUT_EXAMPLE, model_config={"max_texts": 10},
                             pip_requirements=pip_requirements(pretrained=pretrained, t2s=t2s))
    reqs = (logged / "requirements.txt").read_text().split()
    torch_pin = next(r for r in reqs if r.startswith("torch=="))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # no --system-site-packages
    py = str(venv / "bin" / "python")
    t0 = time.perf_counter()
    # torch first from its pin: pip then takes the CPU wheel on local disk instead of resolving a CUDA build
    for args in (["install", "-q", torch_pin], ["install", "-q", "-r", str(logged / "requirements.txt")]):
        done = subprocess.run([py, "-m", "pip", *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    install_s = time.perf_counter() - t0
    script = ("import json, sys, time, mlflow; t = time.perf_counter(); m = mlflow.pyfunc.load_model(sys.argv[1]); "
              "out = m.predict(json.loads(sys.argv[2])); "
              "print(json.dumps({'s': time.perf_counter() - t, 'rows': out.to_dict(orient='records')}))")
    done = subprocess.run([py, "-c", script, str(logged), json.dumps(texts)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["rows"], install_s, result["s"]


@pytest.mark.slow
def test_fresh_virtualenv_loads_and_predicts_from_the_model_requirements(tmp_path):
    clf = _word_model(tmp_path)
    fresh, install_s, predict_s = _fresh_venv_predict(clf, tmp_path, ["這本書質量很好", "质量很差"], pretrained=False, t2s=True)
    local = clf.predict(["這本書質量很好", "质量很差"])
    assert [r["label"] for r in fresh] == local["label"].tolist()
    assert [r["prob_positive"] for r in fresh] == pytest.approx(local["prob_positive"].tolist(), abs=1e-6)
    # t2s really ran in the fresh environment: the traditional text scores as its simplified form
    assert fresh[0]["prob_positive"] == pytest.approx(float(clf.predict(["这本书质量很好"])["prob_positive"][0]), abs=1e-6)
    print(f"\nfresh virtualenv (word model, t2s): install {install_s:.0f} s, load + predict {predict_s:.1f} s")


@pytest.mark.slow
def test_fresh_virtualenv_runs_a_transformer_model(tmp_path, tiny_bert):
    from textcls_core.modeling.networks import load_pretrained_model
    from textcls_core.text.encoders import PretrainedEncoder, load_tokenizer

    labels = ["negative", "positive"]
    encoder = TextEncoder(CleanConfig(), PretrainedEncoder(load_tokenizer(tiny_bert), 32))
    mcfg = ModelConfig(name="transformer", pretrained=str(tiny_bert))
    clf = TextClassifier(load_pretrained_model(tiny_bert, 2, labels, encoder.pad_id), encoder, labels, mcfg)
    texts = ["质量很好", "太差了"]
    fresh, install_s, predict_s = _fresh_venv_predict(clf, tmp_path, texts, pretrained=True, t2s=False)
    assert [r["prob_positive"] for r in fresh] == pytest.approx(clf.predict(texts)["prob_positive"].tolist(), abs=1e-5)
    print(f"\nfresh virtualenv (transformer): install {install_s:.0f} s, load + predict {predict_s:.1f} s")
