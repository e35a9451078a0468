"""Where a sweep starts: a finished identical sweep returned as is, a killed one resumed, or a new one.

The sweep record (`records.py`) says what finished; the tracker says whether its runs are still there.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench.analysis.results import SweepResults
from workbench.runner.inputs import Hooks, SweepInputs
from workbench.runner.records import SweepRecord, create_record, find_finished, find_resumable, repeat_of
from workbench.spec import SWEEP_ID_PATTERN, SweepSpec
from workbench.tracking import Tracker, open_tracker


def new_sweep_id(spec: SweepSpec, home: Path | None = None) -> str:
    """<UTC time>-<spec hash>; a second sweep of the same spec in the same second gets a suffix.

    The format is `spec.SWEEP_ID_PATTERN`, which ids from outside (CLI, load_sweep) are checked against.
    """
    base = f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{spec.hash[:6]}"
    if home is None:
        return base
    sweep_id, n = base, 1
    while (home / "sweeps" / sweep_id).exists():
        n += 1
        sweep_id = f"{base}-{n}"
    return sweep_id


def _ours(record: SweepRecord | None) -> SweepRecord | None:
    """A record whose folder name is not a sweep id we made is not resumed: the id goes into MLflow filters."""
    return record if record is not None and SWEEP_ID_PATTERN.fullmatch(record.sweep_id) else None


@dataclass
class Start:
    """The record this sweep writes to and what an earlier, killed run of it left."""

    record: SweepRecord
    done: list[dict[str, Any]] = field(default_factory=list)  # its finished cells
    parent_run_id: str | None = None  # its parent run, if it got that far

    @property
    def sweep_id(self) -> str:
        return self.record.sweep_id


def open_record(inputs: SweepInputs, resume: bool) -> Start:
    """Resume a killed or cancelled run of this same spec on the same data, or create a new record."""
    record = _ours(find_resumable(inputs.home, inputs.spec, inputs.data_info)) if resume else None
    if record is None:
        sweep_id = new_sweep_id(inputs.spec, inputs.home)
        return Start(create_record(inputs.home, sweep_id, inputs.spec, inputs.data_info))
    record.repair()
    start = Start(record, record.cells(), record.status().get("parent_run_id"))
    record.write_status(status="RUNNING", pid=os.getpid())
    return start


def reuse_finished(inputs: SweepInputs, hooks: Hooks, started: float, tracker: Tracker | None = None) -> SweepResults | None:
    """An identical re-run: the finished sweep of this same spec on the same data, if nothing in it failed
    and its MLflow runs are still there. Nothing is run or logged again."""
    spec, variants, evalset = inputs.spec, inputs.variants, inputs.evalset
    record = _ours(find_finished(inputs.home, spec, inputs.data_info))
    if record is None:
        return None
    st = record.status()
    rows = record.cells()
    hashes = {v.hash for v in variants}
    if len(rows) != inputs.total_cells or {r["variant_hash"] for r in rows} != hashes:
        return None
    if any(r.get("error") for r in rows):
        return None
    run_ids = st.get("run_ids") or {}
    if spec.tracking.enabled or tracker is not None:
        if set(run_ids) != hashes:
            return None
        session = tracker if tracker is not None else open_tracker(spec.tracking, spec.experiment_name)
        intact = session.runs_intact(record.sweep_id, st.get("parent_run_id"), list(run_ids.values()))
        error = session.close()
        if error is not None:
            raise error
        if not intact.result():
            return None
    order = {v.hash: i for i, v in enumerate(variants)}
    position = {item.id: i for i, item in enumerate(evalset.items)}
    rows.sort(key=lambda r: (order[r["variant_hash"]], position.get(r["question_id"], 0), repeat_of(r)))
    results = SweepResults(spec=spec, sweep_id=record.sweep_id, variants=list(variants), rows=rows,
                           run_ids=dict(run_ids), parent_run_id=st.get("parent_run_id"), data_info=inputs.data_info)
    results.notes = inputs.notes() + [
        # Face-neutral: each face says which of its controls starts anew (CLI flags, widget checkboxes).
        f"identical to finished sweep {record.sweep_id}: its {len(rows)} cells and MLflow runs are returned as they "
        "are, nothing was run again"
    ]
    if hooks.on_start:
        hooks.on_start({"sweep_id": record.sweep_id, "total_cells": len(rows), "variants": list(variants),
                        "local_server": None})
    if hooks.on_cell:
        for row in rows:
            hooks.on_cell(row)
    if hooks.progress:
        from tqdm.auto import tqdm

        tqdm(total=len(rows), initial=len(rows), desc=spec.name, unit="cell").close()
    results.status = "FINISHED"
    results.wall_s = time.perf_counter() - started
    results.stats.update({"index_builds": 0, "index_reused": 0, "generation_cache_hits": 0, "model_calls": 0,
                          "reused_cells": len(rows)})
    return results
