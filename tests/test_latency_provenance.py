"""Honest latency: every cell says when, in which sweep and under what load its latency was measured;
comparisons that mix runs warn; `remeasure_latency` re-times the same questions for every variant; cached
cells never count as model calls. Real sweeps on the fake endpoint (real HTTP, controlled latency) with the
in-memory tracker: no MLflow, no local model."""

from __future__ import annotations

import dataclasses
import inspect
import statistics
import warnings
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import small_spec
from memory_tracker import MemoryTracker
from workbench.analysis.provenance import LatencyProvenanceWarning
from workbench.cli import app
from workbench.errors import WorkbenchError
from workbench.rag.cache import ResultCache, generation_key
from workbench.rag.chat import Generation
from workbench.runner.generations import retime_ids
from workbench.runner.progress import CallRate
from workbench.runner.sweep import run_sweep
from workbench.scoring.aggregate import aggregate
from workbench.scoring.cell import THIS_SWEEP, UNKNOWN_RUN, Cell, latency_source
from workbench.spec import SweepSpec
from workbench.testing.fake_endpoint import LatencyEndpoint
from workbench.ui.run_tab import RunTab

N = 5
FAST, SLOW = 0.05, 0.6  # far apart: a loaded machine (or a second pytest worker) adds ~0.1-0.2 s to a fast call
TEMPLATES = [{"name": "default"}, {"name": "terse", "template": "Context: {context}\nQ: {question}\nA:"}]
THIRD = {"name": "short", "template": "{context}\n\nQuestion: {question}\nShort answer:"}


@pytest.fixture
def endpoint():
    with LatencyEndpoint(latency=FAST) as ep:
        yield ep


def spec_for(tmp_path: Path, base_url: str, prompts: list[dict], concurrency: int = 1) -> dict:
    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}], prompt=prompts)
    spec["data"]["eval"]["limit"] = N
    spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": base_url, "max_tokens": 8}]
    spec["execution"] = {"concurrency": concurrency}
    return spec


def by_variant(results) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in results.rows:
        out.setdefault(r["variant"], []).append(r)
    return out


