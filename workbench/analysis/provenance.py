"""Where each variant's latency was measured, and the one warning when a comparison mixes runs.

A cached answer keeps the latency of the run that made its model call, under that run's load. Comparing
it with latencies measured now compares *when* cells ran: `best()` once excluded 8 of 12 variants on
`latency_total_p95_s <= 5` for that reason alone. Pure: rows in, a frame or a sentence out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from workbench.scoring.cell import THIS_SWEEP, UNKNOWN_RUN, latency_source
from workbench.spec import VariantConfig

FIX = ("re-time the same questions for every variant in a new sweep: `workbench run SPEC --remeasure-latency N`, "
       "run_sweep(..., remeasure_latency=N) or the Run tab's 're-time N questions'")

COLUMNS = ("label", "timed_cells", "measured_here", "measured_elsewhere", "unknown_run", "earlier_sweeps",
           "latency_basis", "measured_here_share")


class LatencyProvenanceWarning(UserWarning):
    """A latency comparison mixes cells measured in different runs (see `SweepResults.latency_warning`)."""


def _timed(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in rows if not r.get("error") and r.get("latency_total_s") is not None]


def latency_provenance(rows: Sequence[Mapping[str, Any]], variants: Sequence[VariantConfig], sweep_id: str | None) -> pd.DataFrame:
    """One row per variant (index: short hash): where its cells' latencies were measured.

    timed_cells: cells with a latency (failed cells have none); measured_here: timed in this sweep
    (`sweep_id`), measured_elsewhere: cached answers timed in an earlier run, of which unknown_run in a run
    whose id is unknown (cached before provenance was recorded); earlier_sweeps: those runs' sweep ids;
    latency_basis: the cells its latency aggregates (p50/p95/mean) are computed from — "this sweep" when
    any cell was measured here, else "earlier runs" (see `scoring.aggregate`); measured_here_share:
    measured_here / timed_cells (NaN without timed cells).
    """
    records = []
    for v in variants:
        sources = [latency_source(r, sweep_id) for r in _timed(r for r in rows if r["variant_hash"] == v.hash)]
        here = sources.count(THIS_SWEEP)
        earlier = sorted({s for s in sources if s not in (THIS_SWEEP, UNKNOWN_RUN)})
        records.append({
            "variant": v.short_hash,
            "label": v.label(),
            "timed_cells": len(sources),
            "measured_here": here,
            "measured_elsewhere": len(sources) - here,
            "unknown_run": sources.count(UNKNOWN_RUN),
            "earlier_sweeps": ", ".join(earlier),
            "latency_basis": THIS_SWEEP if here else ("earlier runs" if sources else "none"),
            "measured_here_share": here / len(sources) if sources else float("nan"),
        })
    return pd.DataFrame.from_records(records, columns=["variant", *COLUMNS]).set_index("variant")


def latency_warning(rows: Sequence[Mapping[str, Any]], variants: Sequence[VariantConfig], sweep_id: str | None,
                    *, per_question: bool = False) -> str | None:
    """One sentence when comparing these variants' latencies mixes runs, else None.

    Aggregates (`per_question=False`, what to_frame / best / pareto use) mix runs when the variants'
    latency bases (see `latency_provenance`) come from more than one run, or from a run whose id is unknown.
    Per-question latencies (`compare("latency_total_s")`) mix runs when any cell was measured elsewhere
    while others were not.
    """
    per_variant: dict[str, tuple[set[str], int]] = {}  # short hash -> (runs its compared latencies come from, cells elsewhere)
    for v in variants:
        sources = [latency_source(r, sweep_id) for r in _timed(r for r in rows if r["variant_hash"] == v.hash)]
        if not sources:
            continue
        elsewhere = sum(1 for s in sources if s != THIS_SWEEP)
        basis = set(sources) if per_question or THIS_SWEEP not in sources else {THIS_SWEEP}
        per_variant[v.short_hash] = (basis, elsewhere)
    runs = set().union(*(basis for basis, _ in per_variant.values())) if per_variant else set()
    if len(runs) <= 1 and UNKNOWN_RUN not in runs:
        return None
    named = {v: n for v, (basis, n) in per_variant.items() if basis != {THIS_SWEEP}}
    total = {v: sum(1 for r in _timed(rows) if r["variant"] == v) for v in named}
    listed = ", ".join(f"{v} ({n} of {total[v]} cells)" for v, n in named.items())
    earlier = sorted(runs - {THIS_SWEEP, UNKNOWN_RUN})
    unknown = "which one is unknown: cached before provenance was recorded"
    where = ((f"sweep {', '.join(earlier)}" + (" and others unknown" if UNKNOWN_RUN in runs else "")) if earlier
             else unknown)
    others = "; the other variants were timed in this sweep" if THIS_SWEEP in runs else ""
    what = "per-question latencies" if per_question else "latency figures (p50/p95/mean)"
    return (f"latency comparison mixes runs: {len(named)} of {len(per_variant)} variants have {what} measured in an "
            f"earlier run ({where}), not in this sweep {sweep_id}: {listed}{others}. Those latencies reflect when and "
            f"under what load the cells ran, not how fast the variant is; to compare like for like, {FIX}.")
