"""The promotion gate: a new version becomes `champion` only if every check passes.

Pure: takes numbers, returns a verdict with one line per check, so the reasons can be written into the
registry, the run summary and the notes of whoever reviews the version.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GateResult:
    passed: bool
    checks: list[dict] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [c["detail"] for c in self.checks if not c["passed"]]

    def describe(self) -> str:
        return "; ".join(("PASS " if c["passed"] else "FAIL ") + c["detail"] for c in self.checks)


def check_promotion(metric_name: str, candidate: float, per_class_f1: dict[str, float], champion: float | None,
                    min_metric: float = 0.0, min_class_f1: float = 0.0, min_improvement: float = 0.0,
                    regression: tuple[float, float | None] | None = None, regression_tolerance: float = 0.02) -> GateResult:
    """Floors, improvement over the champion, and no regression on the team's regression set.

    regression is (candidate accuracy, champion accuracy or None) on that set.
    """
    checks = [{"check": "floor", "passed": candidate >= min_metric,
               "detail": f"{metric_name} {candidate:.4f} >= floor {min_metric:.4f}"}]
    weak = {k: v for k, v in per_class_f1.items() if v < min_class_f1}
    checks.append({"check": "class_floor", "passed": not weak,
                   "detail": f"every class F1 >= {min_class_f1:.4f}" + (f" (below: {', '.join(f'{k} {v:.4f}' for k, v in weak.items())})" if weak else "")})
    if champion is None:
        checks.append({"check": "improvement", "passed": True, "detail": "no champion yet"})
    else:
        need = champion + min_improvement
        ok = candidate > need if min_improvement == 0 else candidate >= need
        checks.append({"check": "improvement", "passed": ok,
                       "detail": f"{metric_name} {candidate:.4f} {'>' if min_improvement == 0 else '>='} champion {champion:.4f} + {min_improvement:.4f}"})
    if regression is not None:
        cand_acc, champ_acc = regression
        if champ_acc is None:
            checks.append({"check": "regression_set", "passed": True, "detail": f"regression-set accuracy {cand_acc:.4f} (no champion to compare)"})
        else:
            checks.append({"check": "regression_set", "passed": cand_acc >= champ_acc - regression_tolerance,
                           "detail": f"regression-set accuracy {cand_acc:.4f} >= champion {champ_acc:.4f} - {regression_tolerance:.4f}"})
    return GateResult(all(c["passed"] for c in checks), checks)
