"""The spec's `search:` section: walk the whole grid (the default) or search it.

grid: every variant answers every question (today's behaviour). random: `n_trials` variants drawn from the
grid, each on every question. halving: successive halving over question subsets: every variant answers the
first rung, variants significantly worse than the rung's leader (paired test, Holm-corrected) or outside the
top 1/eta stop, survivors answer the next rung's new questions; the last rung is the whole eval set.
optuna: an Optuna study over the space's axes (TPE, or NSGA-II for quality vs cost), the halving rungs as
its pruning fidelity, stored in its own sqlite beside the MLflow store so a killed search resumes.

The halving defaults (eta 2, first rung 3 % or at least 10 questions, alpha 0.05, at least 4 survivors per
rung) were tuned on the planted benchmark (`experiments/benchmarks/search_tune.py`: 48 variants x 300
questions, seeds 0-49) for the lowest mean regret with at most 15 % of the grid's calls, then checked on seeds
1000-1049 that tuning never saw (`search.py` prints both): held-out regret median 0, mean 0.008, tie rate 1.0,
calls 0.144 of the grid (the earlier eta 3 / 15 questions / 2 survivors: mean 0.011). Smaller, slower rungs
with more survivors keep the true best alive through the early, noisy rungs; alpha hardly mattered (rank
pruning dominates). On a small space (8 variants) 4 survivors cut little: set min_survivors 2 there.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_CONSTRAINT = re.compile(r"\s*(<=|>=|==|<|>)?\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


class SearchConfig(BaseModel):
    """How the sweep walks its space. Changes which cells run, never a variant's hash or its answers."""

    # spec.Frozen's settings (spec.py imports this module, so it cannot import spec)
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)

    strategy: Literal["grid", "random", "halving", "optuna"] = Field(
        "grid", description="grid: every variant × every question; random: n_trials variants drawn from the grid; "
        "halving: successive halving over question subsets; optuna: an Optuna study with halving as pruning")
    objective: str = Field("f1", description="The per-question metric the search maximises (or minimises, in its "
                           "declared direction), as in results.best()")
    constraints: dict[str, str] = Field(
        default_factory=dict, description="best()'s syntax, e.g. {latency_total_p95_s: '<= 2'}: a variant violating one "
        "on a rung's questions is stopped")
    eta: float = Field(2.0, gt=1.0, le=10.0, description="halving: keep the top 1/eta of the variants at each rung "
                       "(and grow the question set eta-fold)")
    first_rung: float = Field(0.03, gt=0.0, le=1.0, description="halving: the first rung's share of the eval set")
    min_questions: int = Field(10, ge=2, description="halving: the first rung has at least this many questions")
    alpha: float = Field(0.05, gt=0.0, lt=1.0, description="halving: family-wise error of a rung's tests (Holm)")
    min_survivors: int = Field(4, ge=1, description="halving: at least this many variants go on from a rung when "
                               "the rest are not significantly worse (the top 1/eta may be fewer)")
    n_trials: int | None = Field(None, ge=1, description="random / optuna: variants to try (default: half the grid)")
    sampler: Literal["tpe", "nsga2"] = Field(
        "tpe", description="optuna: tpe (multivariate TPE on the objective, halving rungs prune) or nsga2 "
        "(NSGA-II on objective vs cost_objective; every trial answers every question: Optuna cannot prune "
        "multi-objective studies)")
    cost_objective: str = Field("cost_usd_per_1k", description="optuna nsga2: the second objective, minimised")
    seed: int = Field(0, description="Question order, random draws and Optuna's sampler")

    @field_validator("constraints")
    @classmethod
    def _constraint_syntax(cls, value: dict[str, str]) -> dict[str, str]:
        for col, text in value.items():
            if not _CONSTRAINT.fullmatch(str(text)):
                raise ValueError(f"constraint on {col}: {text!r} is not like '<= 2' or '>= 0.5' (operators <=, <, >=, >, ==)")
        return value

    @model_validator(mode="after")
    def _trials_need_a_sampler(self) -> SearchConfig:
        if self.n_trials is not None and self.strategy in ("grid", "halving"):
            raise ValueError(f"n_trials is for strategy random or optuna, not {self.strategy} (remove it)")
        return self
