"""How good the pre-run estimate is, and whether a budget cap holds (issue 14, parts 1 and 2).

    python experiments/benchmarks/estimate_budget.py            # ~2-4 minutes on 2 cores

1. A real sweep of the quickstart data with the local model (2 variants x 10 questions, a cold home):
   `workbench.estimate(spec)` first (with 2 latency probes per model), then `run_sweep`, and
   |estimate - actual| / actual for calls, prompt tokens, completion tokens, all tokens and wall time.
   Goals (issue 14): calls <= 0.05, tokens <= 0.15.
2. The fake OpenAI endpoint with configured prices (USD per million tokens), 4 calls in flight, caps from
   10 % to 70 % of the full sweep's cost: spend past the cap / cap, from the endpoint's own usage counters
   (the largest over the caps). Goal <= 0.01.

Prints `name: value` lines; `#` lines are context. Tracking is off (MLflow is not what is measured here).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SQUAD = ROOT / "experiments" / "data" / "squad-super-bowl-50" / "dev-v1.1-super-bowl-50.json"
PRICE_IN, PRICE_OUT = 2.0, 8.0


def spec_for(home: Path, questions: int, model: dict, retrievals: list[dict], concurrency: int = 1) -> dict:
    return {
        "name": "estimate-bench",
        "data": {"corpus": {"format": "squad", "path": str(SQUAD)},
                 "eval": {"format": "squad", "path": str(SQUAD), "limit": questions}},
        "space": {"chunking": [{"strategy": "recursive", "size": 500, "overlap": 50}], "retrieval": retrievals,
                  "model": [model]},
        "execution": {"concurrency": concurrency},
        "tracking": {"enabled": False},
        "home": str(home),
    }


def error(estimate: float | None, actual: float) -> str:
    return "unknown" if estimate is None else f"{abs(estimate - actual) / actual:.4f}"


def local_sweep() -> None:
    from workbench.runner.estimate import estimate
    from workbench.runner.sweep import run_sweep

    with tempfile.TemporaryDirectory() as tmp:
        spec = spec_for(Path(tmp) / "home", 10, {"provider": "local", "temperature": 0, "max_tokens": 32},
                        [{"kind": "dense", "k": 3}, {"kind": "bm25", "k": 3}])
        t = time.perf_counter()
        est = estimate(spec, probe=2)
        estimate_s = time.perf_counter() - t
        results = run_sweep(spec, progress=False)
        called = [r for r in results.rows if r.get("cached") is False]
        calls = results.stats["model_calls"]
        prompt = sum(r["tokens_prompt"] for r in called)
        completion = sum(r["tokens_completion"] for r in called)
        e = est.to_dict()
        print(f"# local sweep: {e['variants']} variants x {e['questions']} questions; estimate took {estimate_s:.1f} s "
              f"(index builds, 2 probe calls per model), the sweep {results.wall_s:.1f} s")
        print(f"# estimate: calls {e['model_calls']}, prompt tokens {e['prompt_tokens']}, completion tokens "
              f"{e['completion_tokens']}, wall {e['wall_s']}")
        print(f"# actual: calls {calls}, prompt tokens {prompt}, completion tokens {completion}, "
              f"sweep wall {results.wall_s:.1f} s")
        print(f"estimate_calls_error: {error(e['model_calls'], calls)}")
        print(f"estimate_tokens_error: {error(e['prompt_tokens']['expected'], prompt)}")
        print(f"estimate_completion_tokens_error: {error(e['completion_tokens']['expected'], completion)}")
        total = e["prompt_tokens"]["expected"] + e["completion_tokens"]["expected"]
        print(f"estimate_all_tokens_error: {error(total, prompt + completion)}")
        print(f"estimate_wall_error: {error(e['wall_s']['expected'], results.wall_s)}")
        inside = e["prompt_tokens"]["low"] <= prompt <= e["prompt_tokens"]["high"]
        print(f"estimate_prompt_tokens_in_range: {int(inside)}")


def budget_overshoot() -> None:
    from workbench.runner.sweep import run_sweep
    from workbench.testing.fake_endpoint import LatencyEndpoint

    worst = 0.0
    with LatencyEndpoint(latency=0.05) as endpoint, tempfile.TemporaryDirectory() as tmp:
        model = {"provider": "openai", "model": "latency-endpoint", "base_url": endpoint.base_url, "max_tokens": 16,
                 "price_input_per_mtok": PRICE_IN, "price_output_per_mtok": PRICE_OUT}
        retrievals = [{"kind": "bm25", "k": k} for k in (1, 2, 3, 4)]
        endpoint.reset_stats()
        full = run_sweep(spec_for(Path(tmp) / "full", 20, model, retrievals, 4), progress=False)
        stats = endpoint.stats()
        full_usd = (stats["tokens_prompt"] * PRICE_IN + stats["tokens_completion"] * PRICE_OUT) / 1e6
        print(f"# fake endpoint: {len(full.rows)} calls cost ${full_usd:.6f} at ${PRICE_IN}/${PRICE_OUT} per million tokens")
        for share in (0.1, 0.3, 0.5, 0.7):
            cap = full_usd * share
            endpoint.reset_stats()
            spec = spec_for(Path(tmp) / f"cap{share}", 20, model, retrievals, 4)
            spec["budget"] = {"max_usd": cap}
            results = run_sweep(spec, progress=False)
            stats = endpoint.stats()
            spent = (stats["tokens_prompt"] * PRICE_IN + stats["tokens_completion"] * PRICE_OUT) / 1e6
            over = max(0.0, spent - cap) / cap
            worst = max(worst, over)
            print(f"# cap {share:.0%} (${cap:.6f}): {stats['chat_calls']} calls, spent ${spent:.6f} "
                  f"({spent / cap:.1%} of the cap), stopped by budget: {results.stats.get('stopped_by') == 'budget'}")
    print(f"budget_overshoot: {worst:.4f}")


if __name__ == "__main__":
    local_sweep()
    budget_overshoot()
