"""The benchmark scripts still run (tiny sizes, CPU); their figures are checked for sense, never for speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_train_throughput_benchmark_runs_on_cpu_with_a_tiny_bert(tmp_path):
    out = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, "benchmarks/train_throughput.py", "--tiny", "--rows", "200", "--max-len", "32",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    facts = json.loads(out.read_text())
    assert facts["shape"] == "tiny"
    assert facts["engine_samples_per_s"] > 0 and facts["trainer_padded_samples_per_s"] > 0 and facts["trainer_grouped_samples_per_s"] > 0
    best = max(facts["trainer_padded_samples_per_s"], facts["trainer_grouped_samples_per_s"])
    assert abs(facts["ratio"] - facts["engine_samples_per_s"] / best) < 1e-9
    assert 0 <= facts["engine_val_accuracy"] <= 1 and "ratio engine / best Trainer" in proc.stdout
