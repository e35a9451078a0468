"""Synthetic eval sets: the filters on hand-made cases, the stratified sample, the report, and a whole
`synthesize` over real HTTP (the fake endpoint, fast; the local SmolLM2, slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SQUAD
from workbench.data.evalset import load_eval
from workbench.data.synth_filters import (
    SynthReport, answers_agree, grounded, leaks_answer, near_duplicates, stratified_sample,
)
from workbench.errors import ConfigError, DataError
from workbench.scoring.metrics import normalize_answer as norm, token_f1
from workbench.spec import EvalSource, load_spec

CHUNK = "The Denver Broncos defeated the Carolina Panthers 24–10 to earn their third Super Bowl title."


def test_grounded_needs_the_answer_or_span_in_a_chunk():
    assert grounded("Denver Broncos", "nothing like it", [CHUNK], norm)
    assert not grounded("1889", "The Denver Broncos defeated the Carolina Panthers", [CHUNK], norm)  # copied example
    assert grounded("to earn a title", "The Denver Broncos defeated the Carolina Panthers", [CHUNK], norm,
                    answer_verbatim=False)  # a why/how answer is a paraphrase: its span must be found
    assert not grounded("Peyton Manning", "Manning threw for 141 yards", [CHUNK], norm, answer_verbatim=False)
    assert grounded("Paris", "x", ["no", "Paris is a city"], norm)  # either chunk of a multi-chunk question


def test_a_question_that_contains_its_answer_leaks_it():
    assert leaks_answer("Did the Denver Broncos win?", "the Denver Broncos", norm)
    assert not leaks_answer("Who won Super Bowl 50?", "Denver Broncos", norm)
    assert not leaks_answer("How many titles did Denver have?", "3", norm)  # "3" is no word of the question
    assert leaks_answer("Who?", "", norm)  # an empty answer is useless too


def test_near_duplicates_by_cosine_keep_the_first():
    v = np.array([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0], [0.1, 1.0]])
    assert near_duplicates(v, 0.95) == [False, True, False, True]
    assert near_duplicates(v[2:], 0.95, kept=v[:1]) == [False, True]
    assert near_duplicates(v, 0.999999) == [False, False, False, False]


def test_answerability_agreement():
    assert answers_agree("Denver Broncos", "The Denver Broncos won", norm, token_f1)
    assert answers_agree("24-10 win", "a 24-10 win over Carolina", norm, token_f1)
    assert not answers_agree("Denver Broncos", "Carolina Panthers", norm, token_f1)
    assert not answers_agree("x", "", norm, token_f1)


def test_stratified_sample_spreads_over_documents_and_is_seeded():
    groups = {"a": [1, 2, 3, 4], "b": [5, 6], "c": [7]}
    order = stratified_sample(groups, seed=3)
    assert sorted(order) == list(range(1, 8))
    doc = {x: k for k, xs in groups.items() for x in xs}
    assert {doc[x] for x in order[:3]} == {"a", "b", "c"}  # the first round takes one of each document
    assert order == stratified_sample(groups, seed=3)
    assert order != stratified_sample(groups, seed=4) or order != stratified_sample(groups, seed=5)


def test_report_counts_each_filter_and_stops_at_the_first_failure():
    r = SynthReport(wanted=2)
    assert r.record({"parsed": True, "grounded": True, "no_answer_leak": True, "not_duplicate": True}, "factoid", {})
    assert not r.record({"parsed": True, "grounded": False, "no_answer_leak": True}, "why_how", {"q": 1})
    assert not r.record({"parsed": False}, "factoid", {"q": 2})
    d = r.to_dict()
    assert (d["attempts"], d["accepted"], d["acceptance_rate"]) == (3, 1, pytest.approx(1 / 3))
    assert d["filters"]["parsed"] == {"passed": 2, "rejected": 1, "acceptance_rate": pytest.approx(2 / 3)}
    assert d["filters"]["grounded"]["rejected"] == 1
    assert d["filters"]["no_answer_leak"]["passed"] == 1  # the grounded failure never reached it
    assert d["by_style"] == {"factoid": 1} and d["rejected_examples"]["grounded"] == [{"q": 1}]


def _spec(tmp_path, base_url: str, **synth) -> dict:
    return {
        "name": "synth", "home": str(tmp_path / "home"),
        "data": {"corpus": {"format": "squad", "path": str(SQUAD)}, "eval": {"format": "squad", "path": str(SQUAD)}},
        "space": {"model": [{"provider": "openai", "model": "latency-endpoint", "base_url": base_url}]},
        "synth": {"n": 3, "max_attempts": 3, **synth},
    }


def test_synthesize_over_http_counts_what_the_filters_reject(tmp_path):
    """The fake endpoint echoes words of the prompt into every JSON field, so each question contains its
    answer: every candidate parses, is grounded, and is rejected for leaking its answer; nothing is written."""
    from workbench.runner.synth import report_path_for, synthesize
    from workbench.testing.fake_endpoint import LatencyEndpoint

    out = tmp_path / "eval.jsonl"
    with LatencyEndpoint(latency=0.0) as ep:
        with pytest.raises(DataError, match="no candidate passed the filters"):
            synthesize(_spec(tmp_path, ep.base_url, styles=["factoid"], answer_from="model"), out=out)
        calls = ep.stats()["chat_calls"]
    report = json.loads(report_path_for(out).read_text())
    assert calls == report["attempts"] == 3
    assert report["filters"]["parsed"]["passed"] == 3
    assert report["filters"]["no_answer_leak"]["rejected"] == report["filters"]["grounded"]["passed"]
    assert report["accepted"] == 0 and not out.exists()


def test_synthesize_over_http_with_the_answer_taken_from_the_span(tmp_path):
    """The default: a sentence of the chunk and a name or number of it are given, the model only asks.
    Every kept question's answer is in its chunk; the filters add up."""
    from workbench.data.corpus import load_corpus
    from workbench.rag.chunking import chunk_corpus
    from workbench.runner.synth import synthesize
    from workbench.testing.fake_endpoint import LatencyEndpoint

    spec = _spec(tmp_path, "", styles=["factoid"], n=4, max_attempts=4)
    with LatencyEndpoint(latency=0.0) as ep:
        spec["space"]["model"][0]["base_url"] = ep.base_url
        result = synthesize(spec, out=tmp_path / "eval.jsonl")
    report = result.report.to_dict()
    assert report["filters"]["parsed"]["passed"] == report["attempts"] == 4
    assert report["accepted"] + sum(f["rejected"] for f in report["filters"].values()) == 4
    loaded = load_spec(spec)
    chunks = {c.id: c for c in chunk_corpus(load_corpus(loaded.data.corpus), loaded.space.chunking[0])}
    assert result.rows  # the fake echoes prompt words: some questions leave the given answer out
    for row in result.rows:
        chunk = chunks[row["provenance"]["chunk_ids"][0]]
        assert row["reference_answers"][0] in row["provenance"]["span"] and row["provenance"]["span"] in chunk.text
        assert row["provenance"]["answer_from"] == "model"  # the given answer is in the span as given


