"""Hyper-parameter search space: parsed from `tune.space`, checked against the config schema, sampled by Optuna.

A space maps dotted config keys to a range or a list of choices:

    tune:
      space:
        train.lr: {low: 0.0003, high: 0.01, log: true}     # float range (log scale)
        model.num_filters: {choices: [64, 128, 256]}        # categorical
        tokenize.min_freq: {low: 1, high: 3}                 # int range (the key is an int in the schema)

Each key must exist in the schema and change the trained model: keys that change which rows are in the
validation split (data, split, row-dropping cleaning rules) would make trials incomparable, and keys that only
say where or how fast a run goes (devices, checkpoints, progress bars) have nothing to tune. Every endpoint and
choice is validated as a config value, so a range the schema would refuse fails before any server starts.
Pure: no Prefect, no MLflow. Optuna is only used through the `trial` object handed to `suggest`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # textcls_core.runtime.config imports this module to validate tune.space
    from textcls_core.runtime.config import Config

TUNABLE_SECTIONS = ("model", "train", "tokenize", "clean")
# keys in those sections that change the validation rows, the objective, or only the mechanics of a run
FIXED_KEYS = {
    "clean.drop_duplicates": "it changes which rows are in the validation split, so trials would not be comparable",
    "clean.conflict_policy": "it changes which rows are in the validation split, so trials would not be comparable",
    "clean.min_chars": "it changes which rows are in the validation split, so trials would not be comparable",
    "clean.max_chars": "it changes which rows are in the validation split, so trials would not be comparable",
    "clean.max_drop_share": "it is a data gate, not a model setting",
    "clean.min_class_examples": "it is a data gate, not a model setting",
    "model.candidates": "each trial trains model.name; the final run compares the candidates of the best config",
    "train.select_metric": "it is the search objective; set it outside tune.space",
    **{f"train.{k}": "it says where or how a run goes, not what model it trains" for k in (
        "devices", "nnodes", "node_rank", "master_addr", "master_port", "device", "resume", "retries",
        "checkpoint_every", "progress", "num_threads", "num_workers", "compile", "deterministic")},
}
RANGE_KEYS = {"low", "high", "log", "step"}


@dataclass(frozen=True)
class Param:
    """One searched key: a range (low/high, log, step) or choices (stored in Optuna as JSON strings when any
    choice is not a plain scalar, e.g. model.kernel_sizes: {choices: [[2, 3], [1, 2, 3]]})."""

    key: str
    kind: str  # "int", "float" or "choice"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    @property
    def encoded(self) -> bool:
        return self.kind == "choice" and any(not isinstance(c, (str, int, float, bool)) or c is None for c in self.choices)

    def suggest(self, trial: Any) -> Any:
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)
        if self.encoded:
            return json.loads(trial.suggest_categorical(self.key, [json.dumps(c) for c in self.choices]))
        return trial.suggest_categorical(self.key, list(self.choices))

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not self.low <= value <= self.high:
            return False
        if self.step:
            k = (value - self.low) / self.step
            return math.isclose(k, round(k), abs_tol=1e-9)
        return self.kind == "float" or float(value).is_integer()

    def stored(self, value: Any) -> Any:
        """The value as Optuna stores it (for enqueueing a point)."""
        return json.dumps(value) if self.encoded else value


def _field_kind(key: str) -> str:
    from textcls_core.runtime.config import Config

    section, _, name = key.partition(".")
    annotation = Config.model_fields[section].annotation.model_fields[name].annotation  # type: ignore[union-attr]
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    return "other"


def parse_space(space: dict[str, Any], base: "Config") -> tuple[dict[str, Param], list[str]]:
    """The space as Params, and every problem found (one line each, naming the key and the fix)."""
    from textcls_core.runtime.config import Config, _unknown_key_message

    params: dict[str, Param] = {}
    problems: list[str] = []
    base_raw = base.model_dump(mode="json")
    for key, spec in (space or {}).items():
        section, dot, name = str(key).partition(".")
        if not dot or section not in Config.model_fields or name not in Config.model_fields[section].annotation.model_fields:  # type: ignore[union-attr]
            problems.append(f"tune.space: {_unknown_key_message(str(key)) if dot else f'key {key!r} must be SECTION.KEY, e.g. train.lr'}")
            continue
        if section not in TUNABLE_SECTIONS:
            problems.append(f"tune.space: '{key}' cannot be searched: only {', '.join(s + '.*' for s in TUNABLE_SECTIONS)} keys change "
                            "the model on the same validation rows; set it outside tune.space")
            continue
        if key in FIXED_KEYS:
            problems.append(f"tune.space: '{key}' cannot be searched: {FIXED_KEYS[key]}; remove it from tune.space")
            continue
        example = f"e.g. {key}: {{low: 1, high: 10}} or {key}: {{choices: [a, b]}}"
        if not isinstance(spec, dict) or not spec:
            problems.append(f"tune.space.{key} = {spec!r}: give a range or choices, {example}")
            continue
        unknown = set(spec) - RANGE_KEYS - {"choices"}
        if unknown:
            problems.append(f"tune.space.{key}: unknown field(s) {', '.join(sorted(map(str, unknown)))}; allowed: low, high, log, step or choices ({example})")
            continue
        if "choices" in spec:
            choices = spec["choices"]
            if set(spec) - {"choices"}:
                problems.append(f"tune.space.{key}: give either choices or low/high, not both ({example})")
                continue
            if not isinstance(choices, list) or not choices:
                problems.append(f"tune.space.{key}: choices is empty; list at least one value ({example})")
                continue
            param = Param(str(key), "choice", choices=tuple(choices))
            points = list(choices)
        else:
            kind = _field_kind(str(key))
            if kind == "other":
                problems.append(f"tune.space.{key}: '{key}' is not a number, so it takes choices, e.g. {key}: {{choices: [...]}}")
                continue
            low, high, log, step = spec.get("low"), spec.get("high"), spec.get("log", False), spec.get("step")
            nums = [v for v in (low, high, step) if v is not None]
            if low is None or high is None or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in nums):
                problems.append(f"tune.space.{key}: low and high must be numbers ({example})")
                continue
            if not isinstance(log, bool):
                problems.append(f"tune.space.{key}: log must be true or false")
                continue
            if low >= high:
                problems.append(f"tune.space.{key}: the range [{low}, {high}] is empty; low must be below high")
                continue
            if log and low <= 0:
                problems.append(f"tune.space.{key}: a log range needs low > 0, got {low}")
                continue
            if step is not None and (step <= 0 or log):
                problems.append(f"tune.space.{key}: step must be > 0 and cannot be combined with log")
                continue
            if kind == "int" and not all(float(v).is_integer() for v in nums):
                problems.append(f"tune.space.{key}: '{key}' is an integer; low, high and step must be whole numbers")
                continue
            param = Param(str(key), kind, float(low), float(high), log, float(step) if step is not None else None)
            points = [int(low), int(high)] if kind == "int" else [float(low), float(high)]
        bad = _invalid_points(base_raw, str(key), points)
        if bad:
            problems.append(f"tune.space.{key}: {bad}")
            continue
        params[str(key)] = param
    return params, problems


def _invalid_points(base_raw: dict[str, Any], key: str, points: list[Any]) -> str:
    """The first endpoint or choice the key's section refuses, as one message ('' when all are valid). Checked
    per section (fast: configs are built often); a combination only the whole config refuses (a kernel wider than
    tokenize.max_len) fails that one trial with the schema's message."""
    from pydantic import ValidationError

    from textcls_core.runtime.config import Config

    section, _, name = key.partition(".")
    model = Config.model_fields[section].annotation
    for value in points:
        try:
            model.model_validate({**base_raw[section], name: value})  # type: ignore[union-attr]
        except ValidationError as exc:
            return f"the value {value!r} is not a valid {key}: {exc.errors()[0]['msg']}"
    return ""


def suggest(trial: Any, params: dict[str, Param]) -> dict[str, Any]:
    """One point of the space, drawn through an Optuna trial; keys are dotted config keys."""
    return {key: p.suggest(trial) for key, p in params.items()}


def apply(base: "Config", point: dict[str, Any]) -> "Config":
    """The base config with the point's values (validated: a combination the schema refuses raises ConfigError)."""
    from textcls_core.runtime.config import build_config

    raw = base.model_dump(mode="json")
    for key, value in point.items():
        section, _, name = key.partition(".")
        raw[section] = {**raw[section], name: value}
    return build_config(raw, source="tune trial")


def default_point(base: "Config", params: dict[str, Param]) -> dict[str, Any]:
    """The base config's own values for the searched keys (as Optuna stores them), where they lie inside the space:
    enqueued as the first trial, so the study measures the default config beside what the search finds."""
    out = {}
    for key, p in params.items():
        section, _, name = key.partition(".")
        value = getattr(getattr(base, section), name)
        if p.contains(value):
            out[key] = p.stored(value)
    return out
