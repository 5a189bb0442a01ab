"""The relabel loop: a reviewed relabel queue applied to its source file as a corrected copy plus a changelog.

The queue (textcls_core.evaluation.label_issues) names rows by `row_id`, their 0-based position among the source file's
data rows, and records the file's sha256; a reviewer fills `decision` with keep, relabel:<label> or drop
(empty = not reviewed = keep). The corrected copy keeps the source's format, encoding, separator and columns;
the source itself is never written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from textcls_core.dataset.read import TEXT_FORMATS, normalize_labels, read_table
from textcls_core.runtime.errors import DataError

QUEUE_REQUIRED = ("row_id", "given_label", "decision", "source_sha256")
CHANGELOG_COLUMNS = ["row_id", "text", "old_label", "new_label", "action", "reviewer"]
WRITABLE = (*TEXT_FORMATS, ".jsonl", ".json", ".parquet", ".xlsx")


@dataclass
class RelabelResult:
    table: pd.DataFrame       # the corrected copy, the source's own columns
    changelog: pd.DataFrame   # one row per relabelled or dropped row (CHANGELOG_COLUMNS)
    counts: dict[str, int]    # rows_in, rows_out, relabelled, dropped, kept, undecided


def source_file_sha256(path: str | Path) -> str:
    """sha256 of a data file's bytes ("" for a builtin corpus or a missing file)."""
    p = Path(path)
    if str(path).startswith("builtin:") or not p.is_file():
        return ""
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_output_path(data_path: str | Path) -> Path:
    p = Path(data_path)
    return p.with_name(f"{p.stem}.relabeled{p.suffix}")


def read_queue(path: str | Path) -> pd.DataFrame:
    """A reviewed queue (.csv / .tsv / .xlsx as saved by a spreadsheet), with its required columns checked."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"Relabel queue '{p}' does not exist. Pass the reviewed relabel_queue.csv of a run (runs/<run>/evaluation/).")
    if p.stat().st_size == 0:
        raise DataError(f"Relabel queue '{p}' is empty. Pass the reviewed relabel_queue.csv of a run.")
    queue = read_table(p)
    missing = [c for c in QUEUE_REQUIRED if c not in queue.columns]
    if missing:
        raise DataError(f"Relabel queue '{p}' has no column {', '.join(map(repr, missing))}; columns found: "
                        f"{', '.join(map(repr, map(str, queue.columns)))}. Start from a relabel_queue.csv written by textcls "
                        "and keep its header.")
    ids = pd.to_numeric(queue["row_id"].astype(str).str.strip().str.replace(r"\.0+$", "", regex=True), errors="coerce")
    bad = queue.index[ids.isna() | (ids % 1 != 0)]
    if len(bad):
        raise DataError(f"Relabel queue '{p}' has row_id values that are not whole numbers (queue lines "
                        f"{', '.join(str(i + 2) for i in bad[:5])}). Keep the row_id column as written.")
    queue = queue.assign(row_id=ids.astype("int64"))
    dup = queue["row_id"][queue["row_id"].duplicated()].unique()
    if len(dup):
        raise DataError(f"Relabel queue '{p}' lists row_id {', '.join(map(str, dup[:5]))} more than once. Keep one decision per row.")
    return queue


def parse_decisions(queue: pd.DataFrame, known_labels: set[str], queue_name: str) -> pd.DataFrame:
    """Columns row_id, action (keep | relabel | drop), new_label; every unknown decision or label in one message."""
    raw = queue["decision"].astype("string").fillna("").astype(str).str.strip()
    kind = raw.str.lower().str.partition(":")[0].str.strip()
    new_label = normalize_labels(raw.str.partition(":")[2])
    bad_decision = ~kind.isin(["", "keep", "drop", "relabel"]) | ((kind == "relabel") & (new_label == ""))
    if bad_decision.any():
        rows = queue.loc[bad_decision, "row_id"].tolist()
        raise DataError(f"Relabel queue '{queue_name}' has unknown decisions {sorted(set(raw[bad_decision]))[:5]} (row_id "
                        f"{', '.join(map(str, rows[:5]))}). Use keep, drop or relabel:<label>, or leave the cell empty.")
    unknown = (kind == "relabel") & ~new_label.isin(known_labels)
    if unknown.any():
        raise DataError(f"Relabel queue '{queue_name}' relabels to unknown labels {sorted(set(new_label[unknown]))[:5]} (row_id "
                        f"{', '.join(map(str, queue.loc[unknown, 'row_id'].tolist()[:5]))}); the data file's labels are "
                        f"{sorted(known_labels)[:20]}. Fix the spelling after relabel:.")
    action = kind.where(kind != "", "keep").mask(kind == "relabel", "relabel")
    return pd.DataFrame({"row_id": queue["row_id"].to_numpy(), "action": action.to_numpy(),
                         "new_label": new_label.where(kind == "relabel", "").to_numpy(),
                         "undecided": (kind == "").to_numpy()})


def check_queue_matches(queue: pd.DataFrame, labels: pd.Series, data_sha256: str, queue_name: str, data_name: str) -> None:
    """The queue was made from this exact file: same sha256, row ids in range, and each row's given label as in the file."""
    recorded = {str(s).strip() for s in queue["source_sha256"].astype("string").fillna("")} - {""}
    if not recorded:
        raise DataError(f"Relabel queue '{queue_name}' records no source file (it came from the builtin corpus or an old "
                        "textcls). Train on a data file, then review that run's relabel_queue.csv.")
    if recorded != {data_sha256}:
        raise DataError(f"Relabel queue '{queue_name}' was made from another version of the data (source_sha256 "
                        f"{sorted(recorded)[0][:12]}..., but '{data_name}' has {data_sha256[:12]}...). Pass the file the run "
                        "trained on, or review the queue of a run on this file.")
    out_of_range = queue.loc[(queue["row_id"] < 0) | (queue["row_id"] >= len(labels)), "row_id"]
    if len(out_of_range):
        raise DataError(f"Relabel queue '{queue_name}' has row_id {', '.join(map(str, out_of_range.tolist()[:5]))} but "
                        f"'{data_name}' has rows 0..{len(labels) - 1}. The queue does not belong to this file.")
    given = normalize_labels(queue["given_label"]).to_numpy()
    in_file = labels.to_numpy()[queue["row_id"].to_numpy()]
    differ = queue.loc[given != in_file, "row_id"]
    if len(differ):
        raise DataError(f"Relabel queue '{queue_name}': at row_id {', '.join(map(str, differ.tolist()[:5]))} the given_label "
                        f"differs from the label in '{data_name}'. Keep given_label as written; put the new label in decision.")


