"""Paired comparison of two variants, and the questions frame it reads.

Pure core: numpy and pandas only. `results.questions()` has one row per variant × question with the
per-question scores; `score_columns` says which columns are scores (derived from the Cell declaration:
every column that does not describe the cell), `scored` takes one of them with failed cells and
unscored questions left out (never counted 0), and `paired_diff` compares two variants on the
questions both scored: the per-question differences carry far less noise than two independent means.

>>> q = pd.DataFrame({"variant": ["a"] * 4 + ["b"] * 4, "question_id": list("wxyz") * 2,
...                   "f1": [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]})
>>> d = paired_diff(q, "a", "b", "f1")
>>> d.mean_diff, d.p_value      # exact test: only 2 of the 2**4 sign patterns reach |mean| = 1
(1.0, 0.125)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.scoring import catalogue
from workbench.scoring.cell import DESCRIPTIVE


class StatsError(WorkbenchError, ValueError):
    """A comparison cannot be made (unknown metric or variant, nothing shared, nothing left).

    Both a `WorkbenchError` (the CLI prints it without a traceback) and a `ValueError`.
    """


# Columns of `results.questions()` that describe a cell rather than score it (the Cell's descriptive
# fields; `label` and `run_id` are the frame's), and why a judged metric has no value.
NON_SCORE_COLUMNS = DESCRIPTIVE | {"label", "run_id"}
EXACT_MAX_N = 16  # up to 2**16 sign patterns are enumerated exactly
_CHUNK_CELLS = 2_000_000  # resample rows drawn at a time ≈ this / n (memory stays ~16 MB)


# ---------------------------------------------------------------- small helpers


def _fmt(x: Any) -> str:
    """A number as the reasons show it: 3 significant digits, 'n/a' when missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    x = float(x)
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def _fmt_p(p: float) -> str:
    return f"{p:.2g}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (Real, np.number)) and not isinstance(v, (bool, np.bool_))


def _is_judge_error(col: str) -> bool:
    return col.endswith("_error") and catalogue.is_metric(col.removesuffix("_error"))


def score_columns(questions: pd.DataFrame) -> list[str]:
    """The per-question score columns of a questions frame (numbers or None in every row).

    >>> score_columns(pd.DataFrame({"variant": ["a"], "question_id": ["q1"], "f1": [0.5], "answer": ["x"]}))
    ['f1']
    """
    out = []
    for col in questions.columns:
        declared = catalogue.aggregate_of(str(col))
        if declared is not None and declared.per == "question":  # a cascade's `escalated`, a wrong cache hit: 0/1
            out.append(str(col))
            continue
        if col in NON_SCORE_COLUMNS or _is_judge_error(str(col)):
            continue
        s = questions[col]
        if pd.api.types.is_bool_dtype(s):
            continue
        if pd.api.types.is_numeric_dtype(s) or all(_is_number(v) for v in s.dropna()):
            out.append(str(col))
    return out


def _check_metric(questions: pd.DataFrame, metric: str) -> None:
    for col in ("variant", "question_id"):
        if col not in questions.columns:
            raise StatsError(f"the questions frame has no {col!r} column; pass results.questions()")
    available = score_columns(questions)
    if metric not in available:
        raise StatsError(f"unknown metric {metric!r}; the questions frame scores: {', '.join(available) or 'nothing'}")


