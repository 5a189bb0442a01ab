import numpy as np
import pandas as pd
import pytest

from textcls_core.evaluation.metrics import (
    BADCASE_COLUMNS,
    compare_with_champion,
    compute_metrics,
    confusion_frame,
    expected_calibration_error,
    find_badcases,
    group_badcases,
    save_confusion_png,
)


def onehotish(pred, n, p=0.8):
    """Probabilities putting p on the predicted class and the rest evenly on the others."""
    out = np.full((len(pred), n), (1 - p) / (n - 1))
    out[np.arange(len(pred)), pred] = p
    return out


def test_metrics_match_hand_computation():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    m = compute_metrics(y_true, onehotish(y_pred, 3), ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: P=2/2 R=2/3 F=0.8 ; b: P=1/2 R=1/2 F=0.5 ; c: P=1/2 R=1 F=2/3
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8), "support": 3}
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["confusion_matrix_normalized"][0] == pytest.approx([2 / 3, 1 / 3, 0])
    # log loss: 4 texts get p=0.8 on the truth, 2 get 0.1
    assert m["log_loss"] == pytest.approx(-(4 * np.log(0.8) + 2 * np.log(0.1)) / 6)
    # every prediction has confidence 0.8, accuracy 4/6 -> ECE = |4/6 - 0.8|
    assert m["ece"] == pytest.approx(abs(4 / 6 - 0.8))


def test_binary_auc_hand_computed():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.6, 0.4, 0.9])  # pairs (pos > neg): (0.4>0.1),(0.9>0.1),(0.9>0.6) = 3 of 4
    m = compute_metrics(y, np.c_[1 - p1, p1], ["neg", "pos"])
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)  # precision at each positive hit: 1/1, 2/3


def test_reliability_bins():
    y = np.array([0, 1, 0, 1])
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55]])
    ece, bins = expected_calibration_error(y, probs, n_bins=10)
    assert bins["count"].tolist() == [2, 2]
    assert bins["accuracy"].tolist() == [1.0, 0.5]
    assert ece == pytest.approx(0.5 * abs(1.0 - 0.55) + 0.5 * abs(0.5 - 0.95))


def test_badcases_every_error_highest_loss_first_and_grouped(tmp_path):
    df = pd.DataFrame({"row_id": [10, 11, 12, 13], "text": ["t0", "t1", "t22", "t3333"]})
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.05, 0.95], [0.6, 0.4]])
    y_true = np.array([0, 0, 0, 1])
    bad = find_badcases(df, probs, y_true, ["neg", "pos"], oov=np.array([0.0, 0.5, 0.25, 1.0]))
    assert list(bad.columns) == BADCASE_COLUMNS
    assert bad["row_id"].tolist() == [12, 11, 13]
    assert bad["loss"].tolist() == pytest.approx([-np.log(0.05), -np.log(0.3), -np.log(0.4)])
    assert bad["confusion_pair"].tolist() == ["neg -> pos", "neg -> pos", "pos -> neg"]
    assert bad["length"].tolist() == [3, 2, 5] and bad["oov_rate"].tolist() == [0.25, 0.5, 1.0]
    groups = group_badcases(bad)
    assert groups["confusion_pair"].set_index("confusion_pair")["count"].to_dict() == {"neg -> pos": 2, "pos -> neg": 1}
    assert groups["confidence_bucket"].set_index("confidence_bucket")["count"].to_dict() == {
        "confidently wrong (>=0.9)": 1, "fairly sure (0.7-0.9)": 1, "unsure (<0.7)": 1}
    m = compute_metrics(y_true, probs, ["neg", "pos"])
    cm = confusion_frame(m, ["neg", "pos"])
    assert cm.loc["neg", "pos"] == 2 and cm.loc["pos", "neg"] == 1
    assert save_confusion_png(cm, tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_champion_comparison_newly_wrong_and_right():
    frame = pd.DataFrame({"row_id": range(6), "text": [f"t{i}" for i in range(6)]})
    y = np.array([0, 0, 1, 1, 0, 1])
    champ = onehotish(np.array([0, 1, 1, 0, 0, 1]), 2)  # wrong on 1, 3
    cand = onehotish(np.array([0, 0, 1, 1, 1, 0]), 2)   # wrong on 4, 5
    cmp = compare_with_champion(frame, y, cand, champ, ["neg", "pos"])
    assert cmp["newly_wrong"]["row_id"].tolist() == [4, 5]
    assert cmp["newly_right"]["row_id"].tolist() == [1, 3]
    assert cmp["newly_wrong"][["true_label", "candidate_label", "champion_label"]].values.tolist() == [["neg", "pos", "neg"], ["pos", "neg", "pos"]]
    assert cmp["delta"]["accuracy"] == pytest.approx(0.0)


def test_slices_by_length_bucket_in_natural_order():
    from textcls_core.evaluation.metrics import length_bucket, slice_metrics

    frame = pd.DataFrame({"text": ["短"] * 3 + ["长" * 150] * 2})
    y = np.array([0, 1, 0, 1, 1])
    probs = onehotish(np.array([0, 1, 1, 1, 0]), 2)
    s = slice_metrics(frame, y, probs, length_bucket(frame["text"].str.len()), "length_bucket")
    assert s["value"].tolist() == ["0-19", "100-199"]
    assert s["n"].tolist() == [3, 2] and s["accuracy"].tolist() == pytest.approx([2 / 3, 0.5])
