"""A new sqlite store is a copy of a migrated empty one kept in the user's cache (`store.empty_store_template`):
milliseconds instead of MLflow's schema migrations before a sweep's first trace. The copy is a store MLflow
opens and logs to, its Default experiment where MLflow puts it; a damaged template is ignored."""

from __future__ import annotations

import shutil
import sqlite3

import mlflow
import pytest

from workbench.tracking import store


@pytest.fixture
def template(tmp_path, monkeypatch):
    """A template of the test's own, seeded from the user's when there is one (no migrations: seconds)."""
    path = tmp_path / "cache" / "mlflow-empty.db"
    real = store.empty_store_template()
    if real.is_file():
        path.parent.mkdir()
        shutil.copyfile(real, path)
    monkeypatch.setattr(store, "empty_store_template", lambda: path)
    return path


def tables(db) -> set[str]:
    with sqlite3.connect(db) as con:
        return {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_new_store_is_a_copy_of_the_template(tmp_path, template, monkeypatch):
    (tmp_path / "a").mkdir()
    store.create_sqlite_store_atomically(f"sqlite:///{tmp_path}/a/mlflow.db")  # migrated if no template yet
    assert {"experiments", "runs", "trace_info"} <= tables(tmp_path / "a" / "mlflow.db")
    assert {"experiments", "runs", "trace_info"} <= tables(template)  # and kept as the template
    with sqlite3.connect(template) as con:  # a mark only the template has: the next store must carry it
        con.execute("CREATE TABLE copied_from_template (x)")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b").mkdir()
    store.create_sqlite_store_atomically(f"sqlite:///{tmp_path}/b/mlflow.db")
    assert "copied_from_template" in tables(tmp_path / "b" / "mlflow.db")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/b/mlflow.db")
    (default,) = client.search_experiments()
    assert default.artifact_location == str(tmp_path / "mlruns" / "0")  # as MLflow would have set it here
    run = client.create_run(client.create_experiment("x", artifact_location=str(tmp_path / "art")))
    client.log_metric(run.info.run_id, "f1", 0.5)
    assert client.get_run(run.info.run_id).data.metrics == {"f1": 0.5}


def test_a_damaged_or_missing_template_is_not_used(tmp_path, template):
    partial = tmp_path / "mlflow.db.creating-1"
    template.unlink(missing_ok=True)
    assert store._from_template(partial) is False and not partial.exists()  # none yet: MLflow migrates
    template.parent.mkdir(exist_ok=True)
    template.write_bytes(b"not a database")
    assert store._from_template(partial) is False and not partial.exists()