def scored(questions: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Columns variant, question_id, value (the metric as float); failed cells and unscored questions dropped.

    >>> scored(pd.DataFrame({"variant": ["a", "a"], "question_id": ["q1", "q2"], "f1": [0.5, None],
    ...                      "error": [None, None]}), "f1")["value"].tolist()
    [0.5]
    """
    _check_metric(questions, metric)
    q = questions
    if "error" in q.columns:
        failed = q["error"].notna() & (q["error"].astype(str) != "")
        q = q[~failed]
    out = pd.DataFrame(
        {"variant": q["variant"].to_numpy(), "question_id": q["question_id"].to_numpy(), "value": q[metric].astype(float).to_numpy()}
    )
    return out[out["value"].notna()]


def _resolve_variant(questions: pd.DataFrame, key: str) -> str:
    """The short hash (`variant`) of the variant named by short hash, full hash or a unique prefix."""
    full = questions["variant_hash"] if "variant_hash" in questions.columns else questions["variant"]
    pairs = pd.DataFrame({"short": questions["variant"].astype(str), "full": full.astype(str)}).drop_duplicates()
    key = str(key)
    exact = pairs[(pairs["short"] == key) | (pairs["full"] == key)]
    if len(exact["short"].unique()) == 1:
        return exact["short"].iloc[0]
    hits = pairs[pairs["short"].str.startswith(key) | pairs["full"].str.startswith(key)]
    found = list(dict.fromkeys(hits["short"]))
    if len(found) != 1:
        known = ", ".join(dict.fromkeys(pairs["short"]))
        raise StatsError(f"variant {key!r} matches {len(found)} variants; known: {known}")
    return found[0]


# ---------------------------------------------------------------- paired differences


@dataclass(frozen=True)
class PairedDiff:
    """Variant `a` minus variant `b` on `metric`, over the `n` questions both have a score for."""

    a: str
    b: str
    metric: str
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str

    def significant(self, alpha: float = 0.05) -> bool:
        """p < alpha (two-sided)."""
        return self.p_value < alpha


def _bootstrap_mean_ci(d: np.ndarray, n_resamples: int, rng: np.random.Generator) -> tuple[float, float]:
    n = d.size
    means = np.empty(n_resamples)
    chunk = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        means[start:stop] = d[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def sign_flip_pvalues(diffs: np.ndarray, n_resamples: int = 10_000, seed: int = 0) -> tuple[np.ndarray, str]:
    """Two-sided paired permutation p-values of mean = 0, one per row of `diffs` (k pairs × n questions).

    Under "no difference" each per-question difference is equally likely to have either sign, so p is the
    share of sign patterns whose |sum| reaches the observed one. n <= 16: all 2^n patterns (exact); above,
    `n_resamples` random patterns from `seed`, p = (count + 1) / (n_resamples + 1). Every row is tested
    against the same patterns, so k pairs cost one matrix product and one pair alone gets the same p.
    """
    d = np.atleast_2d(np.asarray(diffs, dtype=float))
    n = d.shape[1]
    observed = np.abs(d.sum(axis=1))
    threshold = observed - 1e-9 * np.maximum(observed, 1e-300)  # a pattern equal to the observed one counts
    if n <= EXACT_MAX_N:
        patterns = np.arange(2**n)[:, None] >> np.arange(n)
        signs = 1.0 - 2.0 * (patterns & 1)
        count = np.count_nonzero(np.abs(signs @ d.T) >= threshold, axis=0)
        return count / 2**n, f"paired sign-flip permutation test, exact (all 2^{n} sign patterns)"
    rng = np.random.default_rng(seed)
    count = np.zeros(d.shape[0], dtype=np.int64)
    chunk = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(stop - start, n))
        count += np.count_nonzero(np.abs(signs @ d.T) >= threshold, axis=0)
    return (count + 1) / (n_resamples + 1), f"paired sign-flip permutation test, {n_resamples} random sign flips"


def paired_diff(
    questions: pd.DataFrame, a: str, b: str, metric: str, *, n_resamples: int = 10_000, seed: int = 0
) -> PairedDiff:
    """Mean of `a - b` over the questions both variants scored, with a CI and a p-value.

    Pairs by `question_id` (a question asked several times is averaged first); failed cells and
    unscored questions are left out. The CI is the percentile bootstrap 95 % interval of the mean
    difference (`n_resamples` resamples). The p-value is a two-sided paired sign-flip permutation
    test of "no difference": under it each difference is equally likely to have either sign, so
    p = share of sign patterns whose |mean| is at least the observed |mean|. With n <= 16 all 2^n
    patterns are enumerated (exact); above, `n_resamples` random patterns give
    p = (count + 1) / (n_resamples + 1). `test` says which was used. `a` and `b` may be short or
    full hashes or any unique prefix; `seed` makes the result reproducible.

    >>> q = pd.DataFrame({"variant": ["a"] * 3 + ["b"] * 3, "question_id": ["q1", "q2", "q3"] * 2,
    ...                   "f1": [1.0, 1.0, None, 0.0, 0.5, 1.0]})
    >>> d = paired_diff(q, "a", "b", "f1")
    >>> d.n, d.mean_diff, d.p_value     # q3 unscored for a; diffs [1, .5]: 2 of 4 sign patterns reach |.75|
    (2, 0.75, 0.5)
    """
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise StatsError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    values = scored(questions, metric)
    va, vb = _resolve_variant(questions, a), _resolve_variant(questions, b)
    if va == vb:
        raise StatsError(f"a and b name the same variant {va!r}; pass two different variants")
    sa = values[values["variant"] == va].groupby("question_id", sort=False)["value"].mean()
    sb = values[values["variant"] == vb].groupby("question_id", sort=False)["value"].mean()
    shared = sa.index.intersection(sb.index, sort=False)
    if len(shared) == 0:
        raise StatsError(
            f"variants {va} and {vb} share no scored question on {metric!r} "
            f"({len(sa)} scored for {va}, {len(sb)} for {vb}); nothing to pair"
        )
    xa, xb = sa.loc[shared].to_numpy(dtype=float), sb.loc[shared].to_numpy(dtype=float)
    d = xa - xb
    ci_low, ci_high = _bootstrap_mean_ci(d, n_resamples, np.random.default_rng(seed))
    p_values, test = sign_flip_pvalues(d[None, :], n_resamples, seed)
    p = p_values[0]
    return PairedDiff(
        a=va,
        b=vb,
        metric=metric,
        n=int(d.size),
        mean_a=float(xa.mean()),
        mean_b=float(xb.mean()),
        mean_diff=float(d.mean()),
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=float(p),
        test=test,
    )
