"""A sweep's own estimate beside what it actually did: `estimate.*` and `actual.*` metrics of the parent run,
so the estimator's error is visible run after run.

The call count (new vs cached) and what earlier sweeps observed are taken before the sweep runs, as
`workbench estimate` would; each variant's prompt sample is rendered on a thread as soon as the variant has
finished, from the sweep's own (memoized) retrieval, so the estimate costs no extra index build or search
and nothing on the way from the last model call to the exit.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
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
    _samples: dict[str, Future] = field(default_factory=dict, repr=False)  # variant hash -> its prompt sample
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    def sample_finished(self, inputs: SweepInputs, ws: Workspace, variant_hash: str) -> None:
        """Render a finished variant's prompt sample now, on a thread (its retrievals are memoized by then)."""
        if inputs.spec.stage != "generate" or variant_hash in self._samples:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="workbench-estimate")
        self._samples[variant_hash] = self._pool.submit(_sample, inputs, ws, variant_hash)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _prompts(self, inputs: SweepInputs, ws: Workspace) -> dict[str, list[list[dict]]]:
        """Every sample rendered during the sweep, and those of variants that never finished (stopped early)."""
        prompts: dict[str, list[list[dict]]] = {}
        for future in self._samples.values():
            prompts.update(future.result())
        missing = {v.hash for v in inputs.variants} - set(self._samples)
        if missing:
            prompts.update(sample_prompts(inputs, ws, SAMPLE, built_only=True, only=missing))
        return prompts

    @classmethod
    def before(cls, inputs: SweepInputs, guard: BudgetGuard | None) -> Accounting:
        questions = [(i.id, i.question) for i in inputs.evalset.items]
        return cls(count_calls(inputs.spec, inputs.corpus.digest, questions), observe(inputs.home), guard)

    def metrics(self, inputs: SweepInputs, ws: Workspace, rows: list[dict[str, Any]], earlier: set[tuple[str, str]],
                calls: int, wall_s: float) -> dict[str, float]:
        """estimate.* (expected, low, high) and actual.* over this run's cells (not those an earlier run answered)."""
        if inputs.spec.stage != "generate":
            return {}
        estimate = build_estimate(inputs, self.count, self._prompts(inputs, ws), self.observed, {})
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


def _sample(inputs: SweepInputs, ws: Workspace, variant_hash: str) -> dict[str, list[list[dict]]]:
    """One variant's prompt sample, its model's tokenizer loaded (once per process) while the sweep runs."""
    from workbench.runner.tokens import counter_for
    from workbench.spec import ModelConfig

    prompts = sample_prompts(inputs, ws, SAMPLE, built_only=True, only={variant_hash})
    model = next((v.model for v in inputs.variants if v.hash == variant_hash), None) if prompts else None
    if isinstance(model, ModelConfig):
        counter_for(model)
    return prompts
