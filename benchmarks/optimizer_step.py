"""AdamW on CPU: torch's default per-tensor update vs the multi-tensor (foreach) update that make_optimizer uses.

Same work for both: a TextCNN of the default run's size (vocabulary 18,356, embed_dim 64, 64 filters of widths 1-3,
batches of 64 texts of 5-80 word ids), the same batches, the same seed, trained for --steps steps. The two are run
in alternating order, --rounds times, in this process, timed with perf_counter around the whole loop (forward,
backward and step). Also reported: the optimizer step alone, and whether the final weights and Adam moments are
equal bit for bit. The fused CPU kernel is shown for reference (it is faster still, but not bit-identical).

    python benchmarks/optimizer_step.py --rounds 5 --steps 200 --threads 2
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from textcls_core.modeling.networks import TextCNN

VARIANTS = {"default (per-tensor)": {}, "foreach (make_optimizer)": {"foreach": True}, "fused (reference)": {"fused": True}}


def batches(steps: int, vocab: int, classes: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(steps):
        length = int(torch.randint(5, 81, (1,), generator=g))
        out.append((torch.randint(1, vocab, (64, length), generator=g), torch.randint(0, classes, (64,), generator=g)))
    return out


def train(kw: dict, data: list, vocab: int, classes: int) -> tuple[float, float, dict, dict]:
    torch.manual_seed(0)
    model = TextCNN(vocab, classes, 64, 64, [1, 2, 3], 0.5)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.0}, {"params": no_decay, "weight_decay": 0.0}], lr=0.002, **kw)
    step_s = 0.0
    t0 = time.perf_counter()
    for ids, y in data:
        loss = torch.nn.functional.cross_entropy(model(ids), y)
        opt.zero_grad()
        loss.backward()
        s = time.perf_counter()
        opt.step()
        step_s += time.perf_counter() - s
    total = time.perf_counter() - t0
    return total, step_s, {k: v.clone() for k, v in model.state_dict().items()}, opt.state_dict()["state"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=18356)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = batches(args.steps, args.vocab, 2)
    train({}, data[:10], args.vocab, 2)  # warm-up: first-call costs (imports, allocator) out of the timings
    names = list(VARIANTS)
    times: dict[str, list[float]] = {n: [] for n in names}
    steps: dict[str, list[float]] = {n: [] for n in names}
    finals: dict[str, tuple[dict, dict]] = {}
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            total, step_s, weights, moments = train(VARIANTS[n], data, args.vocab, 2)
            times[n].append(total)
            steps[n].append(step_s)
            finals[n] = (weights, moments)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"{args.steps} steps x {args.rounds} rounds (alternating order)")
    base = statistics.median(times[names[0]])
    ref_w, ref_m = finals[names[0]]
    for n in names:
        w, m = finals[n]
        dw = max((w[k] - ref_w[k]).abs().max().item() for k in w)
        dm = max((m[i][key] - ref_m[i][key]).abs().max().item() for i in m for key in ("exp_avg", "exp_avg_sq"))
        med = statistics.median(times[n])
        print(f"{n:26s} loop median {med:6.3f} s (min {min(times[n]):.3f})  step alone {statistics.median(steps[n]) / args.steps * 1000:5.2f} ms"
              f"  speed-up {base / med:4.2f}x  max |weight diff| {dw:.1e}  max |moment diff| {dm:.1e}")


if __name__ == "__main__":
    main()
