"""Does adaptive search find the grid's winner with a fraction of its calls? (issue 14, part 4)

A planted quality model (`workbench.testing.planted`): additive logit effects of chunking, retrieval, prompt
and model plus three two-axis interactions, question difficulties shared by every variant; 3 × 2 × 4 × 2 =
48 variants × 300 questions, 50 seeds. The halving and Optuna loops are the product's own
(`runner/search/halving.py`, `optuna_search.py`), driven in process by an oracle that answers each cell
from the planted model (the same answers the fake endpoint gives). Then a few seeds end to end: a real
sweep (`run_sweep`, strategy halving) against `LatencyEndpoint(planted=...)` over HTTP, whose decisions must
equal the oracle's on the same model.

    python experiments/benchmarks/search.py [--seeds 50] [--held-out-start 1000] [--e2e-seeds 2]

The halving defaults were tuned on seeds 0-49 (`search_tune.py`); the figures that count are on held-out
seeds (1000-1049 by default), which tuning never saw. The tuning seeds' figures are printed too, with the
suffix `_tuning_seeds`. Prints `name: value` lines. Regret: true quality (expected accuracy over the 300 questions) of the chosen
variant minus the true best's. Tied: the chosen variant is the grid's winner (best observed mean over every
cell) or not significantly different from it on the full set (paired t-test, p >= 0.05).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from workbench.runner.search.halving import Halving, paired_p  # noqa: E402
from workbench.runner.search.optuna_search import OptunaSearch, make_study  # noqa: E402
from workbench.spec_search import SearchConfig  # noqa: E402
from workbench.testing.planted import PlantedQuality  # noqa: E402

SIZES = (3, 2, 4, 2)  # chunking, retrieval, prompt, model
E2E_SIZES = (3, 4, 4)  # retrieval k, prompt, model (what a request shows the fake endpoint)
N_QUESTIONS = 300
N_TRIALS = 24  # optuna: half the grid


def drive(search, names: list[str], outcomes: np.ndarray, qindex: dict[str, int]) -> set[tuple[str, str]]:
    """Answer every rung the search asks from the oracle's outcomes; the distinct cells it asked."""
    asked: set[tuple[str, str]] = set()
    while (ask := search.ask()) is not None:
        scores = {}
        for v in ask.variants:
            row = outcomes[names.index(v)]
            scores[v] = {q: float(row[qindex[q]]) for q in ask.question_ids}
            asked.update((v, q) for q in ask.question_ids)
        search.tell(scores)
    return asked


def judge(winner: int, outcomes: np.ndarray, true: np.ndarray) -> tuple[float, bool]:
    grid_winner = int(np.argmax(outcomes.mean(axis=1)))
    tied = winner == grid_winner or paired_p(outcomes[grid_winner], outcomes[[winner]])[0] >= 0.05
    return float(true.max() - true[winner]), bool(tied)


def oracle_seed(seed: int, sizes=SIZES, questions=None, ids=None) -> dict[str, float]:
    model = PlantedQuality(sizes, seed=seed)
    questions = questions or [f"What is planted item {i}?" for i in range(N_QUESTIONS)]
    ids = ids or questions
    levels = model.variants()
    names = [str(lv) for lv in levels]
    outcomes = model.outcomes(questions)
    true = np.array([model.true_quality(lv, questions) for lv in levels])
    qindex = {q: i for i, q in enumerate(ids)}
    out: dict[str, float] = {"grid_regret": judge(int(np.argmax(outcomes.mean(axis=1))), outcomes, true)[0]}
    ordered = np.sort(true)[::-1]
    out["true_gap_top2"], out["true_gap_top5"] = ordered[0] - ordered[1], ordered[0] - ordered[4]

    halving = Halving(names, ids, SearchConfig(strategy="halving", seed=seed))
    asked = drive(halving, names, outcomes, qindex)
    winner = names.index(halving.outcome().winner)
    out["halving_calls_ratio"] = len(asked) / outcomes.size
    out["halving_regret"], out["halving_tied"] = judge(winner, outcomes, true)
    out["halving_winner"] = winner

    cfg = SearchConfig(strategy="optuna", n_trials=N_TRIALS, seed=seed)
    study = make_study(cfg, f"oracle-{seed}", len(ids))  # in memory: nothing to resume here
    axes = [(f"axis{i}", n) for i, n in enumerate(sizes)]
    search = OptunaSearch(study, axes, lambda lv: str(lv), ids, cfg, n_trials=N_TRIALS)
    asked = drive(search, names, outcomes, qindex)
    winner = names.index(search.outcome({v: outcomes[names.index(v)] for v in names}).winner)
    out["optuna_calls_ratio"] = len(asked) / outcomes.size
    out["optuna_regret"], out["optuna_tied"] = judge(winner, outcomes, true)
    return out


