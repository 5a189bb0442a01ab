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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from textcls_core.dataset.columnar import (
    BATCH_ROWS,
    LabelCodes,
    ParquetAppender,
    group_starts,
    iter_parquet,
    parquet_rows_at,
    text_key64,
    text_keys,
)
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


class RuleRunner:
    """prepare_texts over batches of a text column, counting per rule the rows changed with up to 3 examples.

    Only one batch exists as Python strings at a time, so a large file's compact (Arrow) text column is not
    expanded into objects."""

    def __init__(self, cfg: CleanConfig, max_len: int) -> None:
        named = text_rules(cfg)
        self.rules = [rule for _, rule in named]
        self.raw_limit, self.clean_limit = text_limits(max_len)
        self.entries = [{"rule": name, "changed": 0, "dropped": 0, "examples": []} for name, _ in named]
        self.cut_entry = {"rule": f"cut_to_{self.clean_limit}_chars", "changed": 0, "dropped": 0, "examples": []}

    def run(self, texts: pd.Series) -> tuple[pd.Series, np.ndarray]:
        """The new texts (same index and dtype), and each text's cleaned length before the clean limit cut (the
        raw length when the raw text was cut)."""
        raw = [as_text(t) for t in texts.tolist()]
        cur = [t[: self.raw_limit] for t in raw]
        pending = list(range(len(cur)))
        for _ in range(MAX_PASSES):  # passes until nothing changes, over the texts the last pass changed
            changed = []
            for i in pending:
                t = cur[i]
                for entry, rule in zip(self.entries, self.rules):
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
        lengths = np.fromiter((len(r) if len(r) > self.raw_limit else len(c) for r, c in zip(raw, cur)), np.int64, len(raw))
        del raw
        for i, t in enumerate(cur):
            if len(t) > self.clean_limit:
                cut = _cut_clean(t, self.rules, self.clean_limit)
                self.cut_entry["changed"] += 1
                if len(self.cut_entry["examples"]) < 3:
                    self.cut_entry["examples"].append({"before": t[:120], "after": cut[-120:]})
                cur[i] = cut
        return pd.Series(cur, index=texts.index, dtype=texts.dtype), lengths

    def report(self) -> list[dict]:
        return self.entries + [self.cut_entry]


# why a row is dropped, in the order the filters run (0 = kept); a row gets the first that applies
REASONS = ("", "empty_text", "empty_label", "too_short", "too_long", "conflicting_label", "conflicting_label_minority",
           "duplicate", "duplicate_normalized")
_CODE = {r: i for i, r in enumerate(REASONS)}


