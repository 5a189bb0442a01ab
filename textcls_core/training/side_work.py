"""Work that does not need the trained network, run beside training in a child process.

The tfidf_lr candidate (fitted on train, its settings picked on validation, probabilities and OOV shares on
validation from that train-only fit; then, with model.tfidf_refit, the same settings fitted again on train +
validation for the model that ships, whose probabilities on test are reported) and the out-of-fold probabilities
of the label-error search over train + validation, from the train-only fit's features.
Neither reads the network, so the flow starts them when the data is encoded and collects them after training:
the critical path becomes max(training, this) instead of their sum.

Why a process and not a thread: the run's watchdog and its SIGTERM handler stop a run by killing its child
processes (textcls_core.runtime.procs.kill_child_processes); a thread blocked in native code cannot be stopped. The child
starts from a fork server (safe in the threaded flow process) and writes its results as plain files.

`run_tfidf_job` is the one implementation: the child runs it, and so does the candidates stage when no child was
started (a `textcls tune` trial, a resumed run). Same inputs, same outputs: the result does not depend on where it ran.
Pure: no Prefect, no MLflow; the candidates task logs what it reports.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from textcls_core.dataset.cache import StageCache, segment_with_cache
from textcls_core.dataset.clean import prepare_texts
from textcls_core.evaluation.out_of_fold import out_of_fold_from_features
from textcls_core.modeling.tfidf import TfidfClassifier, TfidfSettings, fit_tfidf_lr, refit_tfidf_lr
from textcls_core.runtime.config import CleanConfig, ModelConfig, TokenizeConfig
from textcls_core.runtime.procs import safe_mp_context

RESULT, ERROR, PROBS, MODEL = "result.json", "error.txt", "probs.npz", "tfidf_lr"


@dataclass
class TfidfJob:
    """Everything the tfidf_lr candidate needs; picklable, so it crosses to the child process as it is."""

    split_paths: dict[str, str]
    labels: list[str]  # the run's label order (the network's), so probabilities line up column for column
    model_cfg: ModelConfig
    tok_cfg: TokenizeConfig
    clean_cfg: CleanConfig
    select_metric: str
    out_dir: str
    label_error_folds: int = 0  # k of the out-of-fold search over train + val; 0 = none
    seed: int = 0
    cache_dir: str = ""  # the run's data-stage cache ("" = off); the encode stage's segmentation is a hit here
    scored: tuple[str, ...] = ("val", "test")  # `textcls tune` trials pass ("val",): the search never reads test
    threads: int = 1  # BLAS / OpenMP threads in the child (training has the other cores)


@dataclass
class TfidfOutcome:
    clf: TfidfClassifier  # the model that ships: refitted on train + val when it was (clf.fitted_on says which)
    probs: dict[str, np.ndarray]  # split -> [N, C] in job.labels order; "val" always from the train-only fit
    oof: np.ndarray | None  # [train + val rows, C], train rows first; None when label_error_folds is 0
    segment_cache: str = "off"  # hit, miss or off
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    val_oov: np.ndarray | None = None  # per validation text, its unigrams' share unseen by the train-only fit


def raw_texts(frame: pd.DataFrame) -> list[str]:
    """What a caller would send: the file's raw text when the split keeps it, else the cleaned text."""
    return frame["raw_text" if "raw_text" in frame.columns else "text"].tolist()


