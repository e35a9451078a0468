"""`workbench serve` as users run it: a subprocess serving a real export (the session's sweep, its model served
by the fake endpoint through `--base-url`), called with the `openai` client and plain HTTP; its traces and feedback read back from the
real MLflow store; bad input refused with one clear 4xx and nothing traced for it; SIGTERM with answers in
flight loses none of them; the harvest of what it served loads as an eval set."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import mlflow
import openai
import pytest

from typer.testing import CliRunner

from workbench.cli import app
from workbench.data.evalset import load_eval
from workbench.spec import EvalSource
from workbench.testing.fake_endpoint import LatencyEndpoint
from workbench.testing.serve_process import ServeProcess

TOKEN = "t0ken-for-the-serve-test-0123456789"
DEPLOYMENT = "t-serve"


@pytest.fixture(scope="module")
def served(swept, tmp_path_factory):
    """The session's quickstart-like sweep exported, served with the fake endpoint as its model (`--base-url`)."""
    _, spec, results = swept
    tmp = tmp_path_factory.mktemp("serve")
    winner = results.export(results.variants[0].hash, tmp / "winner.yaml", log_to_mlflow=False)
    with LatencyEndpoint(latency=0.02) as ep:
        with ServeProcess(winner, token=TOKEN, cwd=tmp, args=["--deployment", DEPLOYMENT, "--home", spec["home"],
                                                               "--base-url", ep.base_url]) as svc:
            yield dict(svc=svc, ep=ep, tmp=tmp, uri=spec["tracking"]["tracking_uri"], results=results, answered=[])


def traces(served, **kwargs):
    client = mlflow.MlflowClient(served["uri"])
    exp = client.get_experiment_by_name(DEPLOYMENT)
    return client.search_traces(locations=[exp.experiment_id], max_results=1000, **kwargs)


def wait_for_traces(served, n, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        found = traces(served)
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_openai_client_and_http_answer_and_every_request_is_a_trace(served):
    svc = served["svc"]
    client = openai.OpenAI(base_url=svc.url + "/v1", api_key=TOKEN)
    reply = client.chat.completions.create(model="anything", messages=[
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "Who won Super Bowl 50?"}])
    assert reply.choices[0].message.content.strip()
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    r = httpx.post(svc.url + "/answer", json={"question": "Where was Super Bowl 50 played? mail a@example.com"},
                   headers=svc.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] and body["contexts"] and all(c["doc_id"].startswith("Super_Bowl_50/") for c in body["contexts"])
    assert body["usage"]["total_tokens"] > 0 and "cost_usd" in body and body["latency"]["generate_s"] > 0
    served["answered"] += [reply.id, body["answer_id"]]

    found = {t.info.tags["workbench.answer_id"]: t for t in wait_for_traces(served, 2)}
    assert set(served["answered"]) <= set(found)
    trace = found[body["answer_id"]]
    tags = trace.info.tags
    assert tags["workbench.config_hash"] == served["results"].variants[0].hash
    assert tags["workbench.sweep_id"] == served["results"].sweep_id
    assert float(tags["workbench.top_score"]) == pytest.approx(body["contexts"][0]["score"], rel=1e-6)
    assert int(tags["workbench.tokens_prompt"]) == body["usage"]["prompt_tokens"]
    spans = {s.name: s for s in trace.data.spans}
    assert {"serve", "retrieve", "generate"} <= set(spans)
    assert [d["metadata"]["doc_uri"] for d in spans["retrieve"].outputs] == [c["doc_id"] for c in body["contexts"]]
    assert [d["metadata"]["score"] for d in spans["retrieve"].outputs] == [c["score"] for c in body["contexts"]]
    assert "a@example.com" not in json.dumps(trace.to_dict())  # PII redacted in what is logged
    assert "[EMAIL]" in spans["serve"].inputs["question"]
    assert spans["generate"].attributes["usage.completion_tokens"] == body["usage"]["completion_tokens"]


def test_feedback_becomes_assessments_on_the_trace(served):
    svc, (chat_id, answer_id) = served["svc"], served["answered"][:2]
    for payload in ({"answer_id": answer_id, "rating": "down", "correction": "Levi's Stadium",
                     "comment": "wrong stadium"}, {"answer_id": chat_id, "rating": 5}):
        r = httpx.post(svc.url + "/feedback", json=payload, headers=svc.headers)
        assert r.status_code == 202, r.text
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        by_id = {t.info.tags["workbench.answer_id"]: t.info.assessments for t in traces(served)}
        if len(by_id[answer_id]) >= 2 and by_id[chat_id]:
            break
        time.sleep(0.2)
    down = {a.name: a for a in by_id[answer_id]}
    assert down["user_thumbs_up"].value is False and down["user_thumbs_up"].rationale == "wrong stadium"
    assert down["user_thumbs_up"].source.source_type == "HUMAN"
    assert down["expected_response"].expectation.value == "Levi's Stadium"
    assert {a.name: a.value for a in by_id[chat_id]} == {"user_rating": 5}
    metrics = httpx.get(svc.url + "/metrics", headers=svc.headers).text
    assert 'workbench_feedback_total{kind="correction"} 1.0' in metrics
    assert 'workbench_requests_total{route="/answer",status="200"}' in metrics


