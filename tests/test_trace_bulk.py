"""A batch of traces is one transaction of MLflow's own SQL store (`trace_batch.one_transaction`): one commit
for the whole batch, every trace and span readable after it, and a failure stores none of the batch."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from test_trace_batch import row, session  # noqa: F401 (session: the fixture)
from workbench.tracking.trace_batch import one_transaction

N = 12


def commits_during(store, fn) -> int:
    count = [0]

    def seen(_conn) -> None:
        count[0] += 1

    event.listen(store.engine, "commit", seen)
    try:
        fn()
    finally:
        event.remove(store.engine, "commit", seen)
    return count[0]


def test_a_batch_of_traces_is_one_commit_and_all_of_it_is_stored(session):  # noqa: F811
    tracker, variant = session
    for i in range(N):
        tracker.log_cell(variant, row(variant, f"q{i}")).result()
    store = tracker._batch.client.store
    assert commits_during(store, tracker._flush_traces) == 1  # was ~4 per trace (each a disk sync on sqlite)
    for i in range(N):
        trace = tracker.client.get_trace(tracker.trace_ids[(variant.hash, f"q{i}")])
        assert [s.name for s in trace.data.spans] == ["rag", "retrieve", "generate"]
        assert {a.name for a in trace.info.assessments} >= {"f1", "exact_match", "expected_response"}
    assert store.ManagedSessionMaker.__name__ != "shared"  # the store's own sessions are back


def test_a_failing_batch_stores_nothing_and_says_why(session, monkeypatch):  # noqa: F811
    from workbench.tracking import trace_batch

    tracker, variant = session
    tracker.log_cell(variant, row(variant, "first")).result()  # a sweep's first trace is stored at once
    monkeypatch.setattr(trace_batch, "FLUSH_EVERY_S", 3600.0)
    tracker.log_cell(variant, row(variant, "ok")).result()  # held for a batch
    store = tracker._batch.client.store
    with pytest.raises(Exception, match="disk gone"):  # MLflow's session wraps it in an MlflowException
        with one_transaction(store):
            store.start_trace(tracker._batch.done[0].info)
            raise RuntimeError("disk gone")
    assert len(tracker.client.search_traces(locations=[tracker.experiment.experiment_id])) == 1  # rolled back
    tracker._flush_traces()  # the next batch is stored as usual
    assert len(tracker.client.search_traces(locations=[tracker.experiment.experiment_id])) == 2
