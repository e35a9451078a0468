"""Which Chroma holds the dense indexes (`spec_scale.VectorStoreConfig`): the embedded one under a home, or a
`chroma run` server. The sweep's workspace and the hand-over's `load_pipeline` open it here, so an exported
winner reads the very collections its sweep built (the names are the same content-addressed keys either way)."""

from __future__ import annotations

from pathlib import Path

from workbench.errors import StorageError
from workbench.rag.retrieval import chroma_client
from workbench.spec_scale import VectorStoreConfig


def open_vector_store(store: VectorStoreConfig, home: Path):
    """The embedded Chroma under `home`, or an HttpClient to the `chroma run` server (one clear error if
    nothing answers there)."""
    if store.url is None:
        return chroma_client(Path(home) / "chroma")
    try:
        return chroma_client(host=store.url)
    except ValueError as exc:  # chromadb: "Could not connect to a Chroma server. Are you sure it is running?"
        raise StorageError(f"vector_store: no Chroma server answers at {store.url} ({exc}); start one with "
                           f"`chroma run --host {store.host} --port {store.port} --path <dir>` or fix "
                           "vector_store.host/port") from None
