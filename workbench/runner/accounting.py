"""A sweep's own estimate beside what it actually did: `estimate.*` and `actual.*` metrics of the parent run,
so the estimator's error is visible run after run.

The call count (new vs cached) and what earlier sweeps observed are taken before the sweep runs, as
`workbench estimate` would; the prompt sample is rendered at its end from the sweep's own (memoized)
retrieval, so the estimate costs no extra index build or search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workbench.runner.budget import BudgetGuard
from workbench.runner.estimate import CallCount, build_estimate, count_calls, observe, sample_prompts
from workbench.runner.forecast import Observed
from workbench.runner.inputs import SweepInputs
from workbench.runner.workspace import Workspace

SAMPLE = 8  # prompts rendered per variant, as `workbench estimate` does by default


@dataclass
class Accounting:
    count: CallCount
    observed: dict[str, Observed]
    guard: BudgetGuard | None

    @classmethod
    def before(cls, inputs: SweepInputs, guard: BudgetGuard | None) -> Accounting:
        questions = [(i.id, i.question) for i in inputs.evalset.items]
        return cls(count_calls(inputs.spec, inputs.corpus.digest, questions), observe(inputs.home), guard)

    def metrics(self, inputs: SweepInputs, ws: Workspace, rows: list[dict[str, Any]], earlier: set[tuple[str, str]],
                calls: int, wall_s: float) -> dict[str, float]:
        """estimate.* (expected, low, high) and actual.* over this run's cells (not those an earlier run answered)."""
        if inputs.spec.stage != "generate":
            return {}
        estimate = build_estimate(inputs, self.count, sample_prompts(inputs, ws, SAMPLE, built_only=True), self.observed, {})
        called = [r for r in rows if (r["variant_hash"], r["question_id"]) not in earlier and r.get("cached") is False]
        out = {**estimate.metrics(), "actual.calls": float(calls), "actual.wall_s": wall_s,
               "actual.prompt_tokens": float(sum(r.get("tokens_prompt") or 0 for r in called)),
               "actual.completion_tokens": float(sum(r.get("tokens_completion") or 0 for r in called))}
        costs = [r.get("cost_usd") for r in called]
        if all(isinstance(c, (int, float)) for c in costs):
            out["actual.usd"] = float(sum(costs))
        if self.guard is not None:
            out.update(self.guard.spent())
        return out
