import pytest

from workbench.local_server import LocalModelServer


@pytest.fixture(scope="session")
def local_server(tmp_path_factory):
    """One SmolLM2 llama-cpp-python server for the whole test session (it serves one request at a time)."""
    with LocalModelServer(log_dir=tmp_path_factory.mktemp("llama_server")) as server:
        yield server