def test_synth_refuses_to_overwrite_and_bad_styles(tmp_path):
    from workbench.runner.synth import synthesize

    out = tmp_path / "eval.jsonl"
    out.write_text("{}\n")
    with pytest.raises(DataError, match="never overwritten"):
        synthesize(_spec(tmp_path, "http://127.0.0.1:9/v1"), out=out)
    with pytest.raises(ConfigError, match="synth.styles"):
        load_spec(_spec(tmp_path, "http://127.0.0.1:9/v1", styles=["factoid", "factoid"]))
    with pytest.raises(ConfigError, match="synth"):
        load_spec(_spec(tmp_path, "http://127.0.0.1:9/v1", styles=["trivia"]))


def test_synthesize_with_the_local_model(tmp_path, local_server):
    """SmolLM2 through HTTP: every reply parses (the grammar), the filters add up, ids name real chunks
    (one factoid and one two-chunk question)."""
    from workbench.runner.synth import synthesize

    spec = _spec(tmp_path, local_server.base_url, n=2, max_attempts=2, styles=["factoid", "multi_chunk"])
    spec["space"]["model"] = [{"provider": "local"}]
    out = tmp_path / "eval.jsonl"
    try:
        result = synthesize(spec, out=out, base_url=local_server.base_url)
    except DataError as exc:  # the 135M model may write nothing usable in 2 tries; the report says why
        assert "no candidate passed" in str(exc)
        report = json.loads((tmp_path / "eval.report.json").read_text())
    else:
        report = result.report.to_dict()
        loaded = load_eval(EvalSource(format="jsonl", path=str(out)))
        assert len(loaded) == report["accepted"] >= 1
        for row in result.rows:
            assert row["provenance"]["chunk_ids"][0].split("#")[0] in row["relevant_ids"]
            assert row["provenance"]["model"] == "SmolLM2-135M-Instruct"
    assert report["attempts"] == 2
    # schema-constrained, so a reply is JSON of the shape; one cut off at max_tokens is counted, not raised
    assert report["filters"]["parsed"]["passed"] + report["filters"]["parsed"]["rejected"] == 2
    assert sum(f["rejected"] for f in report["filters"].values()) + report["accepted"] == 2


def test_cli_synth_says_what_is_wrong_in_one_line(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from workbench.cli import app

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(_spec(tmp_path, "http://127.0.0.1:9/v1")))
    out = tmp_path / "eval.jsonl"
    out.write_text("{}\n")
    got = CliRunner().invoke(app, ["synth", str(spec), "--n", "2", "--out", str(out)])
    assert got.exit_code == 2 and "never overwritten" in got.output and "Traceback" not in got.output
    got = CliRunner().invoke(app, ["synth", str(spec), "--out", str(tmp_path / "no" / "eval.jsonl")])
    assert got.exit_code == 2 and "does not exist" in got.output


