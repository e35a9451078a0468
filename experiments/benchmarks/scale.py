"""Scale-out benchmark (issue 19): a sweep's cells on 1, 2 and 4 Ray workers, the cluster-wide rate limit,
and a corpus embedded by Ray Data vs the local path.

    python experiments/benchmarks/scale.py                  # 20,000 cells per worker count, L = 0.2 s (~35 min)
    python experiments/benchmarks/scale.py --cells 2000 --limited-cells 0 --judge-cells 0   # development (~5 min)
    python experiments/benchmarks/scale.py --ray-address 127.0.0.1:6379 ...   # a running cluster (no start-up)

Prints `name: value` lines (context lines start with `#`):
    per_worker_concurrency     calls in flight per worker (default 4; the spec's concurrency is that x workers)
    ray_cells_per_s_w1/w2/w4   cells/s from the first finished cell to the last (Ray start-up and the
                               actors' start excluded), BM25 + the fake endpoint (L = 0.2 s), that many calls
                               in flight per worker, a global rate limit that does not bind (60,000/min)
    ray_scaling_w4             w4 / w1 (goal >= 3.5: the sweep is endpoint-bound)
    rate_limit_max_observed_over_limit   a run held to 3,000 calls/min: the most calls the endpoint saw
                               in any 10 s / 60 s window over that window's limit (<= 1.0)
    ray_embed_vs_local         wall time of embedding BEIR SciFact (MiniLM int8 ONNX) with Ray Data over
                               that of the local path (< 1: Ray Data is faster)
    driver_peak_rss_mb         this process's peak RSS over the sweeps (the driver: Ray, record, resume, progress,
                               the rows), taken before the embedding comparison (whose local ONNX run is this
                               process's too and would be counted as the driver's otherwise)
    ray_worker_cpu_ms_per_cell_wN, ray_driver_cpu_ms_per_cell_wN   CPU per cell, measured: the workers' process
                               CPU from their first cell on (summed), the driver's over the run
    ray_gate_cpu_ms_per_cell_wN  the rate gate actor's process CPU over the run (an idle actor's ~25 ms/s in it)
    endpoint_cpu_ms_per_cell_wN  the fake endpoint's server process (shares the cores in this benchmark)
    judge_driver_cpu_ms_per_cell   the LLM judge (context_recall + faithfulness, 3 calls per cell, the fake
                               endpoint answering at once) judging cells on the driver: its CPU per judged cell
    cpu_count, load            the machine: cores and the 1-minute load average before and after each run
Tracking is off here: MLflow costs the same per cell on either backend (experiments/benchmarks/run.py
measures it) and would measure the tracking store, not the cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

# The shipped reduced SciFact (533 abstracts); the full corpus (5,183, BEIR's scifact.zip) via --scifact DIR.
SCIFACT = ROOT / "experiments" / "data" / "beir-scifact-reduced"
LATENCY = 0.2
# Calls in flight per worker (--per-worker-concurrency). 4 keeps w4 endpoint-bound on a 2-core machine: 4 workers
# x 20 cells/s x ~6 ms of worker CPU a cell is ~0.5 core; at 16 each (the first figures) the same run needed
# ~3 cores and measured the machine, not the cluster (docs/scale-out.md).
PER_WORKER = 4
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def write_data(tmp: Path, cells: int) -> tuple[Path, Path]:
    corpus, evalset = tmp / "corpus.jsonl", tmp / "eval.jsonl"
    with corpus.open("w") as f:
        for d in range(200):
            words = " ".join(WORDS[(d + k) % len(WORDS)] for k in range(12))
            f.write(json.dumps({"id": f"d{d}", "text": f"Document {d} is about {words}."}) + "\n")
    with evalset.open("w") as f:
        for q in range(cells):
            f.write(json.dumps({"id": f"q{q}", "question": f"What is document {q % 200} about {WORDS[q % 16]}?",
                                "reference_answers": [WORDS[q % 16]], "relevant_ids": [f"d{q % 200}"]}) + "\n")
    return corpus, evalset


def sweep_spec(tmp: Path, name: str, corpus: Path, evalset: Path, base_url: str, workers: int, rpm: float,
               per_worker: int = PER_WORKER) -> dict:
    return {
        "name": name,
        "home": str(tmp / name),
        "data": {"corpus": {"format": "jsonl", "path": str(corpus)}, "eval": {"format": "jsonl", "path": str(evalset)}},
        "space": {"chunking": [{"strategy": "none"}], "retrieval": [{"kind": "bm25", "k": 2}],
                  "model": [{"provider": "openai", "model": "latency-endpoint", "base_url": base_url, "max_tokens": 16}]},
        "tracking": {"enabled": False},
        "execution": {"backend": "ray", "workers": workers, "concurrency": per_worker * workers,
                      "requests_per_minute": rpm, "cache": False, "timeout_s": 30},
    }


def timed_sweep(spec: dict) -> tuple[float, int, object]:
    from workbench import run_sweep

    stamps: list[float] = []
    cpu = time.process_time()
    results = run_sweep(spec, progress=False, on_cell=lambda row: stamps.append(time.perf_counter()))
    results.stats["driver_cpu_s"] = time.process_time() - cpu
    errors = sum(1 for r in results.rows if r.get("error"))
    assert results.status == "FINISHED" and not errors, (results.status, errors)
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]), len(stamps), results


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def judge_cpu(tmp: Path, base_url: str, rows: list[dict]) -> float:
    """ms of this process's CPU per cell the LLM judge scores here (as the driver does after generation)."""
    import asyncio

    from workbench.scoring.cell import Cell
    from workbench.scoring.judge import Judge
    from workbench.spec import JudgeConfig

    cfg = JudgeConfig(provider="openai", model="latency-endpoint", base_url=base_url, max_tokens=64,
                      metrics=["context_recall", "faithfulness"])
    with Judge(cfg, base_url=base_url, cache_dir=tmp / "judge-cache") as judge:
        asyncio.run(judge.score_cells([Cell.from_row(rows[0])]))  # ragas imported and its prompts built: not counted
        cells = [Cell.from_row(r) for r in rows[1:]]
        cpu = time.process_time()
        judged = asyncio.run(judge.score_cells(cells))
        spent = time.process_time() - cpu
    assert all(c.scores.get("faithfulness") is not None for c in judged), "the judge failed on the fake endpoint"
    return 1000 * spent / len(cells)


