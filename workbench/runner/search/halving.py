"""Successive halving over question subsets, as a pure ask/tell loop (no I/O: the sweep, a benchmark's
oracle or a test drives it).

Every variant answers the same first rung of questions; a variant stops when it breaks a constraint, when it
is significantly worse than the rung's leader (paired t-test on the questions both answered, Holm-corrected
for the number of comparisons) or when it falls outside the top 1/eta; survivors answer the next rung's new
questions (earlier answers are reused); the last rung is the whole eval set. At the end the top variant is
compared with every other full-set survivor: those not significantly worse are reported as tied with it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from workbench.analysis.stats import parse_constraint
from workbench.spec_search import SearchConfig


_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}


def plan_rungs(n_questions: int, cfg: SearchConfig) -> list[int]:
    """Cumulative question counts per rung: the first max(min_questions, first_rung·n), then eta-fold, the
    last the whole set. A rung that would leave less than half a step before the whole set is merged into it."""
    if n_questions <= 0:
        return []
    sizes = [min(n_questions, max(cfg.min_questions, math.ceil(cfg.first_rung * n_questions)))]
    while sizes[-1] < n_questions:
        nxt = math.ceil(sizes[-1] * cfg.eta)
        sizes.append(n_questions if nxt * (1 + (cfg.eta - 1) / 2) > n_questions else nxt)
    return sizes


def question_order(question_ids: Sequence[str], seed: int) -> list[str]:
    """A seeded permutation: eval sets are often sorted (by article, by difficulty), rungs must not be."""
    perm = np.random.default_rng(seed).permutation(len(question_ids))
    return [question_ids[i] for i in perm]


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    m = p_values.size
    order = np.argsort(p_values)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p_values[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def paired_p(leader: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Two-sided paired t-test p of leader vs each row of `others` (same questions); 1 where nothing varies."""
    with np.errstate(all="ignore"):
        p = sps.ttest_rel(np.broadcast_to(leader, others.shape), others, axis=1).pvalue
    p = np.atleast_1d(np.asarray(p, dtype=float))
    same = np.all(others == leader, axis=1)
    return np.where(same | np.isnan(p), 1.0, p)


def broken_constraints(cfg: SearchConfig, ask: Ask, aggregates: Mapping[str, Mapping[str, float]]) -> dict[str, str]:
    """{variant: why} for the variants whose aggregates on this rung break one of `cfg.constraints`."""
    out: dict[str, str] = {}
    for v in ask.variants:
        for col, text in cfg.constraints.items():
            op, bound = parse_constraint(text)
            value = (aggregates.get(v) or {}).get(col)
            if value is None or math.isnan(float(value)):
                out[v] = f"{col} is unknown, so {op} {bound:g} cannot be checked (rung {ask.rung})"
                break
            if not _OPS[op](float(value), bound):
                out[v] = f"{col} {float(value):.4g} breaks {op} {bound:g} on rung {ask.rung}'s {len(ask.question_ids)} questions"
                break
    return out


def score_matrix(variants: Sequence[str], qids: Sequence[str], scores, maximize: bool = True) -> tuple[np.ndarray, int]:
    """Variants × questions, only the questions every variant scored (sign: larger is better)."""
    if not variants:
        return np.empty((0, 0)), 0
    raw = np.array([[np.nan if (x := scores.get(v, {}).get(q)) is None else float(x) for q in qids]
                    for v in variants], dtype=float)
    keep = ~np.isnan(raw).any(axis=0)
    return (raw[:, keep] if maximize else -raw[:, keep]), int(keep.sum())


def tie_outcome(final: Mapping[str, np.ndarray], alpha: float, where: str,
                means: Mapping[str, float] | None = None) -> Outcome:
    """The top of `final` (variant -> scores on the same questions, larger is better; or the top of `means`
    when given) and those not significantly worse than it on `final` (two-sided paired t-test at alpha,
    uncorrected: 'tied' is the cautious claim)."""
    if not final:
        return Outcome(None, (), "no variant answered the whole eval set (every variant was stopped)")
    names = list(final)
    matrix = np.vstack([final[v] for v in names])
    if matrix.shape[1] == 0:
        return Outcome(None, (), "the survivors share no scored question on the whole eval set")
    top = int(np.argmax([means[v] for v in names] if means else matrix.mean(axis=1)))
    others = [i for i in range(len(names)) if i != top]
    p = paired_p(matrix[top], matrix[others]) if others else np.array([])
    tied = tuple(names[i] for i, pi in zip(others, p) if not pi < alpha)
    n = matrix.shape[1]
    if tied:
        reason = f"{names[top][:12]} leads on {where} ({n}) but is tied with {len(tied)} other(s) (paired t-test p >= {alpha:g})"
    elif others:
        reason = f"{names[top][:12]} is significantly better than the other {len(others)} on {where} ({n})"
    else:
        reason = f"{names[top][:12]} is the only variant left on the whole eval set ({n} questions)"
    return Outcome(names[top], tied, reason)


@dataclass
class VariantState:
    """Where a variant got: the last rung it answered, how many questions, and why it stopped (None: alive)."""

    rung: int = -1
    questions: int = 0
    stopped: str | None = None


