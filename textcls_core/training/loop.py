"""The training loop: one explicit loop, readable top to bottom, with the article's traps guarded.

- labels are range-checked on the CPU before any tensor reaches a GPU (no device-side assert);
- model and every batch live on one device, chosen once; CPU-only machines run the same code;
- targets get the dtype and shape each loss needs (1-D long for cross-entropy, float [B, 1] for a
  single binary logit) and the loss is a scalar before backward();
- evaluation runs in eval() mode under torch.inference_mode(), so memory does not grow;
- no .item() per step: the running loss stays on the device and is read every `log_every` steps;
- CUDA out-of-memory halves the micro-batch and accumulates gradients, so the effective batch is unchanged;
- checkpoints (model, optimizer, scheduler, scaler, RNG states, sampler position) are written atomically
  and a killed run resumes from the last one with the same result as an uninterrupted run;
- under torchrun the same loop runs with DistributedDataParallel; only rank 0 writes checkpoints.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from textcls_core.modeling.networks import PretrainedClassifier
from textcls_core.runtime.errors import ConfigError, DataError, LabelRangeError
from textcls_core.runtime.procs import safe_mp_context
from textcls_core.text.batching import BucketBatchSampler, EncodedDataset
from textcls_core.text.tokenize import PAD_ID, UNK_ID

if TYPE_CHECKING:  # annotations only: the engine runs without pydantic (benchmarks/gpu_check.py)
    from textcls_core.runtime.config import TrainConfig

LogFn = Callable[[dict[str, float], int], None]
MessageFn = Callable[[str], None]

# validation batches are at least this large: no gradients are kept there, so bigger batches only cost activations
VAL_BATCH_MIN = 256


def _no_log(metrics: dict[str, float], step: int) -> None:
    return None


def _print(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' takes CUDA when present (the process's local GPU under torchrun), else the CPU."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device is '{name}' but no CUDA GPU is visible. Use train.device=auto or cpu.")
    return torch.device(name)


def configure_torch(cfg: TrainConfig, device: torch.device) -> None:
    """Process-wide torch settings for a training run: threads, TF32, deterministic kernels."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls: ~2x on Ampere+ at no accuracy cost here
        torch.backends.cudnn.allow_tf32 = True
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def resolve_precision(name: str, device: torch.device) -> str:
    """auto: bf16 on GPUs that support it, fp16 (with a grad scaler) on older GPUs, fp32 on the CPU."""
    if name == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if name == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision=fp16 needs a CUDA GPU. Use train.precision=auto (fp32 on CPU) or bf16.")
    return name


def check_labels(labels: Sequence[int], num_classes: int, where: str = "labels") -> None:
    """Every label id must lie in 0..C-1; checked on the CPU, naming the bad values."""
    arr = np.asarray(labels)
    bad = np.unique(arr[(arr < 0) | (arr >= num_classes)])
    if bad.size:
        raise LabelRangeError(
            f"{where}: label ids {bad[:10].tolist()} are outside 0..{num_classes - 1} "
            f"({num_classes} classes). Rebuild the label map from the training data."
        )


