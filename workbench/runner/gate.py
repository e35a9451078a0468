"""`workbench gate`: run (or reuse) a candidate spec and an exported baseline on the same questions, then decide.

The candidate is the spec's one variant; the baseline is the variant of an export (`workbench export`,
seal verified) run on the *candidate's* data, tracking and home, so both answer the same questions and
finished sweeps and cached answers are reused (`run_sweep` resumes a finished sweep of the same spec).
The decision is `analysis.gate.gate_decision`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from workbench.analysis.gate import GateDecision, gate_decision
from workbench.errors import ConfigError
from workbench.handover.export import read_export
from workbench.runner.sweep import run_sweep
from workbench.spec import SweepSpec, load_spec, parse_model, VariantConfig


def baseline_spec(candidate: SweepSpec, variant: VariantConfig) -> SweepSpec:
    """The candidate's spec with its space narrowed to the baseline's one variant."""
    space = {"chunking": [variant.chunking], "embedding": [variant.embedding], "retrieval": [variant.retrieval]}
    if variant.model is not None:
        space.update(prompt=[variant.prompt], model=[variant.model])
    return candidate.model_copy(update={"name": f"{candidate.name}-baseline",
                                        "space": candidate.space.model_copy(update=space)})


def run_gate(spec: Any, baseline: str | Path, metric: str = "f1", max_drop: float = 0.0, *, alpha: float = 0.05,
             tracking_uri: str | None = None, limit: int | None = None, progress: bool = False) -> GateDecision:
    loaded = load_spec(spec)
    variants = loaded.variants()
    if len(variants) != 1:
        raise ConfigError(f"SPEC: the gate compares one candidate with the baseline, and this spec has {len(variants)} "
                          "variants; narrow each space axis to one entry")
    doc = read_export(baseline)
    base_variant = parse_model(VariantConfig, doc["variant"], f"{baseline}: variant")
    if base_variant.retrieval_only != variants[0].retrieval_only:
        raise ConfigError(f"--baseline {baseline}: one of candidate and baseline generates answers and the other does not")
    base_spec = baseline_spec(loaded, base_variant)
    if base_spec.variants()[0].hash != base_variant.hash:  # the spec model re-validated it differently
        raise ConfigError(f"--baseline {baseline}: its variant does not round-trip through the spec; re-export it")
    kwargs = dict(tracking_uri=tracking_uri, limit=limit, progress=progress)
    cand = run_sweep(loaded, **kwargs)
    base = cand if base_variant.hash == variants[0].hash else run_sweep(base_spec, **kwargs)
    # the same variant as the baseline: compared with itself (no drop), under another name
    other = cand.questions().assign(variant="baseline") if base is cand else base.questions()
    questions = pd.concat([cand.questions(), other], ignore_index=True)
    baseline_id = "baseline" if base is cand else base_variant.short_hash
    return gate_decision(questions, variants[0].short_hash, baseline_id, metric, max_drop, alpha=alpha)


__all__ = ["baseline_spec", "run_gate"]
