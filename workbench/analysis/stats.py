"""Deciding between variants: per-variant CIs, paired differences, Pareto fronts and a winner.

Pure core: numpy and pandas only (no plotly, no MLflow). Everything works on the two frames a
sweep produces: `results.questions()` (one row per variant × question, per-question scores) and
`results.to_frame()` (one row per variant, index `variant`, aggregates). Comparisons between two
variants are paired by `question_id` (`workbench.analysis.paired`). Which way is better for a metric
comes from the metric catalogue (`workbench.scoring.aggregate.direction`), never assumed.

Failed cells (a non-empty `error`) and unscored questions (None / NaN) are left out, never counted 0.

>>> q = pd.DataFrame({"variant": ["a"] * 4 + ["b"] * 4, "question_id": list("wxyz") * 2,
...                   "f1": [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]})
>>> compare(q, "f1")["mean"].to_dict()
{'a': 1.0, 'b': 0.0}
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from workbench.analysis.paired import (  # noqa: F401  (re-exported: stats is the decide step's one import)
    EXACT_MAX_N,
    NON_SCORE_COLUMNS,
    PairedDiff,
    StatsError,
    _fmt,
    _fmt_p,
    _is_number,
    paired_diff,
    score_columns,
    scored,
)
from workbench.analysis.family import LeaderTests, check_correction, leader_tests
from workbench.scoring.aggregate import direction
from workbench.scoring.metrics import summarize
from workbench.scoring.variance import hierarchical_bootstrap

OPERATORS = ("<=", "<", ">=", ">", "==")
_NEGATION = {"<=": ">", "<": ">=", ">=": "<", ">": "<=", "==": "!="}


# ---------------------------------------------------------------- per-variant summaries


def compare(questions: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per variant: mean, bootstrap 95 % CI (`metrics.summarize`) and n of a per-question metric.

    Index `variant`; sorted by mean, best first in the metric's direction (variants with no scored
    question last, mean NaN).

    >>> q = pd.DataFrame({"variant": ["a", "a", "b", "b"], "question_id": ["q1", "q2"] * 2,
    ...                   "f1": [1.0, 0.0, 1.0, None]})
    >>> compare(q, "f1")[["mean", "n"]].to_dict("index")
    {'b': {'mean': 1.0, 'n': 1}, 'a': {'mean': 0.5, 'n': 2}}
    """
    values = scored(questions, metric)
    records = []
    for variant in dict.fromkeys(questions["variant"]):
        s = _summary(values[values["variant"] == variant])
        records.append(
            {
                "variant": variant,
                "mean": np.nan if s["mean"] is None else s["mean"],
                "ci_low": np.nan if s["ci_low"] is None else s["ci_low"],
                "ci_high": np.nan if s["ci_high"] is None else s["ci_high"],
                "n": s["n"],
            }
        )
    frame = pd.DataFrame.from_records(records, columns=["variant", "mean", "ci_low", "ci_high", "n"]).set_index("variant")
    frame["n"] = frame["n"].astype(int)
    return frame.sort_values("mean", ascending=direction(metric) == "min", na_position="last", kind="stable")


def _summary(values: pd.DataFrame) -> dict[str, Any]:
    """One variant's mean, CI and n: a question answered several times (repeats) counts once, its answers
    resampled within it (`variance.hierarchical_bootstrap`); otherwise `metrics.summarize`."""
    if not values["question_id"].duplicated().any():
        return summarize(values["value"].tolist())
    long = pd.DataFrame({"variant": "", "question": values["question_id"], "judge_pass": 0, "score": values["value"],
                         "repeat": values.groupby("question_id").cumcount()})
    return hierarchical_bootstrap(long).iloc[0].to_dict()


# ---------------------------------------------------------------- Pareto front


