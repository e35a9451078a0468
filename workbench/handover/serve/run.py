"""`workbench serve`: load an export, open the deployment's MLflow experiment, serve it with uvicorn.

SIGTERM or Ctrl-C: uvicorn stops accepting connections, lets the answers in flight finish (up to
`grace_s`), then the service drains its trace writer, so every accepted request is answered and traced.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from workbench.errors import ConfigError
from workbench.spec import ExecutionConfig

TOKEN_ENV = "WORKBENCH_SERVE_TOKEN"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def default_deployment(export: dict) -> str:
    experiment = (export.get("provenance") or {}).get("experiment") or "workbench"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{experiment}-serve-{export['variant_hash'][:8]}")


def default_tracking_uri(export: dict) -> str:
    return (export.get("provenance") or {}).get("tracking_uri") or "sqlite:///mlruns/mlflow.db"


def read_token(token_env: str | None) -> str | None:
    if not token_env:
        return None
    token = os.environ.get(token_env, "")
    if token and len(token) < 16:
        raise ConfigError(f"{token_env}: the bearer token is {len(token)} characters; use at least 16 "
                          "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)")
    return token or None


def build_service(path: str | Path, *, tracking_uri: str | None = None, deployment: str | None = None,
                  home: str | Path = ".workbench", base_url: str | None = None, concurrency: int | None = None,
                  redact: bool = True, answer_cache: int = 0, baseline: bool = True):
    """The loaded pipeline, its trace writer and the service (what `serve` runs; tests and benchmarks too)."""
    from workbench.handover.export import load_pipeline, read_export
    from workbench.handover.serve.baseline import record_baseline
    from workbench.handover.serve.service import Service
    from workbench.tracking.serve_writer import ServeWriter

    export = read_export(path)
    execution = ExecutionConfig(**({"concurrency": concurrency} if concurrency else {}))
    pipeline = load_pipeline(path, home=home, base_url=base_url, execution=execution)
    try:
        uri = tracking_uri or default_tracking_uri(export)
        name = deployment or default_deployment(export)
        provenance = export.get("provenance") or {}
        tags = {"workbench.deployment": name, "workbench.config_hash": export["variant_hash"],
                "workbench.sweep_id": str(provenance.get("sweep_id") or ""),
                "workbench.export_hash": str(export.get("export_hash") or "")}
        log = ServeWriter(uri, name, tags, redact=redact)
    except BaseException:
        pipeline.close()
        raise
    if baseline:
        threading.Thread(target=record_baseline, args=(export, pipeline.rag, uri, name), daemon=True).start()
    return Service(pipeline, log, execution=execution, answer_cache=answer_cache), uri, name


def serve(path: str | Path, *, host: str = "127.0.0.1", port: int = 8080, token_env: str | None = TOKEN_ENV,
          max_body_bytes: int | None = None, grace_s: float = 30.0, **options) -> None:
    import uvicorn

    from workbench.handover.serve.app import create_app
    from workbench.handover.serve.requests import Limits

    token = read_token(token_env)
    if host not in LOOPBACK and token is None:
        print(f"workbench serve: listening on {host} without a token: anyone who can reach it can use the model; "
              f"set {token_env} to require one", flush=True)
    service, uri, name = build_service(path, **options)
    limits = Limits(**({"max_body_bytes": max_body_bytes} if max_body_bytes else {}))
    app = create_app(service, token=token, limits=limits)
    print(f"workbench serve: {name} on http://{host}:{port} (traces: {uri}; bearer token "
          f"{'required' if token else 'off'})", flush=True)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=grace_s, limit_concurrency=1024,
                            # clients reuse connections between questions; uvicorn's 5 s default closes them under
                            # a client that is merely slow, racing its next request (a reset, counted as an error)
                            timeout_keep_alive=30)
    uvicorn.Server(config).run()
