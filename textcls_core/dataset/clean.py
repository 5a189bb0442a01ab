"""Cleaning: ordered text rules, then row filters, each counted with examples; every dropped row has a reason.

Invariants: len(input) == len(kept) + len(dropped); cleaning is a fixpoint (clean(clean(x)) == clean(x)), so a
text that went through it once is never changed by a second pass; and the work per text is bounded: every text is
cut to what the model can read (text_limits) before the rules and segmentation run.
The same function (prepare_texts) turns raw text into model text at training, evaluation and prediction time.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Iterable
from functools import lru_cache

import pandas as pd

from textcls_core.runtime.config import CleanConfig
from textcls_core.runtime.errors import DataError

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u2060\ufeff]")
_SPACE = re.compile(r"\s+")
# a tag, but never one of our own placeholders (<URL>, <EMAIL>, <PHONE>), which a second pass must keep
_TAG = re.compile(r"<(?!(?:URL|EMAIL|PHONE)>)\s*/?\s*[a-zA-Z][^<>]{0,500}?>")
_URL = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>\"'，。！？、）)]{1,2000}", re.I)
# bounded repeats: \w also matches CJK, and an unbounded [\w.+-]+ before "@" is quadratic on a long text
_EMAIL = re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}")
# mainland mobiles, landlines with area code, and +86 forms; not any digit run (prices, dates, order numbers stay)
_PHONE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(?:1[3-9]\d{9}|0\d{2,3}-?\d{7,8}|400-?\d{3}-?\d{4})(?!\d)")
_DIGIT = re.compile(r"\d")  # _PHONE's marker: every phone number it matches holds a \d
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200D]")
PLACEHOLDERS = {"urls": "<URL>", "emails": "<EMAIL>", "phones": "<PHONE>"}
# A model reads at most tokenize.max_len tokens; a jieba word or a WordPiece of Chinese text is far shorter than
# this many characters, so cutting the cleaned text here never changes what the model reads in practice, and bounds
# the work: jieba's HMM path copy grows with the square of an unpunctuated run (DESIGN.md).
CHARS_PER_TOKEN = 8
# cleaning shortens texts (tags, URLs, runs of whitespace): the raw text is cut at this many times the clean limit
RAW_CHARS_FACTOR = 4
MAX_PASSES = 8  # rule passes until nothing changes; real texts settle in 1-2 (the last pass only confirms)


def text_limits(max_len: int) -> tuple[int, int]:
    """(raw, clean) character limits for a model reading `max_len` tokens."""
    clean = max_len * CHARS_PER_TOKEN
    return clean * RAW_CHARS_FACTOR, clean


def as_text(value: object) -> str:
    """A prediction input as a string: None/NaN/NA -> "", bytes decoded, anything else str()."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and value != value) or value is getattr(pd, "NA", object()):
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


@lru_cache(maxsize=1)
def _t2s() -> Callable[[str], str]:
    import opencc  # maintained binding of the reference converter; loaded only when the rule is on

    return opencc.OpenCC("t2s").convert


def _strip_html(t: str) -> str:
    """Decode entities and remove tags until nothing changes: `&amp;lt;b&amp;gt;` is `<b>` after two decodes."""
    if "<" not in t and "&" not in t:
        return t
    for _ in range(MAX_PASSES):
        new = _TAG.sub(" ", html.unescape(t))
        if new == t:
            break
        t = new
    return t


