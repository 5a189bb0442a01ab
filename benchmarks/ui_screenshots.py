"""Screenshots of what reviewers and ops see: the MLflow UI and the Prefect UI over a finished textcls run.

Starts a Prefect server and runs a small `textcls run` against it (so the flow run, its artifacts and events stay
browsable), starts `mlflow ui` on the run's store, and saves PNGs with headless Chromium (Debian package
`chromium`) into docs/img/:

    mlflow_runs.png            the experiment's runs table (run names, datasets, duration, source)
    mlflow_run.png             one run page (description = run summary, datasets, tags)
    mlflow_model_version.png   the registered version (model card, tags)
    prefect_flow_run.png       the Prefect flow run: task graph with the artifacts each task published, logs

Run: .venv/bin/python benchmarks/ui_screenshots.py [--rows 3000] [--out docs/img]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {seconds} s")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("headless Chromium not found: apt-get install -y chromium")


def shoot(url: str, out: Path, width: int = 1500, height: int = 1000, wait_ms: int = 20000) -> None:
    """One PNG of a single-page app: Chromium's virtual time lets the page fetch and render before the shot."""
    cmd = [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-dev-shm-usage",
           f"--window-size={width},{height}", f"--virtual-time-budget={wait_ms}", f"--screenshot={out}", url]
    subprocess.run(cmd, check=True, capture_output=True, timeout=180)
    print(f"saved {out} ({out.stat().st_size // 1024} KiB) <- {url}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=3000, help="data.max_rows of the run shown")
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="textcls_ui_"))
    p_port, m_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env |= {"PREFECT_HOME": str(work / "prefect_home"), "PREFECT_API_URL": f"http://127.0.0.1:{p_port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PATH": f"{BIN}:{env.get('PATH', '')}", "TQDM_DISABLE": "1"}
    procs = [subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(p_port)],
                              env=env, stdout=open(work / "prefect.log", "w"), stderr=subprocess.STDOUT)]
    try:
        _wait(f"http://127.0.0.1:{p_port}/api/health")
        uri = f"sqlite:///{work / 'mlflow.db'}"
        summary = work / "summary.json"
        subprocess.run([str(BIN / "textcls"), "run", "--config", str(ROOT / "conf" / "default.yaml"), "--summary", str(summary),
                        "--set", f"data.max_rows={args.rows}", "--set", f"tracking.uri={uri}", "--set", f"run.output_dir={work / 'runs'}",
                        "--set", "train.epochs=3", "--set", "train.progress=false"],
                       env=env, cwd=work, check=True, timeout=1800)
        s = json.loads(summary.read_text(encoding="utf-8"))
        procs.append(subprocess.Popen([str(BIN / "mlflow"), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(m_port)],
                                      env=env, stdout=open(work / "mlflow.log", "w"), stderr=subprocess.STDOUT))
        _wait(f"http://127.0.0.1:{m_port}/health")
        m, p = f"http://127.0.0.1:{m_port}", f"http://127.0.0.1:{p_port}"
        exp, run = s["mlflow_experiment_id"], s["mlflow_run_id"]
        ml = "workflowType=machine_learning"  # MLflow 3.17's UI mode switch (top left: GenAI / Model training)
        shoot(f"{m}/#/experiments/{exp}/runs?{ml}", out / "mlflow_runs.png")
        shoot(f"{m}/#/experiments/{exp}/runs/{run}?{ml}", out / "mlflow_run.png", height=1300)
        shoot(f"{m}/#/models/{s['model_name']}/versions/{s['model_version']}?{ml}", out / "mlflow_model_version.png", height=1400)
        # the run graph shows every task and the artifacts each published; headless Chromium does not switch to the
        # Artifacts tab (?tab=Artifacts) nor draw table artifacts or metric charts within its time budget, so those
        # pages are not shot
        shoot(f"{p}/runs/flow-run/{s['prefect_flow_run_id']}", out / "prefect_flow_run.png")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"run files in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
