"""Tracking disabled (`tracking.enabled: false`): the Tracker protocol, answered at once, nothing logged."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from workbench.errors import TrackingError
from workbench.tracking.protocol import Immediate, SweepStart, immediate

if TYPE_CHECKING:
    import pandas as pd

    from workbench.spec import SweepSpec, VariantConfig


class NullTracker(Immediate):
    """No runs exist, so there are no run ids (None) and no logged children; nothing can be read back."""

    @immediate
    def start_sweep(
        self, spec: SweepSpec, sweep_id: str, n_variants: int, data_info: dict[str, Any], resume_run_id: str | None = None
    ) -> SweepStart:
        return SweepStart(parent_run_id=None, children={})

    @immediate
    def start_variant(self, variant: VariantConfig, eval_rows: Sequence[dict] | pd.DataFrame) -> str | None:
        return None

    @immediate
    def log_cell(self, variant: VariantConfig, row: dict[str, Any]) -> None:
        return None

    @immediate
    def finish_variant(
        self, variant_hash: str, rows: Sequence[dict[str, Any]], metrics: dict[str, float], status: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> str | None:
        return None

    @immediate
    def discard_run(self, run_id: str) -> None:
        return None

    @immediate
    def runs_intact(self, sweep_id: str, parent_run_id: str | None, run_ids: Sequence[str]) -> bool:
        return True  # nothing was logged, so nothing logged can have gone missing

    @immediate
    def finish_sweep(self, status: str, metrics: dict[str, float] | None = None,
                     tags: dict[str, str | None] | None = None) -> None:
        return None

    @immediate
    def read_sweep(self, sweep_id: str) -> dict[str, Any]:
        raise TrackingError(f"tracking is disabled (tracking.enabled: false): sweep {sweep_id!r} was not logged anywhere")
