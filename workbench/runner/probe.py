"""Opt-in latency probes for the estimate: a few real calls per model with one of its sampled prompts.

They are real calls (billed like any other, never cached), so `estimate` makes them only when asked.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING

from workbench.runner.forecast import Range, latency_range

if TYPE_CHECKING:
    from workbench.runner.inputs import SweepInputs


def probe_latency(inputs: SweepInputs, prompts: dict[str, list[list[dict]]], n: int) -> dict[str, Range]:
    """Endpoint key -> the latency range of `n` calls to each distinct model on it (the local model is
    started for the probe, as a sweep would)."""
    from workbench.rag.assemble import chat_model
    from workbench.runner.environment import Environment
    from workbench.runner.estimate import endpoint_of
    from workbench.runner.forecast import model_key

    spec = inputs.spec
    seen: dict[str, list[float]] = {}
    done: set[str] = set()
    with ExitStack() as stack:
        env = Environment.open(spec, list(inputs.variants), stack)
        env.check_endpoints(list(inputs.variants))
        for v in inputs.variants:
            if v.model is None or model_key(v.model) in done or not prompts.get(v.hash):
                continue
            done.add(model_key(v.model))
            model = chat_model(v.model, env.base_urls.get(v.model.provider), spec.execution)
            sampled = prompts[v.hash]
            for i in range(n):
                gen = model.generate(sampled[i % len(sampled)])
                seen.setdefault(endpoint_of(v.model, spec.execution)[0], []).append(gen.latency_s)
    return {key: latency_range(values) for key, values in seen.items()}
