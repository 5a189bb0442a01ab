"""Where a GPU speed-up over the Trainer can come from, measured on the CPU (issue #17, part 3).

1. Padded tokens: for the built-in corpus's train texts (as prepared by gpu_prep.py, max_len 256, batch 32), the
   tokens one epoch computes on under each batching, and the share of them that are padding. On a GPU the
   transformer's arithmetic grows with padded tokens (attention with their square), so this bounds what
   batching alone can give.
2. Host overhead per step: engine vs Trainer on a 1-layer, 16-wide BERT, where the arithmetic is negligible
   and a step's time is the Python, data loading, collate, optimizer and scheduler work around it. On a GPU
   that work has to hide behind the kernels or it caps the step rate (no .item() per step, CUDA graphs).

Run:  .venv/bin/python benchmarks/gpu_headroom.py --prep runs/gpu_prep [--steps 60 --rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import torch  # noqa: E402
import train_throughput as tt  # noqa: E402

from textcls_core.text.batching import BucketBatchSampler, EncodedDataset, padded_width  # noqa: E402


def padded_tokens(lengths: list[int], batch: int, max_len: int) -> dict[str, tuple[int, int]]:
    """Computed tokens per epoch (rows x padded width, summed over batches) and batches, per batching."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    random_order = torch.randperm(len(lengths), generator=g()).tolist()

    def cost(batches: list[list[int]], buckets: tuple[int, ...] = (), fixed: int = 0) -> tuple[int, int]:
        return sum(len(b) * (fixed or padded_width(max(lengths[i] for i in b), max_len, 1, buckets)) for b in batches), len(batches)

    chunks = lambda order: [order[i : i + batch] for i in range(0, len(order), batch)]  # noqa: E731
    grouped = get_length_grouped_indices(lengths, batch, generator=g())
    budget = batch * int(statistics.mean(lengths))
    return {
        "padded to max_len (Trainer padding='max_length')": cost(chunks(random_order), fixed=max_len),
        "random batches, padded to the longest (Trainer padding='longest')": cost(chunks(random_order)),
        "Trainer group_by_length (LengthGroupedSampler)": cost(chunks(grouped)),
        "engine: length-bucketed batches (BucketBatchSampler)": cost(list(BucketBatchSampler(lengths, batch, g()))),
        "engine: bucketed + pad_buckets 32/64/128/256 (for compile)": cost(list(BucketBatchSampler(lengths, batch, g())), tuple(tt.BUCKETS)),
        "engine: bucketed + pad_buckets every 16 up to 256 (16 shapes)": cost(list(BucketBatchSampler(lengths, batch, g())), tuple(range(16, 257, 16))),
        f"engine: token budget max_tokens={budget} (batch x mean length)": cost(list(BucketBatchSampler(lengths, batch, g(), max_tokens=budget))),
    }


def host_overhead(corpus: tt.Corpus, steps: int, rounds: int) -> dict[str, list[float]]:
    """ms per step of engine and Trainer on a BERT too small to matter, alternating order."""
    import train_throughput  # noqa: F401  (same helpers as the throughput benchmark)

    tt.SHAPES["micro"] = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16)
    n = steps * 32
    sub = tt.Corpus(EncodedDataset(corpus.train.ids[:n], corpus.train.labels[:n]),
                    EncodedDataset(corpus.val.ids[:32], corpus.val.labels[:32]), corpus.pad_id, corpus.labels,
                    corpus.tokenizer_dir, corpus.max_len)
    p, cpu = tt.Params(batch_size=32, lr=1e-3), torch.device("cpu")
    out: dict[str, list[float]] = {"engine": [], "trainer-dynamic": []}
    with tempfile.TemporaryDirectory() as tmp:
        bert = tt.save_random_bert(Path(tmp) / "micro", sub, "micro")
        for name in out:  # warm-up
            tt.run_setup(tt.SETUPS[name], bert, sub, p, cpu)
        for r in range(rounds):
            for name in (list(out) if r % 2 == 0 else list(out)[::-1]):
                o = tt.run_setup(tt.SETUPS[name], bert, sub, p, cpu)
                out[name].append(1000 * o.seconds / steps)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prep", type=Path, default=Path("runs/gpu_prep"))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-overhead", action="store_true")
    args = ap.parse_args()
    corpus = tt.load_folder(args.prep)
    lengths = [len(x) for x in corpus.train.ids]
    rows = padded_tokens(lengths, 32, corpus.max_len)
    real = sum(lengths)
    print(f"{len(lengths)} train texts, {real:,} real tokens (mean {real / len(lengths):.1f}), batch 32, max_len {corpus.max_len}\n")
    print("| batching | batches | computed tokens per epoch | padding share | vs padded to max_len |")
    print("|---|---|---|---|---|")
    full = next(iter(rows.values()))[0]
    for name, (tokens, batches) in rows.items():
        print(f"| {name} | {batches} | {tokens:,} | {1 - real / tokens:.1%} | {full / tokens:.2f}x fewer |")
    if not args.skip_overhead:
        ms = host_overhead(corpus, args.steps, args.rounds)
        print(f"\nhost overhead per step (1-layer 16-wide BERT, {args.steps} steps x {args.rounds} rounds, CPU):")
        for name, values in ms.items():
            print(f"  {name}: median {statistics.median(values):.1f} ms/step (min {min(values):.1f}, max {max(values):.1f})")


if __name__ == "__main__":
    main()
