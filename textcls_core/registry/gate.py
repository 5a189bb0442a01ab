"""The promotion gate: a new version becomes `champion` only if every check passes.

Pure: takes numbers and per-row predictions, returns a verdict with one line per check, so the reasons can be
written into the registry, the run summary and the notes of whoever reviews the version.

The champion check is one named test: a paired bootstrap of registry.metric over rows neither model trained
on (see textcls_core.evaluation.bootstrap); the candidate takes @champion when the one-sided lower bound of the
improvement at registry.confidence exceeds registry.min_improvement. Its outcomes:
- no champion yet: the floors decide;
- fewer comparable rows than registry.min_shared_rows: "insufficient evidence", @challenger;
- champion without a training fingerprint (registered before fingerprints): compared anyway, on the
  eval set or the candidate's test split, with "overlap unknown" in the reason;
- else: compared on the candidate's test split minus the champion's training texts (or the eval set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from textcls_core.evaluation.bootstrap import PairedBootstrap, paired_bootstrap

NO_CHAMPION, INSUFFICIENT, COMPARED, ALREADY_CHAMPION = "no_champion", "insufficient_evidence", "compared", "already_champion"


@dataclass
class Comparison:
    """Candidate against the current champion on shared rows."""
    outcome: str                     # one of NO_CHAMPION, INSUFFICIENT, COMPARED, ALREADY_CHAMPION
    basis: str                       # which rows, in words (e.g. "test split minus v3's training texts")
    n: int = 0                       # rows compared
    champion_version: str | None = None
    overlap_known: bool = True
    bootstrap: PairedBootstrap | None = None


@dataclass
class GateResult:
    passed: bool
    checks: list[dict] = field(default_factory=list)
    comparison: Comparison | None = None

    @property
    def reasons(self) -> list[str]:
        return [c["detail"] for c in self.checks if not c["passed"]]

    def describe(self) -> str:
        return "; ".join(("PASS " if c["passed"] else "FAIL ") + c["detail"] for c in self.checks)

    def summary(self) -> dict[str, Any]:
        """Flat `gate.*` keys for the run summary and MLflow."""
        c = self.comparison
        out: dict[str, Any] = {"gate.decision": "champion" if self.passed else "challenger",
                               "gate.outcome": c.outcome if c else NO_CHAMPION, "gate.basis": c.basis if c else "",
                               "gate.n_shared_rows": c.n if c else 0, "gate.champion_version": c.champion_version if c else None,
                               "gate.overlap_known": c.overlap_known if c else True}
        b = c.bootstrap if c else None
        if b is not None:
            out |= {"gate.metric": b.metric, "gate.candidate": b.candidate, "gate.champion": b.champion, "gate.delta": b.delta,
                    "gate.ci_low": b.ci_low, "gate.ci_high": b.ci_high, "gate.p_value": b.p_value,
                    "gate.confidence": b.confidence, "gate.bootstrap_samples": b.samples}
        return out


def compare_on_rows(y_true: np.ndarray, pred_candidate: np.ndarray, pred_champion: np.ndarray, shared: np.ndarray,
                    num_classes: int, champion_version: str, basis: str, overlap_known: bool, metric: str,
                    min_shared_rows: int, samples: int, confidence: float, min_improvement: float, seed: int = 0) -> Comparison:
    """Bootstrap candidate vs champion on the rows where `shared` is True, or report insufficient evidence."""
    shared = np.asarray(shared, dtype=bool)
    n = int(shared.sum())
    if n < min_shared_rows:
        return Comparison(INSUFFICIENT, basis, n, champion_version, overlap_known)
    boot = paired_bootstrap(np.asarray(y_true)[shared], np.asarray(pred_candidate)[shared], np.asarray(pred_champion)[shared],
                            num_classes, metric, samples, confidence, min_improvement, seed)
    return Comparison(COMPARED, basis, n, champion_version, overlap_known, boot)


def _champion_check(c: Comparison | None, min_shared_rows: int, min_improvement: float) -> dict:
    if c is None or c.outcome == NO_CHAMPION:
        return {"check": "champion", "passed": True, "detail": "no champion yet: the floors decide"}
    if c.outcome == ALREADY_CHAMPION:
        return {"check": "champion", "passed": True, "detail": f"already @champion ({c.basis})"}
    if c.outcome == INSUFFICIENT:
        return {"check": "champion", "passed": False,
                "detail": f"insufficient evidence: {c.n} rows that neither model trained on ({c.basis}) < registry.min_shared_rows "
                          f"{min_shared_rows}; kept @challenger"}
    b = c.bootstrap
    assert b is not None
    ok = b.ci_low > min_improvement
    return {"check": "champion", "passed": ok,
            "detail": f"{b.metric} on {b.n} shared rows ({c.basis}): candidate {b.candidate:.4f} vs champion v{c.champion_version} "
                      f"{b.champion:.4f}, delta {b.delta:+.4f}; {b.confidence:.0%} one-sided lower bound {b.ci_low:+.4f} "
                      f"{'>' if ok else '<='} registry.min_improvement {min_improvement:.4f} "
                      f"(interval [{b.ci_low:+.4f}, {b.ci_high:+.4f}], p={b.p_value:.3f}, {b.samples} paired resamples)"}


def decide_promotion(metric_name: str, candidate: float, per_class_f1: dict[str, float], comparison: Comparison | None,
                     min_metric: float = 0.0, min_class_f1: float = 0.0, min_improvement: float = 0.0,
                     min_shared_rows: int = 1, baseline: tuple[float, float | None, float] | None = None,
                     regression: tuple[float, float | None] | None = None, regression_tolerance: float = 0.02,
                     extra_checks: list[dict] | None = None) -> GateResult:
    """Floors, not worse than the baseline on validation, the champion test, the regression set, extra checks.

    baseline is (model val metric, baseline val metric or None when the baseline was off, allowed margin);
    regression is (candidate accuracy, champion accuracy or None) on the regression set.
    """
    checks = [{"check": "floor", "passed": candidate >= min_metric,
               "detail": f"{metric_name} {candidate:.4f} >= floor {min_metric:.4f}"}]
    weak = {k: v for k, v in per_class_f1.items() if v < min_class_f1}
    checks.append({"check": "class_floor", "passed": not weak,
                   "detail": f"every class F1 >= {min_class_f1:.4f}" + (f" (below: {', '.join(f'{k} {v:.4f}' for k, v in weak.items())})" if weak else "")})
    if baseline is not None:
        model_val, base_val, margin = baseline
        val_name = metric_name.replace("test_", "val_", 1)
        if base_val is None:
            checks.append({"check": "baseline", "passed": True, "detail": "baseline check skipped: evaluate.baseline is off"})
        else:
            checks.append({"check": "baseline", "passed": model_val >= base_val - margin,
                           "detail": f"{val_name} {model_val:.4f} >= TF-IDF baseline {base_val:.4f} - margin {margin:.4f}"})
    checks.append(_champion_check(comparison, min_shared_rows, min_improvement))
    if regression is not None:
        cand_acc, champ_acc = regression
        if champ_acc is None:
            checks.append({"check": "regression_set", "passed": True, "detail": f"regression-set accuracy {cand_acc:.4f} (no champion to compare)"})
        else:
            checks.append({"check": "regression_set", "passed": cand_acc >= champ_acc - regression_tolerance,
                           "detail": f"regression-set accuracy {cand_acc:.4f} >= champion {champ_acc:.4f} - {regression_tolerance:.4f}"})
    checks += list(extra_checks or [])
    return GateResult(all(c["passed"] for c in checks), checks, comparison)


def check_gate_files(eval_set: str, regression_set: str, text_column: str, label_column: str, encoding: str) -> None:
    """Pre-flight check of registry.eval_set / registry.regression_set (first rows only): a missing file, a missing
    column or an unreadable file fails before any server or run starts, naming the key."""
    from textcls_core.dataset.read import check_dataset_source
    from textcls_core.runtime.errors import ConfigError, DataError

    for key, path in (("registry.eval_set", eval_set), ("registry.regression_set", regression_set)):
        if not path:
            continue
        if path.startswith("builtin:"):
            raise ConfigError(f"{key} = '{path}': the gate's file must be a labelled file no run trains on, not a builtin corpus. "
                              "Point it at a CSV/TSV/JSONL/Parquet file, or leave it empty.")
        try:
            check_dataset_source(path, text_column, label_column, encoding)
        except DataError as exc:
            raise ConfigError(f"{key}: {exc}") from None
