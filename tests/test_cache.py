"""The data-stage cache: core entries (atomic, verified, rebuilt when damaged) and the tasks through `.fn`
(a re-run reuses the compute but still writes and logs everything; changed data or settings recompute)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from tasks.data import analyze_task, clean_task, split_task
from tasks.encode import encode_task
from tests.conftest import NEG, POS, small_config
from tests.test_tasks import _start_run
from textcls_core.dataset.cache import StageCache, fingerprint, texts_sha256

STAGES = ("analyze", "clean", "split", "segment")


def _build_counting(calls: list[int], value: int):
    def build(folder: Path) -> dict:
        calls.append(value)
        (folder / "data.txt").write_text(f"value {value}", encoding="utf-8")
        return {"value": value}
    return build


def test_entry_is_built_once_then_reused(tmp_path):
    cache, calls = StageCache.at(tmp_path / "c"), []
    first = cache.run("stage", "k1", _build_counting(calls, 1), scratch=tmp_path)
    again = cache.run("stage", "k1", _build_counting(calls, 2), scratch=tmp_path)
    other = cache.run("stage", "k2", _build_counting(calls, 3), scratch=tmp_path)
    assert calls == [1, 3] and (first.hit, again.hit, other.hit) == (False, True, False)
    assert again.meta == {"value": 1} and again.file("data.txt").read_text(encoding="utf-8") == "value 1"
    dest = again.copy_to("data.txt", tmp_path / "run" / "x.txt")
    assert dest.read_text(encoding="utf-8") == "value 1" and again.file("data.txt").exists()  # copied, entry kept
    assert list((tmp_path / "c" / "tmp").iterdir()) == []


@pytest.mark.parametrize("damage", ["truncate", "same_size_garbage", "no_manifest", "bad_meta"])
def test_damaged_entry_is_rebuilt_not_used(tmp_path, damage):
    cache, calls = StageCache.at(tmp_path / "c"), []
    entry = cache.run("stage", "k", _build_counting(calls, 1), scratch=tmp_path)
    target = {"truncate": "data.txt", "same_size_garbage": "data.txt", "no_manifest": "manifest.json", "bad_meta": "meta.json"}[damage]
    f = entry.file(target)
    if damage == "truncate":
        f.write_text("val", encoding="utf-8")
    elif damage == "same_size_garbage":
        f.write_text("xxxxxxx", encoding="utf-8")
    elif damage == "no_manifest":
        f.unlink()
    else:
        f.write_text("{not json", encoding="utf-8")
    rebuilt = cache.run("stage", "k", _build_counting(calls, 1), scratch=tmp_path)
    assert calls == [1, 1] and not rebuilt.hit and rebuilt.file("data.txt").read_text(encoding="utf-8") == "value 1"
    assert cache.run("stage", "k", _build_counting(calls, 9), scratch=tmp_path).hit and calls == [1, 1]


def test_failed_build_leaves_nothing_and_off_uses_scratch(tmp_path):
    cache = StageCache.at(tmp_path / "c")

    def boom(folder: Path) -> dict:
        (folder / "half.txt").write_text("partial", encoding="utf-8")
        raise ValueError("stage failed")

    with pytest.raises(ValueError):
        cache.run("stage", "k", boom, scratch=tmp_path)
    assert not (tmp_path / "c" / "stage" / "k").exists() and list((tmp_path / "c" / "tmp").iterdir()) == []
    stale = tmp_path / "c" / "tmp" / "stage-killed"  # a run killed mid-build two days ago
    stale.mkdir()
    os.utime(stale, (time.time() - 2 * 86400,) * 2)
    cache.run("stage", "k", _build_counting([], 1), scratch=tmp_path)
    assert not stale.exists()
    off, calls = StageCache.at(None), []
    a = off.run("stage", "", _build_counting(calls, 1), scratch=tmp_path / "scratch")
    b = off.run("stage", "", _build_counting(calls, 2), scratch=tmp_path / "scratch")
    assert calls == [1, 2] and not a.hit and not b.hit and a.path != b.path
    a.copy_to("data.txt", tmp_path / "out.txt")  # moved out of the scratch folder
    a.release()
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == "value 1" and not a.path.exists()


def test_hashes_see_content_changes(tmp_path):
    cache = StageCache.at(tmp_path / "c")
    f = tmp_path / "d.csv"
    f.write_text("text,label\na,1\n", encoding="utf-8")
    h1 = cache.file_sha256(f)
    assert cache.file_sha256(f) == h1 and len(list((tmp_path / "c" / "file_hashes").iterdir())) == 1
    f.write_text("text,label\nb,1\n", encoding="utf-8")  # same size, new content and mtime
    assert cache.file_sha256(f) != h1
    assert texts_sha256(["ab", "c"]) != texts_sha256(["a", "bc"]) and texts_sha256(["a"]) == texts_sha256(["a"])
    assert fingerprint("s", {"a": 1, "b": 2}) == fingerprint("s", {"b": 2, "a": 1}) != fingerprint("s", {"a": 1, "b": 3})


def _data_stages(cfg, tmp_path, name: str, cache_dir: str | None = None) -> dict:
    """analyze -> clean -> split -> encode through .fn into their own MLflow run; returns outputs and the run."""
    (tmp_path / name).mkdir()
    tracking = _start_run(cfg, tmp_path / name)
    tracking["cache_dir"] = cache_dir if cache_dir is not None else str(tmp_path / "cache")  # what start_tracking sets
    analysis = analyze_task.fn(cfg.data, cfg.extra_columns(), cfg.run.seed, tracking)
    cleaning = clean_task.fn(analysis["raw_path"], cfg.clean, tracking, max_len=cfg.tokenize.max_len)
    split = split_task.fn(cleaning["clean_path"], cfg.split, cfg.run.seed, tracking)
    encoded = encode_task.fn(split["paths"], cfg.tokenize, tracking, cfg.clean)
    run = MlflowClient(tracking["tracking_uri"]).get_run(tracking["run_id"])
    return {"tracking": tracking, "cleaning": cleaning, "split": split, "encoded": encoded, "run": run,
            "cache": {s: run.data.tags[f"textcls.cache.{s}"] for s in STAGES}}


@pytest.fixture
def small_csv(tmp_path) -> Path:
    rows = [(f"{t}，第{i}次", "positive") for i in range(6) for t in POS] + [(f"{t}，第{i}次", "negative") for i in range(6) for t in NEG]
    p = tmp_path / "reviews.csv"
    pd.DataFrame(rows + rows[:5], columns=["review", "label"]).to_csv(p, index=False)  # 5 duplicates for cleaning to drop
    return p


def test_rerun_reuses_compute_but_logs_and_writes_everything(tmp_path, tracking_uri, small_csv):
    cfg = small_config(tmp_path, tracking_uri, f"data.path={small_csv}", "data.text_column=review", "data.max_rows=0")
    first = _data_stages(cfg, tmp_path, "first")
    second = _data_stages(cfg, tmp_path, "second")
    assert first["cache"] == dict.fromkeys(STAGES, "miss") and second["cache"] == dict.fromkeys(STAGES, "hit")
    assert all(second["run"].data.metrics[f"cache_hit_{s}"] == 1.0 for s in STAGES)
    assert first["cleaning"]["rows_dropped"] == 5 and second["cleaning"] == {
        k: (v.replace("first", "second") if isinstance(v, str) else v) for k, v in first["cleaning"].items()}
    # each run is complete on its own: the same metrics, hash tags and artifacts, and byte-identical run files
    for key in ("clean_rows_kept", "split_train_rows", "vocab_size", "data_recommended_max_len", "val_oov_rate"):
        assert second["run"].data.metrics[key] == first["run"].data.metrics[key]
    for tag in ("textcls.dataset_sha256", "textcls.train_sha256", "textcls.raw_data_sha256"):
        assert len(second["run"].data.tags[tag]) == 64 and second["run"].data.tags[tag] == first["run"].data.tags[tag]
    client = MlflowClient(tracking_uri)
    for folder in ("reports", "data"):
        assert [a.path for a in client.list_artifacts(second["run"].info.run_id, folder)] == \
               [a.path for a in client.list_artifacts(first["run"].info.run_id, folder)]
    d1, d2 = Path(first["tracking"]["run_dir"]), Path(second["tracking"]["run_dir"])
    files = sorted(p.relative_to(d1) for p in d1.rglob("*") if p.is_file())
    assert "data/train.parquet" in map(str, files) and "reports/analysis_after_cleaning.html" in map(str, files)
    assert files == sorted(p.relative_to(d2) for p in d2.rglob("*") if p.is_file())
    assert all((d1 / f).read_bytes() == (d2 / f).read_bytes() for f in files if f.suffix != ".html" and f.name != "splits.json")
    s1, s2 = (json.loads((d / "data" / "splits.json").read_text(encoding="utf-8")) for d in (d1, d2))
    assert s2["sha256"] == s1["sha256"] and s2["paths"]["train"] == str(d2 / "data" / "train.parquet")  # its own run's paths
    assert json.loads((d2 / "reports" / "cleaning.json").read_text(encoding="utf-8"))["rows_in"] == 149


def test_changed_data_or_settings_recompute_and_cache_off_bypasses(tmp_path, tracking_uri, small_csv):
    base = (f"data.path={small_csv}", "data.text_column=review", "data.max_rows=0", "evaluate.baseline=false")
    cfg = small_config(tmp_path, tracking_uri, *base)
    _data_stages(cfg, tmp_path, "first")
    # a cleaning setting that changes the texts (no NFKC: the full-width comma stays): reading and analysis
    # are reused, cleaning and everything after it are not
    nfkc = _data_stages(small_config(tmp_path, tracking_uri, *base, "clean.nfkc=false"), tmp_path, "nfkc")
    assert nfkc["cache"] == {"analyze": "hit", "clean": "miss", "split": "miss", "segment": "miss"}
    assert "，" in pd.read_parquet(nfkc["cleaning"]["clean_path"])["text"].iloc[0]
    # one that leaves these texts as they were (they hold no emoji): cleaning runs, its identical output is reused downstream
    emoji = _data_stages(small_config(tmp_path, tracking_uri, *base, "clean.emoji=strip"), tmp_path, "emoji")
    assert emoji["cache"] == {"analyze": "hit", "clean": "miss", "split": "hit", "segment": "hit"}
    # a gate only: the output is the same, so nothing is recomputed
    gate = _data_stages(small_config(tmp_path, tracking_uri, *base, "clean.max_drop_share=0.5"), tmp_path, "gate")
    assert gate["cache"] == dict.fromkeys(STAGES, "hit")
    # a split setting: the split changes, so do the texts per split; their set does not, nor the segmentation
    val = _data_stages(small_config(tmp_path, tracking_uri, *base, "split.val_fraction=0.2"), tmp_path, "val")
    assert val["cache"] == {"analyze": "hit", "clean": "hit", "split": "miss", "segment": "miss"}
    assert val["split"]["rows"]["val"] > emoji["split"]["rows"]["val"] - 5
    # the data: one more row in the same file
    with open(small_csv, "a", encoding="utf-8") as f:
        f.write("新加的一条评论，很好,positive\n")
    grown = _data_stages(cfg, tmp_path, "grown")
    assert grown["cache"] == dict.fromkeys(STAGES, "miss") and grown["cleaning"]["rows_in"] == 150
    # run.cache=false: computed again, nothing read from or written to a cache folder
    off = _data_stages(cfg, tmp_path, "off", cache_dir="")
    assert off["cache"] == dict.fromkeys(STAGES, "off") and off["cleaning"]["rows_in"] == 150
    assert off["split"]["sha256"] == grown["split"]["sha256"]
    assert not any(p.name.startswith(".") for p in (Path(off["tracking"]["run_dir"]) / "data").iterdir())  # scratch removed
