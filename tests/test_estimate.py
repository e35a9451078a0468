"""`workbench.estimate` / `workbench estimate`: calls, tokens from the real rendered prompts, USD and wall,
checked against prompts counted by hand (tiny corpus, BM25, tiktoken's offline o200k_base)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from workbench.cli import app
from workbench.runner.estimate import estimate

DOCS = {"d1": "Denver won the game.", "d2": "Carolina lost the game."}
QUESTIONS = {"q1": "Who won?", "q2": "Who lost?", "q3": "Which game?"}
TEMPLATE = "C: {context}\nQ: {question}"


def tiny_spec(tmp_path: Path, **model) -> dict:
    corpus, evals = tmp_path / "corpus.jsonl", tmp_path / "eval.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in DOCS.items()))
    evals.write_text("".join(json.dumps({"id": i, "question": q, "reference_answers": ["x"]}) + "\n"
                             for i, q in QUESTIONS.items()))
    return {
        "name": "t-estimate",
        "data": {"corpus": {"format": "jsonl", "path": str(corpus)}, "eval": {"format": "jsonl", "path": str(evals)}},
        "space": {
            "chunking": [{"strategy": "none"}],
            "retrieval": [{"kind": "bm25", "k": 1}, {"kind": "bm25", "k": 2}],
            "prompt": [{"name": "tiny", "template": TEMPLATE}],
            "model": [{"provider": "openai", "model": "gpt-4o-mini", "base_url": "http://127.0.0.1:9/v1",
                       "max_tokens": 10, "price_input_per_mtok": 1.0, "price_output_per_mtok": 4.0, **model}],
        },
        "execution": {"concurrency": 2},
        "tracking": {"enabled": False},
        "home": str(tmp_path / "home"),
    }


# The prompts, counted by hand in o200k_base tokens. BM25 returns only documents that share a word with the
# question, so k=2 adds the second document only for "Which game?":
#   'C: Denver won the game.\nQ: Who won?'      C|:| Denver| won| the| game|.\n|Q|:| Who| won|?           12
#   'C: Carolina lost the game.\nQ: Who lost?'  C|:| Carolina| lost| the| game|.\n|Q|:| Who| lost|?        12
#   'C: Denver won the game.\nQ: Which game?'   C|:| Denver| won| the| game|.\n|Q|:| Which| game|?         12
#   'C: Denver won the game.\n\nCarolina lost the game.\nQ: Which game?'
#        C|:| Denver| won| the| game|.\n\n|Car|olina| lost| the| game|.\n|Q|:| Which| game|?               18
# plus OpenAI's chat framing: 3 tokens per message and 3 to prime the reply.
HAND_COUNTED = {1: [12, 12, 12], 2: [12, 12, 18]}
FRAMING = 3 + 3


def test_estimate_counts_the_real_prompts_with_the_models_tokenizer(tmp_path):
    result = estimate(tiny_spec(tmp_path), sample=10, latency_s=2.0)
    d = result.to_dict()
    assert (d["variants"], d["questions"], d["model_calls"], d["cached_calls"], d["judge_calls"]) == (2, 3, 6, 0, 0)
    # every question was sampled: the prompt figure is exact
    assert d["prompt_tokens"]["low"] == d["prompt_tokens"]["expected"] == d["prompt_tokens"]["high"]
    assert d["prompt_tokens"]["expected"] == sum(n + FRAMING for counts in HAND_COUNTED.values() for n in counts)
    assert "tiktoken o200k_base" in d["basis"]["prompt_tokens"]
    # no earlier answers: completions at max_tokens (the cap), at least one token each
    assert d["completion_tokens"] == {"low": 6, "expected": 60, "high": 60}
    usd = (d["prompt_tokens"]["expected"] * 1.0 + 60 * 4.0) / 1e6
    assert d["usd"]["expected"] == pytest.approx(usd, rel=1e-6) and d["usd"]["low"] < usd
    # 6 calls, 2 at a time: 3 waves of 2 s
    assert d["wall_s"]["expected"] == pytest.approx(6.0)
    assert d["wall_s"]["low"] < 6.0 < d["wall_s"]["high"]


def test_rate_limit_and_unknown_price_and_tokenizer_are_said(tmp_path):
    spec = tiny_spec(tmp_path, model="some-self-hosted-model", price_input_per_mtok=None, price_output_per_mtok=None)
    spec["execution"]["requests_per_minute"] = 6
    spec["judge"] = {"provider": "openai", "model": "gpt-4o-mini", "base_url": "http://127.0.0.1:9/v1",
                     "metrics": ["faithfulness", "context_precision"]}
    d = estimate(spec, sample=1, latency_s=0.1).to_dict()
    assert d["judge_calls"] == 3 * (2 + 1) + 3 * (2 + 2)  # per cell: faithfulness 2, context_precision k
    assert d["usd"] == {"low": None, "expected": None, "high": None}
    assert any("no price for model 'some-self-hosted-model'" in n for n in d["notes"])
    assert "~4 characters a token" in d["basis"]["prompt_tokens"]
    assert d["prompt_tokens"]["low"] < d["prompt_tokens"]["expected"] < d["prompt_tokens"]["high"]
    assert d["wall_s"]["expected"] == pytest.approx(60.0)  # 6 calls at 6 a minute, not 3 waves of 0.1 s
    no_latency = estimate(spec, sample=1).to_dict()
    assert no_latency["wall_s"]["expected"] is None and any("--probe" in n for n in no_latency["notes"])


def test_cli_json_has_the_documented_shape(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tiny_spec(tmp_path)))
    result = CliRunner().invoke(app, ["estimate", str(path), "--json", "--latency", "1"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.output)
    for key in ("variants", "model_calls", "judge_calls"):
        assert isinstance(d[key], int)
    for key in ("prompt_tokens", "completion_tokens", "usd", "wall_s"):
        assert set(d[key]) == {"low", "expected", "high"} and d[key]["low"] <= d[key]["expected"] <= d[key]["high"]
    text = CliRunner().invoke(app, ["estimate", str(path), "--sample", "0"])
    assert text.exit_code == 2 and "--sample" in text.output and "Traceback" not in text.output


def test_the_variants_tab_shows_tokens_usd_and_wall_from_the_estimate(tmp_path):
    import html
    import re
    import time

    from workbench.ui.app import Workbench

    def shown(view) -> str:
        deadline = time.time() + 120
        while "prompt tokens" not in view.line.value and time.time() < deadline:
            time.sleep(0.05)
        return html.unescape(re.sub(r"<[^>]+>", "", view.line.value))

    wb = Workbench(tiny_spec(tmp_path))
    view = wb.estimate_view
    assert wb.variants_tab.widget.children[-1] is view.widget and view.line.value == ""  # opt-in: builds indexes
    view.enabled.value = True
    expected = sum(n + FRAMING for counts in HAND_COUNTED.values() for n in counts)
    assert f"prompt tokens {expected}" in shown(view) and "completion tokens 60" in shown(view)
    assert "USD 0.0004" in shown(view) and "no latency known" in shown(view)
    wb.variants_tab.retrieval_k.value = "1"  # one variant left: the line follows the spec
    view.line.value = ""
    assert f"prompt tokens {sum(n + FRAMING for n in HAND_COUNTED[1])} " in shown(view)
    view.close()


def test_a_real_sweep_logs_its_estimate_beside_the_actual(swept):
    """The shared local-model sweep: every question is in the sample, and the GGUF's own tokenizer and chat
    template count exactly what llama.cpp's server reports, so the estimate equals the actual."""
    import mlflow

    _, spec, results = swept
    metrics = mlflow.MlflowClient(spec["tracking"]["tracking_uri"]).get_run(results.parent_run_id).data.metrics
    calls = len(results.rows)  # a fresh home: every cell was a model call
    assert metrics["estimate.calls"] == metrics["actual.calls"] == calls
    assert metrics["estimate.prompt_tokens"] == metrics["actual.prompt_tokens"] == sum(r["tokens_prompt"] for r in results.rows)
    assert metrics["estimate.completion_tokens_high"] == 16 * calls >= metrics["actual.completion_tokens"]
    assert metrics["estimate.usd"] == metrics["actual.usd"] == 0.0


