"""Where the stress stage's time goes: each built-in perturbation's own cost (making the texts, then predicting them)
on the same texts, in one process, with the run's shipped model.

    .venv/bin/python benchmarks/stress_cost.py --run runs/<run>      # 1,000 seeded test texts, as stress.max_texts
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from textcls_core.evaluation.stress import perturb_texts, perturbation_names
from textcls_core.modeling.classifiers import load_classifier
from textcls_core.runtime.config import StressConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="a finished run folder (model/ and data/test.parquet)")
    ap.add_argument("--texts", type=int, default=1000)
    args = ap.parse_args()
    run = Path(args.run)
    clf = load_classifier(run / "model")
    test = pd.read_parquet(run / "data" / "test.parquet")
    col = "raw_text" if "raw_text" in test.columns else "text"
    texts = test[col].sample(min(args.texts, len(test)), random_state=0).astype(str).tolist()
    cfg = StressConfig()
    clf.predict_proba(texts[:20])  # warm-up: first-call costs are not the perturbation's
    total = 0.0
    for name in perturbation_names(cfg):
        t0 = time.perf_counter()
        perturbed = perturb_texts(texts, name, cfg, 42)
        t1 = time.perf_counter()
        clf.predict_proba(perturbed)
        t2 = time.perf_counter()
        total += t2 - t0
        print(f"{name:20s} perturb {t1 - t0:6.3f} s  predict {t2 - t1:6.3f} s  ({sum(map(len, perturbed)):,} characters)")
    print(f"total {total:.2f} s for {len(texts)} texts in one process")


if __name__ == "__main__":
    main()
