"""The sweep record on real files: what resume and "return the finished sweep" decide from it.

No model, no MLflow: a record is a folder of JSON files, written here as the sweep runner writes them
(create_record, one JSON line appended per finished cell, write_status at the end).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import small_spec
from workbench.runner.records import (
    SweepRecord, create_record, find_finished, find_resumable, resume_key,
)
from workbench.spec import load_spec

DATA = {"data.corpus.digest": "c" * 64, "data.corpus.documents": 54,
        "data.eval.digest": "e" * 64, "data.eval.questions": 3}
OTHER_DATA = {**DATA, "data.eval.digest": "f" * 64}  # the eval file changed since


@pytest.fixture
def spec(tmp_path):
    return load_spec(small_spec(tmp_path))


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has exited (what a record of a kill -9'd sweep holds)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def cell(variant: str, question: str, **fields) -> dict:
    return {"variant_hash": variant, "question_id": question, **fields}


def append(record: SweepRecord, *rows: dict) -> None:
    """As the runner does: one JSON line per finished cell, appended."""
    with record.cells_path.open("a", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def test_create_writes_spec_and_a_running_status(tmp_path, spec):
    record = create_record(tmp_path, "20261129-120000-aaaaaa", spec, DATA)
    assert record.directory == tmp_path / "sweeps" / "20261129-120000-aaaaaa"
    assert record.sweep_id == "20261129-120000-aaaaaa"
    assert json.loads((record.directory / "spec.json").read_text())["name"] == spec.name
    status = record.status()
    assert status == {"status": "RUNNING", "pid": os.getpid(), "resume_key": resume_key(spec), "data": DATA}
    assert record.cells() == []  # no cell file yet


def test_write_status_merges_fields_and_leaves_no_temporary_file(tmp_path, spec):
    record = create_record(tmp_path, "20261129-120000-aaaaaa", spec, DATA)
    record.write_status(parent_run_id="run-1")
    record.write_status(status="FINISHED")
    status = record.status()
    assert (status["status"], status["parent_run_id"], status["data"]) == ("FINISHED", "run-1", DATA)
    assert sorted(p.name for p in record.directory.iterdir()) == ["spec.json", "status.json"]


def test_unreadable_status_reads_as_empty(tmp_path):
    record = SweepRecord(tmp_path / "sweeps" / "x")
    assert record.status() == {}  # no folder at all
    record.directory.mkdir(parents=True)
    (record.directory / "status.json").write_text('{"status": "RUNN')  # torn
    assert record.status() == {}


def test_appended_cells_read_back_last_write_wins(tmp_path, spec):
    record = create_record(tmp_path, "20261129-120000-aaaaaa", spec, DATA)
    append(record, cell("v1", "q1", f1=0.5), cell("v1", "q2", f1=1.0), cell("v2", "q1", f1=0.0))
    append(record, cell("v1", "q1", f1=0.5, faithfulness=0.9))  # the judged row replaces the unjudged one
    cells = {(c["variant_hash"], c["question_id"]): c for c in record.cells()}
    assert len(record.cells()) == 3
    assert cells[("v1", "q1")] == cell("v1", "q1", f1=0.5, faithfulness=0.9)
    assert cells[("v2", "q1")]["f1"] == 0.0


def test_a_torn_last_line_is_ignored_then_repaired_so_new_cells_start_on_their_own_line(tmp_path, spec):
    record = create_record(tmp_path, "20261129-120000-aaaaaa", spec, DATA)
    append(record, cell("v1", "q1", f1=1.0))
    with record.cells_path.open("a", encoding="utf-8") as fh:
        fh.write('{"variant_hash": "v1", "question_id": "q2", "f1"')  # kill -9 during a write
    assert record.cells() == [cell("v1", "q1", f1=1.0)]

    record.repair()
    assert record.cells_path.read_text(encoding="utf-8") == json.dumps(cell("v1", "q1", f1=1.0)) + "\n"
    append(record, cell("v1", "q2", f1=0.0))  # the resumed sweep redoes q2
    assert sorted(c["question_id"] for c in record.cells()) == ["q1", "q2"]


def test_repair_keeps_an_intact_file_and_tolerates_a_missing_one(tmp_path, spec):
    record = create_record(tmp_path, "20261129-120000-aaaaaa", spec, DATA)
    record.repair()  # no cells file: nothing to do
    assert not record.cells_path.exists()
    append(record, cell("v1", "q1"), cell("v1", "q2"))
    before = record.cells_path.read_bytes()
    record.repair()
    assert record.cells_path.read_bytes() == before


def test_resumable_follows_status_and_pid(tmp_path, spec, dead_pid):
    record = create_record(tmp_path, "20261129-120000-aaaaaa", spec, DATA)
    assert not record.resumable()  # RUNNING in this very process
    record.write_status(pid=dead_pid)
    assert record.resumable()  # RUNNING, but its process is gone
    record.write_status(status="KILLED", pid=os.getpid())
    assert record.resumable()  # cancelled: resumable even while its process lives
    record.write_status(status="FAILED")
    assert record.resumable()
    record.write_status(status="FINISHED", pid=dead_pid)
    assert not record.resumable()


def test_resume_key_ignores_how_the_sweep_runs_but_not_what_it_computes(tmp_path, spec):
    faster = spec.model_copy(update={"execution": spec.execution.model_copy(update={"concurrency": 64})})
    assert resume_key(faster) == resume_key(spec)
    other = load_spec(small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}]))
    assert resume_key(other) != resume_key(spec)


def test_find_finished_wants_the_same_spec_and_data_and_takes_the_newest(tmp_path, spec):
    assert find_finished(tmp_path, spec, DATA) is None  # no sweeps folder yet
    old = create_record(tmp_path, "20261129-120000-aaaaaa", spec, DATA)
    old.write_status(status="FINISHED")
    new = create_record(tmp_path, "20261129-130000-bbbbbb", spec, DATA)
    new.write_status(status="FINISHED")
    create_record(tmp_path, "20261129-140000-cccccc", spec, DATA)  # newer, but still RUNNING
    assert find_finished(tmp_path, spec, DATA).sweep_id == "20261129-130000-bbbbbb"
    assert find_finished(tmp_path, spec, OTHER_DATA) is None
    other = load_spec(small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}]))
    assert find_finished(tmp_path, other, DATA) is None


def test_find_resumable_skips_live_finished_and_changed_data_records(tmp_path, spec, dead_pid):
    killed = create_record(tmp_path, "20261129-120000-aaaaaa", spec, DATA)
    killed.write_status(pid=dead_pid)
    finished = create_record(tmp_path, "20261129-130000-bbbbbb", spec, DATA)
    finished.write_status(status="FINISHED", pid=dead_pid)
    create_record(tmp_path, "20261129-140000-cccccc", spec, DATA)  # running now, in this process
    assert find_resumable(tmp_path, spec, DATA).sweep_id == "20261129-120000-aaaaaa"
    assert find_resumable(tmp_path, spec).sweep_id == "20261129-120000-aaaaaa"  # no data given: not compared
    assert find_resumable(tmp_path, spec, OTHER_DATA) is None  # made over other data: start afresh

    other = load_spec(small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}]))
    assert find_resumable(tmp_path, other, DATA) is None


def test_find_resumable_takes_the_newest_and_accepts_a_record_without_data(tmp_path, spec, dead_pid):
    older = create_record(tmp_path, "20261129-120000-aaaaaa", spec, DATA)
    older.write_status(status="KILLED")
    newer = create_record(tmp_path, "20261129-130000-bbbbbb", spec)  # written before data digests were recorded
    newer.write_status(pid=dead_pid)
    assert newer.status()["data"] == {}
    assert find_resumable(tmp_path, spec, OTHER_DATA).sweep_id == "20261129-130000-bbbbbb"
