"""How the halving defaults were chosen: a grid over (eta, first rung, min_questions, alpha, min_survivors) on
the planted benchmark's tuning seeds, kept only where the calls ratio stays <= 0.15, ranked by median regret
(then the 90th percentile, then the calls ratio). The chosen point is then checked on held-out seeds,
which is the figure that counts (`search.py` prints both).

    python experiments/benchmarks/search_tune.py [--tune 0:50] [--held-out 1000:1050] [--top 10]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.benchmarks.search import N_QUESTIONS, SIZES, drive, judge  # noqa: E402
from workbench.runner.search.halving import Halving  # noqa: E402
from workbench.spec_search import SearchConfig  # noqa: E402
from workbench.testing.planted import PlantedQuality  # noqa: E402

GRIDS = {
    "coarse": {  # around the earlier defaults (eta 3, first rung 5 % or 15 questions, alpha 0.05, 2 survivors)
        "eta": (2.0, 2.5, 3.0, 4.0),
        "first_rung": (0.03, 0.05, 0.07),
        "min_questions": (10, 15, 20),
        "alpha": (0.01, 0.05, 0.1),
        "min_survivors": (2, 3, 4),
    },
    "fine": {  # around the coarse grid's best (eta 2, 10 questions, 4 survivors; alpha made no difference)
        "eta": (1.5, 2.0),
        "first_rung": (0.02, 0.03),
        "min_questions": (6, 8, 10, 12),
        "alpha": (0.05,),
        "min_survivors": (3, 4, 5, 6),
    },
}


def world(seed: int):
    """A seed's planted truth: names, outcomes (variants × questions), true qualities, question index."""
    model = PlantedQuality(SIZES, seed=seed)
    questions = [f"What is planted item {i}?" for i in range(N_QUESTIONS)]
    levels = model.variants()
    true = np.array([model.true_quality(lv, questions) for lv in levels])
    return [str(lv) for lv in levels], model.outcomes(questions), true, {q: i for i, q in enumerate(questions)}, questions


def score(params: dict, worlds, seed_base: int = 0) -> dict[str, float]:
    regret, ratio, tied = [], [], []
    for s, (names, outcomes, true, qindex, ids) in enumerate(worlds):
        h = Halving(names, ids, SearchConfig(strategy="halving", seed=seed_base + s, **params))
        asked = drive(h, names, outcomes, qindex)
        r, t = judge(names.index(h.outcome().winner), outcomes, true)
        regret.append(r), ratio.append(len(asked) / outcomes.size), tied.append(t)
    return {"regret_median": float(np.median(regret)), "regret_p90": float(np.percentile(regret, 90)),
            "regret_mean": float(np.mean(regret)), "calls_ratio": float(np.median(ratio)),
            "tie_rate": float(np.mean(tied))}


def seeds(text: str) -> range:
    a, b = text.split(":")
    return range(int(a), int(b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tune", default="0:50")
    parser.add_argument("--held-out", default="1000:1050")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--grid", choices=sorted(GRIDS), default="coarse")
    args = parser.parse_args()
    started = time.perf_counter()
    tune_range, held_range = seeds(args.tune), seeds(args.held_out)
    tune = [world(s) for s in tune_range]
    rows, grid = [], GRIDS[args.grid]
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values))
        out = score(params, tune, tune_range.start)
        if out["calls_ratio"] <= 0.15:
            rows.append((params, out))
    rows.sort(key=lambda r: (r[1]["regret_mean"], r[1]["regret_median"], r[1]["calls_ratio"]))
    held = [world(s) for s in held_range]
    print(f"configs: {len(list(itertools.product(*grid.values())))}  within the calls goal: {len(rows)}")
    for params, out in rows[: args.top]:
        h = score(params, held, held_range.start)
        print(params, "tune", {k: round(v, 4) for k, v in out.items()},
              "held-out", {k: round(v, 4) for k, v in h.items()}, flush=True)
    print(f"tune_s: {time.perf_counter() - started:.1f}")


if __name__ == "__main__":
    main()