BIG = "x" * 1_000_000
BAD = [
    # (what, method, path, body or raw bytes, headers override, status, words in the message)
    ("empty question", "/answer", {"question": "   "}, None, 400, "question is empty"),
    ("1 MB question", "/answer", {"question": BIG}, None, 413, "over the limit"),
    ("1 MB chat message", "/v1/chat/completions", {"messages": [{"role": "user", "content": BIG}]}, None, 413,
     "over the limit"),
    ("invalid JSON", "/answer", b'{"question": "Who', None, 400, "not valid JSON"),
    ("no user message", "/v1/chat/completions", {"messages": [{"role": "system", "content": "hi"}]}, None, 400,
     'no message has role "user"'),
    ("wrong token", "/answer", {"question": "Who won?"}, {"Authorization": "Bearer nope"}, 401, "bearer token"),
    ("no token", "/healthz", None, {}, 401, "bearer token"),
    ("unknown answer id", "/feedback", {"answer_id": "ans_" + "0" * 32, "rating": "up"}, None, 404,
     "no answer with this id"),
    ("bad rating", "/feedback", {"answer_id": "ans_" + "0" * 32, "rating": 7}, None, 400, "not a rating"),
]


@pytest.mark.parametrize("what,path,body,headers,status,words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_one_clear_4xx_and_no_trace(served, what, path, body, headers, status, words):
    svc = served["svc"]
    before = len(traces(served))
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
    method = httpx.get if body is None else httpx.post
    r = method(svc.url + path, headers=svc.headers if headers is None else headers, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert words in error["message"] and error["code"] == status
    time.sleep(0.3)  # longer than the writer's flush interval
    assert len(traces(served)) == before


def test_openai_client_sees_the_message_of_a_bad_request(served):
    client = openai.OpenAI(base_url=served["svc"].url + "/v1", api_key=TOKEN, max_retries=0)
    with pytest.raises(openai.BadRequestError, match="is empty"):
        client.chat.completions.create(model="x", messages=[{"role": "user", "content": ""}])


def test_harvest_turns_served_questions_into_an_eval_set(served):
    out = served["tmp"] / "new_eval.jsonl"
    done = CliRunner().invoke(app, ["harvest", "--deployment", DEPLOYMENT, "--out", str(out),
                                    "--tracking-uri", served["uri"]])
    assert done.exit_code == 0, done.output
    assert "questions from" in done.output
    items = [json.loads(line) for line in out.read_text().splitlines()]
    by_kind = {i["reference_kind"]: i for i in items}
    assert by_kind["corrected"]["reference_answers"] == ["Levi's Stadium"]
    assert "[EMAIL]" in by_kind["corrected"]["question"]
    assert by_kind["candidate"]["candidate_references"] and by_kind["candidate"]["reference_answers"] == []
    assert all(i["provenance"]["trace_ids"] and i["provenance"]["first_seen"] for i in items)
    loaded = load_eval(EvalSource(format="jsonl", path=str(out)))  # the sweep can read it
    assert len(loaded) == len(items)
    prov = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    assert prov["deployment"] == DEPLOYMENT and prov["traces"] >= 2


def test_monitor_reads_the_deployment_back(served):
    import workbench

    m = workbench.monitor(DEPLOYMENT, tracking_uri=served["uri"])
    assert m.summary["requests"] == len(traces(served))
    assert m.summary["error_rate"] == 0 and m.summary["rated"] == 2 and m.summary["negative_share"] == 0.5
    assert m.summary["latency_p95_ms"] > 0
    assert m.data.baseline and m.summary["drift_ks"] is not None  # the sweep's top scores were measured
    assert len(m.figure.data) >= 8


def in_flight(svc) -> float:
    text = httpx.get(svc.url + "/metrics", headers=svc.headers).text
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith("workbench_requests_in_flight ")))


def test_sigterm_finishes_answers_in_flight_and_flushes_their_traces(served):
    svc, ep = served["svc"], served["ep"]
    ep.configure(latency=0.5)  # the local model's limit: one at a time, so ~3 s for six
    before = len(traces(served))
    results: list = []

    def ask(i):
        results.append(httpx.post(svc.url + "/answer", json={"question": f"Who won Super Bowl 50, take {i}?"},
                                  headers=svc.headers, timeout=30))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # all six accepted, most still waiting for the model
        waiting = in_flight(svc)
        if waiting + len(results) == 6 and waiting >= 3:
            break
        time.sleep(0.02)
    assert waiting >= 3
    process = svc.process
    process.terminate()
    for t in threads:
        t.join(30)
    # uvicorn re-raises the signal once it has shut down gracefully: the exit status says "ended by SIGTERM"
    assert process.wait(30) in (0, -signal.SIGTERM), svc.log()
    assert [r.status_code for r in results] == [200] * 6
    ids = {r.json()["answer_id"] for r in results}
    stored = {t.info.tags["workbench.answer_id"] for t in traces(served)}
    assert ids <= stored and len(stored) == before + 6