def test_observed_tokens_and_latencies_are_kept_beside_each_record_until_it_grows(tmp_path):
    """Every run's start reads what earlier sweeps measured: a record's figures are kept in observed.json while
    its cells.jsonl is unchanged, and read again from the cells when it grows."""
    from workbench.runner.estimate import OBSERVED, observe
    from workbench.runner.forecast import model_key
    from workbench.spec import SweepSpec

    spec = SweepSpec.model_validate(tiny_spec(tmp_path))
    variant = spec.variants()[0]
    record = tmp_path / "home" / "sweeps" / "s1"
    record.mkdir(parents=True)
    (record / "spec.json").write_text(spec.model_dump_json())
    cells = record / "cells.jsonl"

    def cell(q: str, tokens: int, seconds: float, **extra) -> str:
        return json.dumps({"variant_hash": variant.hash, "question_id": q, "tokens_completion": tokens,
                           "latency_generate_s": seconds, "cached": False, **extra}) + "\n"

    cells.write_text(cell("q1", 5, 0.5) + cell("q2", 7, 0.7) + cell("q3", 9, 0.9, cached=True))
    key = model_key(variant.model)
    first = observe(tmp_path / "home")
    assert first[key].completion_tokens == (5, 7) and first[key].latency_s == (0.5, 0.7)  # the cached cell is no call
    kept = json.loads((record / OBSERVED).read_text())
    kept["models"][key] = [[99], [9.9]]  # same stamp: the kept figures are what is read
    (record / OBSERVED).write_text(json.dumps(kept))
    assert observe(tmp_path / "home")[key].completion_tokens == (99,)
    with cells.open("a") as fh:  # the record grew (a resumed sweep): read from its cells again
        fh.write(cell("q3", 11, 1.1))
    again = observe(tmp_path / "home")[key]
    assert again.completion_tokens == (5, 7, 11) and again.latency_s == (0.5, 0.7, 1.1)


def test_a_sweep_keeps_what_it_measured_for_the_next_runs_estimate(tmp_path):
    """The sweep writes observed.json from its own cells as it ends: what a later start reads without parsing
    the record equals what parsing it gives."""
    from workbench.runner.estimate import OBSERVED, observe
    from workbench.runner.sweep import run_sweep
    from workbench.testing.fake_endpoint import LatencyEndpoint

    with LatencyEndpoint(latency=0.01) as ep:
        spec = tiny_spec(tmp_path, model="latency-endpoint", base_url=ep.base_url)
        run_sweep(spec, progress=False)
    (record,) = (tmp_path / "home" / "sweeps").iterdir()
    kept = json.loads((record / OBSERVED).read_text())
    assert kept["cells"][0] == (record / "cells.jsonl").stat().st_size
    (record / OBSERVED).unlink()
    parsed = observe(tmp_path / "home")  # read from the record (and kept again)
    assert {k: (sorted(t), sorted(s)) for k, (t, s) in kept["models"].items()} == \
        {k: (sorted(o.completion_tokens), sorted(o.latency_s)) for k, o in parsed.items()}
    (only,) = parsed.values()
    assert len(only.latency_s) == 4  # 6 cells, 4 distinct prompts (HAND_COUNTED): the rest answered without a call
