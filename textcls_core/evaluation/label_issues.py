"""Suspected label errors via confident learning (cleanlab) on out-of-fold probabilities.

cleanlab is the maintained reference implementation of confident learning (Northcutt et al.);
re-implementing its per-class thresholds and pruning would be code of our own with no advantage.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

# The relabel queue is meant to be reviewed in a spreadsheet and fed back with `textcls relabel apply`:
# row_id is the row's 0-based position among the source file's data rows (stable across runs of that file),
# `decision` is left empty for the reviewer (keep | relabel:<label> | drop), and source_sha256 names the
# file version the row ids refer to (empty for the builtin corpus, which has no file to correct).
RELABEL_COLUMNS = ["row_id", "text", "given_label", "suggested_label", "confidence", "label_quality", "decision",
                   "source_sha256"]


def find_suspect_labels(frame: pd.DataFrame, y: Sequence[int], oof_probs: np.ndarray, labels: list[str],
                        source_sha256: str = "") -> pd.DataFrame:
    """Relabel queue: rows whose given label is probably wrong, most suspicious (lowest quality) first.

    confidence is the out-of-fold probability of the suggested label."""
    y = np.asarray(y)
    # n_jobs=1: in-process. cleanlab's default forks a multiprocessing pool from this threaded process, and a
    # forked worker once hung an evaluation on the pool's queue lock; the pruning takes milliseconds
    # (benchmarks/pool_start_methods.py), so a pool buys nothing here.
    issues = find_label_issues(labels=y, pred_probs=oof_probs, filter_by="prune_by_noise_rate", n_jobs=1)
    quality = get_label_quality_scores(labels=y, pred_probs=oof_probs, method="self_confidence")
    idx = np.flatnonzero(issues)
    suggested = oof_probs[idx].argmax(axis=1)
    out = pd.DataFrame({
        "row_id": frame["row_id"].to_numpy()[idx],
        "text": frame["text"].to_numpy()[idx],
        "given_label": [labels[i] for i in y[idx]],
        "suggested_label": [labels[i] for i in suggested],
        "confidence": oof_probs[idx, suggested],
        "label_quality": quality[idx],
        "decision": "",
        "source_sha256": source_sha256,
    }, columns=RELABEL_COLUMNS)
    return out.sort_values("label_quality", kind="stable").reset_index(drop=True)