def drop_words(ids: torch.Tensor, p: float, pad_id: int = PAD_ID, unk_id: int = UNK_ID) -> torch.Tensor:
    """Replace a random share p of the real tokens by <unk>: the model cannot lean on any single word."""
    hit = (torch.rand(ids.shape, device=ids.device) < p) & (ids != pad_id)
    return ids.masked_fill(hit, unk_id)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy on 1-D long targets, or BCE-with-logits on float targets shaped like a [B, 1] logit."""
    logits = logits.float()
    if logits.dim() != 2 or logits.size(0) != labels.size(0):
        raise ValueError(f"logits must be [batch, classes], got {tuple(logits.shape)} for {labels.size(0)} labels")
    if logits.size(1) == 1:
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype).view_as(logits), reduction=reduction)
    return F.cross_entropy(logits, labels.long().view(-1), reduction=reduction)


def predictions(logits: torch.Tensor) -> torch.Tensor:
    return (logits[:, 0] > 0).long() if logits.size(1) == 1 else logits.argmax(dim=1)


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms and other 1-D parameters.

    CUDA: the fused kernel. Elsewhere the multi-tensor (foreach) update: for CPU tensors torch picks its per-tensor
    loop, 4.8 ms of a default-size TextCNN step's ~23 ms; foreach takes 3.6 ms and gives the same weights and Adam
    moments bit for bit (benchmarks/optimizer_step.py, RESULTS session 9)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if device.type == "cuda":
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, foreach=True)


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


def evaluate_model(model: nn.Module, loader: DataLoader, device: torch.device, num_classes: int,
                   autocast: Callable[[], Any] = nullcontext) -> dict[str, float]:
    """val_loss, val_accuracy and val_macro_f1 over a loader, in eval() mode without building a graph."""
    model.eval()
    total_loss = torch.zeros((), device=device)
    confusion = torch.zeros(num_classes * num_classes, device=device, dtype=torch.long)
    n = 0
    with torch.inference_mode():
        for ids, labels in loader:
            ids, labels = ids.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with autocast():
                logits = model(ids)
            total_loss += classification_loss(logits, labels, reduction="sum")
            confusion += torch.bincount(labels * num_classes + predictions(logits), minlength=num_classes**2)
            n += labels.numel()
    cm = confusion.view(num_classes, num_classes).cpu().double()  # one host sync per evaluation
    tp = cm.diag()
    f1 = 2 * tp / (cm.sum(0) + cm.sum(1)).clamp(min=1)
    return {"val_loss": total_loss.item() / max(n, 1), "val_accuracy": (tp.sum() / max(n, 1)).item(), "val_macro_f1": f1.mean().item()}


# ---- checkpoints -------------------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"python": random.getstate(), "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write to a temp file in the same folder, fsync, then rename: a kill never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint at path, loaded with weights_only=True (no arbitrary code), or None when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def check_fingerprint(saved: dict[str, str], current: dict[str, str], checkpoint_path: str | Path | None) -> None:
    """Refuse a resume whose split files or encoder differ from those the checkpoint was trained on."""
    changed = sorted(k for k in set(saved) & set(current) if saved[k] != current[k])
    if changed:
        detail = ", ".join(f"{k.removesuffix('_sha256')} {saved[k][:12]} -> {current[k][:12]}" for k in changed)
        raise DataError(f"checkpoint {checkpoint_path} was trained on other data ({detail}): the data file or the "
                        "cleaning/tokenize settings changed since. Resume with the original data and settings, or delete "
                        "the checkpoint (or set train.resume=false) to train from scratch.")


# ---- the loop ----------------------------------------------------------------------------------------


@dataclass
class DistContext:
    """Where this process sits in a torchrun job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class TrainResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_score: float
    best_val_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    resumed_from_step: int = 0
    micro_batch_size: int = 0
    steps: int = 0