def e2e_seed(seed: int, folder: Path) -> dict[str, float]:
    """A real halving sweep against the planted fake endpoint; its choice must be the oracle's."""
    from workbench.runner.sweep import run_sweep
    from workbench.testing.fake_endpoint import LatencyEndpoint
    from workbench.testing.planted import levels_of_variant, planted_space, write_planted_data

    corpus, evalset = write_planted_data(folder / "data", N_QUESTIONS)
    questions = [f"What is planted item {i}?" for i in range(N_QUESTIONS)]
    ids = [f"q{i:04d}" for i in range(N_QUESTIONS)]
    expected = oracle_seed(seed, E2E_SIZES, questions, ids)
    model = PlantedQuality(E2E_SIZES, seed=seed)
    with LatencyEndpoint(latency=0.0, planted={"sizes": list(E2E_SIZES), "seed": seed}) as endpoint:
        spec = {"name": f"planted-{seed}", "data": {"corpus": {"format": "jsonl", "path": corpus},
                                                    "eval": {"format": "jsonl", "path": evalset}},
                "space": planted_space(E2E_SIZES, endpoint.base_url), "search": {"strategy": "halving", "seed": seed},
                "execution": {"concurrency": 32}, "tracking": {"enabled": False}, "home": str(folder / "home")}
        started = time.perf_counter()
        results = run_sweep(spec, progress=False)
        wall = time.perf_counter() - started
        calls = endpoint.stats()["chat_calls"]
    winner = model.variants().index(levels_of_variant(results.variant(results.search["winner"])))
    return {"e2e_halving_calls_ratio": calls / (len(model.variants()) * N_QUESTIONS),
            "e2e_matches_oracle": float(winner == expected["halving_winner"]
                                        and abs(calls / (48 * N_QUESTIONS) - expected["halving_calls_ratio"]) < 1e-9),
            "e2e_wall_s": wall}


def figures(rows: list[dict[str, float]]) -> dict[str, float]:
    def med(key: str) -> float:
        return float(np.median([r[key] for r in rows]))

    return {
        "halving_calls_ratio": med("halving_calls_ratio"),
        "halving_regret_median": med("halving_regret"),
        "halving_regret_mean": float(np.mean([r["halving_regret"] for r in rows])),
        "halving_regret_p90": float(np.percentile([r["halving_regret"] for r in rows], 90)),
        "halving_tie_rate": float(np.mean([r["halving_tied"] for r in rows])),
        "optuna_calls_ratio": med("optuna_calls_ratio"),
        "optuna_regret_median": med("optuna_regret"),
        "optuna_regret_mean": float(np.mean([r["optuna_regret"] for r in rows])),
        "optuna_regret_p90": float(np.percentile([r["optuna_regret"] for r in rows], 90)),
        "optuna_tie_rate": float(np.mean([r["optuna_tied"] for r in rows])),
        "grid_regret_median": med("grid_regret"),
        "true_gap_top2_median": med("true_gap_top2"),
        "true_gap_top5_median": med("true_gap_top5"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=50, help="seeds per range (held-out and tuning)")
    parser.add_argument("--held-out-start", type=int, default=1000, help="first held-out seed (tuning used 0-49)")
    parser.add_argument("--e2e-seeds", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    held_out = [oracle_seed(seed) for seed in range(args.held_out_start, args.held_out_start + args.seeds)]
    tuning = [oracle_seed(seed) for seed in range(args.seeds)]
    lines = {"variants": float(np.prod(SIZES)), "questions": float(N_QUESTIONS), "seeds": float(args.seeds),
             "held_out_first_seed": float(args.held_out_start), "grid_calls": float(np.prod(SIZES) * N_QUESTIONS),
             **figures(held_out)}
    lines.update({f"{k}_tuning_seeds": v for k, v in figures(tuning).items() if k.startswith(("halving", "optuna"))})
    lines["oracle_s"] = time.perf_counter() - started
    e2e = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.e2e_seeds):
            e2e.append(e2e_seed(seed, Path(tmp) / f"seed{seed}"))
    if e2e:
        lines["e2e_seeds"] = float(len(e2e))
        lines["e2e_halving_calls_ratio"] = float(np.median([r["e2e_halving_calls_ratio"] for r in e2e]))
        lines["e2e_matches_oracle_rate"] = float(np.mean([r["e2e_matches_oracle"] for r in e2e]))
        lines["e2e_wall_s_median"] = float(np.median([r["e2e_wall_s"] for r in e2e]))
    for name, value in lines.items():
        print(f"{name}: {value:.4g}")


if __name__ == "__main__":
    main()
