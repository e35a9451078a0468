"""Do synthetic questions rank variants like real ones? SQuAD Super_Bowl_50, the quickstart's variants.

    python experiments/benchmarks/synth.py                      # 100 synthetic questions, the local SmolLM2
    python experiments/benchmarks/synth.py --n 30 --max-attempts 90

1. `workbench.runner.synth.synthesize` writes N questions from the quickstart's corpus (its first chunking
   and model, seed 1), each counted through the filters.
2. The quickstart's variants (2 chunkings × dense/BM25) run retrieval-only (`stage: retrieve`, no model
   calls) once with the article's real questions and once with the synthetic ones.
3. Kendall's τ between the two rankings of the variants, per retrieval metric (scipy's tau-b: ties count).

Prints `name: value` lines: synth_kendall_tau (on mrr), synth_kendall_tau.<metric>, synth_acceptance_rate
and synth_acceptance_rate.<filter>; lines starting with `#` are context. No goal on τ with the 135M model:
with four variants τ moves in steps of 1/3, and the figure is reported as it comes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

METRICS = ("mrr", "ndcg_at_k", "hit_at_k", "recall_at_k")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--max-attempts", type=int, default=None, help="model calls at most (default 3 × n)")
    ap.add_argument("--max-wall-s", type=float, default=None, help="stop making candidates after this long; keep what passed")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="keep the synthetic eval set here (default: a temp dir)")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("workbench.runner.synth").setLevel(logging.INFO)  # one line per candidate, to stderr

    from scipy.stats import kendalltau

    from workbench.errors import DataError
    from workbench.runner.synth import report_path_for, synthesize
    from workbench.runner.sweep import run_sweep
    from workbench.spec import read_yaml

    base = read_yaml(ROOT / "experiments" / "quickstart.yaml")
    for side in ("corpus", "eval"):
        base["data"][side]["path"] = str(ROOT / base["data"][side]["path"])
    with tempfile.TemporaryDirectory() as tmp:
        home = str(args.home or Path(tmp) / "home")
        base["home"] = home
        base["synth"] = {"n": args.n, "seed": args.seed, **({"max_attempts": args.max_attempts} if args.max_attempts else {}),
                         **({"max_wall_s": args.max_wall_s} if args.max_wall_s else {})}
        out = args.out or Path(tmp) / "synth.jsonl"
        t0 = time.perf_counter()
        try:
            result = synthesize(base, out=out)
        except DataError as exc:  # nothing passed the filters: the rates are still the figure
            print(f"# {exc}")
            report = json.loads(report_path_for(out).read_text())
            _print_rates(report)
            print("synth_kendall_tau: nan")
            return 0
        synth_s = time.perf_counter() - t0
        report = result.report.to_dict()

        def ranking(eval_source: dict) -> dict[str, dict[str, float]]:
            spec = {k: v for k, v in base.items() if k not in ("synth",)}
            spec["space"] = {k: v for k, v in base["space"].items() if k not in ("prompt", "model")}
            spec.update(stage="retrieve", tracking={"enabled": False},
                        data={"corpus": base["data"]["corpus"], "eval": eval_source})
            frame = run_sweep(spec, progress=False).to_frame()
            return {m: frame[m].to_dict() for m in METRICS if m in frame.columns}

        real_src = {**base["data"]["eval"]}
        real_src.pop("limit", None)  # every real question of the article
        real = ranking(real_src)
        synth = ranking({"format": "jsonl", "path": str(out)})

    print(f"# synthesis: {synth_s:.0f} s for {report['attempts']} candidates ({report['attempts'] + report['retries']} model calls); {len(result.rows)} questions; "
          f"by style {report['by_style']}")
    for line in result.report.lines():
        print(f"# {line}")
    taus = {}
    for m in METRICS:
        if m in real and m in synth:
            variants = sorted(real[m])
            tau = kendalltau([real[m][v] for v in variants], [synth[m][v] for v in variants]).statistic
            taus[m] = tau
            print(f"# {m}: real {json.dumps({v: round(real[m][v], 3) for v in variants})} "
                  f"synthetic {json.dumps({v: round(synth[m][v], 3) for v in variants})}")
    print(f"synth_kendall_tau: {taus.get('mrr', float('nan')):.3f}")
    print(f"synth_n_questions: {len(result.rows)}")
    print(f"synth_wall_s: {synth_s:.0f}")
    print(f"synth_retries: {report['retries']}")
    for m, tau in taus.items():
        print(f"synth_kendall_tau.{m}: {tau:.3f}")
    _print_rates(report)
    return 0


def _print_rates(report: dict) -> None:
    print(f"synth_acceptance_rate: {report['acceptance_rate'] or 0:.3f}")
    for name, f in report["filters"].items():
        print(f"synth_acceptance_rate.{name}: {f['acceptance_rate']:.3f}  # passed {f['passed']}, rejected {f['rejected']}")


if __name__ == "__main__":
    sys.exit(main())
