"""The cluster-wide rate gate (runner/rate_gate.py) and the scale-out spec (spec_scale.py), without Ray."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from workbench.errors import ConfigError
from workbench.runner.rate_gate import SlidingGate, windows_for
from workbench.spec import SweepSpec, parse_model
from workbench.testing.fake_arrivals import max_in_window as _max_in_window


@pytest.mark.parametrize("seed", range(3))
def test_arrivals_never_exceed_the_limit_in_any_window_whatever_the_delays(seed):
    """Calls granted by the gate reach the endpoint after random delays and complete after random
    latencies (some never release: their worker died). In every 10 s and 60 s window at the endpoint,
    arrivals stay within the limits; and the gate keeps granting (the limit is reached, not starved)."""
    rng = random.Random(seed)
    rpm = 600  # 100 per 10 s window, 600 per 60 s
    gate = SlidingGate(windows_for(rpm, None), lease_s=5.0)
    now, pending, arrivals = 0.0, [], []  # pending: (completes at, lease)
    while now < 180:
        pending.sort()
        while pending and pending[0][0] <= now:
            gate.complete(now, pending.pop(0)[1])  # the gate hears of it when the release lands: later
        lease = gate.admit(now, 1)
        if lease is not None:
            arrive = now + rng.uniform(0, 0.3)  # network, event loops
            arrivals.append(arrive)
            if rng.random() < 0.02:
                continue  # its worker died: never released, the lease expires
            pending.append((arrive + rng.uniform(0.01, 0.5), lease))
        else:
            now += min(gate.next_change(now), 0.05)
        now += rng.uniform(0, 0.02)
    assert _max_in_window(arrivals, 10.0) <= 100
    assert _max_in_window(arrivals, 60.0) <= 600
    assert len(arrivals) > 0.85 * 600 * 3  # ~limit-bound throughput over 180 s, not starved


def test_tokens_per_minute_count_each_calls_estimate_and_a_huge_call_still_fits():
    gate = SlidingGate(windows_for(None, 1000), lease_s=60)
    a = gate.admit(0.0, 600)
    assert a is not None and gate.admit(0.0, 600) is None  # 1200 > 1000 in flight
    gate.complete(1.0, a)
    assert gate.admit(2.0, 600) is None  # completed within the last 60 s still counts
    assert gate.admit(61.5, 600) is not None
    big = SlidingGate(windows_for(None, 100), lease_s=60)
    assert big.admit(0.0, 5000) is not None  # capped at the limit, as the local limiter does


def test_vector_store_and_backend_fields_name_what_is_wrong():
    base = {"name": "x", "data": {"corpus": {"format": "jsonl", "path": "c.jsonl"},
                                  "eval": {"format": "jsonl", "path": "e.jsonl"}}}
    with pytest.raises(ConfigError, match="vector_store.*host"):
        parse_model(SweepSpec, {**base, "vector_store": {"kind": "chroma_server"}})
    with pytest.raises(ConfigError, match="execution.backend"):
        parse_model(SweepSpec, {**base, "execution": {"backend": "spark"}})
    spec = parse_model(SweepSpec, {**base, "vector_store": {"kind": "chroma_server", "host": "127.0.0.1", "port": 8123},
                                   "execution": {"backend": "ray", "workers": 4}})
    assert spec.vector_store.url == "http://127.0.0.1:8123" and spec.execution.workers == 4
    # where and how it runs is not what it computes: same variants, same resume key as the defaults
    from workbench.runner.records import resume_key

    plain = parse_model(SweepSpec, base)
    assert [v.hash for v in spec.variants()] == [v.hash for v in plain.variants()]
    assert resume_key(spec) == resume_key(plain)


@pytest.mark.slow  # a fresh interpreter importing the sweep's libraries: ~10 s, ~30 s on a loaded machine
def test_the_laptop_path_never_imports_ray(tmp_path):
    """import workbench and a local sweep (BM25, no model, no tracking) leave `ray` out of sys.modules."""
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "d1", "text": "Denver won Super Bowl 50."}\n{"id": "d2", "text": "Carolina lost."}\n')
    evalset = tmp_path / "e.jsonl"
    evalset.write_text('{"id": "q1", "question": "Who won?", "reference_answers": ["Denver"], "relevant_ids": ["d1"]}\n')
    code = f"""
import sys, workbench
from workbench import run_sweep
r = run_sweep({{"name": "noray", "stage": "retrieve", "home": {str(tmp_path / 'home')!r},
    "data": {{"corpus": {{"format": "jsonl", "path": {str(corpus)!r}}}, "eval": {{"format": "jsonl", "path": {str(evalset)!r}}}}},
    "space": {{"retrieval": [{{"kind": "bm25", "k": 1}}]}}, "tracking": {{"enabled": False}}}}, progress=False)
assert r.status == "FINISHED" and len(r.rows) == 1, r.status
print("ray" in sys.modules, sorted(m for m in sys.modules.copy() if m.startswith("ray"))[:3])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False []"


