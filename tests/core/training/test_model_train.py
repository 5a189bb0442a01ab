from functools import partial

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from textcls_core.modeling.networks import TextCNN
from textcls_core.modeling.predictor import TextClassifier, build_model
from textcls_core.runtime.config import CleanConfig, ModelConfig, TrainConfig
from textcls_core.runtime.errors import ConfigError, LabelRangeError
from textcls_core.text.batching import EncodedDataset, collate_batch
from textcls_core.text.encoders import WordEncoder
from textcls_core.training.loop import check_labels, evaluate_model, pick_device, set_seed, train_model

COLLATE = partial(collate_batch, max_len=32, min_len=3)


def separable(n=200, seed=0):
    """Class 0 texts use word ids 2..9, class 1 texts use 10..17: a TextCNN must learn this."""
    rng = np.random.default_rng(seed)
    ids, labels = [], []
    for i in range(n):
        y = i % 2
        ids.append((rng.integers(2, 10, size=rng.integers(3, 12)) + 8 * y).tolist())
        labels.append(y)
    return EncodedDataset(ids, labels)


def test_textcnn_shapes_and_padding_invariance():
    set_seed(0)
    model = TextCNN(30, 3, embed_dim=8, num_filters=4, kernel_sizes=[2, 3]).eval()
    ids = torch.tensor([[5, 6, 7, 0, 0, 0]])
    with torch.inference_mode():
        short, padded = model(ids[:, :3]), model(ids)
    assert short.shape == (1, 3)
    assert torch.allclose(short, padded, atol=1e-6)  # pads never change the prediction


def test_train_learns_separable_data():
    set_seed(0)
    train, val = separable(200, 0), separable(60, 1)
    vl = DataLoader(val, batch_size=64, collate_fn=COLLATE)
    logged = []
    model = TextCNN(20, 2, embed_dim=16, num_filters=8, kernel_sizes=[2, 3])
    result = train_model(model, train, val, TrainConfig(epochs=5, progress=False, lr=5e-3, batch_size=16), torch.device("cpu"), 2,
                         COLLATE, log_metrics=lambda m, s: logged.append((m, s)), log_every=5)
    assert result.best_val_accuracy >= 0.95
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert any("val_accuracy" in m for m, _ in logged) and any("train_loss_running" in m for m, _ in logged)
    assert evaluate_model(model, vl, torch.device("cpu"), 2)["val_accuracy"] == pytest.approx(result.best_val_accuracy)


def test_early_stopping_keeps_best_epoch():
    set_seed(0)
    val = EncodedDataset([[2, 3, 4]] * 4, [1, 1, 1, 1])  # never improvable past epoch 1 ties
    result = train_model(TextCNN(20, 2, 8, 4, [2]), separable(40), val, TrainConfig(epochs=10, patience=2, progress=False, batch_size=8),
                         torch.device("cpu"), 2, COLLATE)
    assert result.stopped_early and len(result.history) < 10
    assert result.best_epoch == max(range(len(result.history)), key=lambda i: (result.history[i]["val_accuracy"], -i)) + 1


def test_out_of_range_labels_fail_on_cpu_with_names():
    with pytest.raises(LabelRangeError, match=r"label ids \[-1, 2\] are outside 0..1"):
        check_labels([0, 1, 2, -1, 2], 2)
    bad = EncodedDataset([[2, 3]], [5])
    with pytest.raises(LabelRangeError, match="train labels"):
        train_model(TextCNN(10, 2, 4, 2, [2]), bad, bad, TrainConfig(epochs=1, progress=False), torch.device("cpu"), 2, COLLATE)


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            pick_device("cuda")


def test_classifier_save_load_roundtrip(tmp_path):
    set_seed(0)
    itos = ["<pad>", "<unk>", "质量", "很", "好", "太", "差", "了"]
    mcfg = ModelConfig(embed_dim=8, num_filters=4, kernel_sizes=[2, 3])
    clf = TextClassifier(build_model(mcfg, len(itos), 2), WordEncoder(itos, 16), ["负面", "正面"], mcfg, CleanConfig())
    texts = ["质量很好", "质量太差了", "", "  ", "长" * 5000, None]
    before = clf.predict(texts)
    clf.save(tmp_path / "m")
    loaded = TextClassifier.load(tmp_path / "m")
    after = loaded.predict(texts)
    assert list(after.columns) == ["label", "score", "prob_负面", "prob_正面"]
    assert len(after) == len(texts)
    np.testing.assert_allclose(before[["prob_负面", "prob_正面"]], after[["prob_负面", "prob_正面"]], atol=1e-6)
    np.testing.assert_allclose(after[["prob_负面", "prob_正面"]].sum(axis=1), 1.0, atol=1e-5)
    assert set(after["label"]) <= {"负面", "正面"} and (after["score"] >= 0.5).all()
    # the model encodes exactly as training did: NFKC + jieba + vocab
    assert loaded.encode(["质量很好！"]) == [[2, 3, 4, 1]]


def test_linear_schedule_warms_up_and_decays_to_zero():
    from textcls_core.training.loop import make_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, TrainConfig(warmup_ratio=0.2, lr_schedule="linear"), total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:2] == [0.5, 1.0] and lrs[2] == 1.0 and lrs[-1] == pytest.approx(0.125)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, TrainConfig(lr_schedule="constant"), total_steps=10)
    assert sched.get_last_lr() == [1.0]


def test_word_dropout_only_touches_real_tokens():
    from textcls_core.training.loop import drop_words

    torch.manual_seed(0)
    ids = torch.tensor([[5] * 1000 + [0] * 100])
    out = drop_words(ids, 0.3)
    assert (out[:, 1000:] == 0).all()  # pads stay pads
    share = (out[:, :1000] == 1).float().mean().item()
    assert 0.25 < share < 0.35