def over_limit(times: list[float], rpm: float) -> float:
    from workbench.runner.rate_gate import windows_for
    from workbench.testing.fake_arrivals import max_in_window

    return max(max_in_window(times, w.seconds) / w.limit for w in windows_for(rpm, None))


def embed_compare(tmp: Path, docs: int | None, scifact: Path = SCIFACT) -> tuple[float, float, int]:
    from workbench.data.corpus import load_corpus
    from workbench.rag.assemble import embedder_for
    from workbench.rag.chunking import chunk_corpus
    from workbench.runner.ray_index import RayDataEmbedder
    from workbench.spec import ChunkingConfig, CorpusSource, EmbeddingConfig

    corpus = load_corpus(CorpusSource(format="beir", path=str(scifact)))
    chunks = chunk_corpus(corpus, ChunkingConfig(strategy="recursive", size=500, overlap=50))
    texts = [c.text for c in chunks][:docs] if docs else [c.text for c in chunks]
    cfg = EmbeddingConfig()
    start = time.perf_counter()
    embedder_for(cfg, tmp / "embed-local").embed(texts)  # a fresh home: no embedding cache
    local = time.perf_counter() - start
    import ray

    sessions = max(1, int(ray.cluster_resources().get("CPU", 1)) // 2)
    start = time.perf_counter()
    RayDataEmbedder(cfg, tmp / "embed-ray", sessions).embed(texts)
    return time.perf_counter() - start, local, len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--limited-cells", type=int, default=2_000, help="cells of the rate-limited run (0: skip it "
                        "and the embedding comparison)")
    parser.add_argument("--embed-chunks", type=int, default=None, help="embed only the first N SciFact chunks")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--per-worker-concurrency", type=int, default=PER_WORKER,
                        help="calls in flight per worker (the spec's concurrency is this x workers)")
    parser.add_argument("--ray-address", default=None, help="an already started Ray cluster (e.g. 127.0.0.1:6379) "
                        "instead of a fresh local one (its start-up can take minutes on a loaded machine)")
    parser.add_argument("--judge-cells", type=int, default=200, help="cells judged on the driver (0: skip)")
    parser.add_argument("--scifact", default=str(SCIFACT), help="BEIR SciFact folder embedded by the comparison "
                        "(default: the shipped reduced copy; the README's figures used the full corpus)")
    args = parser.parse_args()
    if not (Path(args.scifact) / "corpus.jsonl").is_file():  # before Ray starts: one clear message
        parser.error(f"--scifact {args.scifact}: no corpus.jsonl there. Get BEIR SciFact from "
                     "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip "
                     "(unzip it), or leave --scifact out for the shipped reduced copy.")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_agent_register_timeout_ms", "300000")  # slow agent imports on a loaded machine
    import ray

    from workbench.testing.fake_endpoint import LatencyEndpoint
    from workbench.testing.ray_patient import patience

    patience()  # a shared 2-core machine: Ray's agents can take longer to start than Ray waits for them

    print(f"# {platform.node()}: python {platform.python_version()}, ray {ray.__version__}, shared with other jobs")
    print(f"cpu_count: {os.cpu_count()}")
    print(f"load: {load()}  (1-minute load average before Ray starts)")
    started = time.perf_counter()
    for attempt in range(30):  # on a loaded machine Ray's agents can miss the raylet's start-up deadline
        try:
            if args.ray_address:
                ray.init(address=args.ray_address, logging_level="ERROR", log_to_driver=False)
            else:
                ray.init(num_cpus=8, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            break
        except Exception as exc:  # noqa: BLE001  (ray raises a bare Exception for this)
            print(f"# ray.init attempt {attempt + 1} failed: {str(exc)[:120]}")
            ray.shutdown()
    else:
        raise SystemExit("Ray did not start: see /tmp/ray/session_latest/logs")
    where = args.ray_address or "a local cluster, 8 logical CPUs"
    print(f"# ray.init ({where}): {time.perf_counter() - started:.1f} s")
    rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="wb-scale-") as t, LatencyEndpoint(latency=LATENCY) as ep:
        tmp = Path(t)
        corpus, evalset = write_data(tmp, args.cells)
        import psutil

        server = psutil.Process(ep._process.pid)
        pw = args.per_worker_concurrency
        print(f"per_worker_concurrency: {pw}  (calls in flight per worker; the spec's concurrency is {pw} x workers)")
        for w in [int(x) for x in args.workers.split(",")]:
            ep.reset_stats()
            before, server_cpu = load(), sum(server.cpu_times()[:2])
            rate, n, results = timed_sweep(sweep_spec(tmp, f"w{w}", corpus, evalset, ep.base_url, w, 60_000, pw))
            server_cpu = sum(server.cpu_times()[:2]) - server_cpu
            rates[w] = rate
            print(f"ray_cells_per_s_w{w}: {rate:.1f}  ({n} cells, {pw} in flight per worker, "
                  f"ideal {pw * w / LATENCY:.0f}; 60,000/min limit: {over_limit(ep.arrivals(), 60_000):.2f} of it; "
                  f"load {before} -> {load()})")
            stats = results.stats
            print(f"ray_worker_cpu_ms_per_cell_w{w}: {1000 * stats['ray_worker_cpu_s'] / n:.2f}")
            print(f"ray_driver_cpu_ms_per_cell_w{w}: {1000 * stats['driver_cpu_s'] / n:.2f}")
            print(f"ray_gate_cpu_ms_per_cell_w{w}: {1000 * stats['ray_gate_cpu_s'] / n:.2f}")
            print(f"endpoint_cpu_ms_per_cell_w{w}: {1000 * server_cpu / n:.2f}  (the fake endpoint's server process)")
            sample = results.rows[: args.judge_cells + 1]
            del results  # the driver holds one run's rows at a time
        if 1 in rates and 4 in rates:
            print(f"ray_scaling_w4: {rates[4] / rates[1]:.2f}")
        print(f"driver_peak_rss_mb: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
        if args.judge_cells > 0:
            print(f"judge_driver_cpu_ms_per_cell: {judge_cpu(tmp, ep.base_url, sample):.1f}  ({len(sample) - 1} cells, "
                  "3 judge calls each)")
        if args.limited_cells <= 0:
            return
        limited_eval = tmp / "limited.jsonl"
        limited_eval.write_text("".join(evalset.read_text().splitlines(keepends=True)[: args.limited_cells]))
        ep.reset_stats()
        rate, n, _ = timed_sweep(sweep_spec(tmp, "limited", corpus, limited_eval, ep.base_url, 4, 3000))
        print(f"rate_limit_max_observed_over_limit: {over_limit(ep.arrivals(), 3000):.3f}  (4 workers, 3,000/min = "
              f"500 per 10 s and 3,000 per 60 s at the endpoint; {rate:.1f} cells/s)")
        ray_s, local_s, n = embed_compare(tmp, args.embed_chunks, Path(args.scifact)) if args.embed_chunks != 0 else (0.0, 1.0, 0)
        print(f"ray_embed_vs_local: {ray_s / local_s:.2f}  (SciFact, {n} chunks: Ray Data {ray_s:.1f} s, "
              f"local {local_s:.1f} s)")
    print(f"# this process's peak RSS with the local embedding run: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