def pareto_front(frame: pd.DataFrame, objectives: Mapping[str, Literal["max", "min"]]) -> list[str]:
    """The non-dominated variants (index values, in frame order).

    A variant is dominated when another is at least as good on every objective and strictly better
    on one. Variants equal on all objectives are both kept; a variant with NaN in any objective is
    left out (it cannot be placed).

    >>> f = pd.DataFrame({"f1": [0.5, 0.4, 0.6], "latency_total_p95_s": [1.0, 2.0, 3.0]}, index=["a", "b", "c"])
    >>> pareto_front(f, {"f1": "max", "latency_total_p95_s": "min"})
    ['a', 'c']
    """
    if not objectives:
        raise StatsError("objectives is empty; name at least one column, e.g. {'f1': 'max'}")
    for col, goal in objectives.items():
        if col not in frame.columns:
            raise StatsError(f"unknown objective column {col!r}; the frame has: {', '.join(map(str, frame.columns))}")
        if goal not in ("max", "min"):
            raise StatsError(f"objective {col!r} has goal {goal!r}; use 'max' or 'min'")
    cols = list(objectives)
    try:
        values = frame[cols].astype(float).to_numpy()
    except (TypeError, ValueError) as exc:
        raise StatsError(f"objective columns {cols} must be numeric: {exc}") from None
    signs = np.array([1.0 if objectives[c] == "max" else -1.0 for c in cols])
    keep = ~np.isnan(values).any(axis=1)
    v = values[keep] * signs  # larger is better everywhere
    labels = [frame.index[i] for i in np.flatnonzero(keep)]
    if not labels:
        return []
    geq = (v[:, None, :] >= v[None, :, :]).all(axis=2)  # geq[j, i]: j at least as good as i everywhere
    gt = (v[:, None, :] > v[None, :, :]).any(axis=2)
    dominated = (geq & gt).any(axis=0)
    return [labels[i] for i in range(len(labels)) if not dominated[i]]


# ---------------------------------------------------------------- constraints and the winner

