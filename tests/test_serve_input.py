"""The service's pure parts, without a server: what each route accepts (one clear message per bad body), how
served questions become an eval set (dedup, redaction, corrected vs candidate references), and the monitor's
numbers and figure from a small in-memory frame. The served end to end is tests/test_serve.py."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench.analysis.plots.monitor import monitor_info, plot_monitor
from workbench.handover.serve.harvest import harvest_rows
from workbench.handover.serve.monitor import MonitorData, monitor_summary
from workbench.handover.serve.requests import BadRequest, Limits, parse_answer, parse_chat, parse_feedback

LIMITS = Limits(max_body_bytes=1000, max_question_chars=50)
ID = "ans_" + "a" * 32


def test_good_bodies_parse():
    assert parse_answer(b'{"question": "Who won?"}', LIMITS) == "Who won?"
    chat = {"messages": [{"role": "user", "content": "first"}, {"role": "assistant", "content": "x"},
                         {"role": "user", "content": [{"type": "text", "text": "Who"}, {"type": "text", "text": "won?"}]}]}
    assert parse_chat(json.dumps(chat).encode(), LIMITS) == "Who\nwon?"  # the last user message is the question
    fb = parse_feedback(json.dumps({"answer_id": ID, "rating": 4, "correction": "Denver"}).encode(), LIMITS)
    assert (fb.rating, fb.correction, fb.comment) == (4, "Denver", None)


BAD = [
    (parse_answer, b"", 400, "body is empty"),
    (parse_answer, b"[1, 2]", 400, "not an object"),
    (parse_answer, b'{"question": "Who', 400, "not valid JSON"),
    (parse_answer, b"\xff\xfe{}", 400, "not UTF-8"),
    (parse_answer, b"{}", 400, "'question' is missing"),
    (parse_answer, b'{"question": 7}', 400, "expected a string"),
    (parse_answer, b'{"question": "  "}', 400, "question is empty"),
    (parse_answer, json.dumps({"question": "x" * 51}).encode(), 413, "over the limit of 50"),
    (parse_chat, b'{"messages": []}', 400, "non-empty list"),
    (parse_chat, b'{"messages": [{"role": "user", "content": "hi"}], "stream": true}', 400, "streaming"),
    (parse_chat, b'{"messages": [{"role": "user", "content": {"a": 1}}]}', 400, "messages[0].content"),
    (parse_feedback, json.dumps({"rating": "up"}).encode(), 400, "answer_id is missing"),
    (parse_feedback, json.dumps({"answer_id": ID, "rating": True}).encode(), 400, "not a rating"),
    (parse_feedback, json.dumps({"answer_id": ID, "rating": 0}).encode(), 400, "not a rating"),
    (parse_feedback, json.dumps({"answer_id": ID}).encode(), 400, "feedback is empty"),
    (parse_feedback, json.dumps({"answer_id": ID, "rating": "up", "score": 1}).encode(), 400, "unknown field(s) score"),
]


@pytest.mark.parametrize("parse,raw,status,words", BAD, ids=[f"{b[0].__name__}-{b[3]}" for b in BAD])
def test_bad_bodies_get_one_clear_message(parse, raw, status, words):
    with pytest.raises(BadRequest) as info:
        parse(raw, LIMITS)
    assert info.value.status == status and words in str(info.value)


def row(i, question, *, answer="an answer", corrections=(), positive=None, negative=None, t=0):
    return {"trace_id": f"tr-{i}", "time_ms": 1_790_000_000_000 + t, "question": question, "answer": answer,
            "corrections": list(corrections), "positive": positive, "negative": negative}


def test_harvest_dedupes_redacts_and_marks_references():
    items = harvest_rows([
        row(1, "Who won Super Bowl 50?", t=0),
        row(2, "who  won super bowl 50?", corrections=["Denver Broncos"], negative=True, t=5),
        row(3, "Mail me at jane@example.com: where was it?", answer="Levi's Stadium", positive=True, t=9),
        row(4, "   ", t=10),  # nothing asked: left out
    ], "prod")
    assert [i["question"] for i in items] == ["Who won Super Bowl 50?", "Mail me at [EMAIL]: where was it?"]
    won, where = items
    assert won["reference_answers"] == ["Denver Broncos"] and won["reference_kind"] == "corrected"
    assert won["provenance"]["trace_ids"] == ["tr-1", "tr-2"] and won["provenance"]["asked"] == 2
    assert where["reference_answers"] == [] and where["candidate_references"] == ["Levi's Stadium"]
    assert where["reference_kind"] == "candidate"
    assert len({i["id"] for i in items}) == 2 and all(i["id"].startswith("prod-") for i in items)


def frame(n=40):
    t0 = pd.Timestamp("2026-11-30T00:00:00Z")
    rows = [{"time": t0 + pd.Timedelta(seconds=3 * i), "status": "ERROR" if i % 10 == 0 else "OK",
             "latency_ms": 100.0 + i, "generate_ms": 90.0 + i, "tokens_prompt": 200.0, "tokens_completion": 10.0,
             "cost_usd": 0.001, "top_score": 0.5 + (i % 5) / 10, "rated": i % 4 == 0,
             "negative": (i % 8 == 0) if i % 4 == 0 else None} for i in range(n)]
    return pd.DataFrame(rows)


def test_monitor_summary_and_figure_from_traces():
    data = MonitorData("prod", frame(), baseline=[0.5, 0.6, 0.7, 0.8, 0.9] * 4)
    s = monitor_summary(data)
    assert s["requests"] == 40 and s["error_rate"] == pytest.approx(0.1)
    assert s["overhead_p95_ms"] == pytest.approx(10.0)
    assert s["tokens_per_1k"] == pytest.approx(210 * 36 * 1000 / 40)  # answered requests' tokens per 1k requests
    assert s["negative_share"] == pytest.approx(0.5) and s["rated"] == 10
    assert s["drift_ks"] == pytest.approx(0.0) and s["drift_p"] == pytest.approx(1.0)  # same distribution
    shifted = monitor_summary(MonitorData("prod", frame(), baseline=[0.1, 0.2, 0.3] * 10))
    assert shifted["drift_ks"] == 1.0 and shifted["drift_p"] < 0.001
    info = monitor_info(frame(), bucket="30s")
    assert info["requests"].sum() == 40 and info["error_rate"].max() == pytest.approx(0.1)
    fig = plot_monitor(frame(), data.baseline, title="prod")
    assert {t.name for t in fig.data} >= {"requests", "p50", "p95", "error rate", "production", "sweep",
                                          "negative share"}
