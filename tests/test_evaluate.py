import numpy as np
import pandas as pd
import pytest

from textcls_core.evaluate import BADCASE_COLUMNS, compute_metrics, confusion_frame, find_badcases, save_confusion_png


def test_metrics_match_hand_computation():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    m = compute_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: P=2/2 R=2/3 F=0.8 ; b: P=1/2 R=1/2 F=0.5 ; c: P=1/2 R=1 F=2/3
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8), "support": 3}
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_badcases_are_every_error_most_confident_first(tmp_path):
    df = pd.DataFrame({"row_id": [10, 11, 12, 13], "text": ["t0", "t1", "t2", "t3"]})
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.05, 0.95], [0.6, 0.4]])
    y_true = np.array([0, 0, 0, 1])
    bad = find_badcases(df, probs, y_true, ["neg", "pos"])
    assert list(bad.columns) == BADCASE_COLUMNS
    assert bad["row_id"].tolist() == [12, 11, 13]
    assert bad["confidence"].tolist() == [0.95, 0.7, 0.6]
    assert bad[["true_label", "pred_label"]].values.tolist() == [["neg", "pos"], ["neg", "pos"], ["pos", "neg"]]
    m = compute_metrics(y_true, probs.argmax(1), ["neg", "pos"])
    cm = confusion_frame(m, ["neg", "pos"])
    assert cm.loc["neg", "pos"] == 2 and cm.loc["pos", "neg"] == 1
    png = save_confusion_png(cm, tmp_path / "cm.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
