"""Where each variant's latency was measured, and the one warning when a comparison mixes runs.

A cached answer keeps the latency of the run that made its model call, under that run's load. Comparing
it with latencies measured now compares *when* cells ran: `best()` once excluded 8 of 12 variants on
`latency_total_p95_s <= 5` for that reason alone. Pure: rows in, a frame or a sentence out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from workbench.scoring.cell import THIS_SWEEP, UNKNOWN_RUN, latency_source
from workbench.spec import VariantConfig

FIX = ("re-time the same questions for every variant in a new sweep: `workbench run SPEC --remeasure-latency N`, "
       "run_sweep(..., remeasure_latency=N) or the Run tab's 're-time N questions'")

COLUMNS = ("label", "timed_cells", "measured_here", "measured_elsewhere", "unknown_run", "earlier_sweeps",
           "latency_basis", "measured_here_share")


class LatencyProvenanceWarning(UserWarning):
    """A latency comparison mixes cells measured in different runs (see `SweepResults.latency_warning`)."""


def _sources(rows: Sequence[Mapping[str, Any]], variants: Sequence[VariantConfig],
             sweep_id: str | None) -> dict[VariantConfig, list[str]]:
    """Per variant: where each of its timed cells (not failed, with a latency) was measured."""
    return {v: [latency_source(r, sweep_id) for r in rows if r["variant_hash"] == v.hash
                and not r.get("error") and r.get("latency_total_s") is not None] for v in variants}


def latency_provenance(rows: Sequence[Mapping[str, Any]], variants: Sequence[VariantConfig],
                       sweep_id: str | None) -> pd.DataFrame:
    """One row per variant (index: short hash): where its cells' latencies were measured.

    timed_cells: cells with a latency (failed cells have none); measured_here: timed in this sweep
    (`sweep_id`), measured_elsewhere: cached answers timed in an earlier run, of which unknown_run in a run
    whose id is unknown (cached before provenance was recorded); earlier_sweeps: those runs' sweep ids;
    latency_basis: the cells its latency aggregates (p50/p95/mean) are computed from — "this sweep" when
    any cell was measured here, else "earlier runs" (see `scoring.aggregate`); measured_here_share:
    measured_here / timed_cells (NaN without timed cells).
    """
    import pandas as pd
    records = []
    for v, sources in _sources(rows, variants, sweep_id).items():
        here = sources.count(THIS_SWEEP)
        records.append({
            "variant": v.short_hash,
            "label": v.label(),
            "timed_cells": len(sources),
            "measured_here": here,
            "measured_elsewhere": len(sources) - here,
            "unknown_run": sources.count(UNKNOWN_RUN),
            "earlier_sweeps": ", ".join(sorted(set(sources) - {THIS_SWEEP, UNKNOWN_RUN})),
            "latency_basis": THIS_SWEEP if here else ("earlier runs" if sources else "none"),
            "measured_here_share": here / len(sources) if sources else float("nan"),
        })
    return pd.DataFrame.from_records(records, columns=["variant", *COLUMNS]).set_index("variant")


def latency_warning(rows: Sequence[Mapping[str, Any]], variants: Sequence[VariantConfig], sweep_id: str | None,
                    *, per_question: bool = False) -> str | None:
    """One sentence when comparing these variants' latencies mixes runs, else None.

    Aggregates (`per_question=False`, what to_frame / best / pareto use) mix runs when the variants'
    latency bases (see `latency_provenance`) come from more than one run, or from a run whose id is
    unknown. Per-question latencies (`compare("latency_total_s")`) mix runs when any cell was measured
    elsewhere while others were not.
    """
    bases: dict[VariantConfig, set[str]] = {}  # the runs each variant's compared latencies come from
    elsewhere: dict[VariantConfig, tuple[int, int]] = {}  # (cells measured elsewhere, timed cells)
    for v, sources in _sources(rows, variants, sweep_id).items():
        if sources:
            here = THIS_SWEEP in sources and not per_question
            bases[v] = {THIS_SWEEP} if here else set(sources)
            elsewhere[v] = (sum(1 for s in sources if s != THIS_SWEEP), len(sources))
    runs = set().union(*bases.values())
    if len(runs) <= 1 and UNKNOWN_RUN not in runs:
        return None
    named = [v for v, basis in bases.items() if basis != {THIS_SWEEP}]
    listed = ", ".join(f"{v.short_hash} ({elsewhere[v][0]} of {elsewhere[v][1]} cells)" for v in named)
    earlier = sorted(runs - {THIS_SWEEP, UNKNOWN_RUN})
    if earlier:
        where = f"sweep {', '.join(earlier)}" + (" and others unknown" if UNKNOWN_RUN in runs else "")
    else:
        where = "which one is unknown: cached before provenance was recorded"
    others = "; the other variants were timed in this sweep" if len(named) < len(bases) else ""
    what = "per-question latencies" if per_question else "latency figures (p50/p95/mean)"
    return (f"latency comparison mixes runs: {len(named)} of {len(bases)} variants have {what} measured in an "
            f"earlier run ({where}), not in this sweep {sweep_id}: {listed}{others}. Those latencies reflect when "
            f"and under what load the cells ran, not how fast the variant is; to compare like for like, {FIX}.")
