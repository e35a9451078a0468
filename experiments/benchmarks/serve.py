"""Load test of `workbench serve`: N requests at C concurrent clients, the fake endpoint as the model, tracing on.

    python experiments/benchmarks/serve.py [--requests 2000] [--clients 32] [--latency 0.5] [--retrieval bm25]

Sets up a quickstart-like winner (a 1-variant sweep over the SQuAD Super Bowl 50 article whose model is the
fake endpoint, exported), starts `workbench serve` on 127.0.0.1 (`--concurrency` = clients, so requests never
queue for an endpoint slot), warms it up, then sends the requests from C asyncio clients (keep-alive), every
20th answer followed by a feedback. Overhead = the latency the client sees minus the model's (`generate_s`,
which the service measures around the model call). Then SIGTERM: the service finishes and drains its trace
writer, and the MLflow store is read back to count what was lost. Bounded: `--max-seconds` for the load.

The fake model answers in 0.5 s (`fake_model_latency_s`): a real LLM takes ~0.5-2 s for a short RAG answer, so
0.5 s is the fast end of real, and 32 clients then offer ~64 requests/s. The first version used 0.05 s, which
asked for ~640 requests/s from one service process on a 2-core machine shared with the load generator, the fake
model and the trace writer: that measured how long requests queue for a saturated CPU, not the service's overhead
on a request. The overhead's CPU is printed as such (`service_cpu_ms_per_request`, `writer_cpu_ms_per_request`,
`client_cpu_ms_per_request`, `endpoint_cpu_ms_per_request`): multiply by a request rate to see when the machine
saturates. `--latency 0.05` still runs the old setting.

Prints `name: value` lines: serve_p50_overhead_ms, serve_p95_overhead_ms (goal <= 25 with tracing on), serve_rps,
serve_errors (goal 0), traces_lost (goal 0), feedback_lost (goal 0), fake_model_latency_s, the four CPU lines,
direct_p50_overhead_ms / direct_p95_overhead_ms (the control: `--direct` requests from the same client straight at
the fake model, after the service has stopped: what the machine and the client add without the service), load_avg_start and load_avg_end (the machine's 1-minute load: other work on the cores shows in the latencies),
and context lines.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
SQUAD = ROOT / "experiments" / "data" / "squad-super-bowl-50" / "dev-v1.1-super-bowl-50.json"
TOKEN = "serve-benchmark-token-0123456789"
DEPLOYMENT = "serve-benchmark"
FEEDBACK_EVERY = 20


def export_winner(tmp: Path, base_url: str, retrieval: str) -> tuple[Path, str]:
    from workbench.runner.sweep import run_sweep

    spec = {
        "name": "serve-bench", "experiment": "serve-bench",
        "data": {"corpus": {"format": "squad", "path": str(SQUAD)},
                 "eval": {"format": "squad", "path": str(SQUAD), "limit": 20}},
        "space": {"chunking": [{"strategy": "recursive", "size": 500, "overlap": 50}],
                  "retrieval": [{"kind": retrieval, "k": 3}],
                  "model": [{"provider": "openai", "model": "latency-endpoint", "base_url": base_url,
                             "max_tokens": 32, "price_input_per_mtok": 0.15, "price_output_per_mtok": 0.6}]},
        "tracking": {"tracking_uri": f"sqlite:///{tmp}/mlruns/mlflow.db", "artifact_location": str(tmp / "artifacts"),
                     "enabled": False},
        "home": str(tmp / "home"),
    }
    results = run_sweep(spec, progress=False)
    return results.export(results.variants[0].hash, tmp / "winner.yaml", log_to_mlflow=False), \
        spec["tracking"]["tracking_uri"]


def questions() -> list[str]:
    from workbench.data.evalset import load_eval
    from workbench.spec import EvalSource

    return [i.question for i in load_eval(EvalSource(format="squad", path=str(SQUAD))).items]


async def load(url: str, qs: list[str], n: int, clients: int, max_s: float) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {TOKEN}"}
    overhead, errors, answered, feedback = [], [], [], []
    counter = iter(range(n))
    deadline = time.monotonic() + max_s
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:
        async def worker():
            for i in counter:
                if time.monotonic() > deadline:
                    return
                t0 = time.perf_counter()
                try:
                    r = await client.post("/answer", json={"question": qs[i % len(qs)]})
                    seen = time.perf_counter() - t0
                    if r.status_code != 200:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                        continue
                    body = r.json()
                    overhead.append((seen - body["latency"]["generate_s"]) * 1e3)
                    answered.append(body["answer_id"])
                    if i % FEEDBACK_EVERY == 0:
                        f = await client.post("/feedback", json={"answer_id": body["answer_id"],
                                                                 "rating": "up" if i % 40 else "down"})
                        if f.status_code == 202:
                            feedback.append(body["answer_id"])
                        else:
                            errors.append(f"feedback {f.status_code}: {f.text[:200]}")
                except Exception as exc:  # a dropped connection is an error of the service, counted
                    errors.append(f"{type(exc).__name__}: {exc}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
    return dict(overhead=overhead, errors=errors, answered=answered, feedback=feedback, wall=wall)


async def direct(base_url: str, qs: list[str], n: int, clients: int, latency: float) -> list[float]:
    """The control: the same client straight at the fake model, no service between. Its overhead (seen minus the
    model's sleep) is what this machine's scheduling and the HTTP client add on their own; the service's overhead
    is comparable only beside it (on a loaded machine every process waits for a core at each wake-up)."""
    import httpx

    counter, out = iter(range(n)), []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        async def worker():
            for i in counter:
                t0 = time.perf_counter()
                r = await client.post("/chat/completions", json={
                    "model": "latency-endpoint", "max_tokens": 32,
                    "messages": [{"role": "user", "content": qs[i % len(qs)]}]})
                if r.status_code == 200:
                    out.append((time.perf_counter() - t0 - latency) * 1e3)

        await asyncio.gather(*(worker() for _ in range(clients)))
    return out


def drained(url: str, max_s: float) -> None:
    """Wait until the service's writer has stored everything it was handed (`/healthz` traces_pending 0)."""
    import httpx

    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline:
        r = httpx.get(url + "/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
        if r.status_code == 200 and r.json()["traces_pending"] == 0:
            return
        time.sleep(0.2)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc): load-independent, unlike latencies."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass
    return out


def stored(uri: str) -> tuple[set[str], set[str], list[float]]:
    """Answer ids with a trace, those whose trace holds a user rating, and the service's own overhead (ms: its
    whole-request time minus the model's, as traced: no HTTP, no client)."""
    from workbench.tracking.serve_log import read_traces, trace_row

    rows = [trace_row(t) for t in read_traces(uri, DEPLOYMENT)]
    inside = [r["latency_ms"] - r["generate_ms"] for r in rows if r["latency_ms"] is not None]
    return {r["answer_id"] for r in rows}, {r["answer_id"] for r in rows if r["rated"]}, inside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.5, help="the fake model's seconds per answer")
    parser.add_argument("--retrieval", default="bm25", choices=["bm25", "dense", "hybrid"])
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--direct", type=int, default=500, help="requests of the control run (client straight at "
                        "the fake model); 0: none")
    args = parser.parse_args()

    from workbench.testing.fake_endpoint import LatencyEndpoint
    from workbench.testing.serve_process import ServeProcess

    load1 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp_name, \
            LatencyEndpoint(latency=args.latency) as ep:
        tmp = Path(tmp_name)
        winner, uri = export_winner(tmp, ep.base_url, args.retrieval)
        qs = questions()
        svc = ServeProcess(winner, token=TOKEN, cwd=tmp, args=[
            "--deployment", DEPLOYMENT, "--home", str(tmp / "home"), "--concurrency", str(args.clients)],
            grace=600).start()
        try:
            asyncio.run(load(svc.url, qs, 50, 8, 60))  # warm-up (connections, caches, first traces)
            pid = svc.process.pid
            helpers = children(pid)  # the trace writer (spawned at start-up)
            ep_pid = ep._process.pid
            # This process imported MLflow and the sweep to make the export: freeze that heap, or the client's own
            # full collections (tens of ms) would be counted as the service's overhead
            gc.collect()
            gc.freeze()
            cpu0 = cpu_s(pid), sum(cpu_s(c) for c in helpers), time.process_time(), cpu_s(ep_pid)
            result = asyncio.run(load(svc.url, qs, args.requests, args.clients, args.max_seconds))
            cpu_client = time.process_time() - cpu0[2]  # this process only sends requests during the load
            drained(svc.url, 300)  # the writer (niced) may lag during the load: its CPU counts once it caught up
            cpu1 = cpu_s(pid), sum(cpu_s(c) for c in helpers), 0.0, cpu_s(ep_pid)
        finally:
            t_stop = time.perf_counter()
            code = svc.stop()
            stop_s = time.perf_counter() - t_stop
        control = []
        if args.direct:
            asyncio.run(direct(ep.base_url, qs, 2 * args.clients, args.clients, args.latency))  # warm-up, as above
            control = asyncio.run(direct(ep.base_url, qs, args.direct, args.clients, args.latency))
        traced, rated, inside = stored(uri)
        log = svc.log()
    o = result["overhead"]
    q = statistics.quantiles(o, n=100) if len(o) >= 2 else [float("nan")] * 99
    print(f"serve_p50_overhead_ms: {q[49]:.2f}")
    print(f"serve_p95_overhead_ms: {q[94]:.2f}")
    print(f"serve_rps: {len(result['answered']) / result['wall']:.1f}")
    print(f"serve_errors: {len(result['errors'])}")
    print(f"traces_lost: {len(set(result['answered']) - traced)}")
    print(f"feedback_lost: {len(set(result['feedback']) - rated)}")
    n = max(1, len(result["answered"]))
    print(f"fake_model_latency_s: {args.latency}")
    print(f"service_cpu_ms_per_request: {(cpu1[0] - cpu0[0]) * 1e3 / n:.2f}")
    print(f"writer_cpu_ms_per_request: {(cpu1[1] - cpu0[1]) * 1e3 / n:.2f}")
    print(f"client_cpu_ms_per_request: {cpu_client * 1e3 / n:.2f}")
    print(f"endpoint_cpu_ms_per_request: {(cpu1[3] - cpu0[3]) * 1e3 / n:.2f}")
    qd = statistics.quantiles(control, n=100) if len(control) >= 2 else [float("nan")] * 99
    print(f"direct_p50_overhead_ms: {qd[49]:.2f}")
    print(f"direct_p95_overhead_ms: {qd[94]:.2f}")
    print(f"load_avg_start: {' '.join(f'{v:.2f}' for v in load1)}")
    print(f"load_avg_end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"# requests {len(result['answered'])} answered of {args.requests} at {args.clients} clients in "
          f"{result['wall']:.1f} s; model latency {args.latency} s; retrieval {args.retrieval}; feedback "
          f"{len(result['feedback'])}; SIGTERM to exit (drains the trace writer) {stop_s:.1f} s (exit status {code}); "
          f"{os.cpu_count()} cores; trace writer: {len(helpers)} helper process(es)")
    qi = statistics.quantiles(inside, n=100) if len(inside) >= 2 else [float("nan")] * 99
    print(f"# inside the service (traced total minus model): p50 {qi[49]:.2f} ms, p95 {qi[94]:.2f} ms")
    for e in result["errors"][:5]:
        print(f"# error: {e}")
    if result["errors"] or code not in (0, -15):
        print("# service log tail:\n" + "\n".join("#   " + line for line in log.splitlines()[-20:]))


if __name__ == "__main__":
    main()
