"""GPU proof for issue #17: the training engine's GPU paths, measured and checked in one process run.

Runs on a device machine that has torch, transformers, pyarrow and pandas but not prefect, mlflow, jieba, snownlp
or pydantic: it reads the folder written beforehand on the CPU by gpu_prep.py (token ids in Parquet, a character
BERT tokenizer, the engine's configs validated there) and drives textcls_core directly, not the Prefect flow.

Steps (in this order; each is skipped, and says so, when the time budget left is below its estimate):
  throughput  BERT-base shape (random init), batch 32, max_len 256, bf16 on both sides: engine eager, engine
              compiled with pad buckets (CUDA graphs), Trainer length-grouped, Trainer padded to 256 + torch_compile,
              Trainer length-grouped + torch_compile. One untimed warm-up call each, then alternating timed rounds.
  fp16        the engine with fp16 autocast and the grad scaler forced on (as on pre-Ampere GPUs): no inf/nan.
  oom         torch.cuda.set_per_process_memory_fraction sized so batch 64 does not fit and 32 does: the engine halves
              the micro-batch, keeps the effective batch (same step count) and ends with the loss of an unlimited run.
  smoke       small BERT, bf16, fused AdamW, compile + buckets, deterministic: an uninterrupted run, a run that
              SIGKILLs itself after a mid-epoch checkpoint, its resume; final weights compared.
  parity      engine and Trainer from the same weights (dropout off) on the same batches in the same order:
              per-step loss curves compared.

Writes <out>/gpu_results.md (table + environment) and <out>/gpu_results.json after every step.
Without CUDA it checks what it can (imports, the prepared data, tokenizer, configs, one tiny engine and Trainer
run on the CPU) and stops with a "no CUDA device" line (exit 0 with --dry-run, else 3).

Run: bash benchmarks/gpu_check.sh   (see that file for the whole sequence)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # train_throughput and textcls_core without installing the project

import numpy as np  # noqa: E402
import torch  # noqa: E402
import train_throughput as tt  # noqa: E402

from textcls_core.text.batching import EncodedDataset  # noqa: E402
from textcls_core.training.loop import classification_loss, make_optimizer  # noqa: E402

FORBIDDEN = ("prefect", "mlflow", "jieba", "snownlp", "pydantic")
BASE = tt.Params(epochs=1, batch_size=32, lr=5e-5, precision="bf16")
SMALL = tt.Params(epochs=2, batch_size=32, lr=2e-4, precision="bf16")
THROUGHPUT_SETUPS = ["engine", "engine-compiled", "trainer-grouped", "trainer-padded-compiled", "trainer-grouped-compiled"]
PARITY_TOLERANCE = 0.02  # largest allowed difference of the 20-step mean losses (bf16: kernels differ in rounding)
SMOKE_TOLERANCE = 1e-4  # largest allowed weight difference after resume when the run is not bit-identical
KILL_STEP, CHECKPOINT_EVERY = 30, 20  # the killed run checkpoints at step 20 and dies at step 30, mid-epoch


def planned_engine_fields() -> dict[str, dict[str, Any]]:
    """Every engine configuration the GPU steps use; gpu_prep.py validates each with the real TrainConfig."""
    parity = dataclasses.replace(BASE, warmup_ratio=0.0)
    return {
        "engine": tt.engine_fields(tt.SETUPS["engine"], BASE),
        "engine-compiled": tt.engine_fields(tt.SETUPS["engine-compiled"], BASE),
        "fp16": tt.engine_fields(tt.SETUPS["engine"], dataclasses.replace(SMALL, epochs=1, precision="fp16")),
        "oom": {**tt.engine_fields(tt.SETUPS["engine"], dataclasses.replace(BASE, batch_size=64)), "pad_buckets": [256]},
        "smoke": {**tt.engine_fields(tt.SETUPS["engine-compiled"], SMALL), "deterministic": True,
                  "checkpoint_every": CHECKPOINT_EVERY, "resume": True},
        "parity": tt.engine_fields(tt.SETUPS["engine"], parity),
    }


# ---- results -----------------------------------------------------------------------------------------------------


class Results:
    """Rows of (step, status, figures), rewritten to <out> after each step so a timeout keeps what was done."""

    def __init__(self, out: Path, env: dict[str, Any]):
        self.out, self.env, self.rows, self.details = out, env, [], {}
        out.mkdir(parents=True, exist_ok=True)

    def add(self, step: str, status: str, summary: str, details: Any = None) -> None:
        self.rows.append((step, status, summary))
        if details is not None:
            self.details[step] = details
        print(f"[{step}] {status}: {summary}", flush=True)
        self.write()

    def write(self) -> None:
        lines = ["# GPU check (benchmarks/gpu_check.py)", "",
                 *(f"- {k}: {v}" for k, v in self.env.items()), "",
                 "| step | result | figures |", "|---|---|---|",
                 *(f"| {s} | {st} | {summary} |" for s, st, summary in self.rows)]
        for step, d in self.details.items():
            if isinstance(d, dict) and "table" in d:
                lines += ["", f"## {step}", "", d["table"]]
        (self.out / "gpu_results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (self.out / "gpu_results.json").write_text(json.dumps({"env": self.env, "rows": self.rows, "details": self.details},
                                                              indent=2, default=str), encoding="utf-8")


# ---- checks that need no GPU -------------------------------------------------------------------------------------


def check_environment(prep: Path, scratch: Path) -> dict[str, Any]:
    """Imports, prepared data, tokenizer, configs and one tiny engine + Trainer run on the CPU. Raises on a problem."""
    import transformers

    for name in ("manifest.json", "data.parquet", "train_configs.json", "tokenizer"):
        if not (prep / name).exists():
            raise FileNotFoundError(f"{prep / name} is missing: run `.venv/bin/python benchmarks/gpu_prep.py --out {prep}` on the CPU first")
    manifest = json.loads((prep / "manifest.json").read_text(encoding="utf-8"))
    corpus = tt.load_folder(prep)
    if (len(corpus.train), len(corpus.val)) != (manifest["train"], manifest["val"]):
        raise ValueError(f"data.parquet holds {len(corpus.train)}/{len(corpus.val)} train/val texts, the manifest says "
                         f"{manifest['train']}/{manifest['val']}: prepare the folder again")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(corpus.tokenizer_dir))
    if len(tok) != manifest["vocab_size"] or tok.pad_token_id != corpus.pad_id:
        raise ValueError("the tokenizer does not match the manifest (vocab size or pad id): prepare the folder again")
    ids = [i for x in corpus.train.ids + corpus.val.ids for i in x]
    if min(ids) < 0 or max(ids) >= len(tok) or max(len(x) for x in corpus.train.ids) > corpus.max_len:
        raise ValueError("token ids outside the vocabulary or texts longer than max_len: prepare the folder again")
    if not set(corpus.train.labels) | set(corpus.val.labels) <= set(range(len(corpus.labels))):
        raise ValueError(f"label ids outside 0..{len(corpus.labels) - 1}: prepare the folder again")
    configs = json.loads((prep / "train_configs.json").read_text(encoding="utf-8"))
    planned = json.loads(json.dumps(planned_engine_fields()))
    if configs["planned"] != planned:
        raise ValueError("train_configs.json was written for other configurations than this script uses: prepare the folder again")
    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(FORBIDDEN))
    if loaded:  # checked before make_train_config, which uses the real schema where pydantic is installed
        raise RuntimeError(f"the GPU path imported {loaded}; the device machine does not have them")
    for name, fields in planned.items():
        tt.make_train_config(fields, configs["defaults"])
    for shape in ("base", "small"):
        transformers.BertConfig(**tt.SHAPES[shape])
    # the engine and the Trainer end to end on 64 texts of the real data with a tiny BERT (this machine's versions)
    small = tt.Corpus(EncodedDataset(corpus.train.ids[:64], corpus.train.labels[:64]),
                      EncodedDataset(corpus.val.ids[:32], corpus.val.labels[:32]), corpus.pad_id, corpus.labels,
                      corpus.tokenizer_dir, corpus.max_len)
    bert = tt.save_random_bert(scratch / "tiny", small, "tiny")
    cpu, p = torch.device("cpu"), tt.Params(batch_size=32, lr=1e-3)
    eng = tt.run_engine(tt.SETUPS["engine"], bert, small, p, cpu, defaults=configs["defaults"], record_losses=True)
    trn = tt.run_trainer(tt.SETUPS["trainer-grouped"], bert, small, p, cpu, record_losses=True)
    if not (len(eng.losses) == len(trn.losses) == 2 and all(math.isfinite(x) for x in eng.losses + trn.losses)):
        raise RuntimeError(f"tiny CPU runs gave losses {eng.losses} (engine) and {trn.losses} (Trainer)")
    return {"train_texts": len(corpus.train), "val_texts": len(corpus.val), "configs": len(planned),
            "tiny_cpu_losses": {"engine": eng.losses, "trainer": trn.losses}}


# ---- GPU steps ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Ctx:
    prep: Path
    scratch: Path
    defaults: dict[str, Any]
    args: argparse.Namespace
    device: torch.device
    rehearse: bool = False  # --rehearse: the same steps on the CPU with a tiny BERT, fp32, no compile, few rows
    berts: dict[str, Path] = dataclasses.field(default_factory=dict)

    def corpus(self, max_train: int = 0, max_val: int = 0) -> tt.Corpus:
        if self.rehearse:
            max_train, max_val = min(max_train or 256, 256), min(max_val or 64, 64)
        return tt.load_folder(self.prep, max_train, max_val)

    def p(self, params: tt.Params) -> tt.Params:
        if not self.rehearse:
            return params
        return dataclasses.replace(params, precision="bf16" if params.precision == "fp16" else "fp32", lr=1e-3)

    def bert(self, shape: str, dropout: float | None = None) -> Path:
        shape = "tiny" if self.rehearse else shape
        key = f"{shape}-{dropout}"
        if key not in self.berts:
            self.berts[key] = tt.save_random_bert(self.scratch / key, self.corpus(32, 32), shape, dropout=dropout)
        return self.berts[key]


def step_throughput(ctx: Ctx) -> tuple[str, str, Any]:
    corpus = ctx.corpus(ctx.args.train_rows, ctx.args.val_rows)
    setups = [tt.SETUPS[n] for n in ctx.args.configs.split(",")]
    rows = tt.measure(setups, ctx.bert("base"), corpus, ctx.p(BASE), ctx.device, ctx.args.rounds, True, ctx.defaults,
                      say=lambda m: print(m, flush=True))
    chance = max(np.bincount(corpus.val.labels)) / len(corpus.val)
    summary = tt.summarize(rows, chance)
    table = tt.format_table(rows, summary)
    status = "PASS" if summary.get("ratio", 0) >= 2.5 and abs(summary.get("val_accuracy_difference", 1)) <= 0.005 else "MEASURED"
    text = (f"{summary['best_engine']} {rows[summary['best_engine']]['median']:.0f} vs {summary['best_trainer']} "
            f"{rows[summary['best_trainer']]['median']:.0f} samples/s = {summary['ratio']:.2f}x (goal 2.5x); val acc diff "
            f"{summary['val_accuracy_difference']:+.4f}; {len(corpus.train)} train texts, {ctx.args.rounds} rounds")
    return status, text, {"table": table, "rows": rows, **summary}


def step_fp16(ctx: Ctx) -> tuple[str, str, Any]:
    corpus = ctx.corpus(3200, 512)
    p = ctx.p(dataclasses.replace(SMALL, epochs=1, precision="fp16"))
    o = tt.run_engine(tt.SETUPS["engine"], ctx.bert("small"), corpus, p, ctx.device, defaults=ctx.defaults, record_losses=True)
    weights_ok = all(bool(torch.isfinite(v).all()) for v in o.extra["model"].state_dict().values() if v.is_floating_point())
    bad = sum(not math.isfinite(x) for x in o.losses)
    ok = weights_ok and bad == 0 and math.isfinite(o.extra["history"][-1]["val_loss"])
    return ("PASS" if ok else "FAIL"), (f"{len(o.losses)} steps, non-finite step losses {bad}, weights finite {weights_ok}, "
                                        f"loss {o.losses[0]:.3f} -> {o.losses[-1]:.3f}, val acc {o.val_accuracy:.4f}"), {"losses": o.losses}


def _peak_bytes(model: torch.nn.Module, opt: torch.optim.Optimizer, rows: int, vocab: int, device: torch.device) -> int:
    """Peak allocated bytes of one bf16 training step at `rows` x 256 tokens."""
    ids = torch.randint(5, vocab, (rows, 256), device=device)
    labels = torch.randint(0, 2, (rows,), device=device)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = classification_loss(model(ids), labels)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def step_oom(ctx: Ctx) -> tuple[str, str, Any]:
    from textcls_core.modeling.networks import load_pretrained_model

    if ctx.rehearse:
        return "SKIPPED", "needs CUDA (memory fraction and torch.OutOfMemoryError)", None

    torch._dynamo.reset()  # drop the throughput step's compiled graphs and CUDA-graph memory pools
    gc.collect()
    torch.cuda.empty_cache()
    corpus = ctx.corpus(64 * 6, 128)
    bert, p = ctx.bert("base"), dataclasses.replace(BASE, batch_size=64)
    overrides = {"pad_buckets": [256]}  # every batch 256 wide: the memory need is the same at every step
    free = tt.run_engine(tt.SETUPS["engine"], bert, corpus, p, ctx.device, defaults=ctx.defaults, overrides=overrides, record_losses=True)
    del free.extra["model"]
    gc.collect()
    torch.cuda.empty_cache()
    cfg = tt.make_train_config(planned_engine_fields()["oom"], ctx.defaults)
    model = load_pretrained_model(bert, 2, corpus.labels, corpus.pad_id).to(ctx.device)
    opt = make_optimizer(model, cfg, ctx.device)
    vocab = model.hf.config.vocab_size
    _peak_bytes(model, opt, 8, vocab, ctx.device)  # creates the optimizer state
    p8, p16 = _peak_bytes(model, opt, 8, vocab, ctx.device), _peak_bytes(model, opt, 16, vocab, ctx.device)
    per_row, fixed = (p16 - p8) / 8, p8 - 8 * (p16 - p8) / 8
    del model, opt
    gc.collect()
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(ctx.device).total_memory
    held = torch.cuda.memory_reserved(ctx.device) - torch.cuda.memory_allocated(ctx.device)  # cached blocks the limit also counts
    limit = held + fixed + 48 * per_row  # 32 rows fit, 64 do not
    torch.cuda.set_per_process_memory_fraction(limit / total, ctx.device)
    try:
        o = tt.run_engine(tt.SETUPS["engine"], bert, corpus, p, ctx.device, defaults=ctx.defaults, overrides=overrides, record_losses=True)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, ctx.device)
        torch.cuda.empty_cache()
    steps_expected = -(-len(corpus.train) // 64)
    diff = float(np.max(np.abs(np.array(o.losses) - np.array(free.losses))))
    ok = o.extra["micro_batch_size"] < 64 and o.extra["steps"] == steps_expected and diff < 0.02
    return ("PASS" if ok else "FAIL"), (f"limit {limit / 2**30:.1f} GiB ({per_row / 2**20:.0f} MiB per row): micro-batch 64 -> "
                                        f"{o.extra['micro_batch_size']}, {o.extra['steps']}/{steps_expected} steps of 64, "
                                        f"max step-loss difference vs unlimited run {diff:.2e}"), {"losses": o.losses, "free": free.losses}


def step_smoke(ctx: Ctx) -> tuple[str, str, Any]:
    bert = ctx.bert("small")
    out = {}
    for mode in ("full", "kill", "resume"):
        ckpt = ctx.scratch / ("smoke-full.pt" if mode == "full" else "smoke-resume.pt")
        cmd = [sys.executable, __file__, "--child", mode, "--prep", str(ctx.prep), "--bert", str(bert), "--ckpt", str(ckpt),
               "--weights", str(ctx.scratch / f"weights-{mode}.pt"), *(["--rehearse"] if ctx.rehearse else [])]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(30, ctx.args.deadline - time.time()))
        out[mode] = {"rc": proc.returncode, "seconds": time.perf_counter() - t0}
        if mode == "kill" and proc.returncode != -signal.SIGKILL:
            return "FAIL", f"the kill run ended with {proc.returncode}, not SIGKILL: {proc.stderr[-400:]}", out
        if mode != "kill" and proc.returncode != 0:
            return "FAIL", f"the {mode} run failed ({proc.returncode}): {proc.stderr[-600:]}", out
    a = torch.load(ctx.scratch / "weights-full.pt", weights_only=True)
    b = torch.load(ctx.scratch / "weights-resume.pt", weights_only=True)
    identical = all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    diff = max(float((a["state"][k].float() - b["state"][k].float()).abs().max()) for k in a["state"])
    ok = b["resumed_from_step"] == CHECKPOINT_EVERY and (identical or diff <= SMOKE_TOLERANCE)
    text = (f"killed at step {KILL_STEP}, resumed from step {b['resumed_from_step']}; final weights "
            f"{'bit-identical' if identical else f'differ by at most {diff:.2e} (tolerance {SMOKE_TOLERANCE:g})'}; "
            f"val acc {a['val_accuracy']:.4f} vs {b['val_accuracy']:.4f}; runs took "
            + ", ".join(f"{m} {v['seconds']:.0f} s" for m, v in out.items()))
    return ("PASS" if ok else "FAIL"), text, out


def smoke_child(args: argparse.Namespace) -> None:
    """One smoke run in its own process: `kill` SIGKILLs itself at KILL_STEP, after the checkpoint of step 20."""
    configs = json.loads((args.prep / "train_configs.json").read_text(encoding="utf-8"))
    corpus = tt.load_folder(args.prep, 1600, 256)
    device = torch.device("cpu" if args.rehearse else "cuda")
    fields = dict(planned_engine_fields()["smoke"])
    if args.rehearse:
        fields.update(compile=False, pad_buckets=[], precision="fp32")
    cfg = tt.make_train_config(fields, configs["defaults"])
    from functools import partial

    from textcls_core.modeling.networks import load_pretrained_model
    from textcls_core.text.batching import collate_batch
    from textcls_core.training.loop import configure_torch, set_seed, train_model

    def log(metrics: dict[str, float], step: int) -> None:
        if args.child == "kill" and step == KILL_STEP:
            os.kill(os.getpid(), signal.SIGKILL)

    if args.child != "resume":
        args.ckpt.unlink(missing_ok=True)
    configure_torch(cfg, device)
    set_seed(0)
    model = load_pretrained_model(args.bert, 2, corpus.labels, corpus.pad_id)
    collate = partial(collate_batch, max_len=corpus.max_len, pad_id=corpus.pad_id, buckets=tuple(cfg.pad_buckets))
    result = train_model(model, corpus.train, corpus.val, cfg, device, 2, collate, seed=0, log_metrics=log, log_every=10,
                         checkpoint_path=args.ckpt, message=lambda m: print(m, flush=True))
    torch.save({"state": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "resumed_from_step": result.resumed_from_step,
                "val_accuracy": result.history[-1]["val_accuracy"]}, args.weights)


def step_parity(ctx: Ctx) -> tuple[str, str, Any]:
    corpus = ctx.corpus(ctx.args.parity_steps * BASE.batch_size, 512)  # --rehearse: 256 texts, 8 steps
    steps = 8 if ctx.rehearse else ctx.args.parity_steps
    par = tt.loss_parity(ctx.bert("base", dropout=0.0), corpus, ctx.p(BASE), ctx.device, steps, ctx.defaults)
    smooth = next(v for k, v in par.items() if k.endswith("_step_mean"))
    ok = smooth <= PARITY_TOLERANCE
    return ("PASS" if ok else "FAIL"), (f"{par['steps']} steps, {ctx.p(BASE).precision}: 20-step mean losses differ by at most {smooth:.4f} "
                                        f"(tolerance {PARITY_TOLERANCE}); per step max {par['max_abs_diff']:.4f}, mean "
                                        f"{par['mean_abs_diff']:.4f}; val acc engine {par['engine_val_accuracy']:.4f}, "
                                        f"Trainer {par['trainer_val_accuracy']:.4f}"), par


STEPS: dict[str, tuple[Callable[[Ctx], tuple[str, str, Any]], int]] = {  # step -> (function, seconds it needs on an H200, estimated)
    "throughput": (step_throughput, 200), "fp16": (step_fp16, 30), "oom": (step_oom, 40), "smoke": (step_smoke, 120),
    "parity": (step_parity, 60)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prep", type=Path, default=Path("runs/gpu_prep"), help="folder written by gpu_prep.py")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "runs/gpu_check"), help="where results go")
    ap.add_argument("--budget", type=float, default=450, help="seconds for the whole run; steps that would not fit are skipped")
    ap.add_argument("--dry-run", action="store_true", help="exit 0 after the CPU checks when there is no GPU")
    ap.add_argument("--rehearse", action="store_true", help="no GPU: run the GPU steps' code on the CPU (tiny BERT, fp32, "
                    "no compile, few rows) to catch mistakes before device time is spent; its figures mean nothing")
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {', '.join(STEPS)}")
    ap.add_argument("--configs", default=",".join(THROUGHPUT_SETUPS), help="throughput step: set-ups to compare")
    ap.add_argument("--train-rows", type=int, default=3200, help="throughput step: train texts per call")
    ap.add_argument("--val-rows", type=int, default=1000, help="throughput step: val texts evaluated at the end of each call")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parity-steps", type=int, default=150)
    ap.add_argument("--child", choices=["full", "kill", "resume"], help=argparse.SUPPRESS)
    ap.add_argument("--bert", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        smoke_child(args)
        return 0
    start = time.time()
    args.deadline = start + args.budget
    import transformers

    env = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
           "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
           "python": sys.version.split()[0], "prep": str(args.prep)}
    results = Results(args.out, env)
    scratch = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    try:
        facts = check_environment(args.prep, scratch)
    except Exception as exc:  # noqa: BLE001 -- every failed check ends the run with its one-line reason
        results.add("checks", "FAIL", f"{type(exc).__name__}: {exc}")
        return 1
    results.add("checks", "PASS", f"no {'/'.join(FORBIDDEN)} imported; {facts['train_texts']} train / {facts['val_texts']} val "
                f"texts, tokenizer and {facts['configs']} engine configs valid; tiny engine + Trainer ran on the CPU "
                f"({time.time() - start:.0f} s)")
    if args.rehearse:
        args.configs = "engine,trainer-grouped"
        args.rounds = min(args.rounds, 2)
    elif not torch.cuda.is_available():
        print("no CUDA device: the CPU-side checks passed; the GPU steps "
              f"({', '.join(args.steps.split(','))}) need a machine with a CUDA GPU", flush=True)
        return 0 if args.dry_run else 3
    defaults = json.loads((args.prep / "train_configs.json").read_text(encoding="utf-8"))["defaults"]
    ctx = Ctx(args.prep, scratch, defaults, args, torch.device("cpu" if args.rehearse else "cuda"), args.rehearse)
    for name in args.steps.split(","):
        fn, need = STEPS[name]
        left = args.deadline - time.time()
        if left < need:
            results.add(name, "SKIPPED", f"{left:.0f} s left of the budget, the step needs about {need} s")
            continue
        t0 = time.time()
        try:
            status, text, details = fn(ctx)
        except Exception as exc:  # noqa: BLE001 -- a failed step is reported and the next one still runs
            status, text, details = "ERROR", f"{type(exc).__name__}: {str(exc)[:300]}", {"traceback": traceback.format_exc()}
            print(details["traceback"], file=sys.stderr, flush=True)
        results.add(name, status, f"{text} ({time.time() - t0:.0f} s)", details)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    print((args.out / "gpu_results.md").read_text(encoding="utf-8"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
