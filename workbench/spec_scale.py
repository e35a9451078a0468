"""Where a sweep runs and where its vectors live: the scale-out settings (issue 19).

How, not what: none of these change a variant's hash, its answers or the sweep's resume key, so the same
spec run on a laptop (`backend: local`, an embedded Chroma) and on a Ray cluster against a Chroma server
gives the same cells and resumes into the same sweep record.

    execution: {backend: ray, ray_address: auto, workers: 8, concurrency: 64, requests_per_minute: 5000}
    vector_store: {kind: chroma_server, host: 127.0.0.1, port: 8000}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Backend = Literal["local", "ray"]
BACKEND_FIELD = Field("local", description="local: this process's event loop (as always); ray: cells run on Ray workers")
RAY_ADDRESS_FIELD = Field(
    None, description="ray.init address (auto, ray://host:10001, host:6379); none starts a local Ray on this machine")
WORKERS_FIELD = Field(
    1, ge=1, le=4096, description="Ray workers (actors) running cells, each with `concurrency` calls in flight")


class VectorStoreConfig(BaseModel):
    """The Chroma that holds every dense index: embedded under the sweep's home, or a `chroma run` server."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)

    kind: Literal["embedded", "chroma_server"] = Field(
        "embedded", description="embedded: <home>/chroma (one machine); chroma_server: Chroma's HttpClient")
    host: str | None = Field(None, description="chroma_server: host name or IP, e.g. 127.0.0.1")
    port: int = Field(8000, ge=1, le=65535, description="chroma_server: its port (chroma run --port)")
    ssl: bool = Field(False, description="chroma_server: https")

    @model_validator(mode="after")
    def _host_for_server(self) -> VectorStoreConfig:
        if self.kind == "chroma_server" and not self.host:
            raise ValueError("vector_store.kind chroma_server needs vector_store.host (e.g. 127.0.0.1)")
        if self.kind == "embedded" and self.host:
            raise ValueError("vector_store.host is only for kind chroma_server (set kind: chroma_server)")
        return self

    @property
    def url(self) -> str | None:
        """The server's URL for `rag.retrieval.chroma_client(host=...)`; None for the embedded store."""
        if self.kind != "chroma_server":
            return None
        return f"{'https' if self.ssl else 'http'}://{self.host}:{self.port}"
