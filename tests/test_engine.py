"""Training engine guards and mechanics: losses, micro-batches, OOM halving, samplers, checkpoints, resume after kill -9."""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from textcls_core.modeling.networks import BiLSTMAttention, TextCNN, build_model, logits_to_proba
from textcls_core.runtime.config import ModelConfig, TrainConfig, build_config
from textcls_core.runtime.errors import ConfigError
from textcls_core.text.batching import BucketBatchSampler, EncodedDataset, collate_batch, padded_width
from textcls_core.training.loop import (
    _accumulate,
    classification_loss,
    load_checkpoint,
    resolve_precision,
    save_checkpoint,
    set_seed,
    train_model,
)

ROOT = Path(__file__).resolve().parent.parent
COLLATE = partial(collate_batch, max_len=32, min_len=2)


def separable(n=120, seed=0, classes=2):
    rng = np.random.default_rng(seed)
    ids, labels = [], []
    for i in range(n):
        y = i % classes
        ids.append((rng.integers(2, 10, size=rng.integers(3, 12)) + 8 * y).tolist())
        labels.append(y)
    return EncodedDataset(ids, labels)


def test_bilstm_learns_and_ignores_padding():
    set_seed(0)
    model = BiLSTMAttention(30, 2, embed_dim=16, hidden_size=8, dropout=0.0)
    result = train_model(model, separable(160), separable(60, 1), TrainConfig(epochs=4, lr=1e-2, batch_size=16, progress=False),
                         torch.device("cpu"), 2, COLLATE)
    assert result.best_val_accuracy >= 0.95
    model.eval()
    ids = torch.tensor([[5, 6, 7, 0, 0, 0, 0], [9, 0, 0, 0, 0, 0, 0]])
    with torch.inference_mode():
        np.testing.assert_allclose(model(ids), model(ids[:, :3]), atol=1e-6)  # pads never change a prediction
        assert model(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 2)  # an empty text still gets logits


def test_losses_get_the_target_dtype_and_shape_they_need():
    labels = torch.tensor([0, 1, 1])
    two = torch.tensor([[2.0, -1.0], [0.0, 3.0], [1.0, 1.0]])
    loss = classification_loss(two, labels)
    assert loss.dim() == 0 and loss.item() == pytest.approx(torch.nn.functional.cross_entropy(two, labels).item())
    one = torch.tensor([[-2.0], [3.0], [0.5]])  # single binary logit: float targets shaped [B, 1]
    loss = classification_loss(one, labels)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(one, labels.float().view(-1, 1))
    assert loss.dim() == 0 and loss.item() == pytest.approx(expected.item())
    assert classification_loss(one, labels.view(-1, 1)).item() == pytest.approx(expected.item())  # [B, 1] targets too
    probs = logits_to_proba(one)
    assert probs.shape == (3, 2) and torch.allclose(probs.sum(1), torch.ones(3))
    with pytest.raises(ValueError, match=r"logits must be \[batch, classes\]"):
        classification_loss(torch.zeros(3), labels)


def test_single_logit_head_trains_binary_and_refuses_three_classes():
    set_seed(0)
    model = build_model(ModelConfig(binary_head="single_logit", embed_dim=16, num_filters=8, kernel_sizes=[2]), 20, 2)
    assert model.fc.out_features == 1
    result = train_model(model, separable(120), separable(40, 1), TrainConfig(epochs=3, lr=5e-3, batch_size=16, progress=False),
                         torch.device("cpu"), 2, COLLATE)
    assert result.best_val_accuracy >= 0.95
    with pytest.raises(ConfigError, match="needs exactly 2 classes, the data has 3"):
        build_model(ModelConfig(binary_head="single_logit"), 20, 3)


def test_a_non_scalar_loss_is_refused_before_backward():
    class PerDevice(torch.nn.Module):  # what DataParallel-style gathering hands back: one loss per device
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, ids):
            return self.w * torch.ones(ids.size(0), 2)

    import textcls_core.training.loop as train_mod

    real = train_mod.classification_loss
    train_mod.classification_loss = lambda logits, labels, reduction="mean": real(logits, labels, "none")
    try:
        with pytest.raises(RuntimeError, match="loss must be a scalar"):
            _accumulate(PerDevice(), torch.ones(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long), 4,
                        lambda: torch.autocast("cpu", enabled=False), torch.amp.GradScaler("cpu", enabled=False), 1)
    finally:
        train_mod.classification_loss = real


def _grads_after_one_batch(micro):
    set_seed(0)
    model = TextCNN(20, 2, 8, 4, [2])
    ids, labels = COLLATE([separable(16)[i] for i in range(16)])
    _accumulate(model, ids, labels, micro, lambda: torch.autocast("cpu", enabled=False), torch.amp.GradScaler("cpu", enabled=False), 1)
    return [p.grad.clone() for p in model.parameters()]


