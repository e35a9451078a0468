"""An Optuna search through the sweep's execution. The study lives in its own sqlite beside the MLflow store
(`optuna.db` in the folder of a sqlite tracking URI, else `<home>/search/optuna.db`), named after the sweep:
a killed search resumes into the same sweep id, so it loads the same study and goes on from its trials."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from workbench.errors import StorageError
from workbench.runner.search.cells import SearchCells
from workbench.runner.search.optuna_search import OptunaSearch, make_study
from workbench.scoring.aggregate import direction
from workbench.spec import SweepSpec, VariantConfig

if TYPE_CHECKING:
    from workbench.runner.execution import Execution


def study_path(spec: SweepSpec) -> Path:
    uri = spec.tracking.tracking_uri
    if spec.tracking.enabled and uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent / "optuna.db"
    return Path(spec.home) / "search" / "optuna.db"


def study_name(sweep_id: str) -> str:
    return f"workbench-{sweep_id}"


def _axes(spec: SweepSpec) -> list[tuple[str, list]]:
    space = spec.space
    axes = [("chunking", space.chunking), ("embedding", space.embedding), ("retrieval", space.retrieval)]
    if spec.stage == "generate":
        axes += [("prompt", space.prompt), ("model", space.model)]
    return axes


async def run_optuna(ex: Execution, schedule: list[VariantConfig], rank: dict[str, int]) -> None:
    spec, cfg = ex.spec, ex.spec.search
    cells = SearchCells(ex, rank, "optuna")
    axes = _axes(spec)
    known = {v.hash for v in ex.inputs.variants}

    def variant_of(levels: tuple[int, ...]) -> str:
        parts = {name: entries[i] for (name, entries), i in zip(axes, levels)}
        v = VariantConfig(**parts) if spec.stage == "generate" else VariantConfig(**parts, prompt=None, model=None)
        assert v.hash in known, "an axis choice outside the space"
        return v.hash

    path = study_path(spec)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {path.parent} for the Optuna study ({exc.strerror}); set `home` or "
                           "tracking.tracking_uri to a writable folder") from None
    questions = [item.id for item in ex.inputs.evalset.items]
    maximize = direction(cfg.objective) == "max"
    name = study_name(ex.results.sweep_id)
    study = make_study(cfg, name, len(questions), f"sqlite:///{path}", maximize)
    n_trials = cfg.n_trials or max(1, (len(known) + 1) // 2)
    search = OptunaSearch(study, [(n, len(e)) for n, e in axes], variant_of, questions, cfg, maximize, n_trials)
    by_hash = {v.hash: v for v in schedule}
    latest: dict[str, list[dict]] = {}
    while (ask := search.ask()) is not None and not cells.cancelled:
        rows = await cells.answer([by_hash[h] for h in ask.variants], ask.question_ids)
        if cells.cancelled:
            break  # its trials stay RUNNING in the study: a resumed search fails them and asks again
        for h, rs in rows.items():
            if len(rs) >= len(latest.get(h, ())):
                latest[h] = rs
        stopped = search.tell(cells.scores(rows, cfg.objective), cells.aggregates(rows))
        for h in ask.variants:
            cells.note(h, search.account[h]["rung"], search.account[h]["questions"], search.account[h]["stopped"])
        cells.progress(rung=ask.rung, questions=len(ask.question_ids), entered=len(ask.variants),
                       stopped=len(stopped), survivors=len(ask.variants) - len(stopped), trials=search.finished())
    for h, state in search.account.items():
        cells.note(h, state["rung"], state["questions"], state["stopped"])
        if h not in latest:  # finished before a kill and not proposed since: its answers are on disk
            answered = ex.known.get(h, {})
            latest[h] = [answered[(q, 0)] for q in search.order[:state["questions"]] if (q, 0) in answered]
            if h in ex.children:
                ex.results.run_ids[h] = ex.children[h].run_id
    for h, rs in latest.items():  # at the end: a pruned variant may be proposed again and answer more
        cells.finish(h, rs, search.account[h]["questions"] if h in search.account else len(rs))
    cells.tried(list(latest))
    ex.results.search.update(study=name, storage=str(path), sampler=cfg.sampler, objective=cfg.objective)
    if cells.cancelled:
        return
    sign = 1.0 if maximize else -1.0
    full = {h: sign * np.array([np.nan if r.get("error") or r.get(cfg.objective) is None else float(r[cfg.objective])
                                for r in latest[h]]) for h in search.values}
    shared = ~np.any([np.isnan(x) for x in full.values()], axis=0) if full else None
    outcome = search.outcome({h: x[shared] for h, x in full.items()})
    ex.results.search.update(winner=outcome.winner, tied=list(outcome.tied), reason=outcome.reason,
                             rung_sizes=search.rungs, trials=search.finished())
    complete = len(search.values)
    ex.results.notes.append(f"optuna ({cfg.sampler}): {search.finished()} trials over {len(latest)} variants, "
                            f"{complete} answered every question; study {name} in {path}; {outcome.reason}")
