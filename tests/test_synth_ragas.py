"""ragas' TestsetGenerator as `workbench synth --generator ragas`: the real library on our chunks, against
the fake OpenAI-compatible server over a real socket (workbench.testing.fake_ragas answers its prompts)."""

from __future__ import annotations

import json
import re

import pytest

from conftest import SQUAD
from workbench.data.evalset import load_eval
from workbench.errors import ConfigError
from workbench.spec import EvalSource

SENTENCE = re.compile(r"(?<=[.!?])\s+")  # how the fake splits a context into sentences


def _spec(tmp_path, base_url: str, **synth) -> dict:
    return {
        "name": "synth-ragas", "home": str(tmp_path / "home"),
        "data": {"corpus": {"format": "squad", "path": str(SQUAD)}, "eval": {"format": "squad", "path": str(SQUAD)}},
        "space": {"chunking": [{"strategy": "recursive", "size": 400, "overlap": 40}],
                  "model": [{"provider": "openai", "model": "latency-endpoint", "base_url": base_url}]},
        "synth": {"n": 4, "generator": "ragas", **synth},
    }


@pytest.mark.slow  # ~9 s: importing ragas, loading MiniLM, ~35 calls; over the fast set's budget
def test_ragas_generator_maps_its_knowledge_graph_back_to_our_chunks(tmp_path):
    from workbench.rag.chunking import chunk_corpus
    from workbench.data.corpus import load_corpus
    from workbench.runner.synth import synthesize
    from workbench.spec import load_spec
    from workbench.testing.fake_endpoint import LatencyEndpoint

    out = tmp_path / "eval.jsonl"
    with LatencyEndpoint(latency=0.0) as ep:
        result = synthesize(_spec(tmp_path, ep.base_url), out=out)
        calls = ep.stats()["chat_calls"]
    spec = load_spec(_spec(tmp_path, "http://x/v1"))
    chunks = {c.id: c for c in chunk_corpus(load_corpus(spec.data.corpus), spec.space.chunking[0])}
    report = result.report.to_dict()
    assert calls > 8 * 3  # ragas built a graph: summary, filter, themes, entities for each of 8 chunks
    assert report["attempts"] >= 4 and report["accepted"] == len(result.rows) >= 1
    assert set(report["filters"]) <= {"parsed", "no_answer_leak", "not_duplicate"}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(load_eval(EvalSource(format="jsonl", path=str(out)))) == len(rows) == len(result.rows)
    for row in rows:
        prov = row["provenance"]
        assert prov["generator"] == "ragas" and prov["synthesizer"].endswith("query_synthesizer")
        used = [chunks[i] for i in prov["chunk_ids"]]  # every id is one of our chunks
        assert row["relevant_ids"] == sorted({c.doc_id for c in used})
        # the fake answers with a sentence of each context ragas sent (joined with a space for multi-hop, and
        # a chunk may end mid-sentence): the answer starts with a sentence of a mapped chunk
        answer = row["reference_answers"][0]
        assert any(answer.startswith(s) for c in used for s in SENTENCE.split(c.text.strip()) if s), answer
        assert row["question"].startswith("What does the text say about")


def test_ragas_generator_refuses_the_local_model_before_any_call(tmp_path):
    from workbench.runner.synth import synthesize

    spec = _spec(tmp_path, "http://127.0.0.1:9/v1")
    spec["space"]["model"] = [{"provider": "local"}]
    with pytest.raises(ConfigError, match="ragas needs a capable model.*remote OpenAI-compatible"):
        synthesize(spec, out=tmp_path / "eval.jsonl")
    with pytest.raises(ConfigError, match=r"synth: 1 problem.*\n  - generator: .*'gpt'"):
        synthesize(_spec(tmp_path, "http://127.0.0.1:9/v1"), generator="gpt")


def test_cli_generator_option(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from workbench.cli import app

    spec = _spec(tmp_path, "http://127.0.0.1:9/v1", generator="workbench")
    spec["space"]["model"] = [{"provider": "local"}]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    got = CliRunner().invoke(app, ["synth", str(path), "--generator", "ragas", "--out", str(tmp_path / "e.jsonl")])
    assert got.exit_code == 2 and "ragas needs a capable model" in got.output and "Traceback" not in got.output
