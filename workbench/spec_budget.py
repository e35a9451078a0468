"""The sweep's budget: caps on model calls, USD and wall time (the spec's `budget` section, or CLI flags).

A base module (frozen config only): the guard that enforces it is `workbench.runner.budget`. Like
`execution`, a budget says how far a sweep may go, not what it computes: it is left out of the resume key,
so running the same spec again with a larger budget resumes the stopped sweep.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BudgetConfig(BaseModel):
    # the same strictness as every spec model (spec.Frozen; not imported: spec imports this module)
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)

    max_usd: float | None = Field(
        None, gt=0, description="USD the sweep may spend on model and judge calls, all its runs together (resumes included); "
        "a call whose worst case (its prompt tokens + max_tokens at the model's price) would pass it is not started")
    max_calls: int | None = Field(
        None, ge=1, description="Model and judge calls (attempts that reach an endpoint) the sweep may make, resumes included")
    max_wall_s: float | None = Field(
        None, gt=0, description="Seconds this run may take: no call starts once elapsed time plus the mean call "
        "latency so far would pass it")

    @property
    def capped(self) -> bool:
        return any(v is not None for v in (self.max_usd, self.max_calls, self.max_wall_s))
