"""How many questions (and repeats) a decision needs: power of the paired comparison from the observed variance.

Pure core; statsmodels' `TTestPower` (the one-sample t-test on per-question differences, which the paired
permutation test matches closely once n is a few dozen) does the arithmetic. The variance comes from the
sweep: the per-question differences between two variants (repeats averaged), and, when the sweep has
repeats, how much of it is the answers' own noise (`scoring.variance.variance_split`), which more repeats
shrink and more questions do not:

    var(diff of question means, r repeats) = var_between + (within_a + within_b) / r

where within = var_generation + var_judge / judge passes. `plan` turns that into questions needed for each
number of repeats.

>>> round(questions_needed(sd=0.2, delta=0.05))     # (1.96 + 0.84)^2 * (0.2 / 0.05)^2 + the t correction
128
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workbench.analysis.family import per_question_means
from workbench.analysis.paired import StatsError, _fmt
from workbench.scoring.variance import long_frame, variance_split

TARGET = 0.8
MAX_QUESTIONS = 10_000_000


def _ttest():
    from statsmodels.stats.power import TTestPower  # imported on use: statsmodels is ~1 s to import

    return TTestPower()


def _check(delta: float, alpha: float, target: float) -> None:
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta > 0):
        raise StatsError(f"delta must be a positive difference in the metric's units (e.g. 0.05 for f1), got {delta!r}")
    if not 0 < alpha < 1:
        raise StatsError(f"alpha must be between 0 and 1, got {alpha!r}")
    if not 0 < target < 1:
        raise StatsError(f"power must be between 0 and 1 (e.g. 0.8), got {target!r}")


def questions_needed(sd: float, delta: float, alpha: float = 0.05, target: float = TARGET) -> int:
    """Questions for a two-sided paired test at `alpha` to detect a true mean difference `delta` with
    probability `target`, when per-question differences have standard deviation `sd`."""
    _check(delta, alpha, target)
    if sd <= 0:
        return 2  # no noise: any two questions show it
    n = _ttest().solve_power(effect_size=delta / sd, alpha=alpha, power=target, alternative="two-sided")
    return int(min(math.ceil(float(np.asarray(n).item())), MAX_QUESTIONS))


def power_at(sd: float, delta: float, n: int, alpha: float = 0.05) -> float:
    """The chance that n questions detect a true difference `delta` (two-sided, `alpha`)."""
    _check(delta, alpha, 0.5)
    if n < 2:
        return 0.0
    if sd <= 0:
        return 1.0
    return float(_ttest().power(effect_size=delta / sd, nobs=n, alpha=alpha, alternative="two-sided"))


def detectable(sd: float, n: int, alpha: float = 0.05, target: float = TARGET) -> float:
    """The smallest true difference n questions detect with probability `target`."""
    if n < 2:
        return math.inf
    effect = _ttest().solve_power(nobs=n, alpha=alpha, power=target, alternative="two-sided")
    return float(np.asarray(effect).item()) * sd


@dataclass(frozen=True)
class PowerPlan:
    """What it takes to tell `a` from `b` on `metric` when they truly differ by `delta`.

    `sd`: of the per-question differences observed (at `repeats_have` answers per question); `power_now`
    at the `n_have` shared questions; `questions`: needed at `target` power with the repeats observed;
    `by_repeats`: repeats -> questions needed (only when the sweep has repeats to split the variance).
    """

    metric: str
    a: str
    b: str
    delta: float
    alpha: float
    target: float
    n_have: int
    repeats_have: float
    sd: float
    observed_diff: float
    power_now: float
    questions: int
    by_repeats: dict[int, int] = field(default_factory=dict)

    @property
    def enough(self) -> bool:
        return self.n_have >= self.questions

    def statement(self) -> str:
        need = f"{self.questions} questions" + ("" if self.repeats_have <= 1 else f" at {self.repeats_have:g} repeats")
        text = (f"to detect a {self.metric} difference of {_fmt(self.delta)} between {self.a} and {self.b} at "
                f"{self.target:.0%} power (alpha {self.alpha:g}) needs {need}; with {self.n_have} the power is "
                f"{self.power_now:.0%} (sd of per-question differences {_fmt(self.sd)})")
        if self.by_repeats:
            text += "; with repeats: " + ", ".join(f"{r} -> {n} questions" for r, n in self.by_repeats.items())
        return text


def plan(questions: pd.DataFrame, a: str, b: str, metric: str, delta: float, *, alpha: float = 0.05,
         target: float = TARGET, repeats: Sequence[int] = (1, 2, 3, 5)) -> PowerPlan:
    """The power of comparing `a` with `b` on `metric` and the questions needed, from the observed variance."""
    _check(delta, alpha, target)
    table = per_question_means(questions, metric, [a, b])
    d = (table[a] - table[b]).dropna().to_numpy(dtype=float)
    if d.size < 2:
        raise StatsError(f"variants {a} and {b} share {d.size} scored question(s) on {metric!r}; power needs at least 2")
    sd = float(d.std(ddof=1))
    rows = questions[questions["variant"].isin([a, b])].to_dict("records")
    long = long_frame(rows, metric)
    long = long[long["question"].isin(table.dropna().index)]
    split = variance_split(long)
    r_have = float(long.groupby(["variant", "question"])["repeat"].nunique().mean()) if not long.empty else 1.0
    by_repeats: dict[int, int] = {}
    if r_have > 1 and not split[["var_generation"]].isna().any().any():
        judge = split["var_judge"].fillna(0.0) / split["judge_passes"]
        within = float((split["var_generation"] + judge).sum())  # both variants' per-answer noise
        between = max(sd**2 - within / r_have, 0.0)
        by_repeats = {int(r): questions_needed(math.sqrt(between + within / r), delta, alpha, target) for r in repeats}
    return PowerPlan(metric, a, b, float(delta), alpha, target, int(d.size), r_have, sd, float(d.mean()),
                     power_at(sd, delta, int(d.size), alpha), questions_needed(sd, delta, alpha, target), by_repeats)


def too_small(questions: pd.DataFrame, ranked: Sequence[str], metric: str, *, alpha: float = 0.05,
              target: float = TARGET) -> str | None:
    """The warning when the eval set is too small to separate the top two of `ranked` (best first) on
    `metric`: the observed gap would be detected with less than `target` power. None when it is not."""
    if len(ranked) < 2:
        return None
    try:
        table = per_question_means(questions, metric, list(ranked[:2]))
    except StatsError:
        return None
    d = (table[ranked[0]] - table[ranked[1]]).dropna().to_numpy(dtype=float)
    if d.size < 2:
        return None
    gap, sd = abs(float(d.mean())), float(d.std(ddof=1))
    if sd == 0:
        return None
    smallest = detectable(sd, int(d.size), alpha, target)
    if gap > 0 and power_at(sd, gap, int(d.size), alpha) >= target:
        return None
    need = questions_needed(sd, gap, alpha, target) if gap > 0 else None
    more = f"; about {need} questions would separate a gap that size" if need else ""
    return (f"the eval set is too small to separate the top two on {metric}: {d.size} questions detect a difference "
            f"of {_fmt(smallest)} at {target:.0%} power, the top two differ by {_fmt(gap)}{more} (workbench plan)")


__all__ = ["PowerPlan", "TARGET", "detectable", "plan", "power_at", "questions_needed", "too_small"]