def apply_decisions(table: pd.DataFrame, queue: pd.DataFrame, decisions: pd.DataFrame, text_column: str,
                    label_column: str) -> RelabelResult:
    """The corrected copy (relabelled cells changed, dropped rows removed) and the changelog of what changed."""
    labels = normalize_labels(table[label_column])
    old = labels.to_numpy()[decisions["row_id"].to_numpy()]
    relabel = (decisions["action"] == "relabel").to_numpy() & (decisions["new_label"].to_numpy() != old)
    drop = (decisions["action"] == "drop").to_numpy()
    changed = decisions[relabel | drop]
    reviewer = queue.set_index("row_id")["reviewer"].astype(str) if "reviewer" in queue.columns else None
    changelog = pd.DataFrame({
        "row_id": changed["row_id"].to_numpy(),
        "text": table[text_column].astype(str).to_numpy()[changed["row_id"].to_numpy()],
        "old_label": old[relabel | drop],
        "new_label": changed["new_label"].where(changed["action"] == "relabel", "").to_numpy(),
        "action": changed["action"].to_numpy(),
        "reviewer": reviewer.reindex(changed["row_id"]).fillna("").to_numpy() if reviewer is not None else "",
    }, columns=CHANGELOG_COLUMNS).sort_values("row_id", kind="stable").reset_index(drop=True)
    out = table.copy()
    rel = changelog[changelog["action"] == "relabel"]
    out[label_column] = _set_labels(out[label_column], rel["row_id"].to_numpy(), rel["new_label"].tolist())
    out = out.drop(index=out.index[changelog.loc[changelog["action"] == "drop", "row_id"].to_numpy()]).reset_index(drop=True)
    counts = {"rows_in": len(table), "rows_out": len(out), "relabelled": len(rel), "dropped": int(drop.sum()),
              "kept": int(len(decisions) - len(rel) - drop.sum()), "undecided": int(decisions["undecided"].sum())}
    return RelabelResult(out, changelog, counts)