@dataclass
class TrainState:
    """Where the loop stands: with the model, optimizer, scheduler, scaler, sampler and RNG states it is everything a
    checkpoint holds, and a resume continues from exactly here (torchtune's TrainingProgress plays this part)."""

    result: TrainResult  # best epoch so far (its weights, score) and the per-epoch history
    epoch: int = 1  # the epoch in progress, or the next one at an epoch boundary
    batch_in_epoch: int = 0  # batches of `epoch` already done
    step: int = 0  # optimizer steps so far
    micro_batch_size: int = 0  # the batch's slice per forward pass (halved on out-of-memory)
    bad_epochs: int = 0  # epochs without a better validation score (early stopping)
    running_loss: torch.Tensor = field(default_factory=lambda: torch.zeros(()))  # summed per-example losses of `epoch`
    seen: int = 0  # examples of `epoch` so far
    elapsed: float = 0.0  # seconds of `epoch` spent before a checkpoint

    def state_dict(self) -> dict[str, Any]:
        r = self.result
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
                "micro_batch_size": self.micro_batch_size, "bad_epochs": self.bad_epochs,
                "running_loss": self.running_loss.detach().cpu(), "seen": self.seen, "elapsed": self.elapsed,
                "history": r.history, "best": {"state": r.best_state, "epoch": r.best_epoch, "score": r.best_score,
                                               "val_accuracy": r.best_val_accuracy}}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.epoch, self.batch_in_epoch, self.step = state["epoch"], state["batch_in_epoch"], state["step"]
        self.micro_batch_size, self.bad_epochs = state["micro_batch_size"], state["bad_epochs"]
        self.running_loss, self.seen, self.elapsed = state["running_loss"].to(device), state["seen"], state["elapsed"]
        r, best = self.result, state["best"]
        r.history = state["history"]
        r.best_state, r.best_epoch, r.best_score, r.best_val_accuracy = best["state"], best["epoch"], best["score"], best["val_accuracy"]
        r.resumed_from_step = self.step

    def end_epoch(self, next_epoch: int) -> None:
        """Reset the per-epoch sums; `next_epoch` is where a resume from this boundary starts."""
        self.epoch, self.batch_in_epoch = next_epoch, 0
        self.running_loss, self.seen, self.elapsed = torch.zeros((), device=self.running_loss.device), 0, 0.0