class Cleaner:
    """clean_dataset in two passes over the rows, so a file never has to be held whole.

    first_pass(batch) runs the text rules and the per-row filters and keeps, per row, a 128-bit key of the
    cleaned text, a 64-bit key of the original, the label code and the drop reason. decide() then resolves
    conflicting labels and duplicates over every row at once, on those keys. second_pass(staged batch) splits
    each staged batch, in the same order, into kept and dropped rows."""

    def __init__(self, cfg: CleanConfig, max_len: int = 256) -> None:
        self.cfg = cfg
        self.runner = RuleRunner(cfg, max_len)
        self.labels = LabelCodes()
        self._parts: dict[str, list[np.ndarray]] = {k: [] for k in ("h1", "h2", "raw", "label", "reason")}
        self.examples: dict[str, list[dict[str, str]]] = {r: [] for r in REASONS[1:]}
        self.dropped_by = dict.fromkeys(REASONS[1:], 0)
        self.rows = self.kept = 0
        self.conflicts_dropped = 0

    def first_pass(self, batch: pd.DataFrame) -> pd.DataFrame:
        """The batch with the model text in `text` and the original in `raw_text` (what the second pass reads)."""
        new, lengths = self.runner.run(batch["text"])
        staged = batch.copy()
        staged["text"] = new
        staged["raw_text"] = batch["text"]
        checks = [(new == "").to_numpy(dtype=bool), (batch["label"] == "").to_numpy(dtype=bool),
                  (new.str.len() < self.cfg.min_chars).to_numpy(dtype=bool)]
        if self.cfg.max_chars:
            checks.append(lengths > self.cfg.max_chars)  # the length before the bound
        reason = np.zeros(len(batch), np.int8)
        for code, mask in reversed(list(enumerate(checks, start=1))):  # the first filter that applies wins
            reason[mask] = code
        h1, h2 = text_keys(new)
        for k, v in (("h1", h1), ("h2", h2), ("raw", text_key64(batch["text"])), ("label", self.labels.encode(batch["label"])),
                     ("reason", reason)):
            self._parts[k].append(v)
        self.rows += len(batch)
        return staged

    def decide(self, fetch: Callable[[np.ndarray], pd.DataFrame]) -> None:
        """Conflicting labels and duplicates over every row of the first pass. fetch(positions) returns the
        staged rows (text, label) at those positions; it is called only to name examples when
        clean.conflict_policy is fail."""
        a = {k: np.concatenate(v) for k, v in self._parts.items()} if self.rows else {}
        self._parts = {}
        if not self.rows:
            self.reason = np.zeros(0, np.int8)
            return
        reason = a["reason"]
        alive = np.flatnonzero(reason == 0)
        o = alive[np.lexsort((alive, a["label"][alive], a["h2"][alive], a["h1"][alive]))]
        text_new = group_starts(a["h1"][o], a["h2"][o])
        pair_new = group_starts(a["h1"][o], a["h2"][o], a["label"][o])
        text_id, pair_id = np.cumsum(text_new) - 1, np.cumsum(pair_new) - 1
        pair_text = text_id[pair_new]
        labels_per_text = np.bincount(pair_text, minlength=int(text_new.sum()))
        conflicted = labels_per_text[text_id] > 1
        policy = self.cfg.conflict_policy
        if conflicted.any() and policy == "fail":
            ids = np.flatnonzero(labels_per_text > 1)  # the conflicting texts, by group
            first = o[text_new][ids]
            by_row = np.argsort(first)
            texts = fetch(first[by_row])["text"].astype(str).tolist()
            # labels only for the three texts shown: each text's pair groups hold its distinct labels
            pair_label, names = a["label"][o][pair_new], np.array(self.labels.names(), dtype=object)
            shown = sorted(zip(texts, ids[by_row].tolist()))[:3]
            examples = "; ".join(f"{t[:40]!r} -> {sorted(str(n) for n in names[pair_label[pair_text == g]])}" for t, g in shown)
            raise DataError(
                f"{len(first)} texts appear with more than one label (e.g. {examples}). "
                "Fix the labels, or set clean.conflict_policy to 'drop' or 'majority'."
            )
        if policy == "drop":
            reason[o[conflicted]] = _CODE["conflicting_label"]
        elif policy == "majority":  # keep the rows of a text's strict majority label; a tie drops every row of it
            pair_count = np.bincount(pair_id)
            top = np.zeros(len(labels_per_text), np.int64)
            np.maximum.at(top, pair_text, pair_count)
            at_top = np.bincount(pair_text, weights=pair_count == top[pair_text]).astype(np.int64)
            winner = (pair_count == top[pair_text]) & (at_top[pair_text] == 1)
            reason[o[conflicted & ~winner[pair_id]]] = _CODE["conflicting_label_minority"]
        self.conflicts_dropped = int(np.isin(reason, (_CODE["conflicting_label"], _CODE["conflicting_label_minority"])).sum())
        if self.cfg.drop_duplicates:  # a later row with the cleaned text and label of an earlier one
            o = o[reason[o] == 0]
            pair_new = group_starts(a["h1"][o], a["h2"][o], a["label"][o])
            first_of = o[np.maximum.accumulate(np.where(pair_new, np.arange(len(o)), 0))]
            later = ~pair_new
            same_raw = a["raw"][o] == a["raw"][first_of]  # the same original text: an exact duplicate
            reason[o[later & same_raw]] = _CODE["duplicate"]
            reason[o[later & ~same_raw]] = _CODE["duplicate_normalized"]
        self.reason = reason

    def second_pass(self, staged: pd.DataFrame, offset: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(kept, dropped) of one staged batch that starts at row `offset` of the first pass."""
        reason = self.reason[offset : offset + len(staged)]
        keep = reason == 0
        kept = staged[keep].reset_index(drop=True)
        gone = staged[~keep]
        names = np.array(REASONS, dtype=object)[reason[~keep]]
        dropped = pd.DataFrame({"row_id": gone["row_id"].to_numpy(), "text": gone["raw_text"].to_numpy(),
                                "label": gone["label"].to_numpy(), "reason": names})
        for r in set(names):
            n_ex = len(self.examples[r])
            self.dropped_by[r] += int((names == r).sum())
            if n_ex < 3:  # conflicts are shown as the model text, other drops as the original
                col = "text" if r.startswith("conflicting") else "raw_text"
                self.examples[r] += [{"before": str(t)[:120], "after": ""} for t in gone.loc[names == r, col].head(3 - n_ex)]
        self.kept += int(keep.sum())
        return kept, dropped

    def report(self) -> list[dict]:
        """One entry per rule and filter, in the order they ran: rows changed or dropped, with examples."""
        filters = ["empty_text", "empty_label", "too_short"] + (["too_long"] if self.cfg.max_chars else [])
        out = self.runner.report() + [{"rule": r, "changed": 0, "dropped": self.dropped_by[r], "examples": self.examples[r]}
                                      for r in filters]
        conflict = [r for r in ("conflicting_label", "conflicting_label_minority") if self.examples[r]]
        out.append({"rule": f"conflicting_labels ({self.cfg.conflict_policy})", "changed": 0, "dropped": self.conflicts_dropped,
                    "examples": self.examples[conflict[0]] if conflict else []})
        if self.cfg.drop_duplicates:
            out += [{"rule": r, "changed": 0, "dropped": self.dropped_by[r], "examples": self.examples[r]}
                    for r in ("duplicate", "duplicate_normalized")]
        return out

    def counts(self) -> dict[str, Any]:
        reasons = {r: n for r, n in sorted(self.dropped_by.items()) if n}
        return {"rows_in": self.rows, "rows_kept": self.kept, "rows_dropped": self.rows - self.kept, "dropped_by_reason": reasons}


def clean_dataset(df: pd.DataFrame, cfg: CleanConfig, max_len: int = 256) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Return (kept, dropped, report). `kept` has the model text in `text` and the original in `raw_text`;
    `dropped` has the original row_id, text, label and a reason; `report` has one entry per rule and filter: rows
    changed or dropped, with a few examples. `max_len` (tokenize.max_len) bounds each text (text_limits).
    The same computation as clean_parquet, which never holds a file whole."""
    cleaner = Cleaner(cfg, max_len)
    staged = cleaner.first_pass(df)
    cleaner.decide(lambda pos: staged.iloc[pos][["text", "label"]])
    kept, dropped = cleaner.second_pass(staged, 0)
    assert len(kept) + len(dropped) == len(df), "clean_dataset lost rows"
    return kept, dropped.sort_values("row_id", kind="stable").reset_index(drop=True), cleaner.report()


def clean_parquet(raw_path: str | Path, cfg: CleanConfig, max_len: int, out_dir: str | Path,
                  batch_rows: int = BATCH_ROWS) -> tuple[dict[str, Any], list[dict]]:
    """clean_dataset of a Parquet file (sorted by row_id), a batch at a time: writes out_dir/clean.parquet and
    out_dir/dropped.csv (original texts, in row order) and returns (counts, report). Memory: one batch plus
    about 40 bytes per row, whatever the file's size."""
    out = Path(out_dir)
    staged_path = out / "staged.parquet"
    cleaner = Cleaner(cfg, max_len)
    first = None
    try:
        with ParquetAppender(staged_path) as staged_out:
            for batch in iter_parquet(raw_path, batch_rows=batch_rows):
                staged = cleaner.first_pass(batch)
                staged_out.write(staged)
                first = staged.iloc[0:0].copy(deep=True) if first is None else first  # not a view that keeps the batch
        cleaner.decide(lambda pos: parquet_rows_at(staged_path, pos, batch_rows=batch_rows))
        offset = 0
        with ParquetAppender(out / "clean.parquet") as kept_out, open(out / "dropped.csv", "w", encoding="utf-8", newline="") as f:
            batches = iter_parquet(staged_path, batch_rows=batch_rows) if staged_out.rows else iter([first])
            for i, staged in enumerate(batches):
                kept, dropped = cleaner.second_pass(staged, offset)
                offset += len(staged)
                kept_out.write(kept)
                dropped.to_csv(f, index=False, header=i == 0)
    finally:
        staged_path.unlink(missing_ok=True)
    assert cleaner.kept + sum(cleaner.dropped_by.values()) == cleaner.rows, "clean_parquet lost rows"
    return cleaner.counts(), cleaner.report()


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
