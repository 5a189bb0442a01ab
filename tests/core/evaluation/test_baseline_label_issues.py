import numpy as np
import pandas as pd

from textcls_core.evaluation.label_issues import RELABEL_COLUMNS, find_suspect_labels
from textcls_core.evaluation.out_of_fold import baseline_proba, fit_baseline, out_of_fold_proba

POS_WORDS = ["好", "棒", "赞", "喜欢", "满意", "推荐", "精彩", "舒服"]
NEG_WORDS = ["差", "烂", "坑", "讨厌", "失望", "垃圾", "难用", "后悔"]


def corpus(n=400, seed=0):
    rng = np.random.default_rng(seed)
    texts, y = [], []
    for i in range(n):
        label = i % 2
        words = rng.choice(POS_WORDS if label else NEG_WORDS, size=4)
        texts.append("这个东西" + "".join(words) + f"{i}号")
        y.append(label)
    return texts, np.array(y)


def test_baseline_learns_and_returns_aligned_probs():
    texts, y = corpus()
    model = fit_baseline(texts[:300], y[:300])
    probs = baseline_proba(model, texts[300:], 2)
    assert probs.shape == (100, 2) and ((probs.argmax(1) == y[300:]).mean() > 0.95)


def test_planted_label_errors_are_found():
    texts, y = corpus(400)
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(y), size=20, replace=False)  # 5% of the labels
    noisy = y.copy()
    noisy[flipped] = 1 - noisy[flipped]
    frame = pd.DataFrame({"row_id": range(len(texts)), "text": texts})
    oof = out_of_fold_proba(texts, noisy, 2, folds=5, seed=0)
    queue = find_suspect_labels(frame, noisy, oof, ["neg", "pos"])
    assert list(queue.columns) == RELABEL_COLUMNS
    found = set(queue["row_id"]) & set(flipped.tolist())
    assert len(found) >= 16  # at least 80% of the planted errors
    assert len(queue) <= 30  # and not many false alarms
    # the suggested label is the true one for the planted errors it found
    hits = queue[queue["row_id"].isin(flipped)]
    assert (hits["suggested_label"].map({"neg": 0, "pos": 1}).to_numpy() == y[hits["row_id"].to_numpy()]).all()
    assert queue["label_quality"].is_monotonic_increasing
