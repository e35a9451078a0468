"""Redaction catches what it claims (issue 13, item 7): every format of the recall table, every text
field of a row, nothing that is not personal data, cheaply; and a real sweep logs none of it to MLflow."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from workbench.redact import REDACTED_FIELDS, redact_row, redact_text
from workbench.scoring.cell import Cell

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "experiments" / "benchmarks" / "redaction_recall.py"


def bench():
    spec = importlib.util.spec_from_file_location("redaction_recall", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recall_table_of_formats_from_many_countries():
    b = bench()
    kinds = {kind for kind, _, _ in b.POSITIVES}
    assert len(b.POSITIVES) >= 50 and len(b.NEGATIVES) >= 15 and kinds == {"PHONE", "EMAIL", "CARD", "IBAN"}
    res = b.evaluate()
    assert res["recall"] >= 0.95, f"missed: {res['missed']}"
    assert res["false_positives"] == [], "numbers that are not personal data were redacted"
    # The measure itself can fail: an unredacted secret is a miss, a changed negative a false positive.
    assert not b.caught("PHONE", "call +14155550132", "+14155550132", "call +14155550132")
    assert not b.caught("PHONE", "call +1 415-555-0132", "+1 415-555-0132", "call +1 [PHONE]-0132")


@pytest.mark.parametrize(
    "text, expected",
    [  # each format the issue saw get through
        ("IBAN DE89 3704 0044 0532 0130 00, thanks", "IBAN [IBAN], thanks"),
        ("GB29NWBK60161331926819", "[IBAN]"),
        ("text +14155550132", "text [PHONE]"),
        ("call +91 98765 43210 or +81-3-1234-5678", "call [PHONE] or [PHONE]"),
        ("Berlin +49 (0)30 1234567", "Berlin [PHONE]"),
        ("card 4111.1111.1111.1111", "card [CARD]"),
        ("mail josé@exämple.com please", "mail [EMAIL] please"),
        ("Reach me on 415-555-0132.", "Reach me on [PHONE]."),
        ("Ring (020) 7946 0958!", "Ring [PHONE]!"),
        ("write to jane+news@example.co.uk.", "write to [EMAIL]."),
    ],
)
def test_formats_from_the_issue_are_redacted(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The server at 192.168.1.1 forwards to 10.0.0.254.",
        "IPv6 2001:db8::8a2e:370:7334 and fe80::1ff:fe23:4567:890a",
        "mlflow 3.17.2, chromadb 1.5.9, released 2016-02-07 (07/02/2016)",
        "ISBN 978-0-306-40615-7 and ISBN 0-306-40615-2",
        "Denver beat Carolina 24–10 before 71,088 fans in 2016; 111.9 million watched.",
        "pages 12442-12448, CI (6790-13 722), ratio 11 256/20 849",
    ],
)
def test_addresses_dates_versions_and_counts_stay(text):
    assert redact_text(text) == text


def test_empty_and_none_come_back_as_they_are():
    assert redact_text(None) is None and redact_text("") == ""


def _text_fields() -> set[str]:
    """The Cell fields that hold text (str, list[str], list[dict]), whatever they are called."""
    hints = typing.get_type_hints(Cell)
    return {f.name for f in dataclasses.fields(Cell) if f.metadata.get("stage")
            and ("str" in str(hints[f.name]) or "list" in str(hints[f.name]))}


def test_every_text_field_of_a_row_is_redacted():
    """A new text field on Cell fails this until REDACTED_FIELDS (or the ids list below) names it."""
    # The workbench's own ids and timestamps, never user text.
    ours = {"variant_hash", "variant", "question_id", "latency_sweep_id", "latency_measured_at",
            "routed_to", "cache_hit", "route_calls"}  # a routed cell's model names (from the spec), cache kind, its calls
    assert _text_fields() - ours <= set(REDACTED_FIELDS), "a Cell text field that redact_row skips"
    assert set(REDACTED_FIELDS) <= _text_fields()  # and none of its names is stale

    email, phone, iban = "jane.doe@example.com", "+14155550132", "DE89 3704 0044 0532 0130 00"
    cell = Cell(
        variant_hash="ab12", variant="ab12", question_id="q1", question=f"Is {phone} Jane's?",
        messages=[{"role": "system", "content": "Answer."},
                  {"role": "user", "content": [{"type": "text", "text": f"Context: pay {iban}"}]}],
        answer=f"Call {phone}.", reference_answers=[f"mail {email}"], relevant_ids=[f"{email}.txt"],
        retrieved_doc_ids=[f"{email}.txt", "plain-doc"], retrieved_chunk_ids=[f"{email}.txt#0"],
        retrieved_chunk_doc_ids=[f"{email}.txt"], contexts=[f"pay {iban} or call {phone}"],
        error=f"endpoint said: bad request for {email}", latency_total_s=1.5, tokens_prompt=12,
    ).with_scores({"f1": 0.5})
    row = cell.to_row()
    before = json.dumps(row)
    out = redact_row(row)
    dumped = json.dumps(out, ensure_ascii=False)
    assert email not in dumped and "4155550132" not in dumped and "3704" not in dumped
    assert json.dumps(row) == before  # the caller's row is not touched
    assert list(out) == list(row)  # same keys, same order
    assert out["relevant_ids"] == ["[EMAIL].txt"] and out["retrieved_doc_ids"] == ["[EMAIL].txt", "plain-doc"]
    assert out["retrieved_chunk_ids"] == ["[EMAIL].txt#0"]
    assert out["messages"][1] == {"role": "user", "content": [{"type": "text", "text": "Context: pay [IBAN]"}]}
    assert out["answer"] == "Call [PHONE]." and out["question_id"] == "q1" and out["f1"] == 0.5
    assert out["latency_total_s"] == 1.5 and out["tokens_prompt"] == 12


def test_redact_row_keeps_absent_and_none_fields():
    row = {"variant_hash": "ab", "variant": "ab", "question_id": "q", "question": "Who?", "answer": None}
    assert redact_row(row) == row and "contexts" not in redact_row(row)


def test_import_is_lazy_and_cheap():
    """The tracker's helper process imports this on start: the detectors' libraries load on first use."""
    code = ("import sys, time; t = time.perf_counter(); import workbench.redact; dt = time.perf_counter() - t; "
            "print(dt, 'phonenumbers' in sys.modules, 'stdnum' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1:] == ["False", "False"]
    assert float(out[0]) < 1.0
    assert bench().import_seconds() < 1.0  # import + the first phone number, region metadata included


def test_per_row_cost_stays_in_milliseconds():
    """~0.5 ms per 8 kB row here (the benchmark prints it); 10 ms catches a detector that went back
    to scanning whole prompts once per region (56 ms per row when it did)."""
    assert bench().timing(rows=60)["mean_ms"] < 10


@pytest.mark.slow  # a real sweep
def test_a_redacted_sweep_logs_no_personal_data_to_mlflow(tmp_path):
    import mlflow

    from test_bad_input import jsonl_spec
    from workbench.runner.sweep import run_sweep
    from workbench.testing.fake_endpoint import LatencyEndpoint

    email, idn, phone, phone_end, iban = ("jane.doe@example.com", "josé@exämple.com", "+14155550132",
                                          "+81-3-1234-5678", "DE89 3704 0044 0532 0130 00")
    docs = [{"id": f"{email}.txt", "text": f"Tickets: wire to {iban} or call +91 98765 43210."},
            {"id": "stadium", "text": "The stadium at 192.168.1.1 opened on 2014-07-17, running mlflow 3.17.2."}]
    qs = [{"id": "q1", "question": f"Is {phone} the ticket line of {idn} at the stadium?",
           "reference_answers": [f"No, ring {phone_end}."], "relevant_ids": [f"{email}.txt"]}]
    with LatencyEndpoint(latency=0.01) as ep:
        spec = jsonl_spec(tmp_path, docs=docs, qs=qs)
        spec["space"]["retrieval"] = [{"kind": "bm25", "k": 2}]
        spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url}]
        spec["tracking"]["redact"] = True
        results = run_sweep(spec, progress=False)
        out = results.export(results.variants[0].short_hash, tmp_path / "export" / "winner.yaml")
    assert phone in results.questions()["question"].iloc[0]  # in memory: the user's own data

    secrets = [email, idn, phone, "81-3-1234-5678", "3-1234-5678", "3704 0044", "98765 43210"]
    forms = {s.encode() for s in secrets} | {json.dumps(s)[1:-1].encode() for s in secrets}  # \u-escaped too
    written = [p for p in (tmp_path / "mlruns").rglob("*") if p.is_file()] + [Path(out)]
    assert any(p.suffix == ".db" for p in written)
    leaks = sorted({f"{p.name}: {f.decode()}" for p in written for f in forms if f in p.read_bytes()})
    assert leaks == []

    client = mlflow.MlflowClient(spec["tracking"]["tracking_uri"])
    table = json.loads(Path(client.download_artifacts(results.run_ids[results.variants[0].hash], "eval_results.json",
                                                      str(tmp_path / "dl"))).read_text())
    frame = dict(zip(table["columns"], zip(*table["data"])))
    assert frame["relevant_ids"][0] == ["[EMAIL].txt"] and frame["reference_answers"][0] == ["No, ring [PHONE]."]
    assert sorted(frame["retrieved_doc_ids"][0]) == ["[EMAIL].txt", "stadium"]
    text = json.dumps(table)
    assert "192.168.1.1" in text and "3.17.2" in text and "2014-07-17" in text  # not taken for phones
