"""Opt-in latency probes for the estimate: a few real calls per model with one of its sampled prompts.

They are real calls (billed like any other, never cached), so `estimate` makes them only when asked.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING

from workbench.runner.forecast import Range, latency_range
from workbench.spec_routing import chat_configs

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
        for v, cfg in ((v, m) for v in inputs.variants for m in chat_configs(v.model)):  # routed: each named model
            if model_key(cfg) in done or not prompts.get(v.hash):
                continue
            done.add(model_key(cfg))
            model = chat_model(cfg, env.base_urls.get(cfg.provider), spec.execution)
            sampled = prompts[v.hash]
            for i in range(n):
                gen = model.generate(sampled[i % len(sampled)])
                seen.setdefault(endpoint_of(cfg, spec.execution)[0], []).append(gen.latency_s)
    return {key: latency_range(values) for key, values in seen.items()}
