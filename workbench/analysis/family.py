"""The leader against the rest, corrected for how many comparisons were made: the tied set.

Pure core (numpy, pandas; statsmodels' `multipletests` does the correction). `best()` and the Pareto view
call `leader_tests`: every candidate is paired with the others by question (a question answered several
times is averaged first, so repeats never count as extra questions), each pair gets the paired sign-flip
permutation p-value of `paired.sign_flip_pvalues`, and the p-values are adjusted together (Holm by
default). The **tied set** is the leader and every variant not significantly worse than it.

Why the family is every pair and not only the leader's K−1 comparisons: the leader is picked by the same
scores it is then tested on, so "leader vs the rest" is really "best vs worst", and with 10 equal variants
Holm over the leader's 9 comparisons alone still declares a winner far more often than alpha
(`experiments/benchmarks/stats_check.py` prints both rates). Holm over all K(K−1)/2 pairs bounds the chance
of any false "significantly better" by alpha whichever variant leads. `family="leader"` is kept for that
comparison and for a baseline fixed before the data (as the regression gate has).

>>> q = pd.DataFrame({"variant": ["a"] * 20 + ["b"] * 20, "question_id": [f"q{i}" for i in range(20)] * 2,
...                   "f1": [1.0] * 20 + [0.0] * 20})
>>> t = leader_tests(q, "a", ["b"], "f1")
>>> t.tied, t.pairs
(['a'], 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from workbench.analysis.paired import StatsError, _fmt_p, scored, sign_flip_pvalues

# statsmodels' methods that bound the family-wise error (FDR methods do not, so they are not offered).
CORRECTIONS = ("holm", "bonferroni", "holm-sidak", "sidak", "hommel", "none")
_NAMES = {"holm": "Holm", "bonferroni": "Bonferroni", "holm-sidak": "Holm-Šidák", "sidak": "Šidák", "hommel": "Hommel"}


def check_correction(correction: str, field_name: str = "correction") -> str:
    if correction not in CORRECTIONS:
        raise StatsError(f"{field_name} {correction!r} is not one of {', '.join(CORRECTIONS)}; holm is the default")
    return correction


def adjust(p_values: Sequence[float], correction: str = "holm", alpha: float = 0.05) -> np.ndarray:
    """p-values adjusted for the family they belong to (statsmodels' `multipletests`); "none": unchanged."""
    check_correction(correction)
    p = np.asarray(p_values, dtype=float)
    if correction == "none" or p.size == 0:
        return p
    from statsmodels.stats.multitest import multipletests  # ~1 s import: only when a family is tested

    return multipletests(p, alpha=alpha, method=correction)[1]


def per_question_means(questions: pd.DataFrame, metric: str, variants: Sequence[str] | None = None) -> pd.DataFrame:
    """question_id × variant: the mean score of each variant on each question (repeats and judge passes
    averaged; failed and unscored left out, so NaN). Columns in `variants` order when given."""
    values = scored(questions, metric)
    table = values.pivot_table(index="question_id", columns="variant", values="value", aggfunc="mean", sort=False)
    if variants is not None:
        table = table.reindex(columns=list(variants))
    return table


@dataclass(frozen=True)
class LeaderTests:
    """The leader on `metric` against every other candidate, with the family's adjusted p-values.

    `p_raw`, `p_adjusted`, `mean_diff` (leader − other) and `n` (shared questions) per other variant;
    `untested`: variants sharing no scored question with the leader; `tied`: the leader and every
    variant not significantly worse than it (in the order given), `pairs`: the family's size.
    """

    leader: str
    metric: str
    maximize: bool
    alpha: float
    correction: str
    family: str
    pairs: int
    p_raw: dict[str, float] = field(default_factory=dict)
    p_adjusted: dict[str, float] = field(default_factory=dict)
    mean_diff: dict[str, float] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)
    untested: list[str] = field(default_factory=list)
    tied: list[str] = field(default_factory=list)
    test: str = ""

    def leader_better(self, other: str) -> bool:
        """The leader is significantly better than `other` after the correction."""
        if other not in self.p_adjusted:
            return False
        favours = self.mean_diff[other] > 0 if self.maximize else self.mean_diff[other] < 0
        return bool(self.p_adjusted[other] < self.alpha and favours)

    def describe(self, other: str) -> str:
        """'paired permutation test p=0.01, n=40; Holm over 3 pairwise tests p=0.03' for leader vs `other`."""
        text = f"paired permutation test p={_fmt_p(self.p_raw[other])}, n={self.n[other]}"
        if self.correction == "none" or self.pairs == 1:
            return text + ("" if self.pairs == 1 else f"; not corrected for the {self.pairs} tests")
        scope = "pairwise tests" if self.family == "all-pairs" else "comparisons with the leader"
        return f"{text}; {_NAMES[self.correction]} over {self.pairs} {scope} p={_fmt_p(self.p_adjusted[other])}"


def leader_tests(
    questions: pd.DataFrame,
    leader: str,
    others: Sequence[str],
    metric: str,
    *,
    maximize: bool = True,
    alpha: float = 0.05,
    correction: str = "holm",
    family: Literal["all-pairs", "leader"] = "all-pairs",
    n_resamples: int = 10_000,
    seed: int = 0,
) -> LeaderTests:
    """Test `leader` against each of `others` on the per-question `metric`, corrected over the family."""
    check_correction(correction)
    if family not in ("all-pairs", "leader"):
        raise StatsError(f"family {family!r} is not 'all-pairs' or 'leader'")
    variants = [leader, *others]
    table = per_question_means(questions, metric, variants).to_numpy(dtype=float).T  # variants × questions
    idx = list(range(len(variants)))
    wanted = [(0, j) for j in idx[1:]] if family == "leader" else [(i, j) for i in idx for j in idx if i < j]
    groups: dict[bytes, list[tuple[int, int]]] = {}  # pairs sharing the same questions are tested in one product
    for i, j in wanted:
        mask = ~np.isnan(table[i]) & ~np.isnan(table[j])
        if mask.any():
            groups.setdefault(np.packbits(mask).tobytes() + bytes([int(mask.size % 8)]), []).append((i, j))
    p_of: dict[tuple[int, int], float] = {}
    test = ""
    for pairs in groups.values():
        i0, j0 = pairs[0]
        mask = ~np.isnan(table[i0]) & ~np.isnan(table[j0])
        diffs = np.stack([table[i][mask] - table[j][mask] for i, j in pairs])
        p, test = sign_flip_pvalues(diffs, n_resamples, seed)
        p_of.update(zip(pairs, map(float, p)))
    tested = list(p_of)
    adjusted = dict(zip(tested, map(float, adjust([p_of[k] for k in tested], correction, alpha))))
    out = LeaderTests(leader, metric, maximize, alpha, correction, family, pairs=len(tested), test=test)
    for j in idx[1:]:
        other = variants[j]
        if (0, j) not in p_of:
            out.untested.append(other)
            continue
        mask = ~np.isnan(table[0]) & ~np.isnan(table[j])
        out.p_raw[other], out.p_adjusted[other] = p_of[(0, j)], adjusted[(0, j)]
        out.mean_diff[other] = float((table[0][mask] - table[j][mask]).mean())
        out.n[other] = int(mask.sum())
    out.tied.extend([leader, *(v for v in others if v in out.p_raw and not out.leader_better(v))])
    return out


__all__ = ["CORRECTIONS", "LeaderTests", "adjust", "check_correction", "leader_tests", "per_question_means"]
