"""Routing, cascades and response caching on a planted pair of fake endpoints: what a cascade saves.

    python experiments/benchmarks/routing.py [--n 200]

Two OpenAI-compatible fake models over real HTTP (`workbench.testing.fake_routing`): `large` is right on
90 % of the questions at 20x the price of `small`, which is right on 70 %; small's answer log-probs carry
the signal a real model's do (mean token log-prob ~N(-0.35, 0.3) when right, ~N(-1.5, 0.5) when wrong:
lower when wrong, with overlap), and a third of its wrong answers say "I don't know.". One sweep (BM25,
no tracking) runs the plain models, a cascade at several log-prob thresholds, a question-length router at
several thresholds and a small model behind a semantic response cache replayed over the eval set plus a
repeat and a paraphrase of each question. Quality is the mean token F1 against the SQuAD references.

Prints `name: value` lines:
  cascade_cost_vs_large     the best cascade threshold's cost per 1k / the large model's (goal <= 0.4); the
                            best threshold is the cheapest whose quality is >= 0.97 of the large model's
                            (else the best quality)
  cascade_quality_vs_large  its F1 / the large model's (goal >= 0.97)
  router_cost_vs_large, router_quality_vs_large   the same choice among the router's thresholds
  semantic_cache_hit_rate, semantic_cache_wrong_hit_rate   on the replayed stream (threshold 0.92; wrong
                            hits / hits), and the same at 0.85
  pareto_front_f1_vs_*      the variants on the Pareto front of F1 against cost per 1k and p95 latency
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

SQUAD = ROOT / "experiments" / "data" / "squad-super-bowl-50" / "dev-v1.1-super-bowl-50.json"
CASCADE = [-0.5, -0.7, -0.9, -1.1, -1.3]
ROUTER = [8.0, 10.0, 12.0, 14.0]
CACHE = [0.85, 0.92]
QUALITY_GOAL = 0.97


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="questions of the SQuAD Super Bowl 50 article")
    args = parser.parse_args()

    from workbench.data.evalset import load_eval
    from workbench.runner.sweep import run_sweep
    from workbench.spec import EvalSource
    from workbench.testing.fake_endpoint import LatencyEndpoint
    from workbench.testing.fake_routing import ModelProfile, RoutingPlan

    items = load_eval(EvalSource(format="squad", path=str(SQUAD), limit=args.n)).items
    plan = RoutingPlan(answers={i.question: i.reference_answers[0] for i in items}, models={
        "small": ModelProfile(accuracy=0.7, latency=0.01, right_logprob=(-0.35, 0.3), wrong_logprob=(-1.5, 0.5),
                              dont_know=1 / 3),
        "large": ModelProfile(accuracy=0.9, latency=0.05)})
    with tempfile.TemporaryDirectory() as tmp, LatencyEndpoint(latency=0.01, routing=plan) as ep:
        small = {"provider": "openai", "model": "small", "base_url": ep.base_url, "max_tokens": 32,
                 "price_input_per_mtok": 0.15, "price_output_per_mtok": 0.6}
        large = {**small, "model": "large", "price_input_per_mtok": 3.0, "price_output_per_mtok": 12.0}  # 20x
        spec = {
            "name": "routing-benchmark",
            "data": {"corpus": {"format": "squad", "path": str(SQUAD)},
                     "eval": {"format": "squad", "path": str(SQUAD), "limit": args.n}},
            "models": {"small": small, "large": large},
            "space": {
                "chunking": [{"strategy": "recursive", "size": 400, "overlap": 40}],
                "retrieval": [{"kind": "bm25", "k": 3}],
                "model": [small, large,
                          {"cascade": {"first": "small", "then": "large",
                                       "escalate_when": {"signal": "answer_logprob_mean", "below": CASCADE}}},
                          {"router": {"signal": "question_tokens", "threshold": ROUTER, "below": "small",
                                      "above": "large"}},
                          *({"use": "small", "cache": {"kind": "semantic", "threshold": t}} for t in CACHE)],
            },
            "execution": {"concurrency": 16, "cache": False},
            "tracking": {"enabled": False},
            "home": str(Path(tmp) / "home"),
        }
        start = time.perf_counter()
        results = run_sweep(spec, progress=False)
        wall = time.perf_counter() - start
    frame = results.to_frame()
    by_label = {v.label(): v.short_hash for v in results.variants}

    def row(part: str):
        (key,) = [h for label, h in by_label.items() if label.endswith(part)]
        return frame.loc[key]

    base = row("· large")

    def chosen(prefix: str) -> tuple[str, float, float]:
        options = [(label, frame.loc[h]) for label, h in by_label.items() if prefix in label]
        scored = [(label, r["cost_usd_per_1k"] / base["cost_usd_per_1k"], r["f1"] / base["f1"]) for label, r in options]
        good = [s for s in scored if s[2] >= QUALITY_GOAL]
        return min(good, key=lambda s: s[1]) if good else max(scored, key=lambda s: s[2])

    cascade, router = chosen("cascade("), chosen("router(")
    lines = {
        "questions": args.n,
        "large_f1": base["f1"], "small_f1": row("· small")["f1"],
        "large_cost_usd_per_1k": base["cost_usd_per_1k"], "small_cost_usd_per_1k": row("· small")["cost_usd_per_1k"],
        "cascade_choice": cascade[0].split(" · ")[-1],
        "cascade_cost_vs_large": cascade[1], "cascade_quality_vs_large": cascade[2],
        "cascade_escalation_rate": frame.loc[by_label[cascade[0]], "escalation_rate"],
        "cascade_latency_p95_vs_large": frame.loc[by_label[cascade[0]], "latency_total_p95_s"] / base["latency_total_p95_s"],
        "router_choice": router[0].split(" · ")[-1],
        "router_cost_vs_large": router[1], "router_quality_vs_large": router[2],
    }
    for t in CACHE:
        r = row(f"small+semanticcache@{t:g}")
        suffix = "" if t == 0.92 else f"@{t}"
        lines[f"semantic_cache_hit_rate{suffix}"] = r["cache_hit_rate"]
        lines[f"semantic_cache_wrong_hit_rate{suffix}"] = r["cache_wrong_hit_rate"]
        lines[f"semantic_cache_f1_vs_small{suffix}"] = r["f1"] / row("· small")["f1"]
        lines[f"semantic_cache_cost_vs_small{suffix}"] = r["cost_usd_per_1k"] / row("· small")["cost_usd_per_1k"]
    from workbench.analysis.plots.pareto import pareto_info

    for x in ("cost_usd_per_1k", "latency_total_p95_s"):  # what the Pareto figure shows, left to right
        info = pareto_info(frame, "f1", x=x)
        front = info.points[info.points["on_front"]].sort_values("x")
        lines[f"pareto_front_f1_vs_{x}"] = " | ".join(
            f"{r['label'].split(' · ')[-1]} ({r['x']:.3g}, f1 {r['quality']:.3f})" for _, r in front.iterrows())
    lines["wall_s"] = wall
    for name, value in lines.items():
        print(f"{name}: {value:.4g}" if isinstance(value, float) else f"{name}: {value}")


if __name__ == "__main__":
    main()
