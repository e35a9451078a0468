"""The sweep's side of a search: a strategy names (variants, questions) per rung, the existing execution
answers them (cache, resume, faults, concurrency, MLflow all hold), and a variant's run is finished when it
stops, tagged with the rung it reached and the questions it covers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.scoring.aggregate import aggregate
from workbench.spec import VariantConfig

if TYPE_CHECKING:
    from workbench.runner.execution import Execution

TAG = "workbench.search."


@dataclass
class SearchCells:
    """Answers rungs through an Execution and keeps the search's account in `results.search`."""

    ex: Execution
    rank: dict[str, int]
    strategy: str
    finished: set[str] = field(default_factory=set)
    account: dict[str, dict[str, Any]] = field(default_factory=dict)  # variant hash -> rung, questions, stopped

    def __post_init__(self) -> None:
        self.items = {item.id: item for item in self.ex.inputs.evalset.items}
        self.by_hash = {v.hash: v for v in self.ex.inputs.variants}
        self.ex.results.search = {"strategy": self.strategy, "variants": self.account, "rungs": []}

    @property
    def cancelled(self) -> bool:
        return self.ex.hooks.cancelled()

    async def answer(self, variants: Sequence[VariantConfig], question_ids: Sequence[str]) -> dict[str, list[dict]]:
        """Each variant's rows for these questions (earlier answers and cached generations reused)."""
        items = [self.items[q] for q in question_ids]
        done = await asyncio.gather(*(self.ex.run_variant(v, self.rank[v.hash], items, final=False) for v in variants))
        if self.ex.judge is not None and not self.cancelled:
            for _, rows in done:  # judged scores are cached: a survivor's earlier rows cost nothing again
                await self.ex.judge_rows(rows)
        return {v.hash: rows for v, rows in done}

    def scores(self, rows: dict[str, list[dict]], objective: str) -> dict[str, dict[str, float | None]]:
        """The objective per question; a failed or unscored cell is None (never 0)."""
        return {h: {r["question_id"]: (None if r.get("error") else r.get(objective)) for r in rs} for h, rs in rows.items()}

    def aggregates(self, rows: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
        return {h: aggregate(rs, self.ex.results.sweep_id) for h, rs in rows.items()}

    def note(self, variant: str, rung: int, questions: int, stopped: str | None) -> None:
        self.account[variant] = {"rung": rung, "questions": questions, "stopped": stopped}

    def finish(self, variant: str, rows: list[dict], asked: int) -> None:
        """Collect the variant's rows and end its MLflow run, tagged with where the search left it."""
        if variant in self.finished:
            return
        self.finished.add(variant)
        self.ex.results.rows.extend(rows)
        state = self.account.get(variant, {})
        tags = {TAG + "strategy": self.strategy, TAG + "rung": str(state.get("rung", -1)),
                TAG + "questions": str(state.get("questions", len(rows))),
                TAG + "stopped": (state.get("stopped") or "no")[:500]}
        if variant in self.ex.logging:  # a run finished before a kill was reused as it is (not logged again)
            self.ex.finish_variant(self.by_hash[variant], rows, asked=asked, tags=tags)

    def progress(self, **info: Any) -> None:
        """One rung done: the caller's hook sees rungs, survivors and stopped variants."""
        self.ex.results.search["rungs"].append(info)
        if self.ex.hooks.on_search is not None:
            self.ex.hooks.on_search(dict(self.ex.results.search, last=info))

    def tried(self, hashes: Sequence[str]) -> None:
        """The results show the variants the search tried, in the space's order."""
        keep = set(hashes)
        self.ex.results.variants = [v for v in self.ex.results.variants if v.hash in keep]
