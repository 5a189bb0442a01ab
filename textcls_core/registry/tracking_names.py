"""Names and values as a tracking server accepts them, made from user data (class names, file names).

MLflow refuses a metric or param name with characters outside letters, digits, `_ - . : /` and space, a name
that is not a normalised path (`a//b`, `..`), a key over 250 characters, a tag value over 8,000 and a param value
over 6,000. Class names come from users' files (`好评/差评`, `A&B`, `..`), so they are escaped here and a run
never crashes on them. Pure: no MLflow import (the limits are MLflow 3's documented ones).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

MAX_KEY = 250
MAX_TAG_VALUE = 8000
MAX_PARAM_VALUE = 6000
_BAD = re.compile(r"[^\w.\- ]+")  # one path segment: no slash or colon of its own


def name_segment(text: str) -> str:
    """One segment of a metric name from free text: disallowed characters (slashes included) become `_`, spaces
    at the ends and dot-only names (`.`, `..`) are replaced, so `test_f1/<segment>` is always a valid name."""
    seg = _BAD.sub("_", str(text)).strip()
    if not seg or set(seg) <= {"."}:
        seg = "_" * max(1, len(seg))
    return seg


def per_class_keys(prefix: str, labels: Iterable[str], limit: int = MAX_KEY) -> dict[str, str]:
    """label -> `<prefix>/<label segment>`, unique and within the key length (collisions get `_2`, `_3`)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for label in labels:
        base = f"{prefix}/{name_segment(label)}"[:limit].rstrip(" ") or prefix
        key, n = base, 1
        while key in used:
            n += 1
            key = f"{base[: limit - len(str(n)) - 1]}_{n}"
        used.add(key)
        out[label] = key
    return out


def clip(value: object, limit: int = MAX_TAG_VALUE) -> str:
    """A tag or param value cut to the server's limit, with a marker when cut."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 14] + " ...[truncated]"


def data_name(path: str) -> str:
    """A short name for a data source: the file's stem, or the built-in corpus name."""
    if path.startswith("builtin:"):
        return path.removeprefix("builtin:")
    return Path(path.split("?")[0].rstrip("/")).stem or "data"


def run_name(model: str, data_path: str, when: datetime | None = None) -> str:
    """`<model>-<data>-<YYYYmmdd-HHMMSS>`: readable in the MLflow runs table and the Prefect flow run list alike."""
    stamp = (when or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return f"{name_segment(model)}-{name_segment(data_name(data_path))[:60]}-{stamp}".replace(" ", "_")
