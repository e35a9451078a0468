from pathlib import Path

import pytest

from workbench.rag.local_model import LocalModelServer

ROOT = Path(__file__).resolve().parents[1]
SQUAD = ROOT / "experiments" / "data" / "squad-super-bowl-50" / "dev-v1.1-super-bowl-50.json"
N_QUESTIONS = 3

# Fixtures that start the local model server or run a real sweep: every test using one (also through
# another fixture) is marked slow, so `python -m pytest -m "not slow"` leaves it out.
SLOW_FIXTURES = frozenset({"local_server", "swept"})


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES.intersection(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def local_server(tmp_path_factory):
    """One SmolLM2 llama-cpp-python server for the whole test session (it serves one request at a time)."""
    with LocalModelServer(log_dir=tmp_path_factory.mktemp("llama_server")) as server:
        yield server


def small_spec(tmp_path: Path, **space) -> dict:
    """A 2-variant sweep over the first questions of the real SQuAD article, all state under tmp_path."""
    return {
        "name": "t-sweep",
        "experiment": "t-sweep",
        "data": {
            "corpus": {"format": "squad", "path": str(SQUAD)},
            "eval": {"format": "squad", "path": str(SQUAD), "limit": N_QUESTIONS},
        },
        "space": {
            "chunking": [{"strategy": "recursive", "size": 400, "overlap": 40}],
            "retrieval": [{"kind": "dense", "k": 3}, {"kind": "hybrid", "k": 3}],
            "model": [{"provider": "local", "temperature": 0, "max_tokens": 16}],
            **space,
        },
        "tracking": {
            "tracking_uri": f"sqlite:///{tmp_path}/mlruns/mlflow.db",
            "artifact_location": str(tmp_path / "mlruns" / "artifacts"),
        },
        "home": str(tmp_path / "home"),
    }


@pytest.fixture(scope="session")
def swept(tmp_path_factory):
    """One real sweep shared by the sweep, export and analysis tests: (tmp dir, spec dict, SweepResults)."""
    from workbench.runner.sweep import run_sweep

    tmp = tmp_path_factory.mktemp("sweep")
    spec = small_spec(tmp)
    return tmp, spec, run_sweep(spec, progress=False)