def run_tfidf_job(job: TfidfJob, frames: dict[str, pd.DataFrame] | None = None) -> TfidfOutcome:
    """Fit tfidf_lr on train (settings picked on val), score `job.scored`, and (label_error_folds > 0) score every
    train and val row out of fold with the chosen features and C.

    With model.tfidf_refit and test among `job.scored` (a run that ships a model; a `textcls tune` trial scores
    validation only and never ships), the chosen settings are then fitted again on train + val: that model is the
    outcome's clf and scores test. Validation probabilities and OOV shares stay the train-only fit's, the only
    out-of-sample ones: the choice between candidates, the gate's baseline check and the drift profile read them."""
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    splits = ("train", "val", *[s for s in job.scored if s != "val"])
    frames = frames or {name: pd.read_parquet(job.split_paths[name]) for name in splits}
    index = {name: i for i, name in enumerate(job.labels)}
    mapped = {name: frames[name]["label"].map(index) for name in ("train", "val")}
    if any(v.isna().any() for v in mapped.values()):
        raise ValueError(f"a train or validation label is not among the run's labels {job.labels}")
    y = {name: v.to_numpy().astype(int) for name, v in mapped.items()}
    max_len = job.tok_cfg.max_len
    prepared = {name: prepare_texts(raw_texts(frames[name]), job.clean_cfg, max_len) for name in splits}
    timings["prepare"] = time.perf_counter() - t0
    words, state = None, "off"
    if any("word" in fs for fs in job.model_cfg.tfidf_features):
        names = list(splits)
        flat = [t for name in names for t in prepared[name]]
        run_dir = Path(job.out_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        tokens, state = segment_with_cache(flat, job.tok_cfg.workers, StageCache.at(job.cache_dir or None), run_dir)
        words, start = {}, 0
        for name in names:
            words[name], start = tokens[start : start + len(prepared[name])], start + len(prepared[name])
    timings["segment"] = time.perf_counter() - t0 - sum(timings.values())
    m = job.model_cfg
    base = TfidfSettings(m.tfidf_char_ngrams, m.tfidf_word_ngrams, m.tfidf_min_df, max_len)
    keep: dict = {}
    clf = fit_tfidf_lr(prepared["train"], y["train"], prepared["val"], y["val"], job.labels, job.clean_cfg, base,
                       m.tfidf_features, m.tfidf_c, job.select_metric,
                       words=(words["train"], words["val"]) if words else None, prepared=True, keep=keep)
    timings["fit"] = time.perf_counter() - t0 - sum(timings.values())
    probs = {"val": clf.proba_from_features(keep["val"])} if "val" in job.scored else {}
    val_oov = clf.oov_shares(prepared["val"], words["val"] if words else None)
    oof = None
    if job.label_error_folds:
        import scipy.sparse as sp

        pool = sp.vstack([keep["train"], keep["val"]], format="csr")
        oof = out_of_fold_from_features(pool, np.concatenate([y["train"], y["val"]]), len(job.labels),
                                        job.label_error_folds, job.seed, clf.settings.c)
        del pool
        timings["label_error_oof"] = time.perf_counter() - t0 - sum(timings.values())
    keep.clear()  # the train-only matrices are done with: the refit below builds its own (peak memory on big files)
    if m.tfidf_refit and "test" in job.scored:
        clf = refit_tfidf_lr(clf, prepared["train"] + prepared["val"], np.concatenate([y["train"], y["val"]]),
                             words["train"] + words["val"] if words else None, prepared=True)
        timings["refit"] = time.perf_counter() - t0 - sum(timings.values())
    for name in job.scored:
        if name != "val":
            probs[name] = clf.proba_from_features(clf.features(prepared[name], words[name] if words else None))
    timings["score"] = time.perf_counter() - t0 - sum(timings.values())
    return TfidfOutcome(clf, probs, oof, state, time.perf_counter() - t0, timings, val_oov)


def save_outcome(outcome: TfidfOutcome, out_dir: str | Path) -> Path:
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    outcome.clf.save(d / MODEL)
    arrays = {f"proba_{name}": p for name, p in outcome.probs.items()}
    if outcome.oof is not None:
        arrays["oof"] = outcome.oof
    if outcome.val_oov is not None:
        arrays["val_oov"] = outcome.val_oov
    np.savez(d / PROBS, **arrays)
    (d / RESULT).write_text(json.dumps({"segment_cache": outcome.segment_cache, "seconds": outcome.seconds,
                                        "timings": outcome.timings}), encoding="utf-8")
    return d


def load_outcome(out_dir: str | Path) -> TfidfOutcome:
    d = Path(out_dir)
    meta = json.loads((d / RESULT).read_text(encoding="utf-8"))
    with np.load(d / PROBS, allow_pickle=False) as arrays:
        probs = {k.removeprefix("proba_"): arrays[k] for k in arrays.files if k.startswith("proba_")}
        oof = arrays["oof"] if "oof" in arrays.files else None
        val_oov = arrays["val_oov"] if "val_oov" in arrays.files else None
    return TfidfOutcome(TfidfClassifier.load(d / MODEL), probs, oof, meta["segment_cache"], meta["seconds"], meta["timings"],
                        val_oov)


def _child_main(job: TfidfJob) -> None:
    """Entry point of the child process: results or the error's traceback go to files in job.out_dir."""
    out = Path(job.out_dir)
    try:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=max(1, job.threads)):
            save_outcome(run_tfidf_job(job), out)
    except BaseException as exc:  # noqa: BLE001  (reported to the parent through the file)
        out.mkdir(parents=True, exist_ok=True)
        (out / ERROR).write_text(f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}", encoding="utf-8")
        raise SystemExit(1) from None


class SideProcess:
    """The tfidf_lr job running in a child process; `result()` waits for it (bounded) and loads what it wrote."""

    def __init__(self, job: TfidfJob):
        self.job = job
        out = Path(job.out_dir)
        for name in (RESULT, ERROR):
            (out / name).unlink(missing_ok=True)
        ctx = safe_mp_context(["textcls_core.training.side_work"])
        self.process = ctx.Process(target=_child_main, args=(job,), name="textcls-tfidf-candidate", daemon=False)
        self.started = time.perf_counter()
        self.process.start()

    def result(self, timeout_s: float) -> TfidfOutcome:
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.stop()
            raise TimeoutError(f"the tfidf_lr candidate's process did not finish within {timeout_s:.0f} s")
        error = Path(self.job.out_dir) / ERROR
        if self.process.exitcode != 0 or not (Path(self.job.out_dir) / RESULT).is_file():
            detail = error.read_text(encoding="utf-8") if error.is_file() else f"exit code {self.process.exitcode}"
            raise RuntimeError(f"the tfidf_lr candidate's process failed: {detail}")
        return load_outcome(self.job.out_dir)

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(5)
