"""The prediction table every classifier kind returns (network, tfidf_lr, ensemble), built in one place."""

from __future__ import annotations

import numpy as np
import pandas as pd


def proba_frame(probs: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """One row per text: label, score (its probability) and prob_<label> for every class."""
    best = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=int)
    frame = pd.DataFrame({"label": [labels[i] for i in best], "score": probs[np.arange(len(best)), best]})
    for j, name in enumerate(labels):
        frame[f"prob_{name}"] = probs[:, j]
    return frame
