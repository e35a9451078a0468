"""Successive halving through the sweep's execution: each rung's cells answered, the objective and the
constraints handed to `Halving.tell`, stopped variants' runs finished at once (tagged), the survivors'
at the end."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.runner.search.cells import SearchCells
from workbench.runner.search.halving import Halving
from workbench.scoring.aggregate import direction
from workbench.spec import VariantConfig

if TYPE_CHECKING:
    from workbench.runner.execution import Execution


async def run_halving(ex: Execution, schedule: list[VariantConfig], rank: dict[str, int]) -> None:
    cfg = ex.spec.search
    cells = SearchCells(ex, rank, "halving")
    order = [v.hash for v in ex.inputs.variants]
    search = Halving(order, [item.id for item in ex.inputs.evalset.items], cfg, maximize=direction(cfg.objective) == "max")
    by_hash = {v.hash: v for v in schedule}
    latest: dict[str, list[dict]] = {}
    asked: dict[str, int] = {}
    while (ask := search.ask()) is not None and not cells.cancelled:
        rows = await cells.answer([by_hash[h] for h in ask.variants], ask.question_ids)
        latest.update(rows)
        asked.update({h: len(ask.question_ids) for h in ask.variants})
        if cells.cancelled:
            break
        stopped = search.tell(cells.scores(rows, cfg.objective), cells.aggregates(rows) if cfg.constraints else None)
        for h in ask.variants:
            cells.note(h, ask.rung, len(ask.question_ids), stopped.get(h))
        for h in stopped:
            cells.finish(h, latest[h], asked[h])
        cells.progress(rung=ask.rung, questions=len(ask.question_ids), entered=len(ask.variants),
                       stopped=len(stopped), survivors=len(ask.variants) - len(stopped))
    for h, rows in latest.items():  # the survivors (and, when cancelled, every variant cut short)
        cells.finish(h, rows, asked[h])
    if not cells.cancelled:
        outcome = search.outcome()
        ex.results.search.update(winner=outcome.winner, tied=list(outcome.tied), reason=outcome.reason,
                                 rung_sizes=search.rungs, objective=cfg.objective)
        ex.results.notes.append(_summary(search, outcome))


def _summary(search: Halving, outcome) -> str:
    stopped = [s for s in search.state.values() if s.stopped]
    by_rung = {}
    for s in stopped:
        by_rung[s.rung] = by_rung.get(s.rung, 0) + 1
    where = ", ".join(f"{n} at rung {r} ({search.rungs[r]} questions)" for r, n in sorted(by_rung.items()))
    return (f"halving over rungs of {search.rungs} questions: {len(search.state)} variants, {len(stopped)} stopped"
            + (f" ({where})" if where else "") + f"; {outcome.reason}")
