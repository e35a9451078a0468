"""Repeats: how much of a score's spread is the questions, the generation and the judge, and CIs that know it.

Pure functions over a **long frame** with one row per judged score: `variant, question, repeat, judge_pass,
score` (`long_frame` builds it from result rows: a row per variant × question × repeat, a judged metric's
passes in `<metric>_passes`). The model behind it is the nested one the sweep runs:

    score = mean + question effect (var_question) + answer effect (var_generation) + judge noise (var_judge)

`variance_split` estimates the three variances by the method of moments (the nested ANOVA estimators,
exact in expectation for balanced data, each clipped at 0); a level with a single draw everywhere cannot be
separated from the one below it and is NaN (no repeats: generation noise is inside var_question; one
judge pass: judge noise is inside var_generation). `hierarchical_bootstrap` resamples questions, then
answers within each drawn question (judge passes are averaged per answer), so its interval counts every
level of noise and each question weighs the same however many answers it has.

>>> import pandas as pd
>>> long = pd.DataFrame({"variant": "a", "question": ["q1"] * 4 + ["q2"] * 4, "repeat": [0, 0, 1, 1] * 2,
...                      "judge_pass": [0, 1] * 4, "score": [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]})
>>> variance_split(long).loc["a", ["var_question", "var_generation", "var_judge"]].tolist()
[0.0, 0.5, 0.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
if TYPE_CHECKING:
    import pandas as pd

LONG_COLUMNS = ("variant", "question", "repeat", "judge_pass", "score")
PASSES_SUFFIX = "_passes"  # a row's judged metric per judge pass: f"{metric}_passes" -> [score, …]
COMPONENTS = ("var_question", "var_generation", "var_judge")
_CHUNK_CELLS = 2_000_000


def long_frame(rows: Sequence[Mapping[str, Any]], metric: str) -> pd.DataFrame:
    """The long frame of `metric` from result rows (failed cells and missing scores left out).

    A row's `repeat` (absent: 0) tells its answers apart; `<metric>_passes` (a list) holds one score per
    judge pass, otherwise the row's `metric` is the one pass.
    """
    import pandas as pd
    records = []
    for row in rows:
        if row.get("error"):
            continue
        passes = row.get(metric + PASSES_SUFFIX)
        values = list(passes) if isinstance(passes, (list, tuple)) else [row.get(metric)]
        for j, value in enumerate(values):
            if value is None or value != value:
                continue
            records.append((row.get("variant", ""), row.get("question_id"), _index(row.get("repeat")), j, float(value)))
    return pd.DataFrame.from_records(records, columns=list(LONG_COLUMNS))


def _index(value: Any) -> int:
    """A repeat index as written (int) or read back from a table (float, NaN when absent): 0 when absent."""
    try:
        return int(value) if value is not None and value == value else 0
    except (TypeError, ValueError):
        return 0


def has_repeats(long: pd.DataFrame) -> bool:
    """More than one answer or judge pass for some question: the split and the two-level CI apply."""
    if long.empty:
        return False
    return bool(long.groupby(["variant", "question"])["score"].size().max() > 1)


def _harmonic(counts: pd.Series) -> float:
    return float(len(counts) / (1.0 / counts.astype(float)).sum())


def _split_one(g: pd.DataFrame) -> dict[str, float]:
    answer = g.groupby(["question", "repeat"], sort=False)["score"]
    m = answer.size()
    answer_mean = answer.mean()
    df_judge = len(g) - len(m)
    var_judge = float(((g["score"] - answer.transform("mean")) ** 2).sum() / df_judge) if df_judge > 0 else np.nan
    by_question = answer_mean.groupby(level="question", sort=False)
    r = by_question.size()
    df_gen = len(answer_mean) - len(r)
    within = float(((answer_mean - by_question.transform("mean")) ** 2).sum() / df_gen) if df_gen > 0 else np.nan
    judge_share = var_judge / _harmonic(m) if df_judge > 0 else 0.0  # judge noise left in an answer's mean
    var_gen = max(within - judge_share, 0.0) if df_gen > 0 else np.nan
    question_mean = by_question.mean()
    spread = float(question_mean.var(ddof=1)) if len(question_mean) > 1 else np.nan
    below = within if df_gen > 0 else judge_share  # what the other levels add to a question's mean, per answer
    var_q = max(spread - below / _harmonic(r), 0.0) if spread == spread else np.nan
    return {
        "var_question": var_q, "var_generation": var_gen, "var_judge": var_judge,
        "questions": float(len(r)), "repeats": float(r.mean()), "judge_passes": float(m.mean()),
    }


def variance_split(long: pd.DataFrame) -> pd.DataFrame:
    """Per variant (index): var_question, var_generation, var_judge and the mean counts they rest on."""
    import pandas as pd
    records = {v: _split_one(g) for v, g in long.groupby("variant", sort=False)}
    return pd.DataFrame.from_dict(records, orient="index", columns=[*COMPONENTS, "questions", "repeats", "judge_passes"])


def _answers(g: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Answers' means as a questions × answers matrix (NaN padded) and each question's answer count."""
    answer_mean = g.groupby(["question", "repeat"], sort=False)["score"].mean()
    per_q = [group.to_numpy() for _, group in answer_mean.groupby(level="question", sort=False)]
    counts = np.array([a.size for a in per_q])
    matrix = np.full((len(per_q), counts.max()), np.nan)
    for i, a in enumerate(per_q):
        matrix[i, : a.size] = a
    return matrix, counts


def bootstrap_means(matrix: np.ndarray, counts: np.ndarray, n_resamples: int, rng: np.random.Generator,
                    *, within: bool = True) -> np.ndarray:
    """`n_resamples` bootstrap grand means: questions drawn with replacement, then (`within`) answers drawn
    with replacement inside each drawn question; a question's mean is the mean of its drawn answers."""
    n, width = matrix.shape
    q_means = np.nanmean(matrix, axis=1)
    out = np.empty(n_resamples)
    chunk = max(1, _CHUNK_CELLS // (n * width))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        qi = rng.integers(0, n, size=(stop - start, n))
        if not within or width == 1:
            out[start:stop] = q_means[qi].mean(axis=1)
            continue
        c = counts[qi][..., None]
        ri = np.minimum((rng.random((stop - start, n, width)) * c).astype(int), c - 1)
        drawn = np.where(np.arange(width) < c, matrix[qi[..., None], ri], 0.0)
        out[start:stop] = (drawn.sum(axis=2) / c[..., 0]).mean(axis=1)
    return out


def hierarchical_bootstrap(long: pd.DataFrame, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95,
                           *, within: bool = True) -> pd.DataFrame:
    """Per variant (index): the mean over questions of each question's mean score, its percentile bootstrap
    CI (questions, then answers within them) and n (questions)."""
    import pandas as pd
    tail = 100 * (1 - confidence) / 2
    records = {}
    for variant, g in long.groupby("variant", sort=False):
        matrix, counts = _answers(g)
        means = bootstrap_means(matrix, counts, n_resamples, np.random.default_rng(seed), within=within)
        low, high = np.percentile(means, [tail, 100 - tail])
        records[variant] = {"mean": float(np.nanmean(matrix, axis=1).mean()), "ci_low": float(low),
                            "ci_high": float(high), "n": len(counts)}
    return pd.DataFrame.from_dict(records, orient="index", columns=["mean", "ci_low", "ci_high", "n"])


__all__ = ["COMPONENTS", "LONG_COLUMNS", "PASSES_SUFFIX", "bootstrap_means", "has_repeats", "hierarchical_bootstrap",
           "long_frame", "variance_split"]
