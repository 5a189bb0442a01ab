"""The training loop: explicit, readable top to bottom, with the article's traps guarded.

- labels are range-checked on the CPU before any tensor reaches a GPU (no device-side assert);
- model and every batch live on one device, chosen once;
- targets are 1-D long tensors for cross_entropy; the loss is a scalar (mean) before backward();
- evaluation runs in eval() mode under torch.inference_mode();
- no .item() per step: the running loss stays on the device and is read every `log_every` steps.
"""

from __future__ import annotations

import copy
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from textcls_core.config import TrainConfig
from textcls_core.errors import ConfigError, LabelRangeError
from textcls_core.tokenize import PAD_ID, UNK_ID

LogFn = Callable[[dict[str, float], int], None]


def _no_log(metrics: dict[str, float], step: int) -> None:
    return None


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    """'auto' takes CUDA when present, else the CPU; an explicit 'cuda' without a GPU falls back loudly."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"train.device is '{name}' but no CUDA GPU is visible. Use train.device=auto or cpu."
        )
    return torch.device(name)


def check_labels(labels: Sequence[int], num_classes: int, where: str = "labels") -> None:
    """Every label id must lie in 0..C-1; checked on the CPU, naming the bad values."""
    arr = np.asarray(labels)
    bad = np.unique(arr[(arr < 0) | (arr >= num_classes)])
    if bad.size:
        raise LabelRangeError(
            f"{where}: label ids {bad[:10].tolist()} are outside 0..{num_classes - 1} "
            f"({num_classes} classes). Rebuild the label map from the training data."
        )


def drop_words(ids: torch.Tensor, p: float) -> torch.Tensor:
    """Replace a random share p of the real tokens by <unk>: the model cannot lean on any single word."""
    hit = (torch.rand(ids.shape, device=ids.device) < p) & (ids != PAD_ID)
    return ids.masked_fill(hit, UNK_ID)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over warmup_ratio of the steps, then constant or linear decay to 0."""
    warmup = int(total_steps * cfg.warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.lr_schedule == "constant":
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class TrainResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


def evaluate_loss_accuracy(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a loader, without building a graph."""
    model.eval()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    with torch.inference_mode():
        for ids, labels in loader:
            ids, labels = ids.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            logits = model(ids)
            total_loss += F.cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(dim=1) == labels).sum()
            n += labels.numel()
    return (total_loss.item() / max(n, 1), correct.item() / max(n, 1))


def train_model(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, cfg: TrainConfig,
                device: torch.device, num_classes: int, log_metrics: LogFn = _no_log, log_every: int = 50) -> TrainResult:
    """Adam + cross-entropy; keeps the weights of the epoch with the best validation accuracy."""
    check_labels(train_loader.dataset.labels, num_classes, "train labels")  # type: ignore[attr-defined]
    check_labels(val_loader.dataset.labels, num_classes, "val labels")  # type: ignore[attr-defined]
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg, total_steps=cfg.epochs * len(train_loader))
    best = TrainResult(best_state={}, best_epoch=-1, best_val_accuracy=-1.0)
    bad_epochs, step = 0, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        running = torch.zeros((), device=device)
        seen, t0 = 0, time.perf_counter()
        # redraw often on a terminal, rarely when the output is a log file or a Prefect worker
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{cfg.epochs}", disable=not cfg.progress, leave=False, unit="batch",
                   mininterval=0.2 if sys.stderr.isatty() else 30.0)
        for ids, labels in bar:
            ids, labels = ids.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            if cfg.word_dropout:
                ids = drop_words(ids, cfg.word_dropout)
            logits = model(ids)
            loss = F.cross_entropy(logits, labels)  # mean over the batch: a scalar
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.detach() * labels.numel()
            seen += labels.numel()
            step += 1
            if step % log_every == 0:  # the only host sync in the loop, once every log_every steps
                train_loss = running.item() / seen
                rate = seen / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{train_loss:.4f}", samples_s=f"{rate:.0f}")
                log_metrics({"train_loss_running": train_loss, "train_samples_per_s": rate}, step)
        elapsed = time.perf_counter() - t0
        train_loss = running.item() / max(seen, 1)
        val_loss, val_acc = evaluate_loss_accuracy(model, val_loader, device)
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_acc,
               "train_samples_per_s": seen / elapsed, "epoch_seconds": elapsed}
        best.history.append(row)
        log_metrics({k: v for k, v in row.items() if k != "epoch"}, epoch)
        if cfg.progress:
            tqdm.write(f"epoch {epoch}/{cfg.epochs}: train_loss {train_loss:.4f}  val_loss {val_loss:.4f}  "
                       f"val_acc {val_acc:.4f}  {seen / elapsed:.0f} samples/s")
        if val_acc > best.best_val_accuracy:
            best.best_val_accuracy, best.best_epoch = val_acc, epoch
            best.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            bad_epochs = 0
        else:
            bad_epochs += 1
            if cfg.patience and bad_epochs >= cfg.patience:
                best.stopped_early = True
                break
    model.load_state_dict(best.best_state)
    return best
