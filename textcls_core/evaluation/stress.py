"""Robustness stress tests: perturb test texts, re-predict, and measure what changes.

Every perturbation is a pure `(text, rng, ctx) -> text` function, seeded per (seed, name, row) so a result
is reproducible and does not depend on which other perturbations run. `run_stress` scores the unperturbed
and the perturbed texts through the classifier's public `predict_proba` on raw text (what a caller sends),
and `write_stress_report` writes stress.json, two CSVs and a self-contained stress.html.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from textcls_core.evaluation.html import render_report, table_html
from textcls_core.runtime.config import BUILTIN_PERTURBATIONS, StressConfig, StressRule


class ProbaClassifier(Protocol):
    labels: list[str]

    def predict_proba(self, texts: list[str], batch_size: int = 256) -> np.ndarray: ...


@dataclass(frozen=True)
class _Context:
    rate: float
    long_chars: int


# -- the built-in perturbations -------------------------------------------------------------------------------

@lru_cache(maxsize=2)
def _opencc(config: str):
    import opencc

    return opencc.OpenCC(config)


def _traditional(text: str, rng: random.Random, ctx: _Context) -> str:
    return _opencc("s2t").convert(text)


def _script_round_trip(text: str, rng: random.Random, ctx: _Context) -> str:
    # s2t is one-to-many (发 -> 發/髮, 后 -> 後/后): the way back does not always land on the original character
    return _opencc("t2s").convert(_opencc("s2t").convert(text))


_HALF_TO_CN_PUNCT = {",": "，", ".": "。", "!": "！", "?": "？", ";": "；", ":": "：", "(": "（", ")": "）"}
_CN_TO_HALF_PUNCT = {v: k for k, v in _HALF_TO_CN_PUNCT.items()}


def _fullwidth(text: str, rng: random.Random, ctx: _Context) -> str:
    """ASCII letters/digits to full-width forms; Chinese punctuation to ASCII and ASCII punctuation to Chinese."""
    out = []
    for ch in text:
        if ch in _CN_TO_HALF_PUNCT:
            out.append(_CN_TO_HALF_PUNCT[ch])
        elif ch in _HALF_TO_CN_PUNCT:
            out.append(_HALF_TO_CN_PUNCT[ch])
        elif ch.isascii() and ch.isalnum():
            out.append(chr(ord(ch) + 0xFEE0))
        else:
            out.append(ch)
    return "".join(out)


_EMOJI = ["😀", "😂", "👍", "🔥", "😭", "❤️", "🙏", "😡", "🎉", "🤔"]


def _insert(text: str, piece: str, rng: random.Random) -> str:
    pos = rng.randint(0, len(text))
    return text[:pos] + piece + text[pos:]


def _noise_emoji(text: str, rng: random.Random, ctx: _Context) -> str:
    for _ in range(rng.randint(1, 3)):
        text = _insert(text, rng.choice(_EMOJI), rng)
    return text


def _noise_url(text: str, rng: random.Random, ctx: _Context) -> str:
    slug = "".join(rng.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(7))
    return _insert(text, f" https://t.cn/{slug} ", rng)


def _noise_email(text: str, rng: random.Random, ctx: _Context) -> str:
    user = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6))
    return _insert(text, f" {user}{rng.randint(1, 999)}@qq.com ", rng)


def _noise_phone(text: str, rng: random.Random, ctx: _Context) -> str:
    number = f"1{rng.choice('3456789')}{rng.randint(0, 999999999):09d}"
    return _insert(text, f" {number} ", rng)


_PUNCT = set("，。！？；：、,.!?;:…~")


def _noise_punct(text: str, rng: random.Random, ctx: _Context) -> str:
    """Every punctuation mark repeated 2-5 times; a text without any gets a trailing run of ！ or ?."""
    if not any(ch in _PUNCT for ch in text):
        return text + rng.choice("！?。") * rng.randint(2, 5)
    return "".join(ch * rng.randint(2, 5) if ch in _PUNCT else ch for ch in text)


def _noise_whitespace(text: str, rng: random.Random, ctx: _Context) -> str:
    return "".join(ch + (rng.choice([" ", "  ", "\t", "\n", "\u3000"]) if rng.random() < ctx.rate else "") for ch in text)


@lru_cache(maxsize=1)
def _level1_hanzi() -> str:
    """GB2312 level-1 hanzi (3,755 most common), the pool of random typos."""
    chars = []
    for hi in range(0xB0, 0xD8):
        for lo in range(0xA1, 0xFF):
            try:
                chars.append(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return "".join(chars)


@lru_cache(maxsize=1)
def _homophone_index() -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """(char -> first toned reading, toned reading -> chars with it), over GB2312 level 1: the 3,755 everyday hanzi
    an IME offers first, so a typo lands on a character people actually type."""
    from pypinyin.pinyin_dict import pinyin_dict

    reading: dict[str, str] = {}
    by_reading: dict[str, list[str]] = {}
    level1 = set(_level1_hanzi())
    for code, value in pinyin_dict.items():
        ch = chr(code)
        if ch in level1:
            first = value.split(",")[0]
            reading[ch] = first
            by_reading.setdefault(first, []).append(ch)
    return reading, {k: tuple(sorted(v)) for k, v in by_reading.items()}


def _homophone(text: str, rng: random.Random, ctx: _Context) -> str:
    """Each hanzi, with probability rate, becomes another common hanzi with the same toned pinyin (an IME typo)."""
    reading, by_reading = _homophone_index()
    out = []
    for ch in text:
        if ch in reading and rng.random() < ctx.rate:
            others = [c for c in by_reading[reading[ch]] if c != ch]
            out.append(rng.choice(others) if others else ch)
        else:
            out.append(ch)
    return "".join(out)


def _char_swap(text: str, rng: random.Random, ctx: _Context) -> str:
    """Each hanzi, with probability rate, becomes a random common hanzi."""
    pool = _level1_hanzi()
    return "".join(rng.choice(pool) if "\u4e00" <= ch <= "\u9fff" and rng.random() < ctx.rate else ch for ch in text)


def _truncate_half(text: str, rng: random.Random, ctx: _Context) -> str:
    return text[: max(1, len(text) // 2)] if text else text


_CLAUSE = re.compile(r"[^，。！？；,.!?;\n]+[，。！？；,.!?;\n]*")


def _clause_shuffle(text: str, rng: random.Random, ctx: _Context) -> str:
    """Clauses (each with its trailing punctuation) in a random order; one-clause texts stay as they are."""
    clauses = _CLAUSE.findall(text)
    if len(clauses) < 2 or "".join(clauses) != text:
        return text
    order = clauses[:]
    rng.shuffle(order)
    return "".join(order)


def _empty(text: str, rng: random.Random, ctx: _Context) -> str:
    return ""


def _whitespace(text: str, rng: random.Random, ctx: _Context) -> str:
    return rng.choice([" ", "   ", "\t", "\n", " \u3000 \n"])


def _one_char(text: str, rng: random.Random, ctx: _Context) -> str:
    return text[:1]


def _very_long(text: str, rng: random.Random, ctx: _Context) -> str:
    """The text repeated (joined by 。) up to long_chars characters: the model's own length bound must cope."""
    if not text:
        return text
    unit = text + "。"
    return (unit * (ctx.long_chars // len(unit) + 1))[: ctx.long_chars]


PERTURBATIONS: dict[str, Callable[[str, random.Random, _Context], str]] = {
    "traditional": _traditional, "script_round_trip": _script_round_trip, "fullwidth": _fullwidth,
    "noise_emoji": _noise_emoji, "noise_url": _noise_url, "noise_email": _noise_email, "noise_phone": _noise_phone,
    "noise_punct": _noise_punct, "noise_whitespace": _noise_whitespace, "homophone": _homophone, "char_swap": _char_swap,
    "truncate_half": _truncate_half, "clause_shuffle": _clause_shuffle, "empty": _empty, "whitespace": _whitespace,
    "one_char": _one_char, "very_long": _very_long,
}
assert tuple(PERTURBATIONS) == BUILTIN_PERTURBATIONS, "keep config.BUILTIN_PERTURBATIONS in step with this table"


def _rule_function(rule: StressRule) -> Callable[[str, random.Random, _Context], str]:
    """A user rule from YAML: each regex match (or each mapped character) is replaced with probability rule.rate."""
    if rule.regex:
        pattern = re.compile(rule.regex)

        def apply_regex(text: str, rng: random.Random, ctx: _Context) -> str:
            return pattern.sub(lambda m: m.expand(rule.replace) if rng.random() < rule.rate else m.group(0), text)

        return apply_regex

    def apply_map(text: str, rng: random.Random, ctx: _Context) -> str:
        return "".join(rule.char_map[ch] if ch in rule.char_map and rng.random() < rule.rate else ch for ch in text)

    return apply_map


def perturb_texts(texts: Sequence[str], name: str, cfg: StressConfig, seed: int) -> list[str]:
    """`texts` under the named built-in perturbation or user rule; row i's randomness depends only on (seed, name, i)."""
    rules = {r.name: r for r in cfg.rules}
    fn = _rule_function(rules[name]) if name in rules else PERTURBATIONS[name]
    ctx = _Context(cfg.rate, cfg.long_chars)
    return [fn(str(t), random.Random(f"{seed}/{name}/{i}"), ctx) for i, t in enumerate(texts)]


def perturbation_names(cfg: StressConfig) -> list[str]:
    """What runs: stress.perturbations in order ('all' = every built-in), then every user rule."""
    builtin = [n for name in cfg.perturbations for n in (BUILTIN_PERTURBATIONS if name == "all" else (name,))]
    return list(dict.fromkeys([*builtin, *(r.name for r in cfg.rules)]))


# -- scoring ---------------------------------------------------------------------------------------------------

@dataclass
class StressResult:
    labels: list[str]
    n: int
    clean: dict[str, float]                       # accuracy / macro_f1 on the unperturbed sample
    table: pd.DataFrame                           # one row per perturbation
    examples: pd.DataFrame                        # most-changed rows of every perturbation
    extra: dict[str, Any] = field(default_factory=dict)


def _scores(y: np.ndarray, pred: np.ndarray, n_classes: int) -> tuple[float, float]:
    acc = float((pred == y).mean()) if len(y) else 0.0
    f1 = float(f1_score(y, pred, labels=list(range(n_classes)), average="macro", zero_division=0)) if len(y) else 0.0
    return acc, f1


def sample_rows(frame: pd.DataFrame, max_texts: int, seed: int) -> pd.DataFrame:
    """A seeded random subsample of at most max_texts rows (0 = all), in the original order."""
    if max_texts and len(frame) > max_texts:
        frame = frame.sample(n=max_texts, random_state=seed).sort_index()
    return frame.reset_index(drop=True)


def _predict_by_length(clf: ProbaClassifier, texts: list[str], batch_size: int) -> np.ndarray:
    """predict_proba with the texts sent shortest first (batches pad to their longest), rows back in input order.

    Perturbations change lengths (empty, very_long, truncation), so unsorted batches would pad short texts to
    2,000-character neighbours; sorting cuts the padded work without changing any row's result.
    """
    first: dict[str, int] = {}
    index = np.array([first.setdefault(t, len(first)) for t in texts], dtype=np.int64)  # a repeated text is scored once
    unique = list(first)
    order = np.argsort([len(t) for t in unique], kind="stable")
    probs = clf.predict_proba([unique[i] for i in order], batch_size)
    out = np.empty_like(probs)
    out[order] = probs
    return out[index] if len(texts) else out


_WORKER: dict[str, Any] = {}


def _init_worker(model_dir: str) -> None:
    import torch

    from textcls_core.modeling.classifiers import load_classifier

    torch.set_num_threads(1)  # one core per worker: the pool has as many workers as the run has cores
    _WORKER["clf"] = load_classifier(model_dir)


ORIGINAL = ""  # the stream's first item: the texts as they are (the predictions every perturbation is compared with)


def _perturbed(texts: list[str], name: str, cfg: StressConfig, seed: int) -> list[str]:
    return list(texts) if name == ORIGINAL else perturb_texts(texts, name, cfg, seed)


def _perturb_and_predict(texts: list[str], name: str, cfg: StressConfig, seed: int, batch_size: int) -> tuple[list[str], np.ndarray]:
    perturbed = _perturbed(texts, name, cfg, seed)
    return perturbed, _predict_by_length(_WORKER["clf"], perturbed, batch_size)


def _expected_chars(name: str, texts: list[str], cfg: StressConfig) -> int:
    """About how many characters a perturbation gives the model (its cost): very_long makes every text long_chars."""
    return len(texts) * cfg.long_chars if name == "very_long" else sum(map(len, texts))


def _perturbed_predictions(clf: ProbaClassifier, texts: list[str], names: list[str], cfg: StressConfig, seed: int,
                           batch_size: int, workers: int, model_dir: str,
                           on_pool: Callable[[Any], None] | None = None) -> Iterator[tuple[str, list[str], np.ndarray]]:
    """(name, perturbed texts, probabilities) per perturbation, in `names` order (ORIGINAL: the texts unchanged).
    With workers > 1 and the model's folder, the perturbations are shared out to a pool of processes (fork server),
    each with the model loaded once; a perturbation's texts depend only on (seed, name, row), so the results are
    those of the sequential loop. on_pool: called with the pool once it exists (so a caller can stop it)."""
    if workers <= 1 or not model_dir or len(names) < 2:
        for name in names:
            perturbed = _perturbed(texts, name, cfg, seed)
            yield name, perturbed, _predict_by_length(clf, perturbed, batch_size)
        return
    from concurrent.futures import ProcessPoolExecutor

    from textcls_core.runtime.procs import safe_mp_context

    with ProcessPoolExecutor(min(workers, len(names)), mp_context=safe_mp_context(["textcls_core.evaluation.stress"]),
                             initializer=_init_worker, initargs=(model_dir,)) as pool:
        if on_pool is not None:
            on_pool(pool)
        # the largest first, so the pool's workers finish together (very_long, 1,000 x long_chars characters, last in
        # the list, took 2.4 of the 7.5 s alone and kept one worker busy while the other had nothing left)
        futures = {name: pool.submit(_perturb_and_predict, texts, name, cfg, seed, batch_size)
                   for name in sorted(names, key=lambda n: -_expected_chars(n, texts, cfg))}
        for name, future in ((n, futures[n]) for n in names):
            perturbed, probs = future.result()
            yield name, perturbed, probs


def run_stress(clf: ProbaClassifier, texts: Sequence[str], labels: Sequence[str], cfg: StressConfig, seed: int,
               batch_size: int = 256, workers: int = 1, model_dir: str = "",
               on_pool: Callable[[Any], None] | None = None) -> StressResult:
    """Predict the texts and every perturbation of them; accuracy/F1 vs unperturbed, flips, confidence change.
    workers > 1 with model_dir (clf's saved folder): the original texts and the perturbations in that many
    processes (this process only waits and compares), same results. on_pool: see _perturbed_predictions."""
    names = perturbation_names(cfg)
    ids = {name: i for i, name in enumerate(clf.labels)}
    y = np.array([ids.get(str(lab), -1) for lab in labels])
    texts = [str(t) for t in texts]
    stream = _perturbed_predictions(clf, texts, [ORIGINAL, *names], cfg, seed, batch_size, workers, model_dir, on_pool)
    _, _, base = next(stream)
    base_pred = base.argmax(axis=1)
    rows_idx = np.arange(len(texts))
    base_conf = base[rows_idx, base_pred]
    acc0, f10 = _scores(y, base_pred, len(clf.labels))
    rows, examples = [], []
    for name, perturbed, probs in stream:
        pred = probs.argmax(axis=1)
        acc, f1 = _scores(y, pred, len(clf.labels))
        flipped = pred != base_pred
        # change in the probability of the class predicted on the original text: < 0 = the model is less sure
        conf_change = probs[rows_idx, base_pred] - base_conf
        rows.append({"perturbation": name, "changed_rate": float(np.mean([p != t for p, t in zip(perturbed, texts)])) if texts else 0.0,
                     "accuracy": acc, "accuracy_delta": acc - acc0, "macro_f1": f1, "macro_f1_delta": f1 - f10,
                     "flip_rate": float(flipped.mean()) if len(texts) else 0.0,
                     "confidence_change": float(conf_change.mean()) if len(texts) else 0.0})
        # most changed: flips first, then the largest drop of the original class's probability
        order = sorted(rows_idx, key=lambda i: (not flipped[i], conf_change[i]))[: cfg.top_examples]
        for i in order:
            examples.append({"perturbation": name, "row": int(i), "label": str(labels[i]), "original": texts[i][:300],
                             "perturbed": perturbed[i][:300] + ("…" if len(perturbed[i]) > 300 else ""),
                             "original_pred": clf.labels[base_pred[i]], "perturbed_pred": clf.labels[pred[i]],
                             "flipped": bool(flipped[i]), "original_conf": float(base_conf[i]),
                             "conf_change": float(conf_change[i])})
    cols = ["perturbation", "row", "label", "original", "perturbed", "original_pred", "perturbed_pred", "flipped",
            "original_conf", "conf_change"]
    return StressResult(list(clf.labels), len(texts), {"accuracy": acc0, "macro_f1": f10}, pd.DataFrame(rows),
                        pd.DataFrame(examples, columns=cols))


def flat_stress_metrics(result: StressResult) -> dict[str, float]:
    """Scalar metrics for MLflow: stress_<name>_{accuracy,accuracy_delta,macro_f1,macro_f1_delta,flip_rate,confidence_change}."""
    out = {"stress_clean_accuracy": result.clean["accuracy"], "stress_clean_macro_f1": result.clean["macro_f1"],
           "stress_texts": float(result.n)}
    for row in result.table.to_dict("records"):
        for key in ("accuracy", "accuracy_delta", "macro_f1", "macro_f1_delta", "flip_rate", "confidence_change"):
            out[f"stress_{row['perturbation']}_{key}"] = float(row[key])
    if not result.table.empty:
        out["stress_max_flip_rate"] = float(result.table["flip_rate"].max())
    return out


def read_flip_rates(stress_json: str | Path) -> dict[str, float]:
    """{perturbation: flip rate} from a stress.json written by write_stress_report; {} when the stage did not run."""
    path = Path(stress_json)
    if not path.is_file():
        return {}
    return {r["perturbation"]: float(r["flip_rate"]) for r in json.loads(path.read_text(encoding="utf-8"))["perturbations"]}


def flip_rate_checks(flip_rates: dict[str, float], limits: dict[str, float]) -> list[dict]:
    """Gate checks for registry.max_flip_rate: {perturbation or 'default': limit}; empty limits = no check.

    'default' applies to every perturbation without its own limit. A limit on a perturbation that did not run
    fails, so a gate is never skipped silently (e.g. stress.enabled=false with limits set).
    """
    if not limits:
        return []
    checks = []
    if not flip_rates and "default" in limits:
        checks.append({"check": "max_flip_rate", "passed": False,
                       "detail": "stress flip rates not measured (set stress.enabled=true or clear registry.max_flip_rate)"})
    for name in sorted(set(flip_rates) | (set(limits) - {"default"})):
        limit = limits.get(name, limits.get("default"))
        if limit is None:
            continue
        if name not in flip_rates:
            checks.append({"check": "max_flip_rate", "passed": False,
                           "detail": f"stress flip rate of '{name}' not measured (set stress.enabled=true and list it in stress.perturbations)"})
            continue
        checks.append({"check": "max_flip_rate", "passed": flip_rates[name] <= limit,
                       "detail": f"stress flip rate {name} {flip_rates[name]:.4f} <= {limit:.4f}"})
    return checks


# -- files -----------------------------------------------------------------------------------------------------

def stress_markdown(result: StressResult, title: str) -> str:
    lines = [f"## {title}", f"{result.n} texts; unperturbed accuracy {result.clean['accuracy']:.4f}, "
             f"macro-F1 {result.clean['macro_f1']:.4f}", "",
             "| perturbation | changed | accuracy | Δacc | macro-F1 | ΔF1 | flip rate | Δconfidence |", "|---|---|---|---|---|---|---|---|"]
    for r in result.table.to_dict("records"):
        lines.append(f"| {r['perturbation']} | {r['changed_rate']:.2f} | {r['accuracy']:.4f} | {r['accuracy_delta']:+.4f} | "
                     f"{r['macro_f1']:.4f} | {r['macro_f1_delta']:+.4f} | {r['flip_rate']:.4f} | {r['confidence_change']:+.4f} |")
    return "\n".join(lines) + "\n"


def write_stress_report(result: StressResult, out_dir: str | Path, title: str, max_rows: int = 1000) -> dict[str, Path]:
    """Write stress.json, stress_table.csv, stress_examples.csv, stress.md and a self-contained stress.html."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    files = {"json": d / "stress.json", "table": d / "stress_table.csv", "examples": d / "stress_examples.csv",
             "md": d / "stress.md", "html": d / "stress.html"}
    payload = {"n": result.n, "labels": result.labels, "clean": result.clean, "perturbations": result.table.to_dict("records")}
    files["json"].write_text(json.dumps(payload, ensure_ascii=False, indent=2), encoding="utf-8")
    result.table.to_csv(files["table"], index=False, encoding="utf-8")
    result.examples.to_csv(files["examples"], index=False, encoding="utf-8")
    files["md"].write_text(stress_markdown(result, title), encoding="utf-8")
    intro = (f'<p>{result.n} texts. Unperturbed: accuracy {result.clean["accuracy"]:.4f}, macro-F1 {result.clean["macro_f1"]:.4f}. '
             "changed_rate = share of texts the perturbation altered; flip_rate = share whose predicted label changed; "
             "confidence_change = mean change of the probability of the label predicted on the original text.</p>")
    sections = [("Perturbations", intro + table_html(result.table))]
    for name, group in result.examples.groupby("perturbation", sort=False):
        sections.append((f"Most changed: {name}", table_html(group.drop(columns=["perturbation"]), max_rows)))
    files["html"].write_text(render_report(title, sections), encoding="utf-8")
    return files