def no_latency_warning(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error", LatencyProvenanceWarning)  # any such warning fails the test
        return fn()


def test_cached_cells_keep_their_first_sweeps_latency_best_warns_and_remeasure_fixes_it(tmp_path, endpoint):
    tracker = MemoryTracker()
    spec = spec_for(tmp_path, endpoint.base_url, TEMPLATES)
    first = run_sweep(spec, progress=False, tracker=tracker)

    assert first.status == "FINISHED" and len(first.rows) == 2 * N
    for row in first.rows:
        assert row["cached"] is False and row["latency_sweep_id"] == first.sweep_id
        assert datetime.fromisoformat(row["latency_measured_at"]).tzinfo == timezone.utc
        assert row["latency_in_flight"] == 1 and row["latency_concurrency_limit"] == 1  # concurrency 1
        assert Cell.from_row(row).to_row() == row  # the row contract, key order included
    assert first.latency_warning() is None and not any("mixes runs" in n for n in first.notes)
    assert first.latency_provenance()["measured_here"].tolist() == [N, N]

    # The endpoint slows down; a third variant joins. The two old variants' answers all come from the
    # cache with the latencies measured in the first sweep, the new one is timed now.
    endpoint.configure(latency=SLOW)
    spec["space"]["prompt"] = [*TEMPLATES, THIRD]
    calls = endpoint.stats()["chat_calls"]
    second = run_sweep(spec, progress=False, tracker=tracker, resume=False)
    assert endpoint.stats()["chat_calls"] - calls == N  # only the new variant asked the model
    rows = by_variant(second)
    new = next(v.short_hash for v in second.variants if v.prompt.name == "short")
    for variant, group in rows.items():
        for row in group:
            if variant == new:
                assert row["cached"] is False and row["latency_sweep_id"] == second.sweep_id
            else:
                assert row["cached"] is True and row["latency_sweep_id"] == first.sweep_id
                first_row = next(r for r in first.rows if (r["variant"], r["question_id"]) == (variant, row["question_id"]))
                assert row["latency_generate_s"] == first_row["latency_generate_s"]  # the first sweep's timing
                assert row["latency_measured_at"] == first_row["latency_measured_at"]
    prov = second.latency_provenance()
    assert prov.loc[new, "latency_basis"] == THIS_SWEEP and prov.loc[new, "measured_here_share"] == 1.0
    old = [v for v in prov.index if v != new]
    assert prov.loc[old, "measured_elsewhere"].tolist() == [N, N]
    assert prov.loc[old, "earlier_sweeps"].tolist() == [first.sweep_id] * 2
    assert prov.loc[old, "latency_basis"].tolist() == ["earlier runs"] * 2

    # best() on a latency constraint: the new variant is excluded for *when* it ran, and says so
    bound = (FAST + SLOW) / 2
    with pytest.warns(LatencyProvenanceWarning) as caught:
        decision = second.best("f1", {"latency_total_p95_s": f"<= {bound}"})
    assert new in decision.excluded  # slow only because the endpoint was slower in this sweep
    (message,) = decision.warnings
    ours = [w for w in caught if issubclass(w.category, LatencyProvenanceWarning)]  # not a stray ResourceWarning
    assert str(ours[0].message) == message
    assert "mixes runs" in message and f"sweep {first.sweep_id}" in message and "--remeasure-latency N" in message
    for variant in old:
        assert f"{variant} ({N} of {N} cells)" in message
    assert new not in message.split(":")[1]  # the freshly timed variant is not among those named
    assert any("mixes runs" in n for n in second.notes)  # the CLI prints notes after the summary
    from workbench.ui.results_tab import ResultsTab

    tab = ResultsTab(on_load=lambda sweep_id: None)
    tab.show(dataclasses.replace(second, notes=[]))  # as loaded: no notes carried
    assert "mixes runs" in tab.summary.value and "re-time N questions (Run tab)" in tab.summary.value
    again = run_sweep(spec, progress=False, tracker=tracker)  # the finished sweep returned as is: same note
    assert again.sweep_id == second.sweep_id and any("mixes runs" in n for n in again.notes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LatencyProvenanceWarning)
        decision = second.best("f1")
    # on f1 alone it warns only when the latency tie-break decided (unpriced models: cost cannot)
    assert bool(decision.warnings) == ("latency_total_p95_s" in decision.reason)

    # Re-time 3 questions per variant: exactly 3 model calls per variant, the same 3 ids everywhere.
    calls = endpoint.stats()["chat_calls"]
    third = run_sweep(spec, progress=False, tracker=tracker, remeasure_latency=3)
    assert third.sweep_id not in (first.sweep_id, second.sweep_id)
    assert endpoint.stats()["chat_calls"] - calls == 3 * 3
    assert third.stats["retimed_calls"] == 9
    retimed = {v: {r["question_id"] for r in group if r["latency_sweep_id"] == third.sweep_id}
               for v, group in by_variant(third).items()}
    assert len(retimed) == 3 and all(ids == retimed[new] for ids in retimed.values()) and len(retimed[new]) == 3
    assert retimed[new] == retime_ids([r["question_id"] for r in third.rows], 3)
    for row in third.rows:
        assert row["cached"] is (row["question_id"] not in retimed[new])
    assert third.latency_provenance()["measured_here"].tolist() == [3, 3, 3]
    assert third.latency_warning() is None  # every variant's latency figures come from this sweep
    frame = third.to_frame()
    for variant, group in by_variant(third).items():  # aggregates from the re-timed cells only
        here = [r["latency_total_s"] for r in group if r["latency_sweep_id"] == third.sweep_id]
        assert frame.loc[variant, "latency_total_p50_s"] == pytest.approx(statistics.median(here))
        assert frame.loc[variant, "latency_total_p50_s"] > SLOW  # all timed at today's latency
    decision = no_latency_warning(lambda: third.best("f1", {"latency_total_p95_s": "<= 10"}))
    assert decision.warnings == [] and not decision.excluded
    no_latency_warning(lambda: third.pareto())
    # what MLflow got is the same rule (finish_variant's aggregates)
    for variant in third.variants:
        logged = tracker.runs[third.run_ids[variant.hash]]["metrics"]
        assert logged["latency_total_p50_s"] == pytest.approx(frame.loc[variant.short_hash, "latency_total_p50_s"])
    # per question, the cached cells still carry the first sweep's latencies: that comparison still warns
    with pytest.warns(LatencyProvenanceWarning, match="per-question latencies"):
        third.compare("latency_total_s")


def test_cached_cells_never_count_in_calls_per_second(tmp_path, endpoint):
    spec = spec_for(tmp_path, endpoint.base_url, TEMPLATES)
    tab = RunTab("t", None, on_run=lambda: None, on_cancel=lambda: None)
    progress = tab.started("t", {})
    fresh = run_sweep(spec, progress=False, tracker=MemoryTracker(), on_cell=tab.cell,
                      on_start=lambda info: progress.set_total(info["total_cells"]))
    label = progress.label.value
    assert label.startswith(f"{2 * N} / {2 * N} cells, ") and label.endswith(" calls/s")
    rate = float(label.split(", ")[1].split()[0])
    assert 0 < rate <= 1 / FAST  # concurrency 1 at FAST s per call: at most 1/FAST calls per second
    assert progress.calls.calls == 2 * N == fresh.stats["model_calls"]

    progress = tab.started("t", {})
    cached = run_sweep(spec, progress=False, tracker=MemoryTracker(), resume=False, on_cell=tab.cell,
                       on_start=lambda info: progress.set_total(info["total_cells"]))
    assert all(r["cached"] for r in cached.rows) and cached.stats["model_calls"] == 0
    assert progress.label.value == f"{2 * N} / {2 * N} cells"  # no calls, so no calls/s
    assert progress.calls.calls == 0 and progress.calls.rate() is None


def test_the_rate_counts_only_rows_that_made_a_model_call():
    rate = CallRate()
    for t in range(100):  # a burst of cached and retrieval-only cells
        rate.add({"cached": True}, now=t * 1e-4)
        rate.add({"question_id": "q"}, now=t * 1e-4)
    assert rate.calls == 0 and rate.text() == ""
    for t in (1.0, 1.5, 2.0, 2.5):
        rate.add({"cached": False}, now=t)
    assert rate.rate() == pytest.approx(2.0) and rate.text() == ", 2.00 calls/s"


def test_old_rows_and_old_cache_entries_load_as_earlier_run_unknown(tmp_path, endpoint):
    old_row = {"variant_hash": "ab" * 32, "variant": "abababababab", "question_id": "q1", "question": "Who?",
               "answer": "x", "cached": True, "latency_retrieve_s": 0.01, "latency_generate_s": 2.0,
               "latency_total_s": 2.01, "error": None, "f1": 1.0}
    assert Cell.from_row(old_row).to_row() == old_row  # a cells.jsonl row written before the fields
    assert latency_source(old_row, "s2") == UNKNOWN_RUN
    assert latency_source({**old_row, "cached": False}, "s2") == THIS_SWEEP  # it made its own call
    fresh = {**old_row, "question_id": "q2", "cached": False, "latency_total_s": 0.5}
    assert aggregate([old_row, fresh], "s2")["latency_total_p50_s"] == 0.5  # measured here wins
    assert aggregate([old_row], "s2")["latency_total_p50_s"] == 2.01  # nothing measured here: the earlier one

    # A generation cache written before provenance existed: plain Generation dicts.
    spec = spec_for(tmp_path, endpoint.base_url, TEMPLATES[:1])
    first = run_sweep(spec, progress=False, tracker=MemoryTracker())
    (model,) = {v.model for v in SweepSpec.model_validate(spec).variants()}
    cache = ResultCache(Path(spec["home"]) / "cache" / "generations")
    for row in first.rows:
        cache.set(generation_key(model, row["messages"]),
                  asdict(Generation(row["answer"], row["tokens_prompt"], row["tokens_completion"], 1.5, "m", "stop")))
    damaged = first.rows[0]  # an entry that is not what we store: asked again, never a wrong latency
    cache.set(generation_key(model, damaged["messages"]),
              asdict(Generation(damaged["answer"], 1, 1, "1.5", "m", "stop")))
    cache.close()
    again = run_sweep(spec, progress=False, tracker=MemoryTracker(), resume=False)
    assert endpoint.stats()["chat_calls"] == N + 1  # all but the damaged one from the old entries
    redone = next(r for r in again.rows if r["question_id"] == damaged["question_id"])
    assert redone["cached"] is False and redone["latency_sweep_id"] == again.sweep_id
    for row in (r for r in again.rows if r is not redone):
        assert row["cached"] is True and row["latency_generate_s"] == 1.5
        assert (row["latency_sweep_id"], row["latency_measured_at"], row["latency_in_flight"]) == (None, None, None)
        assert Cell.from_row(row).to_row() == row
    prov = again.latency_provenance()
    assert prov["unknown_run"].tolist() == [N - 1] and prov["earlier_sweeps"].tolist() == [""]
    # the aggregates use the one cell timed here; per question the other four are of unknown origin
    assert again.to_frame()["latency_total_p50_s"].tolist() == [redone["latency_total_s"]]
    assert again.latency_warning() is None
    message = again.latency_warning(per_question=True)
    assert message is not None and "which one is unknown" in message and f"({N - 1} of {N} cells)" in message


def test_remeasure_latency_is_checked_and_reaches_run_sweep_from_every_face(tmp_path, endpoint):
    spec = spec_for(tmp_path, endpoint.base_url, TEMPLATES[:1])
    for bad in (-1, 1.5, "3"):
        with pytest.raises(WorkbenchError, match=r"remeasure_latency \(--remeasure-latency\).*got"):
            run_sweep(spec, progress=False, tracker=MemoryTracker(), remeasure_latency=bad)
    assert endpoint.stats()["chat_calls"] == 0  # refused before any work
    assert retime_ids(["a", "b"], 5) == {"a", "b"}  # more than the eval set: all of it

    tab = RunTab("t", None, on_run=lambda: None, on_cancel=lambda: None)
    assert tab.retime in tab.options_row.children  # with the other run options
    tab.retime.value = 2
    assert tab.run_options["remeasure_latency"] == 2
    assert set(tab.run_options) <= set(inspect.signature(run_sweep).parameters)

    spec["tracking"]["enabled"] = False
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    runner = CliRunner()
    out = runner.invoke(app, ["run", str(path), "--no-progress"])
    assert out.exit_code == 0, out.output
    calls = endpoint.stats()["chat_calls"]
    out = runner.invoke(app, ["run", str(path), "--no-progress", "--remeasure-latency", "2"])
    assert out.exit_code == 0, out.output
    assert endpoint.stats()["chat_calls"] - calls == 2
    assert "note: re-timed 2 question(s) per variant" in out.output
    out = runner.invoke(app, ["run", str(path), "--no-progress", "--remeasure-latency", "-1"])
    assert out.exit_code == 2 and "--remeasure-latency" in out.output and "Traceback" not in out.output


def test_each_call_records_the_load_it_was_timed_under(tmp_path, endpoint):
    endpoint.configure(latency=0.2)  # calls outlast the serial retrieval feeding them
    spec = spec_for(tmp_path, endpoint.base_url, TEMPLATES, concurrency=3)
    results = run_sweep(spec, progress=False, tracker=MemoryTracker())
    loads = [r["latency_in_flight"] for r in results.rows]
    assert {r["latency_concurrency_limit"] for r in results.rows} == {3}
    assert max(loads) == 3 and min(loads) >= 1  # 10 calls through 3 slots: full most of the time
    assert endpoint.stats()["max_in_flight"] <= 3


@pytest.mark.slow
def test_a_sweep_read_back_from_mlflow_keeps_where_its_latencies_were_measured(tmp_path, endpoint):
    from workbench.analysis.load import load_sweep

    spec = spec_for(tmp_path, endpoint.base_url, TEMPLATES)
    first = run_sweep(spec, progress=False)
    spec["space"]["prompt"] = [*TEMPLATES, THIRD]
    second = run_sweep(spec, progress=False, resume=False)
    loaded = load_sweep(second.sweep_id, spec["tracking"]["tracking_uri"])
    cols = ["timed_cells", "measured_here", "measured_elsewhere", "unknown_run", "earlier_sweeps", "latency_basis"]
    assert loaded.latency_provenance()[cols].equals(second.latency_provenance()[cols])
    assert f"sweep {first.sweep_id}" in loaded.latency_warning() and loaded.latency_warning() == second.latency_warning()
    assert loaded.to_frame()["latency_total_p95_s"].tolist() == pytest.approx(second.to_frame()["latency_total_p95_s"].tolist())

    # the CLI's export --best on a latency constraint says so in one line, not a Python warning
    out = CliRunner().invoke(app, ["export", "--sweep-id", second.sweep_id, "--best", "f1", "--constraint",
                                   "latency_total_p95_s<=100", "--out", str(tmp_path / "w.yaml"),
                                   "--tracking-uri", spec["tracking"]["tracking_uri"]])
    assert out.exit_code == 0, out.output
    lines = [line for line in out.output.splitlines() if "mixes runs" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: latency comparison mixes runs")
    assert "LatencyProvenanceWarning" not in out.output