def text_rules(cfg: CleanConfig) -> list[tuple[str, Callable[[str], str]]]:
    """The enabled text rules, in the order they run.

    Character-level normalisation runs first, so a full-width or zero-width-split URL, tag or entity is seen by
    the rules after it (else a second pass would find it)."""
    rules: list[tuple[str, Callable[[str], str]]] = []
    if cfg.strip_control:
        rules.append(("control_chars", lambda t: _CONTROL.sub("", t)))
    if cfg.nfkc:
        rules.append(("nfkc", lambda t: unicodedata.normalize("NFKC", t)))
    if cfg.strip_html:
        rules.append(("html", _strip_html))
    # each pattern runs only on texts holding its cheap marker, so most texts cost one substring test
    for name, pattern, marker in (("urls", _URL, lambda t: "://" in t or "www." in t.lower()),
                                  ("emails", _EMAIL, lambda t: "@" in t),
                                  ("phones", _PHONE, lambda t: _DIGIT.search(t) is not None)):
        mode = getattr(cfg, name)
        if mode != "keep":
            repl = f" {PLACEHOLDERS[name]} " if mode == "replace" else " "
            rules.append((name, lambda t, p=pattern, r=repl, m=marker: p.sub(r, t) if m(t) else t))
    if cfg.emoji == "strip":
        rules.append(("emoji", lambda t: _EMOJI.sub("", t)))
    if cfg.traditional_to_simplified:
        rules.append(("traditional_to_simplified", lambda t: _t2s()(t)))
    if cfg.collapse_whitespace:
        rules.append(("whitespace", lambda t: _SPACE.sub(" ", t).strip()))
    return rules


def _to_fixpoint(text: str, rules: list[Callable[[str], str]]) -> str:
    """Every rule, pass after pass, until a pass changes nothing (a clean text costs one pass)."""
    for _ in range(MAX_PASSES):
        new = text
        for rule in rules:
            new = rule(new)
        if new == text:
            break
        text = new
    return text


def normalize_text(text: str, cfg: CleanConfig) -> str:
    """One text through every enabled rule (to the fixpoint)."""
    return normalize_texts([text], cfg)[0]


def normalize_texts(texts: list[str], cfg: CleanConfig) -> list[str]:
    """Many texts through every enabled rule to the fixpoint; the rule list is built once, not per text."""
    rules = [rule for _, rule in text_rules(cfg)]
    return [_to_fixpoint(text, rules) for text in texts]


def _cut_clean(text: str, rules: list[Callable[[str], str]], limit: int) -> str:
    """A cleaned text cut to `limit` characters, cleaned again (a cut can end in a new phone number or a
    trailing space) so the result is still a fixpoint; cleaning almost never lengthens a text, so this settles."""
    for _ in range(3):
        if len(text) <= limit:
            return text
        text = _to_fixpoint(text[:limit], rules)
    return text[:limit]


def prepare_texts(texts: Iterable[object], cfg: CleanConfig, max_len: int) -> list[str]:
    """Raw inputs -> the text the model reads: as strings, cut to the raw limit, cleaned, cut to the clean limit.

    The one preprocessing path of the clean stage, the encoder (training, evaluation, serving) and batch prediction.
    """
    raw_limit, clean_limit = text_limits(max_len)
    rules = [rule for _, rule in text_rules(cfg)]
    return [_cut_clean(_to_fixpoint(as_text(t)[:raw_limit], rules), rules, clean_limit) for t in texts]


def _text_ids(texts: pd.Series) -> pd.Series:
    """Exact integer ids of the texts (pd.factorize): grouping by them instead of by the texts keeps a large
    file's compact text column from being expanded into one Python object per row."""
    return pd.Series(pd.factorize(texts)[0], index=texts.index)