def test_micro_batches_accumulate_to_the_full_batch_gradient():
    full, accumulated = _grads_after_one_batch(16), _grads_after_one_batch(3)
    for a, b in zip(full, accumulated):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


class OomAbove(TextCNN):
    """Raises CUDA's out-of-memory error for training batches above a size, like a GPU would."""

    limit = 4

    def forward(self, ids):
        if ids.size(0) > self.limit and torch.is_grad_enabled():
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().forward(ids)


def test_out_of_memory_halves_the_micro_batch_and_keeps_the_effective_batch():
    cfg = TrainConfig(epochs=2, lr=5e-3, batch_size=16, progress=False)
    messages, logged = [], []
    set_seed(0)
    model = OomAbove(20, 2, 8, 4, [2])
    result = train_model(model, separable(64), separable(20, 1), cfg, torch.device("cpu"), 2, COLLATE,
                         message=messages.append, log_metrics=lambda m, s: logged.append(m))
    assert result.micro_batch_size == 4 and result.steps == 2 * 4  # 64 rows / batch 16: the step count is unchanged
    assert [m for m in messages if "out of memory" in m] == [
        "out of memory at step 1: micro-batch halved to 8, accumulating 2 micro-batches per step (effective batch unchanged)",
        "out of memory at step 1: micro-batch halved to 4, accumulating 4 micro-batches per step (effective batch unchanged)"]
    assert {"train_micro_batch_size": 4} in logged
    set_seed(0)  # the same training with micro-batches of 4 from the start ends with the same weights
    direct = TextCNN(20, 2, 8, 4, [2])
    train_model(direct, separable(64), separable(20, 1), cfg.model_copy(update={"micro_batch_size": 4}), torch.device("cpu"), 2,
                COLLATE, message=lambda m: None)
    for a, b in zip(model.parameters(), direct.parameters()):
        torch.testing.assert_close(a, b)


