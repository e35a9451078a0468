"""An in-memory Tracker for tests: runs are dicts, nothing is written anywhere (no MLflow).

It keeps what a store would (parent and variant runs, statuses, metrics, tables, traced question ids) so
resume and read-back work against it, and it records every call with its answer. `journal` (a file
path) gets one line per call: what a tracker running in the helper process did, seen from the test.
`fail_on` makes that operation raise, as a broken store would.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

from workbench.tracking.protocol import Immediate, LoggedRun, SweepStart, end_status, immediate


class MemoryTracker(Immediate):
    def __init__(self, journal: str | None = None, fail_on: str | None = None):
        self.journal, self.fail_on = journal, fail_on
        self.runs: dict[str, dict[str, Any]] = {}  # run id -> the run
        self.calls: list[tuple[str, Any]] = []  # (operation, its answer), in call order
        self.run_ids: dict[str, str] = {}  # variant hash -> run id, in the current sweep
        self.parent_run_id: str | None = None
        self._ids = itertools.count(1)

    def _note(self, operation: str, answer: Any = None) -> Any:
        if operation == self.fail_on:
            raise RuntimeError(f"injected failure in {operation}")
        self.calls.append((operation, answer))
        if self.journal:
            with open(self.journal, "a", encoding="utf-8") as fh:
                fh.write(operation + "\n")
        return answer

    def _new_run(self, **fields: Any) -> str:
        run_id = f"run-{next(self._ids)}"
        self.runs[run_id] = {"status": "RUNNING", "metrics": {}, **fields}
        return run_id

    def _sweep_runs(self, sweep_id: str, kind: str) -> list[tuple[str, dict]]:
        return [(i, r) for i, r in self.runs.items() if r["sweep_id"] == sweep_id and r["kind"] == kind]

    @immediate
    def start_sweep(self, spec, sweep_id: str, n_variants: int, data_info: dict[str, Any],
                    resume_run_id: str | None = None) -> SweepStart:
        parents = [i for i, _ in self._sweep_runs(sweep_id, "sweep")]
        self.run_ids = {}
        if resume_run_id in self.runs or parents:
            self.parent_run_id = resume_run_id if resume_run_id in self.runs else parents[0]
            self.runs[self.parent_run_id]["status"] = "RUNNING"
            children = {r["variant"].hash: LoggedRun(i, r["status"]) for i, r in self._sweep_runs(sweep_id, "variant")}
            return self._note("start_sweep", SweepStart(self.parent_run_id, children))
        self.parent_run_id = self._new_run(kind="sweep", sweep_id=sweep_id, spec=spec, data_info=dict(data_info))
        return self._note("start_sweep", SweepStart(self.parent_run_id, {}))

    @immediate
    def start_variant(self, variant, eval_rows) -> str:
        parent = self.runs[self.parent_run_id]
        run_id = self._new_run(kind="variant", sweep_id=parent["sweep_id"], parent=self.parent_run_id,
                               variant=variant, rows=[], traces=[])
        self.run_ids[variant.hash] = run_id
        return self._note("start_variant", run_id)

    @immediate
    def log_cell(self, variant, row: dict[str, Any]) -> None:
        self.runs[self.run_ids[variant.hash]]["traces"].append(row["question_id"])
        return self._note("log_cell")

    @immediate
    def finish_variant(self, variant_hash: str, rows: Sequence[dict[str, Any]], metrics: dict[str, float],
                       status: str | None = None, tags: dict[str, str] | None = None) -> str:
        run_id = self.run_ids[variant_hash]
        self.runs[run_id].update(rows=[dict(r) for r in rows], metrics=dict(metrics), status=end_status(metrics, status),
                                 tags=dict(tags or {}))
        return self._note("finish_variant", run_id)

    @immediate
    def discard_run(self, run_id: str) -> None:
        del self.runs[run_id]
        return self._note("discard_run")

    @immediate
    def runs_intact(self, sweep_id: str, parent_run_id: str | None, run_ids: Sequence[str]) -> bool:
        finished = {i for i, r in self.runs.items() if r["sweep_id"] == sweep_id and r["status"] == "FINISHED"}
        return self._note("runs_intact", bool(parent_run_id) and {parent_run_id, *run_ids} <= finished)

    @immediate
    def finish_sweep(self, status: str, metrics: dict[str, float] | None = None,
                     tags: dict[str, str | None] | None = None) -> None:
        if self.parent_run_id is not None:
            self.runs[self.parent_run_id]["metrics"].update(metrics or {})
            run_tags = self.runs[self.parent_run_id].setdefault("tags", {})
            run_tags.update({k: v for k, v in (tags or {}).items() if v is not None})
            for name in [k for k, v in (tags or {}).items() if v is None]:
                run_tags.pop(name, None)
            self.runs[self.parent_run_id]["status"] = status
            self.parent_run_id = None
        return self._note("finish_sweep")

    @immediate
    def read_sweep(self, sweep_id: str) -> dict[str, Any]:
        (parent_id, parent), *_ = self._sweep_runs(sweep_id, "sweep")
        spec = parent["spec"]
        order = {v.hash: i for i, v in enumerate(spec.variants())}
        children = sorted(self._sweep_runs(sweep_id, "variant"), key=lambda c: order[c[1]["variant"].hash])
        rows = [{"variant_hash": r["variant"].hash, "variant": r["variant"].short_hash, **row}
                for _, r in children for row in r["rows"]]
        return self._note("read_sweep", dict(
            spec=spec, sweep_id=sweep_id, variants=[r["variant"] for _, r in children], rows=rows,
            run_ids={r["variant"].hash: i for i, r in children}, parent_run_id=parent_id,
            data_info=parent["data_info"], wall_s=parent["metrics"].get("wall_s"), status=parent["status"],
        ))


class HoldingTracker(MemoryTracker):
    """Holds each logged cell until `idle()` (as the MLflow tracker holds traces for a batch): `idle` writes
    "idle q0 q1 ..." to the journal; `fail_on="idle"` makes it raise."""

    def __init__(self, journal: str | None = None, fail_on: str | None = None):
        super().__init__(journal, fail_on)
        self.held: list[str] = []

    @immediate
    def log_cell(self, variant, row: dict[str, Any]) -> None:
        self.held.append(row["question_id"])
        return self._note("log_cell")

    def idle(self) -> bool:
        if not self.held:
            return False
        held, self.held = self.held, []
        if self.fail_on == "idle" and self.journal:
            with open(self.journal, "a", encoding="utf-8") as fh:
                fh.write("idle failing\n")
            raise RuntimeError("injected failure in idle")
        self._note("idle " + " ".join(held))
        return True