_CONSTRAINT = re.compile(r"^\s*(<=|>=|==|<|>)?\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def parse_constraints(items: str | Sequence[str], field: str = "constraints") -> dict[str, str]:
    """'latency_total_p95_s<=2, cost_usd_per_1k<=0.5' (or a list of such) -> {column: '<= 2', …} for best().

    Shared by the CLI (--constraint) and the notebook UI; errors name `field`.
    """
    import re

    parts = items.split(",") if isinstance(items, str) else list(items)
    out: dict[str, str] = {}
    for item in (p for p in parts if p.strip()):
        m = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(<=|>=|==|<|>)\s*(\S+)\s*", item)
        if not m:
            raise StatsError(f"{field}: {item.strip()!r} is not METRIC<=VALUE, e.g. latency_total_p95_s<=2")
        out[m.group(1)] = f"{m.group(2)} {m.group(3)}"
    return out


def parse_constraint(spec: Any) -> tuple[str, float]:
    """A constraint as (operator, bound). A bare number means "at most".

    Accepted: `2` (<= 2), `"<= 2"`, `">=0.5"`, `("<", 3)`; operators <=, <, >=, >, ==.

    >>> parse_constraint("<= 2"), parse_constraint(2), parse_constraint((">=", 0.5))
    (('<=', 2.0), ('<=', 2.0), ('>=', 0.5))
    """
    hint = "use a number (meaning <=), a string like '<= 2' or '>= 0.5', or a pair like ('<=', 2); operators: " + ", ".join(OPERATORS)
    if _is_number(spec):
        op, bound = "<=", float(spec)
    elif isinstance(spec, str):
        m = _CONSTRAINT.match(spec)
        if not m:
            raise StatsError(f"constraint {spec!r} is not understood; {hint}")
        op, bound = m.group(1) or "<=", float(m.group(2))
    elif isinstance(spec, (tuple, list)) and len(spec) == 2 and spec[0] in OPERATORS and _is_number(spec[1]):
        op, bound = spec[0], float(spec[1])
    else:
        raise StatsError(f"constraint {spec!r} is not understood; {hint}")
    if math.isnan(bound):
        raise StatsError(f"constraint {spec!r} has a NaN bound; {hint}")
    return op, bound


def _holds(value: float, op: str, bound: float) -> bool:
    return {"<=": value <= bound, "<": value < bound, ">=": value >= bound, ">": value > bound, "==": value == bound}[op]


def _violation(col: str, value: float, op: str, bound: float) -> str:
    shown, limit = _fmt(value), _fmt(bound)
    if shown == limit and value != bound:  # 2.0004 > 2 must not read "2 > 2"
        shown, limit = f"{value:.10g}", f"{bound:.10g}"
    return f"{col} {shown} {_NEGATION[op]} {limit}"


def _missing(x: Any) -> bool:
    try:
        return x is None or math.isnan(float(x))
    except (TypeError, ValueError):
        return True


@dataclass(frozen=True)
class Decision:
    """The chosen variant and why. `reason` is the sentence the notebook and the CLI show.

    `candidates` are the variants meeting the constraints, best first on the objective;
    `excluded` maps each other variant to why it was left out; `diff` is the top vs runner-up test;
    `tied` the tied set the tie-break chose from (`family.leader_tests`: corrected for the comparisons);
    `warnings`: what makes the decision less sure than it reads (`SweepResults.best` adds one when a
    latency objective, constraint or tie-break compares latencies measured in different runs).
    """

    winner: str
    runner_up: str | None
    objective: str
    significant: bool | None
    diff: PairedDiff | None
    reason: str
    candidates: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    tied: list[str] = field(default_factory=list)  # the top and every candidate not significantly worse
    tests: LeaderTests | None = None  # the top against each candidate, with the corrected p-values
    power: str | None = None  # how many questions would separate the top from the runner-up (SweepResults.best)


def _adjective(col: str, superlative: bool = False) -> str:
    """How a lower `col` reads: cost -> cheaper/cheapest, latency -> faster/fastest."""
    if col.startswith("cost"):
        return "cheapest" if superlative else "cheaper"
    if col.startswith("latency"):
        return "fastest" if superlative else "faster"
    return f"lowest-{col}" if superlative else f"lower-{col}"


def _tie_key(frame: pd.DataFrame, variant: str, tie_break: Sequence[str]) -> tuple:
    key = []
    for col in tie_break:
        v = frame.at[variant, col] if col in frame.columns else None
        key.append((1, 0.0) if _missing(v) else (0, float(v)))  # NaN / unknown last
    return tuple(key)


def best(
    frame: pd.DataFrame,
    questions: pd.DataFrame,
    objective: str,
    constraints: Mapping[str, Any] | None = None,
    *,
    maximize: bool | None = None,
    alpha: float = 0.05,
    correction: str = "holm",
    tie_break: Sequence[str] = ("cost_usd_per_1k", "latency_total_p95_s"),
) -> Decision:
    """The best variant on `objective` among those meeting `constraints`, with a plain reason.

    1. Variants violating a constraint (`{"latency_total_p95_s": "<= 2"}`, see `parse_constraint`)
       or missing the constrained value or the objective are excluded, with the reason.
    2. The rest are ranked on the objective (the frame's aggregate). The top is tested against every
       other candidate on the per-question scores (`family.leader_tests`: paired permutation tests,
       p-values adjusted over every pair of candidates with `correction`, Holm by default).
    3. The **tied set** is the top and every candidate not significantly worse than it (adjusted
       p >= alpha, or a difference in its favour). The top alone: it wins (`significant` True).
       Otherwise the first of the tied set on `tie_break` wins (lowest value first, NaN or a missing
       column last; then the objective): by default the cheapest, then the fastest.

    `maximize=None` takes the objective's direction from the metric catalogue (`aggregate.direction`:
    a metric's declared one; latency, tokens and cost lower is better). A candidate sharing no scored
    question with the top cannot be tested and is left out of the tied set.

    An objective with no per-question scores (e.g. `latency_total_p95_s`) is ranked without a test
    (`significant` is None).

    >>> frame = pd.DataFrame({"f1": [0.5, 0.5], "cost_usd_per_1k": [2.0, 1.0]}, index=["a", "b"])
    >>> q = pd.DataFrame({"variant": ["a", "a", "b", "b"], "question_id": ["q1", "q2"] * 2,
    ...                   "f1": [1.0, 0.0, 0.0, 1.0]})
    >>> best(frame, q, "f1").winner     # a tie on f1: the cheaper one
    'b'
    """
    if objective not in frame.columns:
        raise StatsError(f"unknown objective {objective!r}; the frame has: {', '.join(map(str, frame.columns))}")
    if not 0 < alpha < 1:
        raise StatsError(f"alpha must be between 0 and 1, got {alpha!r}")
    check_correction(correction)
    if maximize is None:
        maximize = direction(objective) == "max"
    parsed: dict[str, tuple[str, float]] = {}
    for col, spec in (constraints or {}).items():
        if col not in frame.columns:
            raise StatsError(f"constraint on unknown column {col!r}; the frame has: {', '.join(map(str, frame.columns))}")
        try:
            parsed[col] = parse_constraint(spec)
        except StatsError as exc:
            raise StatsError(f"constraint on {col}: {exc}") from None

    excluded: dict[str, str] = {}
    candidates: list[str] = []
    for variant in frame.index:
        for col, (op, bound) in parsed.items():
            value = frame.at[variant, col]
            if _missing(value):
                excluded[variant] = f"{col} is unknown (NaN), so {op} {_fmt(bound)} cannot be checked"
                break
            if not _holds(float(value), op, bound):
                excluded[variant] = _violation(col, float(value), op, bound)
                break
        else:
            if _missing(frame.at[variant, objective]):
                excluded[variant] = f"{objective} is unknown (NaN)"
            else:
                candidates.append(variant)
    if not candidates:
        why = "".join(f"\n  {v}: {r}" for v, r in excluded.items()) or " the frame has no variants"
        raise StatsError(f"no variant meets the constraints:{why}")

    sign = -1.0 if maximize else 1.0
    candidates.sort(key=lambda v: sign * float(frame.at[v, objective]))  # stable: equal values keep frame order
    top = candidates[0]
    value = {v: float(frame.at[v, objective]) for v in candidates}
    tail = f"; {len(excluded)} excluded by the constraints" if excluded else ""

    def decision(winner: str, runner_up: str | None, significant: bool | None, diff: PairedDiff | None, reason: str,
                 tied: Sequence[str] = (), tests: LeaderTests | None = None) -> Decision:
        return Decision(winner, runner_up, objective, significant, diff, reason + tail, list(candidates), dict(excluded),
                        tied=list(tied), tests=tests)

    if len(candidates) == 1:
        return decision(top, None, None, None, f"{objective} {_fmt(value[top])}; the only variant meeting the constraints", [top])
    runner_up = candidates[1]
    headline = f"{objective} {_fmt(value[top])} vs {_fmt(value[runner_up])} for runner-up {runner_up}"

    if objective not in score_columns(questions):
        return decision(top, runner_up, None, None, f"{headline}; no per-question {objective} to test the difference")
    tests = leader_tests(questions, top, candidates[1:], objective, maximize=maximize, alpha=alpha, correction=correction)
    if runner_up in tests.untested:
        return decision(top, runner_up, None, None, f"{headline}; they share no scored question, so the difference is untested",
                        [top], tests)
    diff = paired_diff(questions, top, runner_up, objective)
    tied = tests.tied
    test_text = tests.describe(runner_up)
    untested = f"; untested (no shared question): {', '.join(tests.untested)}" if tests.untested else ""
    if tied == [top]:
        others = "the other candidate" if len(candidates) == 2 else f"each of the other {len(candidates) - 1} candidates"
        return decision(top, runner_up, True, diff,
                        f"{headline} ({test_text}); tied set: {top} alone, significantly better than {others}{untested}",
                        tied, tests)

    ranked = sorted(tied, key=lambda v: (_tie_key(frame, v, tie_break), sign * value[v], candidates.index(v)))
    winner = ranked[0]
    lead = (
        f"{top} is not significantly better than runner-up {runner_up} on {objective} "
        f"({_fmt(value[top])} vs {_fmt(value[runner_up])}, {test_text})"
        if runner_up in tied else
        f"{headline} ({test_text})"
    )
    tied_text = f"tied set: {', '.join(tied)} (not significantly worse than {top}){untested}"
    others = f"the {len(tied)} tied variants"
    if winner != top:
        col = next(c for c in tie_break if _tie_key(frame, winner, [c]) != _tie_key(frame, top, [c]))
        why = (
            f"chose the {_adjective(col)} {winner} ({col} {_fmt(frame.at[winner, col])} vs "
            f"{_fmt(frame.at[top, col]) if col in frame.columns else 'n/a'}; {objective} {_fmt(value[winner])}) among {others}"
        )
        return decision(winner, runner_up, False, diff, f"{lead}; {tied_text}; {why}", tied, tests)
    second = ranked[1]
    col = next((c for c in tie_break if _tie_key(frame, top, [c]) != _tie_key(frame, second, [c])), None)
    if col is None:
        why = f"kept {top}: none of {others} is cheaper or faster"
    else:
        why = f"kept {top}: it is also the {_adjective(col, superlative=True)} of {others} ({col} {_fmt(frame.at[top, col])})"
    return decision(top, runner_up, False, diff, f"{lead}; {tied_text}; {why}", tied, tests)