def _set_labels(column: pd.Series, positions, new_labels: list[str]) -> pd.Series:
    """New labels in the column's own type: integer label columns (JSON, Parquet) stay integers."""
    out = column.copy()
    if pd.api.types.is_integer_dtype(out.dtype) or (out.dtype == object and len(out) and all(isinstance(v, int) for v in out.head(100))):
        values: list[Any] = [int(v) if v.lstrip("-").isdigit() else v for v in new_labels]
    else:
        values = list(new_labels)
    if values and not all(isinstance(v, int) for v in values) and pd.api.types.is_integer_dtype(out.dtype):
        out = out.astype(object)
    for pos, v in zip(positions, values):
        out.iat[int(pos)] = v
    return out


def detect_encoding(p: Path, encoding: str = "auto") -> str:
    """The encoding a text file was read with, so the copy is written the same way (BOM kept, GB18030 kept)."""
    if encoding != "auto":
        return encoding
    raw = p.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    try:
        raw.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        return "gb18030"


def write_like_source(table: pd.DataFrame, source: Path, dest: Path, encoding: str = "auto") -> Path:
    """Write `table` to dest in the source's format (separator, encoding, line endings for text files)."""
    suffix = source.suffix.lower()
    if dest.suffix.lower() != suffix:
        raise DataError(f"Output '{dest}' must keep the source's format '{suffix}'. Name it with the {suffix} extension.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if suffix in TEXT_FORMATS:
        enc = detect_encoding(source, encoding)
        with open(source, "rb") as f:
            newline = "\r\n" if b"\r\n" in f.read(1 << 16) else "\n"
        table.to_csv(dest, sep=TEXT_FORMATS[suffix], index=False, encoding=enc, lineterminator=newline)
    elif suffix == ".jsonl":
        table.to_json(dest, orient="records", lines=True, force_ascii=False)
    elif suffix == ".json":
        dest.write_text(json.dumps(table.to_dict(orient="records"), ensure_ascii=False, indent=1), encoding="utf-8")
    elif suffix == ".parquet":
        table.to_parquet(dest, index=False)
    elif suffix == ".xlsx":
        table.to_excel(dest, index=False)
    else:
        raise DataError(f"A corrected copy of '{source.name}' cannot be written as '{suffix}'. Save the data as .xlsx or .csv first.")
    return dest


def relabel_file(queue_path: str | Path, data_path: str | Path, output_path: str | Path | None = None,
                 text_column: str = "text", label_column: str = "label", encoding: str = "auto") -> tuple[RelabelResult, dict[str, Any]]:
    """Read queue and data, check that they belong together, write the corrected copy; returns the result and the
    lineage record (parent and child sha256, counts). Nothing is written when any check fails."""
    qp, dp = Path(queue_path), Path(data_path)
    if str(data_path).startswith("builtin:"):
        raise DataError(f"--data '{data_path}' is a builtin corpus, not a file a corrected copy can be made of. "
                        "Export it to a CSV, train on that file, and review that run's queue.")
    out = Path(output_path) if output_path else default_output_path(dp)
    if not dp.is_file():
        raise DataError(f"Data file '{dp}' does not exist. Pass the file the run trained on (data.path).")
    if out.resolve() == dp.resolve():
        raise DataError(f"Output '{out}' is the source file itself; the source is never modified. Choose another --output.")
    if dp.stat().st_size == 0:
        raise DataError(f"Data file '{dp}' is empty. Pass the file the run trained on (data.path).")
    queue = read_queue(qp)
    table = read_table(dp, encoding)
    for col in (text_column, label_column):
        if col not in table.columns:
            raise DataError(f"Data file '{dp}' has no column '{col}'; columns found: {', '.join(map(repr, map(str, table.columns)))}. "
                            "Set data.text_column / data.label_column.")
    labels = normalize_labels(table[label_column])
    sha = source_file_sha256(dp)
    check_queue_matches(queue, labels, sha, str(qp), str(dp))
    decisions = parse_decisions(queue, set(labels) - {""}, str(qp))
    result = apply_decisions(table, queue, decisions, text_column, label_column)
    write_like_source(result.table, dp, out, encoding)
    lineage = {"parent_path": str(dp.resolve()), "parent_sha256": sha, "path": str(out.resolve()),
               "sha256": source_file_sha256(out), "queue_path": str(qp.resolve()), "queue_sha256": source_file_sha256(qp),
               **result.counts, "labels_changed": result.counts["relabelled"]}
    return result, lineage
