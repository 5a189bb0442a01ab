"""Batched prediction against jieba alone, on the same texts (#19: prediction within 1.5x of jieba's own time).

The work compared: a model's whole prediction path from the RAW text (clean + segment + encode + forward, or
n-gram features + regression) against `jieba.lcut` of each of the same raw texts, nothing else. Texts: the test
split's raw texts of a finished run (`--run`, default the newest run with a candidates report).

Measured in one process, same timer (time.perf_counter around the whole call), jieba's dictionary loaded before
any timing, `--rounds` rounds in alternating order (jieba first in even rounds, the model first in odd ones), the
median of the rounds kept. Printed per model: seconds, texts/s, the ratio model/jieba, and the model's throughput as
a share of jieba's (the goal: >= 0.67).

Models:
- every candidate folder of the run (network, tfidf_lr, ensemble), loaded with textcls_core.modeling.classifiers.load_classifier;
- with `--model URI`: the registered pyfunc (mlflow.pyfunc.load_model), called with at most 1,000 texts per call
  (serve.max_texts), which is what `mlflow models serve` runs per request;
- with `--http`: `mlflow models serve` of that URI on a loopback port, the texts sent as batch requests of 1,000;
  the ratio then includes JSON and HTTP.

textcls's jieba block memo (textcls_core/text/tokenize.py) is off in this process and the server
(TEXTCLS_SEGMENT_MEMO_CHARS=0): the rounds repeat the same texts, and the memo would answer the later rounds from
memory, which is not segmentation speed.

Run after `make run`:
  .venv/bin/python benchmarks/predict_vs_jieba.py --rounds 5 --model models:/textcls-sentiment@champion --http
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# cold segmentation on every path: the 5 rounds repeat the same texts, and textcls's block memo would otherwise
# answer rounds 2-5 from memory (set before textcls is imported; `mlflow models serve` inherits it)
os.environ["TEXTCLS_SEGMENT_MEMO_CHARS"] = "0"

import jieba  # noqa: E402
import pandas as pd  # noqa: E402

from textcls_core.modeling.classifiers import load_classifier  # noqa: E402

CHUNK = 1000  # serve.max_texts: the most texts one pyfunc call / HTTP request takes


def _newest_run(root: Path) -> Path:
    runs = sorted(p.parent.parent for p in root.glob("*/reports/candidates.json"))
    if not runs:
        raise SystemExit(f"no run with reports/candidates.json under {root}; run `make run` first")
    return runs[-1]


def _jieba(texts: list[str]) -> None:
    lcut = jieba.lcut
    for t in texts:
        lcut(t)


def _chunked(fn, texts: list[str]) -> None:
    for i in range(0, len(texts), CHUNK):
        fn(texts[i : i + CHUNK])


def _serve(model: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = Path(sys.executable).parent
    env = os.environ | {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", model, "--env-manager", "local",
                             "--host", "127.0.0.1", "-p", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}/invocations"


def _post(url: str, texts: list[str]) -> None:
    req = urllib.request.Request(url, data=json.dumps({"inputs": texts}, ensure_ascii=False).encode("utf-8"),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()


def _time(fn, texts: list[str]) -> float:
    t0 = time.perf_counter()
    fn(texts)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", default="", help="run folder (default: the newest under runs/)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default="", help="registered model URI for the pyfunc (and --http) measurement")
    parser.add_argument("--http", action="store_true", help="also time batch requests to `mlflow models serve`")
    args = parser.parse_args()
    run = Path(args.run) if args.run else _newest_run(Path("runs"))
    test = pd.read_parquet(run / "data" / "test.parquet")
    texts = test["raw_text" if "raw_text" in test.columns else "text"].astype(str).tolist()
    report = json.loads((run / "reports" / "candidates.json").read_text(encoding="utf-8"))
    models = {row["name"]: load_classifier(row["model_dir"]) for row in report["table"]}
    fns = {name: (lambda t, m=m: m.predict_proba(t)) for name, m in models.items()}
    server = None
    if args.model:
        import mlflow

        pyfunc = mlflow.pyfunc.load_model(args.model)
        fns[f"pyfunc {args.model}"] = lambda t: _chunked(pyfunc.predict, t)
        if args.http:
            server, url = _serve(args.model)
            deadline = time.monotonic() + 180
            while True:
                try:
                    _post(url, texts[:2])
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
            fns[f"HTTP {args.model}"] = lambda t: _chunked(lambda c: _post(url, c), t)
    jieba.initialize()
    for fn in fns.values():  # warm-up: first-call costs (lazy imports, allocator) are not prediction speed
        fn(texts[:64])
    _jieba(texts[:64])
    try:
        print(f"run {run}: {len(texts)} test texts, mean {sum(map(len, texts)) / len(texts):.0f} characters; "
              f"{args.rounds} rounds, alternating order, median")
        print(f"{'model':48s} {'model s':>8s} {'jieba s':>8s} {'ratio':>6s} {'share of jieba':>15s}")
        for name, fn in fns.items():
            mine, base = [], []
            for r in range(args.rounds):
                if r % 2 == 0:
                    base.append(_time(_jieba, texts))
                    mine.append(_time(fn, texts))
                else:
                    mine.append(_time(fn, texts))
                    base.append(_time(_jieba, texts))
            m, b = statistics.median(mine), statistics.median(base)
            print(f"{name[:48]:48s} {m:8.3f} {b:8.3f} {m / b:6.2f} {b / m:15.2f}   ({len(texts) / m:.0f} vs {len(texts) / b:.0f} texts/s)")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    import torch

    print(f"{platform.machine()}, {os.cpu_count()} cpus, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"jieba {jieba.__version__}, python {platform.python_version()}")


if __name__ == "__main__":
    main()