@dataclass
class _Stepper:
    """One optimizer step on one batch: micro-batched forward/backward (the micro-batch halves on out-of-memory, the
    effective batch stays), gradient clipping, optimizer, scaler and scheduler steps."""

    net: nn.Module  # the model, or its DDP / compiled wrapper
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    autocast: Callable[[], Any]
    cfg: TrainConfig
    device: torch.device
    world_size: int
    message: MessageFn
    log_metrics: LogFn

    def __call__(self, ids: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        """The batch's summed per-example loss (detached, on the device)."""
        while True:
            try:
                batch_loss = _accumulate(self.net, ids, labels, state.micro_batch_size, self.autocast, self.scaler, self.world_size)
                break
            except torch.OutOfMemoryError:
                if self.world_size > 1 or state.micro_batch_size == 1:
                    raise
                self.optimizer.zero_grad(set_to_none=True)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                state.micro_batch_size = max(1, state.micro_batch_size // 2)
                self.message(f"out of memory at step {state.step + 1}: micro-batch halved to {state.micro_batch_size}, "
                             f"accumulating {-(-self.cfg.batch_size // state.micro_batch_size)} micro-batches per step "
                             "(effective batch unchanged)")
                self.log_metrics({"train_micro_batch_size": state.micro_batch_size}, state.step)
        if self.cfg.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return batch_loss


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def train_model(model: nn.Module, train_set: EncodedDataset, val_set: EncodedDataset, cfg: TrainConfig,
                device: torch.device, num_classes: int, collate: Callable, *, seed: int = 0,
                log_metrics: LogFn = _no_log, log_every: int = 50, checkpoint_path: str | Path | None = None,
                dist: DistContext | None = None, message: MessageFn = _print,
                fingerprint: dict[str, str] | None = None) -> TrainResult:
    """Train with AdamW and a warmup/decay schedule; keep the weights of the epoch with the best val metric.

    `fingerprint` (sha256 of the split contents and of the encoder) is stored in every checkpoint; a resume
    against a different fingerprint stops with a DataError instead of loading weights onto shifted data."""
    fingerprint = dict(fingerprint or {})
    dist = dist or DistContext()
    check_labels(train_set.labels, num_classes, "train labels")
    check_labels(val_set.labels, num_classes, "val labels")
    model.to(device)
    net: nn.Module = model
    if dist.world_size > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:  # a handful of shapes with pad_buckets; CUDA graphs only then, since they need static shapes
        net = torch.compile(net, mode="reduce-overhead" if device.type == "cuda" and cfg.pad_buckets else None)
    precision = resolve_precision(cfg.precision, device)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()

    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    optimizer = make_optimizer(model, cfg, device)
    pin = device.type == "cuda"
    # own generators: creating a DataLoader iterator must not draw from the global RNG (resume replays it exactly)
    sampler = BucketBatchSampler([len(x) for x in train_set.ids], cfg.batch_size, torch.Generator().manual_seed(seed),
                                 max_tokens=cfg.max_tokens, rank=dist.rank, world_size=dist.world_size)
    # workers (if any) start from a fork server that preloaded torch, never by fork of this threaded process,
    # and live across epochs so that start-up is paid once (benchmarks/pool_start_methods.py)
    workers = dict(num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0,
                   multiprocessing_context=safe_mp_context(["textcls_core.text.batching"]) if cfg.num_workers else None)
    train_loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collate, pin_memory=pin,
                              generator=torch.Generator(), **workers)
    val_loader = DataLoader(val_set, batch_size=max(cfg.batch_size, VAL_BATCH_MIN), collate_fn=collate, pin_memory=pin,
                            generator=torch.Generator(), **workers)
    # token-budget and distributed batchings vary a little per epoch: count every epoch for the schedule
    scheduler = make_scheduler(optimizer, cfg, total_steps=sum(sampler.epoch_lengths(cfg.epochs)))
    word_model = not isinstance(model, PretrainedClassifier)
    result = TrainResult(best_state={}, best_epoch=-1, best_score=-1.0, best_val_accuracy=-1.0)
    state = TrainState(result, micro_batch_size=cfg.micro_batch_size or cfg.batch_size,
                       running_loss=torch.zeros((), device=device))
    train_step = _Stepper(net, model, optimizer, scheduler, scaler, autocast, cfg, device, dist.world_size, message,
                          log_metrics)

    def checkpoint(sampler_state: torch.Tensor) -> None:
        if checkpoint_path is None or not dist.is_main:
            return
        save_checkpoint(checkpoint_path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "rng": _rng_state(), "sampler_state": sampler_state,
            "fingerprint": fingerprint, **state.state_dict()})

    ck = load_checkpoint(checkpoint_path) if checkpoint_path is not None and cfg.resume else None
    if ck is not None:
        check_fingerprint(ck.get("fingerprint", {}), fingerprint, checkpoint_path)
        try:
            model.load_state_dict(ck["model"])
        except RuntimeError:
            raise ConfigError(f"checkpoint {checkpoint_path} was written for a different model or config. "
                              "Delete it to start over, or set train.resume=false.") from None
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        sampler.resume(ck["sampler_state"], ck["batch_in_epoch"])
        state.load_state_dict(ck, device)
        _set_rng_state(ck["rng"])
        message(f"resumed from {checkpoint_path}: epoch {state.epoch}, batch {state.batch_in_epoch}, step {state.step}")

    for epoch in range(state.epoch, cfg.epochs + 1):
        state.epoch = epoch
        net.train()
        steps_per_epoch = len(train_loader)
        t0 = time.perf_counter() - state.elapsed
        # redraw often on a terminal, rarely when the output is a log file or a Prefect worker
        bar = tqdm(total=steps_per_epoch, initial=state.batch_in_epoch, desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
                   unit="batch", disable=not cfg.progress or not dist.is_main, mininterval=0.2 if sys.stderr.isatty() else 30.0)
        for ids, labels in train_loader:
            ids, labels = ids.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            if cfg.word_dropout and word_model:
                ids = drop_words(ids, cfg.word_dropout)
            state.running_loss += train_step(ids, labels, state)
            state.seen += labels.numel()
            state.step += 1
            state.batch_in_epoch += 1
            bar.update(1)
            if state.step % log_every == 0:  # the only host sync in the loop, once every log_every steps
                train_loss = state.running_loss.item() / state.seen
                rate = state.seen * dist.world_size / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{train_loss:.4f}", samples_s=f"{rate:.0f}")
                log_metrics({"train_loss_running": train_loss, "train_samples_per_s": rate, "lr": scheduler.get_last_lr()[0]},
                            state.step)
            if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.batch_in_epoch < steps_per_epoch:
                state.elapsed = time.perf_counter() - t0
                checkpoint(sampler.epoch_start_state)
        bar.close()
        elapsed = time.perf_counter() - t0
        total_loss, total_seen = state.running_loss.detach().clone(), state.seen
        if dist.world_size > 1:  # every rank saw its own slice of each batch: sum them for the epoch's train loss
            both = torch.stack([total_loss.float(), torch.tensor(float(total_seen), device=device)])
            torch.distributed.all_reduce(both)
            total_loss, total_seen = both[0], int(both[1].item())
        train_loss = total_loss.item() / max(total_seen, 1)
        val = evaluate_model(model, val_loader, device, num_classes, autocast)
        row = {"epoch": epoch, "train_loss": train_loss, **val, "train_samples_per_s": total_seen / max(elapsed, 1e-9),
               "epoch_seconds": elapsed}
        result.history.append(row)
        # one step axis for every training metric (the optimiser step); the epoch is a metric of its own
        log_metrics({**{k: v for k, v in row.items() if k not in ("epoch", "train_samples_per_s")}, "epoch": epoch,
                     "epoch_samples_per_s": row["train_samples_per_s"]}, state.step)
        if cfg.progress and dist.is_main:
            message(f"epoch {epoch}/{cfg.epochs}: train_loss {train_loss:.4f}  val_loss {val['val_loss']:.4f}  "
                    f"val_acc {val['val_accuracy']:.4f}  val_macro_f1 {val['val_macro_f1']:.4f}  {row['train_samples_per_s']:.0f} samples/s")
        score = val[cfg.select_metric]
        if score > result.best_score:
            result.best_score, result.best_epoch, result.best_val_accuracy = score, epoch, val["val_accuracy"]
            result.best_state = _cpu_state(model)
            state.bad_epochs = 0
        else:
            state.bad_epochs += 1
        stop = bool(cfg.patience and state.bad_epochs >= cfg.patience)
        state.end_epoch(cfg.epochs + 1 if stop else epoch + 1)
        checkpoint(sampler.generator.get_state())  # the generator now holds the next epoch's start state
        if stop:
            result.stopped_early = True
            break
    model.load_state_dict(result.best_state)
    result.micro_batch_size, result.steps = state.micro_batch_size, state.step
    return result