def test_bucket_sampler_token_budget_ddp_slices_and_replay():
    lengths = [3, 30, 5, 28, 7, 26, 9, 24, 11, 22] * 4
    s = BucketBatchSampler(lengths, batch_size=8, generator=torch.Generator().manual_seed(1), max_tokens=64)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(40))  # every row once per epoch
    assert all(len(b) * max(lengths[i] for i in b) <= 64 or len(b) == 1 for b in batches)
    ranks = [list(BucketBatchSampler(lengths, 8, torch.Generator().manual_seed(1), world_size=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) and all(ranks[0]) and all(ranks[1])  # same step count, no empty slice
    assert sorted(i for r in ranks for b in r for i in b) == list(range(40))
    for seed in range(20):  # 129 rows in batches of 64: a 1-row batch may be drawn first; no rank may get nothing
        for rank in (0, 1):
            assert all(BucketBatchSampler([5] * 129, 64, torch.Generator().manual_seed(seed), world_size=2, rank=rank))
    budget = BucketBatchSampler(lengths * 5, 8, torch.Generator().manual_seed(3), max_tokens=64)
    counts = budget.epoch_lengths(3)  # what the scheduler's total is built from, without moving the generator
    assert counts == [len(list(budget)) for _ in range(3)]
    s = BucketBatchSampler(lengths, 8, torch.Generator().manual_seed(5))
    first = list(s)
    start, second = s.generator.get_state(), list(s)  # epoch 2
    assert torch.equal(s.epoch_start_state, start)  # what a mid-epoch checkpoint stores
    s.resume(start, 2)
    assert list(s) == second[2:] and first != second


def test_pad_buckets_fix_the_batch_widths():
    assert [padded_width(n, 256, 1, (32, 64, 128)) for n in (5, 32, 33, 100, 200, 300)] == [32, 32, 64, 128, 256, 256]
    assert padded_width(2, 256, 3) == 3 and padded_width(40, 256) == 40
    ids, _ = collate_batch([([4, 5, 6], 0), ([7], 1)], max_len=64, pad_id=9, buckets=(8, 16))
    assert ids.tolist() == [[4, 5, 6, 9, 9, 9, 9, 9], [7, 9, 9, 9, 9, 9, 9, 9]]


def test_precision_and_config_guards():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ConfigError, match="model.name=transformer needs model.pretrained"):
        build_config({}, ["model.name=transformer"])
    with pytest.raises(ConfigError, match="micro_batch_size must not exceed"):
        build_config({}, ["train.micro_batch_size=128"])


def test_bf16_autocast_with_clipping_trains_like_fp32():
    losses = {}
    for precision in ("fp32", "bf16"):
        set_seed(0)
        result = train_model(TextCNN(20, 2, 16, 8, [2]), separable(120), separable(40, 1),
                             TrainConfig(epochs=3, lr=2e-2, batch_size=16, precision=precision, max_grad_norm=1.0, patience=0,
                                         progress=False), torch.device("cpu"), 2, COLLATE)
        assert result.best_val_accuracy == 1.0
        losses[precision] = [h["train_loss"] for h in result.history]
    assert losses["bf16"][-1] < 0.5 * losses["bf16"][0]
    np.testing.assert_allclose(losses["bf16"], losses["fp32"], rtol=0.05)  # bf16 rounding, not a different training


def test_checkpoints_are_atomic_and_load_weights_only(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, {"w": torch.ones(2), "step": 3})
    assert load_checkpoint(path)["step"] == 3 and list(path.parent.iterdir()) == [path]  # no temp file left behind
    assert load_checkpoint(tmp_path / "none.pt") is None

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        load_checkpoint(tmp_path / "evil.pt")


def test_resume_after_kill_9_ends_like_an_uninterrupted_run(tmp_path):
    ck = tmp_path / "ck" / "last.pt"

    def run(mode):
        out = tmp_path / f"{mode}.pt"
        proc = subprocess.run([sys.executable, str(ROOT / "tests" / "_resume_worker.py"), mode, str(ck), str(out)],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        return proc, out

    proc, _ = run("kill")
    assert proc.returncode == -9  # killed by SIGKILL mid-training
    killed_at = load_checkpoint(ck)
    assert killed_at["step"] == 15 and killed_at["epoch"] == 2 and killed_at["batch_in_epoch"] == 2
    proc, resumed = run("resume")
    assert proc.returncode == 0, proc.stderr
    proc, full = run("full")
    assert proc.returncode == 0, proc.stderr
    a, b = torch.load(full, weights_only=True), torch.load(resumed, weights_only=True)
    assert b["resumed_from_step"] == 15
    assert a["history"] == b["history"]  # the same train/val loss and accuracy for every epoch
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k


def test_evaluation_and_prediction_build_no_graph():
    from torch.utils.data import DataLoader

    from textcls_core.modeling.predictor import TextClassifier
    from textcls_core.runtime.config import CleanConfig
    from textcls_core.text.encoders import WordEncoder
    from textcls_core.training.loop import evaluate_model

    class Spy(TextCNN):
        seen: list = []

        def forward(self, ids):
            out = super().forward(ids)
            Spy.seen.append((self.training, torch.is_inference_mode_enabled(), out.requires_grad))
            return out

    model = Spy(20, 2, 8, 4, [2]).train()
    metrics = evaluate_model(model, DataLoader(separable(40), batch_size=16, collate_fn=COLLATE), torch.device("cpu"), 2)
    assert set(metrics) == {"val_loss", "val_accuracy", "val_macro_f1"}
    clf = TextClassifier(model, WordEncoder(["<pad>", "<unk>", "好"], 16), ["a", "b"], ModelConfig(kernel_sizes=[2]), CleanConfig())
    clf.predict(["好好", "好"] * 20, batch_size=8)
    assert len(Spy.seen) == 3 + 5 and set(Spy.seen) == {(False, True, False)}  # eval mode, inference mode, no graph


def test_train_state_round_trips_through_a_checkpoint(tmp_path):
    from textcls_core.training.loop import TrainResult, TrainState

    result = TrainResult(best_state={"w": torch.arange(3.0)}, best_epoch=2, best_score=0.75, best_val_accuracy=0.75,
                         history=[{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.4}])
    state = TrainState(result, epoch=3, batch_in_epoch=7, step=31, micro_batch_size=16, bad_epochs=1,
                       running_loss=torch.tensor(12.5), seen=112, elapsed=4.25)
    save_checkpoint(tmp_path / "last.pt", {"model": {}, **state.state_dict()})
    saved = load_checkpoint(tmp_path / "last.pt")
    # the keys checkpoints of earlier versions hold: a checkpoint written before TrainState still resumes
    assert {"epoch", "batch_in_epoch", "step", "micro_batch_size", "bad_epochs", "running_loss", "seen", "elapsed",
            "history", "best"} <= set(saved)
    back = TrainState(TrainResult(best_state={}, best_epoch=-1, best_score=-1.0, best_val_accuracy=-1.0))
    back.load_state_dict(saved, torch.device("cpu"))
    assert (back.epoch, back.batch_in_epoch, back.step, back.micro_batch_size, back.bad_epochs, back.seen, back.elapsed) == \
        (3, 7, 31, 16, 1, 112, 4.25)
    assert back.running_loss.item() == 12.5 and back.result.resumed_from_step == 31
    assert (back.result.best_epoch, back.result.best_score, back.result.history) == (2, 0.75, result.history)
    assert torch.equal(back.result.best_state["w"], torch.arange(3.0))
    back.end_epoch(4)
    assert (back.epoch, back.batch_in_epoch, back.seen, back.elapsed, back.running_loss.item()) == (4, 0, 0, 0.0, 0.0)
