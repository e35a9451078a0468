"""Do the decision statistics keep their promises? Simulated sweeps from known distributions (issue 15).

    python experiments/benchmarks/stats_check.py            # 1,000 simulated sweeps per check (~minutes)
    python experiments/benchmarks/stats_check.py --sims 50  # a quick look

Scores are drawn as mean + question effect + answer (generation) noise + judge noise, normal, of set sizes.
Each check runs the product's own functions on them and prints one line with its goal:

- ci_coverage: share of 95 % hierarchical-bootstrap intervals (questions, then answers) that contain the
  true mean; goal [0.93, 0.97]. The interval that resamples questions only is printed beside it.
- family_wise_error: 10 truly equal variants; share of sweeps where best() calls the leader significantly
  better than any other; goal <= 0.05 with the correction (Holm over every pair); uncorrected and
  Holm-over-the-leader's-9-comparisons rates beside it.
- power_at_planned_n: a 30-question pilot gives power.plan() its variance; a fresh sweep with the n it
  recommends for a true difference delta; share detected (paired permutation test, p < 0.05, right
  direction); goal [0.75, 0.85].
- variance_split_error: mean relative error of each estimated variance component; goal <= 0.2.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from workbench.analysis.family import leader_tests
from workbench.analysis.paired import sign_flip_pvalues
from workbench.analysis.power import plan
from workbench.scoring.variance import hierarchical_bootstrap, variance_split

SD_QUESTION, SD_GENERATION, SD_JUDGE = 0.2, 0.1, 0.05


def sweep_scores(rng, n, repeats, passes, means, sd_q=SD_QUESTION, sd_g=SD_GENERATION, sd_j=SD_JUDGE):
    """variants × questions × repeats × passes scores; the question effect is shared by the variants."""
    k = len(means)
    q = rng.normal(0, sd_q, (1, n, 1, 1))
    g = rng.normal(0, sd_g, (k, n, repeats, 1))
    j = rng.normal(0, sd_j, (k, n, repeats, passes))
    return np.asarray(means, dtype=float)[:, None, None, None] + q + g + j


def long_of(scores, names=None) -> pd.DataFrame:
    k, n, r, m = scores.shape
    v, qi, ri, ji = np.meshgrid(np.arange(k), np.arange(n), np.arange(r), np.arange(m), indexing="ij")
    names = names or [f"v{i}" for i in range(k)]
    return pd.DataFrame({"variant": np.asarray(names)[v.ravel()], "question": qi.ravel(), "repeat": ri.ravel(),
                         "judge_pass": ji.ravel(), "score": scores.ravel()})


def questions_of(scores, names=None) -> pd.DataFrame:
    """A results.questions()-shaped frame: one row per variant × question × repeat (passes averaged)."""
    long = long_of(scores, names)
    rows = long.groupby(["variant", "question", "repeat"], sort=False)["score"].mean().reset_index()
    return rows.rename(columns={"question": "question_id", "score": "f1"}).assign(question_id=lambda f: "q" + f["question_id"].astype(str))


def ci_coverage(rng, sims, n=40, repeats=3, passes=2, mu=0.5):
    hits = {True: 0, False: 0}
    for _ in range(sims):
        long = long_of(sweep_scores(rng, n, repeats, passes, [mu]))
        for within in hits:
            ci = hierarchical_bootstrap(long, n_resamples=1000, seed=int(rng.integers(1 << 31)), within=within).iloc[0]
            hits[within] += ci["ci_low"] <= mu <= ci["ci_high"]
    return hits[True] / sims, hits[False] / sims


def family_wise_error(rng, sims, k=10, n=50):
    names = [f"v{i}" for i in range(k)]
    errors = {"all-pairs": 0, "leader": 0, "none": 0}
    for _ in range(sims):
        q = questions_of(sweep_scores(rng, n, 1, 1, [0.5] * k, sd_g=0.15, sd_j=0.0), names)
        means = q.groupby("variant")["f1"].mean().sort_values(ascending=False)
        leader, others = means.index[0], list(means.index[1:])
        seed = int(rng.integers(1 << 31))
        for name, kwargs in {"all-pairs": {}, "leader": {"family": "leader"},
                             "none": {"family": "leader", "correction": "none"}}.items():
            t = leader_tests(q, leader, others, "f1", n_resamples=2000, seed=seed, **kwargs)
            errors[name] += any(t.leader_better(v) for v in others)
    return {name: count / sims for name, count in errors.items()}


def power_at_planned_n(rng, sims, delta=0.05, pilot=30, sd_g=0.14):
    detected, planned = 0, []
    for _ in range(sims):
        q = questions_of(sweep_scores(rng, pilot, 1, 1, [0.5 + delta, 0.5], sd_g=sd_g, sd_j=0.0), ["a", "b"])
        n = plan(q, "a", "b", "f1", delta).questions
        planned.append(n)
        fresh = sweep_scores(rng, n, 1, 1, [0.5 + delta, 0.5], sd_g=sd_g, sd_j=0.0)[:, :, 0, 0]
        d = fresh[0] - fresh[1]
        p, _ = sign_flip_pvalues(d[None, :], 2000, int(rng.integers(1 << 31)))
        detected += bool(p[0] < 0.05 and d.mean() > 0)
    return detected / sims, float(np.median(planned))


def variance_split_error(rng, sims, n=200, repeats=3, passes=3):
    truth = np.array([SD_QUESTION**2, SD_GENERATION**2, SD_JUDGE**2])
    errors = []
    for _ in range(sims):
        est = variance_split(long_of(sweep_scores(rng, n, repeats, passes, [0.5]))).iloc[0]
        errors.append(np.abs(est[["var_question", "var_generation", "var_judge"]].to_numpy(float) - truth) / truth)
    return np.mean(errors, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=1000, help="simulated sweeps per check")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    lines = []

    def report(line: str, t0: float) -> None:
        lines.append(line)
        print(f"{line}   [{time.perf_counter() - t0:.0f} s]", flush=True)

    t0 = time.perf_counter()
    two, one = ci_coverage(rng, args.sims)
    report(f"ci_coverage {two:.3f} (goal 0.93-0.97; questions then answers, n=40 x 3 repeats x 2 judge passes; "
           f"questions only {one:.3f}) {'PASS' if 0.93 <= two <= 0.97 else 'FAIL'}", t0)
    t0 = time.perf_counter()
    fwe = family_wise_error(rng, args.sims)
    report(f"family_wise_error {fwe['all-pairs']:.3f} (goal <= 0.05; Holm over all 45 pairs of 10 equal variants, n=50; "
           f"uncorrected {fwe['none']:.3f}, Holm over the leader's 9 only {fwe['leader']:.3f}) "
           f"{'PASS' if fwe['all-pairs'] <= 0.05 else 'FAIL'}", t0)
    t0 = time.perf_counter()
    power, median_n = power_at_planned_n(rng, args.sims)
    report(f"power_at_planned_n {power:.3f} (goal 0.75-0.85; delta 0.05, sd of differences 0.2, 30-question pilot, "
           f"median planned n {median_n:.0f}) {'PASS' if 0.75 <= power <= 0.85 else 'FAIL'}", t0)
    t0 = time.perf_counter()
    err = variance_split_error(rng, args.sims)
    report(f"variance_split_error question {err[0]:.3f} generation {err[1]:.3f} judge {err[2]:.3f} (goal <= 0.2 each; "
           f"n=200 x 3 x 3) {'PASS' if (err <= 0.2).all() else 'FAIL'}", t0)
    print(f"\n{args.sims} simulated sweeps per check, seed {args.seed}")


if __name__ == "__main__":
    main()