def _accumulate(net: nn.Module, ids: torch.Tensor, labels: torch.Tensor, micro: int, autocast: Callable[[], Any],
                scaler: torch.amp.GradScaler, world_size: int = 1) -> torch.Tensor:
    """Forward/backward over micro-batches of one batch; the gradients add up to those of the batch's mean loss.

    Returns the sum of this rank's per-example losses (a detached scalar on the device). Under DDP each rank
    holds a slice of the batch and DDP averages gradients over ranks, so each rank scales its summed loss
    by world_size / (rows in the whole batch): the average is then exactly the gradient of the batch mean,
    even when the slices differ in size. Gradients are all-reduced only on the last micro-batch (no_sync).
    """
    n_local = labels.size(0)
    divisor: torch.Tensor | int = n_local
    if world_size > 1:
        n_global = torch.tensor(float(n_local), device=ids.device)
        torch.distributed.all_reduce(n_global)  # stays on the device: no host sync
        divisor = n_global / world_size
    total = torch.zeros((), device=ids.device)
    for start in range(0, n_local, micro):
        last = start + micro >= n_local
        sync = net.no_sync() if world_size > 1 and not last and hasattr(net, "no_sync") else nullcontext()
        with sync:
            with autocast():
                logits = net(ids[start : start + micro])
            loss_sum = classification_loss(logits, labels[start : start + micro], reduction="sum")
            loss = loss_sum / divisor
            if loss.dim() != 0:  # the article's multi-GPU trap: a vector of per-device losses cannot be backpropagated
                raise RuntimeError(f"loss must be a scalar before backward(), got shape {tuple(loss.shape)}")
            scaler.scale(loss).backward()
        total += loss_sum.detach()
    return total