def test_a_synth_model_is_checked_like_any_model(tmp_path):
    spec = _spec(tmp_path, "http://127.0.0.1:9/v1", model={"provider": "openai", "model": "gpt-4.1-mini",
                                                           "base_url": "http://127.0.0.1:9/v1"})
    assert load_spec(spec).synth.model.model == "gpt-4.1-mini"
    with pytest.raises(ConfigError, match="synth.model: .*only serves 'SmolLM2-135M-Instruct'"):
        load_spec(_spec(tmp_path, "http://x/v1", model={"provider": "local", "model": "gpt"}))


def test_span_grounding_takes_the_answer_from_the_chunk_sentence():
    from workbench.data.synth_filters import answer_from_span, span_in_chunk
    from workbench.runner.synth import _ground

    chunk = CHUNK + " The game was played on February 7, 2016, at Levi's Stadium."
    sentence = span_in_chunk("The game was played February 7 2016 at Levis Stadium", [chunk])  # copied with slips
    assert sentence == "The game was played on February 7, 2016, at Levi's Stadium."
    assert span_in_chunk("Peyton Manning threw two touchdowns", [chunk]) is None
    assert answer_from_span("on February 7", sentence) == "February 7"  # the chunk's words, no stop words
    assert answer_from_span("the", sentence) is None
    # the model's answer is in the chunk: kept; else taken from the span's sentence; else not grounded
    assert _ground("factoid", "Who won?", "Denver Broncos", "x", [chunk]) == ("Denver Broncos", "x", "model")
    assert _ground("factoid", "When?", "Feb. 7 2016", "The game was played on February 7, 2016", [chunk]) == (
        "7, 2016", "The game was played on February 7, 2016, at Levi's Stadium.", "span")
    assert _ground("factoid", "Who?", "Tom Brady", "Tom Brady won the game", [chunk])[2] is None
    assert _ground("why_how", "How?", "by winning", "The Denver Broncos defeated the Carolina Panthers", [chunk])[2] in (
        "model", "span")


def test_report_counts_retries_and_a_wall_time_stop():
    r = SynthReport(wanted=5)
    r.retries, r.stopped = 2, "max_wall_s (10 s) reached after 3 candidates"
    d = r.to_dict()
    assert (d["retries"], d["stopped"]) == (2, "max_wall_s (10 s) reached after 3 candidates")
    assert "2 retried" in r.lines()[0] and "stopped: max_wall_s" in r.lines()[0]


def test_span_first_picks_a_seeded_sentence_and_grounds_the_answer_in_it():
    import random

    from workbench.rag.chunking import Chunk
    from workbench.runner.synth_span import ground_in_spans, pick_sentence, span_messages

    text = CHUNK + " Short one. The game was played on February 7, 2016, at Levi's Stadium in Santa Clara."
    chunk = Chunk(id="d#0", doc_id="d", text=text, start=0, end=len(text))
    picks = {pick_sentence(chunk, random.Random(seed)) for seed in range(20)}
    assert picks == {CHUNK, "The game was played on February 7, 2016, at Levi's Stadium in Santa Clara."}  # not "Short one."
    assert pick_sentence(chunk, random.Random(3)) == pick_sentence(chunk, random.Random(3))
    messages = span_messages("multi_chunk", ["A b c.", "D e f."])
    assert messages[-1]["content"].startswith("Sentence 1: A b c. Sentence 2: D e f.") and "both" in messages[-1]["content"]
    span = [CHUNK]
    assert ground_in_spans("Denver Broncos", span, "Which team won the Super Bowl title?") == ("Denver Broncos", "model")
    assert ground_in_spans("the Carolina team", span, "Who lost to Denver?") == ("Carolina", "span")
    assert ground_in_spans("1889", span, "When was the Eiffel Tower finished?")[1] is None  # the worked example
    assert ground_in_spans("Denver Broncos", span, "When was the Eiffel Tower finished?")[1] is None  # off topic


def test_answer_aware_picks_a_name_or_number_and_asks_only_for_the_question():
    import random

    from workbench.runner.synth_span import AskQ, ask_messages, pick_answer

    sentence = "With 4:51 left, Carolina got the ball on their own 24-yard line and soon faced 3rd-and-9."
    assert {pick_answer(sentence, random.Random(i)) for i in range(40)} == {"4:51", "Carolina", "24-yard", "3rd-and-9"}
    assert pick_answer("it was a cold day.", random.Random(0)) is None  # no name or number: the model picks
    messages = ask_messages("factoid", [sentence], "Carolina")
    assert messages[-1]["content"].endswith("Answer: Carolina") and set(AskQ.model_fields) == {"question"}
