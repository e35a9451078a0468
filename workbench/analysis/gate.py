"""The regression gate's decision: is the candidate significantly worse than the baseline by more than allowed?

Pure core. The two variants are paired by question (repeats averaged per question); "worse" follows the
metric's declared direction. The gate fails only when the mean drop exceeds `max_drop` **and** a one-sided
paired permutation test of "the drop is at most `max_drop`" rejects at `alpha`: noise alone never fails a
build, and a real but allowed drop does not either. The sign-flip null distribution is symmetric, so the
one-sided p is half the two-sided one of the shifted differences.

>>> q = pd.DataFrame({"variant": ["c"] * 20 + ["b"] * 20, "question_id": [f"q{i}" for i in range(20)] * 2,
...                   "f1": [0.5] * 20 + [0.6] * 20})
>>> gate_decision(q, "c", "b", "f1", 0.02).passed
False
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.analysis.family import per_question_means
from workbench.analysis.paired import StatsError, _bootstrap_mean_ci, _fmt, _fmt_p, sign_flip_pvalues
from workbench.scoring.aggregate import direction


@dataclass(frozen=True)
class GateDecision:
    """`passed` and the one `line` the CLI prints; `change` is candidate − baseline in the metric's units,
    `drop` how much worse (positive = worse, whichever way the metric points)."""

    passed: bool
    line: str
    metric: str
    candidate: str
    baseline: str
    n: int
    mean_candidate: float
    mean_baseline: float
    change: float
    ci_low: float
    ci_high: float
    drop: float
    max_drop: float
    p_value: float


def gate_decision(questions: pd.DataFrame, candidate: str, baseline: str, metric: str, max_drop: float, *,
                  alpha: float = 0.05, n_resamples: int = 10_000, seed: int = 0) -> GateDecision:
    """Compare `candidate` with `baseline` on `metric` over the questions both scored."""
    if not (isinstance(max_drop, (int, float)) and max_drop >= 0 and max_drop == max_drop):
        raise StatsError(f"--max-drop must be a number >= 0 in {metric}'s units (e.g. 0.02), got {max_drop!r}")
    if not 0 < alpha < 1:
        raise StatsError(f"alpha must be between 0 and 1, got {alpha!r}")
    table = per_question_means(questions, metric, [candidate, baseline]).dropna()
    if len(table) < 2:
        raise StatsError(f"candidate and baseline share {len(table)} scored question(s) on {metric!r}; the gate needs at least 2")
    sign = 1.0 if direction(metric) == "max" else -1.0
    cand, base = table[candidate].to_numpy(float), table[baseline].to_numpy(float)
    better = sign * (cand - base)  # > 0: the candidate is better
    shifted = better + max_drop  # H0: the drop is at most max_drop (mean >= 0)
    two_sided, _ = sign_flip_pvalues(shifted[None, :], n_resamples, seed)
    p = float(two_sided[0]) / 2 if shifted.mean() < 0 else 1.0
    low, high = _bootstrap_mean_ci(cand - base, n_resamples, np.random.default_rng(seed))
    drop = float(-better.mean())
    passed = not (drop > max_drop and p < alpha)
    verdict = (f"not significantly worse than baseline {baseline} by more than {_fmt(max_drop)}" if passed
               else f"significantly worse than baseline {baseline} by more than {_fmt(max_drop)}")
    line = (f"gate {'PASS' if passed else 'FAIL'}: candidate {candidate} {metric} {_fmt(cand.mean())} vs "
            f"{_fmt(base.mean())} ({(cand - base).mean():+.3g}, 95% CI {low:+.3g} to {high:+.3g}) is {verdict} "
            f"(one-sided paired permutation test p={_fmt_p(p)}, alpha {alpha:g}, n={len(table)})")
    return GateDecision(passed, line, metric, candidate, baseline, len(table), float(cand.mean()), float(base.mean()),
                        float((cand - base).mean()), low, high, drop, float(max_drop), p)


__all__ = ["GateDecision", "gate_decision"]
