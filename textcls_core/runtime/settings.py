"""Config values from `TEXTCLS_<SECTION>__<KEY>` environment variables, read with pydantic-settings.

How a worker or a container is pointed at its folders and servers without editing a YAML file, e.g.
TEXTCLS_RUN__OUTPUT_DIR=/data/runs, TEXTCLS_RUN__CACHE_DIR=/data/cache, TEXTCLS_TRACKING__URI=http://mlflow:5000.
Precedence (one rule everywhere): --set and flow parameters > the YAML file > these variables > the defaults.
The environment only fills keys the YAML/parameters leave out; `Config` applies it while it validates.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "TEXTCLS_"
NESTED_DELIMITER = "__"
# `prefect deploy` leaves `{{ $NAME }}` as is when NAME was not set at deploy time
_UNRESOLVED_PLACEHOLDER = re.compile(r"\{\{\s*\$\w+\s*\}\}")


def env_name(section: str, key: str) -> str:
    """The variable that sets `section.key`, e.g. TEXTCLS_RUN__OUTPUT_DIR."""
    return f"{ENV_PREFIX}{section.upper()}{NESTED_DELIMITER}{key.upper()}"


def _parse_value(raw: str) -> Any:
    """Read like a --set value (YAML), so `3`, `1e-3`, `true`, `[2,3]` get their natural types."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def read_env_settings(sections: Mapping[str, set[str]]) -> dict[str, dict[str, Any]]:
    """{section: {key: value}} for every TEXTCLS_<SECTION>__<KEY> variable set; raises ValueError naming each unknown one.

    sections maps a section name to its allowed keys. Variables without the `__` delimiter (e.g. TEXTCLS_HOME) are
    not config keys and are left alone; a value that is an unresolved Prefect placeholder counts as unset.
    """
    model = create_model("TextclsEnvSettings", __base__=BaseSettings,
                         **{name: (dict[str, str], {}) for name in sections})  # type: ignore[call-overload]
    model.model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter=NESTED_DELIMITER,
                                            case_sensitive=False, extra="ignore")
    problems = []
    for name in os.environ:
        section, sep, key = name.upper().removeprefix(ENV_PREFIX).partition(NESTED_DELIMITER)
        if not name.upper().startswith(ENV_PREFIX) or not sep:
            continue
        if section.lower() not in sections:
            hint = difflib.get_close_matches(section.lower(), list(sections), n=1)
            problems.append(f"environment variable {name}: unknown section '{section.lower()}'"
                            + (f"; did you mean {env_name(hint[0], key)}?" if hint else f"; allowed: {', '.join(sections)}"))
        elif key.lower() not in sections[section.lower()]:
            hint = difflib.get_close_matches(key.lower(), sorted(sections[section.lower()]), n=1)
            problems.append(f"environment variable {name}: unknown key '{section.lower()}.{key.lower()}'"
                            + (f"; did you mean {env_name(section, hint[0])}?" if hint else ""))
    if problems:
        raise ValueError("; ".join(problems) + ". Rename or unset the variable.")
    settings = model()
    return {section: {key.lower(): _parse_value(value) for key, value in values.items()
                      if not _UNRESOLVED_PLACEHOLDER.search(value)}
            for section, values in settings.model_dump().items() if values}


def fill_from_env(data: Any, sections: Mapping[str, set[str]]) -> Any:
    """Add environment values for the keys `data` (a raw config dict) leaves out; explicit values always win.

    A section given as a model instance is taken whole (it was validated already); only dicts are filled.
    """
    if not isinstance(data, dict):
        return data
    env = read_env_settings(sections)
    if not env:
        return data
    out = dict(data)
    for section, values in env.items():
        given = out.get(section)
        if given is None:
            out[section] = dict(values)
        elif isinstance(given, dict):
            out[section] = {**values, **given}
    return out