@dataclass(frozen=True)
class Ask:
    """One rung: these variants answer these questions (the first `len(question_ids)` of the order)."""

    rung: int
    variants: tuple[str, ...]
    question_ids: tuple[str, ...]
    last: bool


@dataclass(frozen=True)
class Outcome:
    """The search's answer: the winner, who is tied with it on the whole set, and why."""

    winner: str | None
    tied: tuple[str, ...]
    reason: str


@dataclass
class Halving:
    """ask() -> the next rung (or None), tell(scores, aggregates) -> the variants stopped at it."""

    variants: Sequence[str]
    question_ids: Sequence[str]
    cfg: SearchConfig
    maximize: bool = True
    rungs: list[int] = field(init=False)
    order: list[str] = field(init=False)
    state: dict[str, VariantState] = field(init=False)
    rung: int = field(init=False, default=0)
    final: dict[str, np.ndarray] = field(init=False, default_factory=dict)  # survivors' scores, last rung's new questions
    means: dict[str, float] = field(init=False, default_factory=dict)  # survivors' means on the whole set

    def __post_init__(self) -> None:
        self.rungs = plan_rungs(len(self.question_ids), self.cfg)
        self.order = question_order(list(self.question_ids), self.cfg.seed)
        self.state = {v: VariantState() for v in self.variants}

    @property
    def alive(self) -> list[str]:
        return [v for v in self.variants if self.state[v].stopped is None]

    def ask(self) -> Ask | None:
        if self.rung >= len(self.rungs) or not self.alive:
            return None
        size = self.rungs[self.rung]
        return Ask(self.rung, tuple(self.alive), tuple(self.order[:size]), self.rung == len(self.rungs) - 1)

    def tell(self, scores: Mapping[str, Mapping[str, float | None]],
             aggregates: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, str]:
        """scores[variant][question_id]: the objective per question (None: failed or unscored);
        aggregates[variant]: its aggregate metrics on this rung's questions (for the constraints).
        Returns {variant: why it stopped} for the variants stopped at this rung."""
        ask = self.ask()
        if ask is None:
            raise RuntimeError("tell() after the search ended")
        for v in ask.variants:
            self.state[v].rung, self.state[v].questions = ask.rung, len(ask.question_ids)
        stopped = self._constraints(ask, aggregates or {})
        alive = [v for v in ask.variants if v not in stopped]
        matrix, shared = self._matrix(alive, ask.question_ids, scores)
        if ask.last:
            self.means = {v: float(matrix[i].mean()) if matrix.shape[1] else math.nan for i, v in enumerate(alive)}
            # the tie test uses only the questions no earlier rung chose on (those carry the winner's curse)
            fresh = [q in set(ask.question_ids[self.rungs[ask.rung - 1]:]) for q in ask.question_ids] if ask.rung else None
            matrix, _ = self._matrix(alive, [q for q, f in zip(ask.question_ids, fresh or []) if f] or ask.question_ids, scores)
            self.final = {v: matrix[i] for i, v in enumerate(alive)}
        elif len(alive) > 1 and shared:
            stopped.update(self._prune(alive, matrix, len(ask.variants), ask.rung, shared))
        for v, why in stopped.items():
            self.state[v].stopped = why
        self.rung += 1
        return stopped

    def _constraints(self, ask: Ask, aggregates: Mapping[str, Mapping[str, float]]) -> dict[str, str]:
        return broken_constraints(self.cfg, ask, aggregates)

    def _matrix(self, alive: list[str], qids: Sequence[str], scores) -> tuple[np.ndarray, int]:
        return score_matrix(alive, qids, scores, self.maximize)

    def _prune(self, alive: list[str], matrix: np.ndarray, entered: int, rung: int, shared: int) -> dict[str, str]:
        means = matrix.mean(axis=1)
        lead = int(np.argmax(means))
        others = [i for i in range(len(alive)) if i != lead]
        p = holm(paired_p(matrix[lead], matrix[others]))
        out: dict[str, str] = {}
        for i, pi in zip(others, p):
            if pi < self.cfg.alpha and means[i] < means[lead]:
                out[alive[i]] = (f"significantly worse than {alive[lead][:12]} on rung {rung}'s {shared} shared questions "
                                 f"(paired t-test, Holm-adjusted p={pi:.2g}, {len(others)} comparisons)")
        keep = max(self.cfg.min_survivors, math.ceil(entered / self.cfg.eta))
        ranked = [i for i in np.argsort(-means, kind="stable") if alive[i] not in out]
        for i in ranked[keep:]:
            out[alive[i]] = f"outside the top {keep} of {entered} on rung {rung}'s {shared} shared questions (1/eta)"
        return out

    def outcome(self) -> Outcome:
        """The top survivor on the last rung's new questions (none of them chose who survived) and the survivors
        not significantly worse than it there (two-sided paired t-test at alpha, uncorrected: 'tied' is the
        cautious claim)."""
        out = tie_outcome(self.final, self.cfg.alpha, "the whole set, tested on the last rung's new questions", self.means)
        stopped_by_rank = sum(1 for s in self.state.values() if s.stopped and "outside the top" in s.stopped)
        if out.winner and stopped_by_rank:
            out = Outcome(out.winner, out.tied, f"{out.reason}; {stopped_by_rank} variant(s) were stopped by rank only "
                                                "(not significance) and were never compared on the whole set")
        return out
