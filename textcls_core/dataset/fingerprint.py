"""Training-text fingerprints: which texts a model has seen, so a comparison can use only rows it has not.

A fingerprint is the sorted set of 64-bit hashes of a model's canonical train (+ val) texts, saved as
`train_fingerprint.npy` in the model folder, so it travels inside the registered model (a registry tag
would be capped in length). Two models are compared on rows whose hash is in neither fingerprint.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

FINGERPRINT_FILE = "train_fingerprint.npy"
_SPACE = re.compile(r"\s+")


def canonical_text(text: str) -> str:
    """The form a text is hashed in: NFKC, lower case, no whitespace. Two spellings that differ only in
    width, case or spacing count as the same text (the cleaning settings of two runs may differ there)."""
    return _SPACE.sub("", unicodedata.normalize("NFKC", str(text)).lower())


def text_hashes(texts: Iterable[str], salt: str = "") -> np.ndarray:
    """uint64 hash of each canonical text (first 8 bytes of blake2b), in input order."""
    prefix = salt.encode("utf-8")
    out = [int.from_bytes(hashlib.blake2b(prefix + canonical_text(t).encode("utf-8"), digest_size=8).digest(), "little")
           for t in texts]
    return np.asarray(out, dtype=np.uint64)


def build_fingerprint(*text_sets: Sequence[str]) -> np.ndarray:
    """Sorted unique hashes of every text in the given sets (e.g. train and val)."""
    parts = [text_hashes(texts) for texts in text_sets]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)


def save_fingerprint(directory: str | Path, fingerprint: np.ndarray) -> Path:
    path = Path(directory) / FINGERPRINT_FILE
    np.save(path, np.asarray(fingerprint, dtype=np.uint64), allow_pickle=False)
    return path


def load_fingerprint(directory: str | Path) -> np.ndarray | None:
    """The fingerprint in a model folder, or None for a model saved before fingerprints existed."""
    path = Path(directory) / FINGERPRINT_FILE
    return np.load(path, allow_pickle=False) if path.is_file() else None


def unseen_mask(texts: Sequence[str], *fingerprints: np.ndarray | None) -> np.ndarray:
    """True where a text is in none of the given fingerprints (None = unknown, ignored)."""
    hashes = text_hashes(texts)
    mask = np.ones(len(hashes), dtype=bool)
    for fp in fingerprints:
        if fp is not None:
            mask &= ~np.isin(hashes, fp)
    return mask
