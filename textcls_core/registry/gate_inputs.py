"""The evaluation's per-row predictions, handed to the promotion gate.

The evaluation scores the shipped model and the current champion on every row of the test split; the gate
compares the two on those rows again. It reads them from this file instead of scoring the split a second time,
so the report's champion comparison and the gate's are made from the same predictions.

The file names the test split it was made from (path and row count) and the champion version it scored; the
gate uses a part only when it matches what the gate compares: the same split, and the champion it found under
the registry lock. Otherwise it scores the models itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_predictions(directory: str | Path, test_path: str, predicted: list[str] | None,
                     champion_predicted: list[str] | None, champion_version: str | None) -> Path:
    """predictions.npz in `directory`: the model's (and the champion's) predicted label per test row."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {"test_path": np.array(str(Path(test_path).resolve())), "model": np.array(predicted or [], dtype=str)}
    if champion_predicted is not None and champion_version:
        arrays |= {"champion": np.array(champion_predicted, dtype=str), "champion_version": np.array(str(champion_version))}
    path = d / "predictions.npz"
    np.savez(path, **arrays)
    return path


class SavedPredictions:
    """What save_predictions wrote, checked against the rows the gate compares."""

    def __init__(self, path: str | Path | None, test_path: str | None, n_rows: int) -> None:
        self.model: np.ndarray | None = None
        self.champion: np.ndarray | None = None
        self.champion_version: str | None = None
        if not path or not test_path or not Path(path).is_file():
            return
        with np.load(path, allow_pickle=False) as f:
            if str(f["test_path"]) != str(Path(test_path).resolve()) or len(f["model"]) != n_rows:
                return  # made from other rows: not used
            self.model = f["model"]
            if "champion" in f.files and len(f["champion"]) == n_rows:
                self.champion, self.champion_version = f["champion"], str(f["champion_version"])

    def for_champion(self, version: str) -> np.ndarray | None:
        """The champion's predictions when they were made by this version, else None."""
        return self.champion if self.champion is not None and self.champion_version == str(version) else None
