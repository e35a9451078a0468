"""What a question's trace costs the MLflow helper: N cells logged as traces, with and without assessments,
a trace at a time by MLflow's exporter or in batches.

    python experiments/benchmarks/trace_assessments.py [--n 800]

Runs the tracker the helper process runs (`MlflowTracker`, in this process, so its time is the helper's)
on a fresh sqlite store, four ways:
  bare      a trace per cell, no scores (rows without metric keys or references), each stored by MLflow's
            exporter (a `log_spans` per span, then `start_trace`)
  attached  the same cells with 8 scores + 2 expectations each, attached before the trace is exported
  per-call  the bare traces, then each assessment by `mlflow.log_assessment` (one call per score, what
            `mlflow.genai.evaluate` does)
  batched   the scored cells in batches of 50 through MLflow's store calls (`workbench.tracking.trace_batch`
            with the row writer off): a `start_trace` per trace with its assessments, one `log_spans`,
            one transaction
  rows      the scored cells as the workbench stores them: batches of 50 written as rows, one insert
            per MLflow trace table (`workbench.tracking.trace_rows`)
The modes take turns in rounds of 100 cells. The store is a new one, in write-ahead-log mode as the
workbench creates them. Prints `name: value` lines: seconds per mode, milliseconds per cell (wall) and
this process's CPU milliseconds per cell (what the helper process spends; a loaded machine stretches wall
time, not CPU time).
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

ROUND = 100  # cells per mode per turn

SCORES = {"hit_at_k": 1.0, "recall_at_k": 0.5, "mrr": 0.5, "ndcg_at_k": 0.6131, "exact_match": 0.0,
          "f1": 0.4666666666666666, "rouge_l": 0.4, "string_similarity": 0.71}


def rows(variant, n: int, scored: bool) -> list[dict]:
    out = []
    for i in range(n):
        row = {"variant_hash": variant.hash, "variant": variant.short_hash, "question_id": f"q{i}",
               "question": f"Which team won Super Bowl {i}?", "messages": [{"role": "user", "content": "…"}],
               "retrieved_chunk_ids": [f"d{i}-0", f"d{i}-1", f"d{i}-2"], "retrieved_chunk_doc_ids": [f"d{i}"] * 3,
               "contexts": ["The Denver Broncos defeated the Carolina Panthers. " * 8] * 3,
               "started_at_ns": time.time_ns(), "latency_retrieve_s": 0.01, "latency_generate_s": 0.2,
               "answer": "Denver Broncos", "error": None, "tokens_prompt": 300, "tokens_completion": 5}
        if scored:
            row.update(reference_answers=["Denver Broncos"], relevant_ids=[f"d{i}"], **SCORES)
        out.append(row)
    return out


def session(tmp: Path, name: str):
    import pandas as pd

    from workbench.spec import TrackingConfig, load_spec
    from workbench.tracking.mlflow_tracker import MlflowTracker

    spec = load_spec({"name": name, "data": {"corpus": {"format": "jsonl", "path": "c.jsonl"},
                                             "eval": {"format": "jsonl", "path": "e.jsonl"}}})
    variant = spec.variants()[0]
    cfg = TrackingConfig(tracking_uri=f"sqlite:///{tmp}/mlruns/mlflow.db", artifact_location=str(tmp / "art"))
    tracker = MlflowTracker(cfg, name)
    tracker.start_sweep(spec, name, 1, {}).result()
    tracker.start_variant(variant, pd.DataFrame({"question": ["q"]})).result()
    return tracker, variant


CPU: dict[str, float] = {}  # mode -> this process's CPU seconds


def timed(tracker, variant, cells: list[dict], batched: bool = False, mode: str = "", as_rows: bool = True) -> float:
    from workbench.tracking import trace_rows

    tracker.batch_traces = batched
    usable = trace_rows.usable
    if not as_rows:
        trace_rows.usable = lambda store: False
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        for row in cells:
            tracker.log_cell(variant, row).result()
        tracker._flush_traces()  # stored, not just queued or held
        tracker.mlflow.flush_trace_async_logging()
        wall = time.perf_counter() - t0
    finally:
        trace_rows.usable = usable
    CPU[mode] = CPU.get(mode, 0.0) + time.process_time() - c0
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=800, help="cells per mode (default 800)")
    n = parser.parse_args().n
    import mlflow

    from workbench.tracking import assessments

    with tempfile.TemporaryDirectory() as tmp:
        tracker, variant = session(Path(tmp), "bench-assessments")
        timed(tracker, variant, rows(variant, 5, True))  # warm: imports, first statements
        timed(tracker, variant, rows(variant, 5, True), batched=True)
        timed(tracker, variant, rows(variant, 5, True), batched=True, as_rows=False)
        CPU.clear()
        run_id = tracker.run_ids[variant.hash]
        bare = attached = per_call = batched = as_rows = 0.0
        # The modes take turns in rounds, so a shared machine's load changes weigh on all three alike.
        for start in range(0, n, ROUND):
            size = min(ROUND, n - start)
            plain = rows(variant, size, False)
            for r in plain:
                r["question_id"] += f"-bare{start}"
            bare_cpu = CPU.get("bare", 0.0)
            bare += (b := timed(tracker, variant, plain, mode="bare"))
            bare_cpu = CPU["bare"] - bare_cpu  # per_call's first half
            attached += timed(tracker, variant, rows(variant, size, True), mode="attached")
            scored = rows(variant, size, True)
            t0, c0 = time.perf_counter(), time.process_time()
            for row, base in zip(scored, plain):
                trace_id = tracker.trace_ids[(variant.hash, base["question_id"])]
                for a in [*assessments.feedbacks(row, run_id), *assessments.expectations(row)]:
                    mlflow.log_assessment(trace_id, a)
            per_call += b + time.perf_counter() - t0
            CPU["per_call"] = CPU.get("per_call", 0.0) + bare_cpu + time.process_time() - c0
            batched += timed(tracker, variant, rows(variant, size, True), batched=True, mode="batched", as_rows=False)
            as_rows += timed(tracker, variant, rows(variant, size, True), batched=True, mode="rows")
        count = len(assessments.feedbacks(scored[0], run_id)) + len(assessments.expectations(scored[0]))
        tracker.finish_sweep("FINISHED", {"wall_s": 0.0}).result()
    print(f"cells: {n}  ({count} assessments each)")
    for name, s in (("bare", bare), ("attached", attached), ("per_call", per_call), ("batched", batched),
                    ("rows", as_rows)):
        print(f"{name}_s: {s:.2f}  ({1000 * s / n:.1f} ms per cell, {1000 * CPU[name] / n:.2f} CPU ms per cell)")
    print(f"attached_over_bare: {attached / bare:.2f}")
    print(f"per_call_over_bare: {per_call / bare:.2f}")
    print(f"attached_over_batched: {attached / batched:.2f}")
    print(f"batched_over_rows_cpu: {CPU['batched'] / CPU['rows']:.2f}")


if __name__ == "__main__":
    main()