class _InProcess:
    """A Ray actor handle's shape (`handle.method.remote(...)` is awaitable) over a local object, so the
    worker's side runs here without a cluster."""

    def __init__(self, obj):
        self._obj = obj

    def __getattr__(self, name):
        import asyncio
        import types

        method = getattr(self._obj, name)
        return types.SimpleNamespace(remote=lambda *a: asyncio.ensure_future(method(*a)))


def test_a_ray_worker_computes_the_laptops_rows_and_every_call_passes_the_gate(tmp_path):
    """CellWorker (what runs on each Ray worker) without a cluster: the same per-cell pipeline gives the
    same answers, retrieval and scores as the local sweep, and each model call was admitted by the gate."""
    from workbench import run_sweep
    from workbench.runner.inputs import SweepInputs
    from workbench.runner.ray_cells import CellWorker
    from workbench.runner.rate_gate import RateGate
    from workbench.spec import load_spec
    from workbench.sync import run_coroutine
    from workbench.testing.fake_endpoint import LatencyEndpoint

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(f'{{"id": "d{i}", "text": "Team {i} won the final number {i} in Denver."}}\n'
                              for i in range(8)))
    evalset = tmp_path / "e.jsonl"
    evalset.write_text("".join(f'{{"id": "q{i}", "question": "Which final did team {i} win?", '
                               f'"reference_answers": ["number {i}"], "relevant_ids": ["d{i}"]}}\n' for i in range(4)))
    with LatencyEndpoint(latency=0.01) as ep:
        spec = {"name": "worker", "home": str(tmp_path / "home"), "tracking": {"enabled": False},
                "data": {"corpus": {"format": "jsonl", "path": str(corpus)}, "eval": {"format": "jsonl", "path": str(evalset)}},
                "space": {"chunking": [{"strategy": "none"}], "retrieval": [{"kind": "bm25", "k": 2}],
                          "model": [{"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url}]},
                "execution": {"cache": False, "requests_per_minute": 600, "concurrency": 4, "workers": 2}}
        local = run_sweep(spec, progress=False)
        inputs = SweepInputs.load(load_spec(spec))
        [variant] = inputs.variants

        async def on_worker():
            gate = _InProcess(RateGate({ep.base_url: (600, None)}, lease_s=60))
            worker = CellWorker(spec, inputs.corpus, inputs.evalset, {}, "sweep-w", frozenset(), gate, {ep.base_url}, 2)
            await worker.ready()  # what the driver awaits before sending cells: the scorers are imported
            assert worker.scorers is not None and worker.scorers.done()
            rows = [await worker.run_cell(variant.hash, i, 0) for i in range(len(inputs.evalset))]
            await worker.close()  # gives back the leases it took ahead and never used
            admitted = await gate.admitted.remote()
            trips = sum(s.round_trips for s in worker.run.executor.stocks.values())
            return rows, admitted, worker.run.executor.calls, trips

        rows, admitted, calls, trips = run_coroutine(on_worker())
    keep = ("question_id", "answer", "retrieved_chunk_ids", "f1", "exact_match", "recall_at_k", "error")
    assert [{k: r.get(k) for k in keep} for r in rows] == [{k: r.get(k) for k in keep} for r in local.rows]
    assert not rows[0]["cached"] and rows[0]["answer"]
    assert calls == 4 and admitted == {ep.base_url: 4}  # every model call was admitted by the cluster's gate
    assert trips < 2 * calls  # leases taken ahead and completions reported together: fewer than 2 per call


def test_lease_stocks_batch_the_gates_round_trips_and_never_pass_its_limit():
    """Three workers' `LeaseStock`s against one `RateGate`, 12 calls at once each: leases come in batches
    (far fewer round trips than calls), the gate never has more out than its limit, a call that gives up
    while it waits loses no lease, and leases a quiet worker holds are given back."""
    import asyncio

    from workbench.runner.rate_gate import RateGate
    from workbench.runner.ray_leases import LeaseStock
    from workbench.sync import run_coroutine

    async def scenario():
        core = RateGate({"e": (60, None)}, lease_s=60)  # 10 per 10 s window: binds at once
        gate = _InProcess(core)
        stocks = [LeaseStock(gate, "e", prefetch=4, flush_s=0.01, idle_s=0.05) for _ in range(3)]
        peak = 0

        async def call(stock):
            nonlocal peak
            lease = await stock.take(1)
            w = core.gates["e"].windows[1]
            peak = max(peak, w.in_flight + w.done_weight)
            await asyncio.sleep(0.001)
            stock.give(lease)

        tasks = [asyncio.ensure_future(call(s)) for s in stocks for _ in range(12)]
        await asyncio.sleep(0.1)
        granted = [t for t in tasks if t.done()]
        for t in tasks:
            t.cancel()  # the rest wait for the window: they give up
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.2)  # idle stock given back, completions reported
        g = core.gates["e"]
        return len(granted), peak, sum(s.round_trips for s in stocks), g.admitted, g.leases, g.windows[1]

    granted, peak, trips, admitted, leases, window = run_coroutine(scenario())
    assert granted == 10 and peak <= 10  # the 10 s window's limit, reached and never passed
    assert trips < granted  # batched: one ask served several calls
    assert admitted == 10 and not leases and window.in_flight == 0  # unused leases all came back
