"""Adaptive search over a sweep's space (spec `search:`): grid (every cell, the default), random,
successive halving and Optuna. Strategies are pure ask/tell loops (`halving.Halving`, `optuna_search`);
`cells.SearchCells` asks the existing execution for each rung's (variant, question) cells."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from workbench.spec import VariantConfig
from workbench.spec_search import SearchConfig

if TYPE_CHECKING:
    from workbench.runner.execution import Execution


def random_variants(variants: list[VariantConfig], cfg: SearchConfig) -> list[VariantConfig]:
    """`n_trials` variants (default half the grid) drawn without replacement, in the given order."""
    n = min(len(variants), cfg.n_trials or max(1, (len(variants) + 1) // 2))
    chosen = set(np.random.default_rng(cfg.seed).choice(len(variants), size=n, replace=False).tolist())
    return [v for i, v in enumerate(variants) if i in chosen]


async def run_search(ex: Execution, schedule: list[VariantConfig], rank: dict[str, int]) -> None:
    """Run the spec's halving or optuna search through `ex` (grid and random run as the plain sweep)."""
    strategy = ex.spec.search.strategy
    if strategy == "halving":
        from workbench.runner.search.run_halving import run_halving

        await run_halving(ex, schedule, rank)
    elif strategy == "optuna":
        from workbench.runner.search.run_optuna import run_optuna

        await run_optuna(ex, schedule, rank)
    else:
        raise ValueError(f"run_search: strategy {strategy!r} runs as a plain sweep")
