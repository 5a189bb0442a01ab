"""What is measured is what ships (#11): a run on messy raw texts (URLs, e-mails, phones, nested entities, tags, the
placeholders themselves, emoji, full-width forms and one 1,000,000-character unpunctuated row), then the same raw
test texts through `mlflow models serve`: the served probabilities equal the evaluation's within 1e-5; the huge
text is answered; too many texts get a 400; null and non-string items get a 400 that names them."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import NEG, POS, small_config

NOISE = ["http://a.cn/x?y=1", "www.B.com", "a.b+c@mail.example.com", "13812345678", "+86 139-1234-5678", "<URL>",
         "<EMAIL>", "<PHONE>", "<b>好</b>", "&amp;lt;b&amp;gt;", "&lt;i&gt;", "&#x3c;URL&#x3e;", "&nbsp;", "😀", "👍🏻",
         "ＡＢＣ１２３", "ｈｔｔｐ：／／ｃ．ｃｎ", "＜ｂ＞", "\u200b", "\t", "  "]
HUGE = "好" * 1_000_000


def _messy_csv(path: Path, n: int = 360) -> pd.DataFrame:
    rng = random.Random(0)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        base = rng.choice(POS if label == "positive" else NEG)
        parts = [base, *rng.sample(NOISE, 3), f"编号{i}"]
        rng.shuffle(parts)
        rows.append({"text": "".join(parts) if i % 3 else " ".join(parts), "label": label})
    rows.append({"text": HUGE, "label": "positive"})
    df = pd.DataFrame(rows)
    df.to_csv(path, index=False, encoding="utf-8")
    return df


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, payload: object, timeout: float = 60) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _run_stages(cfg, tmp_path: Path) -> tuple[dict, dict, Path]:
    """analyze -> clean -> split -> encode -> train through the tasks' functions (as tests/test_tasks.py does; no
    Prefect server, which starts slowly on a loaded machine), then log the pyfunc exactly as tasks/package.py does."""
    import mlflow

    from tasks.data import analyze_task, clean_task, split_task
    from tasks.encode import encode_task
    from tasks.package import CORE_DIR, INPUT_EXAMPLE, PYFUNC_FILE, pip_requirements
    from tasks.tracking import client_for
    from tasks.train import train_task

    client = client_for(cfg.tracking.uri)
    exp = client.create_experiment("raw-text")
    run = client.create_run(exp)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    tracking = {"run_id": run.info.run_id, "tracking_uri": cfg.tracking.uri, "experiment_id": exp, "run_dir": str(run_dir)}
    max_len = cfg.tokenize.max_len
    analysis = analyze_task.fn(cfg.data, cfg.extra_columns(), cfg.run.seed, tracking, max_len=max_len)
    cleaning = clean_task.fn(analysis["raw_path"], cfg.clean, tracking, max_len=max_len)
    split = split_task.fn(cleaning["clean_path"], cfg.split, cfg.run.seed, tracking)
    encoded = encode_task.fn(split["paths"], cfg.tokenize, tracking, cfg.clean)
    trained = train_task.fn(encoded, cfg.model, cfg.train, cfg.tokenize, cfg.clean, cfg.run.seed, tracking)
    with mlflow.start_run(run_id=tracking["run_id"]):
        info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_FILE), artifacts={"model_dir": trained["model_dir"]},
                                       code_paths=[str(CORE_DIR)], input_example=INPUT_EXAMPLE, model_config=cfg.serve.model_dump(),
                                       pip_requirements=pip_requirements(False, cfg.clean.traditional_to_simplified))
    return analysis, split, Path(trained["model_dir"]), info.model_uri


@pytest.mark.slow
def test_served_model_scores_raw_text_like_the_evaluation(tmp_path, tracking_uri):
    from textcls_core.modeling.predictor import TextClassifier

    _messy_csv(tmp_path / "messy.csv")
    cfg = small_config(tmp_path, tracking_uri, f"data.path={tmp_path / 'messy.csv'}", "data.max_rows=0", "serve.max_texts=100",
                       "clean.min_class_examples=1", "clean.traditional_to_simplified=true")
    start = time.perf_counter()
    analysis, split, model_dir, model_uri = _run_stages(cfg, tmp_path)
    run_s = time.perf_counter() - start
    assert analysis["stats"]["char_length"]["max"] == 1_000_000  # the analysis reports the original length
    test = pd.concat([pd.read_parquet(split["paths"][k]) for k in ("test", "val")], ignore_index=True)
    assert {"raw_text", "text"} <= set(test.columns) and (test["raw_text"] != test["text"]).any()
    # evaluation scores the raw text with the shipped model folder (tasks/evaluate.py); the same call here
    shipped = TextClassifier.load(model_dir)
    eval_probs = shipped.predict_proba(test["raw_text"].tolist())
    # cleaning is a fixpoint: the cleaned split text gives the same probabilities as the raw text
    np.testing.assert_allclose(shipped.predict_proba(test["text"].tolist()), eval_probs, atol=1e-6)

    port = _free_port()
    bin_dir = Path(sys.executable).parent
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri,
                             "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline, answer = time.monotonic() + 120, None
        while time.monotonic() < deadline and answer is None:
            try:
                answer = _post(port, {"inputs": test["raw_text"].tolist()})
            except OSError:
                time.sleep(1)
        assert answer is not None and answer[0] == 200, (answer, (tmp_path / "serve.log").read_text()[-3000:])
        served = pd.DataFrame(answer[1]["predictions"])
        prob_cols = [f"prob_{name}" for name in shipped.labels]
        np.testing.assert_allclose(served[prob_cols].to_numpy(), eval_probs, atol=1e-5)
        assert served["label"].tolist() == [shipped.labels[i] for i in eval_probs.argmax(axis=1)]

        t0 = time.perf_counter()
        status, body = _post(port, {"inputs": [HUGE]}, timeout=120)
        huge_s = time.perf_counter() - t0
        assert status == 200 and len(body["predictions"]) == 1
        status, body = _post(port, {"inputs": ["好"] * 101})
        assert status == 400 and "at most 100 (serve.max_texts)" in body["message"]
        # MLflow checks the list[str] type hint before the model runs: a clear 400 naming each bad item
        status, body = _post(port, {"inputs": [None, 12, "质量很好"]})
        assert status == 400 and "Expected type str, but got NoneType" in body["message"] and "got int" in body["message"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"\nanalyze..train + log with the 1,000,000-char row: {run_s:.1f} s; served request with it: {huge_s:.2f} s")
