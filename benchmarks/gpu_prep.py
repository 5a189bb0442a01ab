"""CPU side of the GPU check: encode the built-in corpus into a folder that the device run carries (limit 64 MiB).

Run:  .venv/bin/python benchmarks/gpu_prep.py                 # writes runs/gpu_prep (runs/ is git-ignored)
Writes tokenizer/ (a character BERT tokenizer built from the train texts), data.parquet (token ids as int32 lists,
label, split), manifest.json, and train_configs.json: the TrainConfig defaults plus every engine configuration
gpu_check.py uses, each validated here with the real schema (the device machine has no pydantic).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import gpu_check  # noqa: E402
import train_throughput as tt  # noqa: E402

CARRY_LIMIT = 64 * 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/gpu_prep"))
    ap.add_argument("--rows", type=int, default=0, help="stratified sample of the corpus (0 = all; tests use a few hundred)")
    ap.add_argument("--max-len", type=int, default=256)
    args = ap.parse_args()
    from textcls_core.runtime.config import TrainConfig

    manifest = tt.prepare_folder(args.out, args.rows, args.max_len)
    planned = gpu_check.planned_engine_fields()
    for name, fields in planned.items():
        TrainConfig(**fields)  # a ConfigError/ValidationError here names the bad field before any device time is spent
    (args.out / "train_configs.json").write_text(json.dumps({"defaults": TrainConfig().model_dump(), "planned": planned},
                                                            indent=2), encoding="utf-8")
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    if size > CARRY_LIMIT:
        raise SystemExit(f"{args.out} holds {size / 2**20:.1f} MiB, over the 64 MiB a device run can carry: use --rows")
    print(f"{args.out}: {manifest['train']} train / {manifest['val']} val texts, mean {manifest['mean_tokens']:.0f} tokens, "
          f"vocab {manifest['vocab_size']}, {size / 2**20:.1f} MiB; {len(planned)} engine configs validated")


if __name__ == "__main__":
    main()
