"""`workbench estimate` on routed variants (issue 16): a router costs between its cheaper and its dearer
model, a cascade its first model plus the second times an escalation share (0, expected, 1), the expected
share from an earlier run of the variant when there is one. Checked against the plain models' own
estimates (the same per-model arithmetic), on test_estimate's tiny corpus (BM25, no model calls)."""

from __future__ import annotations

import json

import pytest

from test_estimate import tiny_spec
from workbench.runner.estimate import estimate
from workbench.runner.inputs import SweepInputs
from workbench.spec import load_spec

SMALL = {"provider": "openai", "model": "gpt-4o-mini", "base_url": "http://127.0.0.1:9/v1", "max_tokens": 10,
         "price_input_per_mtok": 0.15, "price_output_per_mtok": 0.6}
LARGE = {**SMALL, "max_tokens": 20, "price_input_per_mtok": 3.0, "price_output_per_mtok": 12.0}
CASCADE = {"cascade": {"first": "small", "then": "large", "escalate_when": {"signal": "dont_know"}}}
ROUTER = {"router": {"signal": "question_tokens", "threshold": 3, "below": "large", "above": "small"}}


def spec_with(tmp_path, *models) -> dict:
    spec = tiny_spec(tmp_path)
    spec["space"]["retrieval"] = [{"kind": "bm25", "k": 1}]
    spec["space"]["model"] = list(models)
    spec["models"] = {"small": SMALL, "large": LARGE}
    return spec


def usd(tmp_path, *models) -> dict:
    return estimate(spec_with(tmp_path, *models), sample=10, latency_s=1.0).to_dict()


def test_a_cascade_costs_its_first_model_plus_the_escalated_share_of_the_second(tmp_path):
    small, large = usd(tmp_path, SMALL)["usd"], usd(tmp_path, LARGE)["usd"]
    d = usd(tmp_path, CASCADE)
    assert d["usd"]["low"] == pytest.approx(small["low"], rel=1e-4)  # never escalates: the small model alone
    assert d["usd"]["high"] == pytest.approx(small["high"] + large["high"], rel=1e-4)  # always: both calls
    assert d["usd"]["expected"] == pytest.approx(small["expected"] + 0.5 * large["expected"], rel=1e-4)
    assert d["model_calls"] == round(3 * 1.5)
    note = next(n for n in d["notes"] if "cascade(" in n)
    assert "escalation share 0.5 assumed" in note and "3 to 6 model calls" in note
    assert "not estimated" not in json.dumps(d["notes"])
    # the tokens follow the same shares: prompts of both models (same tokenizer), completions at max_tokens
    assert d["completion_tokens"] == {"low": 3, "expected": 3 * 10 + 1.5 * 20, "high": 3 * 10 + 3 * 20}


def test_an_earlier_run_of_the_cascade_gives_the_expected_escalation_share(tmp_path):
    spec = spec_with(tmp_path, CASCADE)
    loaded = load_spec(spec)
    variant = loaded.variants()[0]
    record = tmp_path / "home" / "sweeps" / "earlier"
    record.mkdir(parents=True)
    (record / "status.json").write_text(json.dumps(
        {"data": {"data.corpus.digest": SweepInputs.load(loaded).corpus.digest}}))
    rows = [{"variant_hash": variant.hash, "question_id": q, "error": None, "escalated": q == "q1",
             "routed_to": "large" if q == "q1" else "small"} for q in ("q1", "q2", "q3")]
    (record / "cells.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    small, large = usd(tmp_path, SMALL)["usd"], usd(tmp_path, LARGE)["usd"]
    d = estimate(spec, sample=10, latency_s=1.0).to_dict()
    assert d["usd"]["expected"] == pytest.approx(small["expected"] + large["expected"] / 3, rel=1e-4)
    assert any("escalation share 0.333 from an earlier run" in n for n in d["notes"])
    assert d["model_calls"] == 4


def test_a_router_costs_between_its_cheaper_and_its_dearer_model(tmp_path):
    small, large = usd(tmp_path, SMALL)["usd"], usd(tmp_path, LARGE)["usd"]
    d = usd(tmp_path, ROUTER)
    assert d["usd"]["low"] == pytest.approx(small["low"], rel=1e-4)  # every question on the cheaper one
    assert d["usd"]["high"] == pytest.approx(large["high"], rel=1e-4)  # every question on the dearer one
    assert d["usd"]["expected"] == pytest.approx((small["expected"] + large["expected"]) / 2, rel=1e-4)
    assert d["model_calls"] == 3
    assert any("low all on small, high all on large" in n for n in d["notes"])
