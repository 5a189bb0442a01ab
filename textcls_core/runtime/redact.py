"""Keep credentials out of logs and files: URIs lose their user info before they are logged, written or printed.

`postgresql://user:password@db:5432/mlflow` becomes `postgresql://***@db:5432/mlflow`; query parameters that carry
secrets (password=, token=, ...) are masked too. The real URI stays in memory, where clients need it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
_SECRET_QUERY_KEYS = re.compile(r"pass|secret|token|key|credential|auth", re.IGNORECASE)
# scheme://userinfo@ anywhere in a longer text (a log line, an error message)
_USERINFO_IN_TEXT = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@'\"]+@")


def redact_uri(uri: str) -> str:
    """The URI without its user info and with secret-looking query values masked; anything else unchanged."""
    if "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:
        return redact_text(uri)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_QUERY_KEYS.search(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _SECRET_QUERY_KEYS.search(k) else v) for k, v in pairs], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return uri  # untouched, byte for byte (urlunsplit would rewrite sqlite:////abs/path)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every `scheme://user:password@` in a free text (an error message, a log line) with the user info masked."""
    return _USERINFO_IN_TEXT.sub(lambda m: f"{m.group(1)}{MASK}@", text)


def redact_values(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings) with every URI in it redacted."""
    if isinstance(value, str):
        return redact_text(redact_uri(value)) if "://" in value else value
    if isinstance(value, dict):
        return {k: redact_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_values(v) for v in value]
    return value


def is_redacted(uri: str) -> bool:
    """True when redact_uri changed something in this URI (it carried credentials)."""
    return redact_uri(uri) != uri
