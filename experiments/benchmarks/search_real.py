"""One real search (issue 14, part 4): halving on experiments/search_halving.yaml (8 variants x 100 SQuAD
questions, the local SmolLM2) then the full grid of the same space in the same home (its cells reused from
the generation cache), to say whether halving chose the grid's winner or one tied with it.

    python experiments/benchmarks/search_real.py [--home DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from workbench.runner.sweep import run_sweep  # noqa: E402
from workbench.safe_yaml import read_yaml  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", default=None, help="folder for caches and the MLflow store (default: a temp dir)")
    args = parser.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="search-real-"))
    spec = read_yaml(ROOT / "experiments" / "search_halving.yaml")
    for side in ("corpus", "eval"):
        spec["data"][side]["path"] = str(ROOT / spec["data"][side]["path"])
    spec["home"] = str(home / "home")
    spec["tracking"] = {"tracking_uri": f"sqlite:///{home}/mlruns/mlflow.db", "artifact_location": str(home / "mlruns" / "art")}
    started = time.perf_counter()
    halving = run_sweep(spec, progress=False)
    halving_s = time.perf_counter() - started
    grid = run_sweep({**spec, "search": {"strategy": "grid"}}, progress=False)
    cells = len(grid.variants) * len(grid.questions()["question_id"].unique())
    chosen = halving.variant(halving.search["winner"]).short_hash
    decision = grid.best("f1")
    top = grid.compare("f1").index[0]
    diff = None if chosen == top else grid.diff(top, chosen, "f1")
    lines = {
        "variants": len(grid.variants), "questions": cells // len(grid.variants), "grid_cells": cells,
        "halving_model_calls": halving.stats.get("model_calls"), "halving_calls_ratio": halving.stats.get("model_calls", 0) / cells,
        "halving_wall_s": round(halving_s, 1), "halving_winner": chosen, "halving_tied_with": ",".join(t[:12] for t in halving.search["tied"]) or "-",
        "grid_top_f1": top, "grid_best": decision.winner,
        "halving_is_grid_top": chosen == top,
        "tied_with_grid_top": diff is None or diff.p_value >= 0.05,
        "p_value_vs_grid_top": "-" if diff is None else round(diff.p_value, 4),
        "f1_halving_winner": round(float(grid.compare("f1").loc[chosen, "mean"]), 4),
        "f1_grid_top": round(float(grid.compare("f1").loc[top, "mean"]), 4),
    }
    for name, value in lines.items():
        print(f"{name}: {value}")
    print("halving:", halving.search["reason"])
    print("rungs:", halving.search["rungs"])


if __name__ == "__main__":
    main()
