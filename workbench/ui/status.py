"""The Workbench's one status line: which sweep the Results and Export tabs show, where it came from
(run now, returned as is, resumed, loaded) and whether the spec in the widgets still describes it.

It is re-rendered, never appended to: every call to `render` replaces the whole line.
"""

from __future__ import annotations

import ipywidgets as W

from workbench.spec import SweepSpec
from workbench.ui.common import message

NOTHING = "Nothing shown yet: run a sweep (Run tab) or load one by its id (Results tab)."


def spec_changes(shown: SweepSpec, current: SweepSpec) -> list[str]:
    """What in `current` would give other results than `shown` (how it runs, names and stores left out)."""
    changes = []
    if shown.data.corpus != current.data.corpus:
        changes.append("corpus")
    if shown.data.eval != current.data.eval:
        changes.append("eval set (source or limit)")
    if shown.stage != current.stage:
        changes.append(f"stage ({shown.stage} → {current.stage})")
    before, now = {v.hash for v in shown.variants()}, {v.hash for v in current.variants()}
    if before != now:
        changes.append(f"variants ({len(now - before)} not in the results, {len(before - now)} no longer in the spec)")
    if shown.retrieval_cutoffs != current.retrieval_cutoffs:
        changes.append("retrieval cut-offs")
    if shown.judge != current.judge:
        changes.append("judge")
    return changes


def origin(results, loaded_from: str | None) -> str:
    """How these results came to be shown."""
    if loaded_from is not None:
        return f"loaded from {loaded_from} (nothing was run)"
    if results.stats.get("reused_cells"):
        return (f"returned as is: identical to finished sweep {results.sweep_id}, nothing was run again "
                "(untick Resume in the Run tab to start a new sweep; tick No cache to call the models again)")
    resumed = next((n for n in results.notes if n.startswith("resumed sweep")), None)
    if resumed:
        return f"run now, {resumed.split(': ', 1)[-1]} (untick Resume in the Run tab to start a new sweep instead)"
    return "run now"


class StatusLine:
    """One HTML line; the app calls `shown`, `running` and `render` and the line is rebuilt each time."""

    def __init__(self) -> None:
        self.widget = W.HTML(message(NOTHING, "info"))
        self.results = None
        self.loaded_from: str | None = None
        self.running_name: str | None = None
        self.text = NOTHING

    def shown(self, results, loaded_from: str | None = None) -> None:
        self.results, self.loaded_from = results, loaded_from

    def running(self, name: str | None) -> None:
        self.running_name = name

    def render(self, current: SweepSpec | None, problem: str | None = None) -> str:
        """Describe what is shown against `current`, the widgets' spec (None: it does not validate)."""
        parts, kind = [], "info"
        if self.running_name is not None:
            parts.append(f"Running sweep {self.running_name!r}…")
        r = self.results
        if r is None:
            parts.append(NOTHING)
        else:
            done = len({row["variant_hash"] for row in r.rows})
            parts.append(f"Shown: sweep {r.sweep_id} ({r.status}, {len(r.rows)} cells, {done} of {len(r.variants)} "
                         f"variants), {origin(r, self.loaded_from)}.")
            if current is None:
                parts.append(f"The spec in the widgets does not validate ({problem}), so it cannot be compared.")
                kind = "warn"
            else:
                changes = spec_changes(r.spec, current)
                if changes:
                    parts.append("The spec in the widgets was edited after these results were produced: "
                                 f"{', '.join(changes)} differ; Run to get results for it.")
                    kind = "warn"
                else:
                    parts.append("They match the spec in the widgets.")
                    kind = "ok" if r.status == "FINISHED" else "warn"
        self.text = "\n".join(parts)
        self.widget.value = message(self.text, kind)
        return self.text