def _resolve_conflicts(df: pd.DataFrame, policy: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    n_labels = df["label"].groupby(_text_ids(df["text"])).transform("nunique")
    conflicted = df[n_labels > 1]
    if conflicted.empty:
        return df, df.iloc[0:0].assign(reason=pd.Series(dtype=str))
    if policy == "fail":
        examples = "; ".join(f"{t[:40]!r} -> {sorted(g['label'].unique())}" for t, g in list(conflicted.groupby("text"))[:3])
        raise DataError(
            f"{conflicted['text'].nunique()} texts appear with more than one label (e.g. {examples}). "
            "Fix the labels, or set clean.conflict_policy to 'drop' or 'majority'."
        )
    if policy == "drop":
        return df[n_labels <= 1], conflicted.assign(reason="conflicting_label")
    # majority: keep rows whose label is the strict majority for that text; ties drop every row of the text.
    counts = conflicted.groupby(["text", "label"]).size().rename("n").reset_index()
    top = counts.sort_values("n", ascending=False).groupby("text").head(2)
    winners = {}
    for text, g in top.groupby("text"):
        ns = g["n"].tolist()
        if len(ns) == 1 or ns[0] > ns[1]:
            winners[text] = g["label"].iloc[0]
    keep_mask = conflicted.apply(lambda r: winners.get(r["text"]) == r["label"], axis=1)
    kept = pd.concat([df[n_labels <= 1], conflicted[keep_mask]]).sort_values("row_id")
    return kept, conflicted[~keep_mask].assign(reason="conflicting_label_minority")


def _apply_rules(texts: pd.Series, cfg: CleanConfig, max_len: int, chunk_rows: int = 50000) -> tuple[pd.Series, pd.Series, list[dict]]:
    """prepare_texts over the texts, a chunk at a time: only one chunk exists as Python strings, so a large file's
    compact (Arrow) text column is not expanded into objects several times over.
    Returns the new texts (same index and dtype), each text's cleaned length before the clean limit cut (the raw
    length when the raw text was cut), and per rule the rows changed with up to 3 examples."""
    named = text_rules(cfg)
    rules = [rule for _, rule in named]
    raw_limit, clean_limit = text_limits(max_len)
    report = [{"rule": name, "changed": 0, "dropped": 0, "examples": []} for name, _ in named]
    cut_entry = {"rule": f"cut_to_{clean_limit}_chars", "changed": 0, "dropped": 0, "examples": []}
    parts, lengths = [], []
    for start in range(0, len(texts), chunk_rows):
        part = texts.iloc[start : start + chunk_rows]
        raw = [as_text(t) for t in part.tolist()]
        cur = [t[:raw_limit] for t in raw]
        pending = list(range(len(cur)))
        for _ in range(MAX_PASSES):  # passes until nothing changes, over the texts the last pass changed
            changed = []
            for i in pending:
                t = cur[i]
                for entry, rule in zip(report, rules):
                    new = rule(t)
                    if new != t:
                        if len(entry["examples"]) < 3:
                            entry["examples"].append({"before": t[:120], "after": new[:120]})
                        entry["changed"] += 1
                        t = new
                if t != cur[i]:
                    cur[i] = t
                    changed.append(i)
            if not changed:
                break
            pending = changed
        lengths += [len(r) if len(r) > raw_limit else len(c) for r, c in zip(raw, cur)]
        out = []
        for t in cur:
            if len(t) > clean_limit:
                cut = _cut_clean(t, rules, clean_limit)
                cut_entry["changed"] += 1
                if len(cut_entry["examples"]) < 3:
                    cut_entry["examples"].append({"before": t[:120], "after": cut[-120:]})
                t = cut
            out.append(t)
        parts.append(pd.Series(out, index=part.index, dtype=texts.dtype))
    new_texts = pd.concat(parts) if parts else texts.copy()
    return new_texts, pd.Series(lengths, index=texts.index, dtype="int64"), report + [cut_entry]


def clean_dataset(df: pd.DataFrame, cfg: CleanConfig, max_len: int = 256) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Return (kept, dropped, report). `kept` has the model text in `text` and the original in `raw_text`;
    `dropped` has the original row_id, text, label and a reason; `report` has one entry per rule and filter: rows
    changed or dropped, with a few examples. `max_len` (tokenize.max_len) bounds each text (text_limits)."""
    work = df.copy()
    work["text"], lengths, report = _apply_rules(df["text"], cfg, max_len)
    work["raw_text"] = df["text"]
    raw = df.set_index("row_id")["text"]
    dropped = []

    def drop(mask: pd.Series, reason: str) -> None:
        nonlocal work
        dropped.append(work[mask].assign(reason=reason))
        report.append({"rule": reason, "changed": 0, "dropped": int(mask.sum()),
                       "examples": [{"before": t[:120], "after": ""} for t in raw.loc[work.loc[mask, "row_id"].head(3)]]})
        work = work[~mask]

    drop(work["text"] == "", "empty_text")
    drop(work["label"] == "", "empty_label")
    drop(work["text"].str.len() < cfg.min_chars, "too_short")
    if cfg.max_chars:
        drop(lengths.loc[work.index] > cfg.max_chars, "too_long")  # the length before the bound
    n_before = len(work)
    work, conflicts = _resolve_conflicts(work, cfg.conflict_policy)
    dropped.append(conflicts)
    report.append({"rule": f"conflicting_labels ({cfg.conflict_policy})", "changed": 0, "dropped": n_before - len(work),
                   "examples": [{"before": t[:120], "after": ""} for t in conflicts["text"].head(3)]})
    if cfg.drop_duplicates:
        key = pd.DataFrame({"t": _text_ids(work["text"]), "label": work["label"]})
        dup = key.duplicated(["t", "label"], keep="first")
        # exact duplicate = its original text equals that of the first row with the same cleaned text and label
        raw_id = _text_ids(pd.Series(raw.loc[work["row_id"]].array, index=work.index))
        first_raw_id = raw_id.groupby([key["t"], key["label"]]).transform("first")
        drop(dup & (raw_id == first_raw_id), "duplicate")
        drop(key.loc[work.index].duplicated(["t", "label"], keep="first"), "duplicate_normalized")
    dropped_df = pd.concat(dropped, ignore_index=True)[["row_id", "text", "label", "reason"]]
    # report dropped rows with their original text so a human can find them in the source file
    dropped_df["text"] = dropped_df["row_id"].map(raw)
    kept = work.reset_index(drop=True)
    assert len(kept) + len(dropped_df) == len(df), "clean_dataset lost rows"
    return kept, dropped_df.sort_values("row_id").reset_index(drop=True), report


def check_quality(rows_in: int, kept: pd.DataFrame, cfg: CleanConfig) -> None:
    """Quality gates: too many rows dropped, or a class left with too few examples, fail the run."""
    if rows_in and (rows_in - len(kept)) / rows_in > cfg.max_drop_share:
        raise DataError(f"Cleaning dropped {rows_in - len(kept)} of {rows_in} rows ({(rows_in - len(kept)) / rows_in:.0%}), more than "
                        f"clean.max_drop_share={cfg.max_drop_share}. See dropped.csv for the reasons; fix the data or raise the limit.")
    if kept.empty:
        raise DataError(f"No row survives cleaning (all {rows_in} dropped). See dropped.csv for the reasons.")
    counts = kept["label"].value_counts()
    small = counts[counts < cfg.min_class_examples]
    if len(small):
        detail = ", ".join(f"{k!r}: {v}" for k, v in small.items())
        raise DataError(f"Classes with fewer than clean.min_class_examples={cfg.min_class_examples} rows after cleaning: {detail}. "
                        "Add examples, merge or remove these classes, or lower the limit.")


def drop_unusable_rows(df: pd.DataFrame, cfg: CleanConfig, max_len: int = 256) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For scoring a labelled file: drop only rows with an empty text (after normalisation) or label.

    Duplicates and conflicting labels stay: they are real traffic, and evaluation should count them.
    """
    empty_text = pd.Series([t == "" for t in prepare_texts(df["text"].tolist(), cfg, max_len)], index=df.index)
    empty = empty_text | (df["label"] == "")
    dropped = df[empty].assign(reason=empty_text[empty].map({True: "empty_text", False: "empty_label"}))
    return df[~empty].reset_index(drop=True), dropped[["row_id", "text", "label", "reason"]].reset_index(drop=True)
