"""A fake OpenAI-compatible endpoint with a fixed per-call latency and optional fault injection.

For speed benchmarks (a sweep against a known per-call latency L must take ~⌈calls/concurrency⌉·L)
and reliability tests (429 / 500 / timeouts / malformed / empty answers over real HTTP):

    from workbench.testing.fake_endpoint import LatencyEndpoint
    with LatencyEndpoint(latency=0.2) as endpoint:
        client = openai.OpenAI(base_url=endpoint.base_url, api_key="x")
        ...
        endpoint.stats()["max_in_flight"]

The routes, fault kinds and counters are described in `workbench.testing.fake_server` (the
Starlette app, run as `python -m workbench.testing.fake_server`); the deterministic answers and
vectors in `workbench.testing.fake_content`. This module starts the server in a subprocess and
makes clients for it; it re-exports the names of both so one import serves tests and benchmarks.

Client side, openai 1.x's default httpx pool (max_connections=1000, max_keepalive_connections=100)
is large enough, but bursts on a *warm* async pool are partly serialised by httpcore 1.0.9 (see
`async_client`, which turns keep-alive off for that reason).
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from workbench.processes import child_env, free_port, stop_process, wait_until_answers
from workbench.testing.fake_content import count_tokens, embed_text, make_answer, schema_instance
from workbench.testing.fake_server import (ALL_FAULT_KINDS, FAULT_KINDS, HOSTILE_KINDS, MODEL_ID, Config, FaultPlan,
                                           Stats, create_app, main)

__all__ = ["ALL_FAULT_KINDS", "FAULT_KINDS", "HOSTILE_KINDS", "MODEL_ID", "Config", "FaultPlan", "LatencyEndpoint", "Stats", "async_client", "count_tokens",
           "create_app", "embed_text", "main", "make_answer", "schema_instance", "sync_client"]


class LatencyEndpoint:
    """`python -m workbench.testing.fake_server` in a subprocess on 127.0.0.1; a context manager.

    `start()` waits until /v1/models answers; `stop()` sends SIGTERM, then SIGKILL after
    `grace` seconds; it is idempotent and also runs at interpreter exit.
    """

    def __init__(self, latency: float = 0.2, *, embed_latency: float = 0.0, fail_rate: float = 0.0,
                 faults=FAULT_KINDS, timeout_sleep: float = 30.0, retry_after: float = 1.0,
                 seed: int = 0, dim: int = 384, port: int | None = None,
                 startup_timeout: float = 30.0, grace: float = 5.0, log_path: str | Path | None = None,
                 trickle_interval: float = 0.5, huge_chars: int = 20_000_000, require_key: str | None = None,
                 routing=None, planted: dict | None = None) -> None:
        self.config = Config(latency, embed_latency, fail_rate, faults, timeout_sleep, retry_after, seed, dim,
                             trickle_interval, huge_chars, require_key)
        self.routing = routing  # a fake_routing.RoutingPlan: planted per-model answers, latencies, log-probs
        self.port = port
        self.planted = planted  # PlantedQuality's fields: answers right with a per-variant probability
        self.startup_timeout = startup_timeout
        self.grace = grace
        self.log_path = Path(log_path) if log_path is not None else None
        self._process: subprocess.Popen | None = None
        self._log = None

    @property
    def root_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the latency endpoint is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> LatencyEndpoint:
        if self.alive():
            return self
        self.stop()
        if self.port is None:
            self.port = free_port()
        c = self.config
        cmd = [sys.executable, "-m", "workbench.testing.fake_server", "--port", str(self.port),
               "--latency", repr(c.latency), "--embed-latency", repr(c.embed_latency),
               "--fail-rate", repr(c.fail_rate), "--faults", ",".join(c.faults),
               "--timeout-sleep", repr(c.timeout_sleep), "--retry-after", repr(c.retry_after),
               "--seed", str(c.seed), "--dim", str(c.dim), "--trickle-interval", repr(c.trickle_interval),
               "--huge-chars", str(c.huge_chars), "--parent-pid", str(os.getpid())]
        if c.require_key:
            cmd += ["--require-key", c.require_key]
        if self.routing is not None:
            self._plan_file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
            self._plan_file.write(self.routing.to_json())
            self._plan_file.close()
            cmd += ["--routing", self._plan_file.name]
        if self.planted:
            cmd += ["--planted", json.dumps(self.planted)]
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "a+b")
        else:
            self._log = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would block the server
        self._process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                         env=child_env())
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        url = self.root_url + "/stats"  # never keyed (/v1 answers 401 under require_key)
        wait_until_answers(url, self._process, timeout=self.startup_timeout, interval=0.05,
                           exited=self._exited_at_start,
                           late=lambda: RuntimeError(f"the latency endpoint did not answer {url} "
                                                     f"within {self.startup_timeout:.0f} s"))

    def _exited_at_start(self) -> RuntimeError:
        self._log.flush()
        self._log.seek(0)
        output = self._log.read().decode("utf-8", "replace")
        return RuntimeError(f"the latency endpoint exited at start (code {self._process.returncode}):\n{output[-3000:]}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, grace=self.grace)
        if self._log is not None:
            self._log.close()
            self._log = None
        if getattr(self, "_plan_file", None) is not None:
            Path(self._plan_file.name).unlink(missing_ok=True)
            self._plan_file = None
        atexit.unregister(self.stop)

    def _request(self, method: str, path: str, payload: dict | None = None) -> dict:
        data = json.dumps(payload).encode() if payload is not None else (b"{}" if method == "POST" else None)
        request = urllib.request.Request(self.root_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict:
        return self._request("GET", "/stats")

    def arrivals(self) -> list[float]:
        """Monotonic times at which chat requests arrived since the last reset (`testing.fake_arrivals`)."""
        return self._request("GET", "/arrivals")["times"]

    def reset_stats(self) -> dict:
        return self._request("POST", "/stats/reset")

    def configure(self, **changes) -> dict:
        """Change latency / fail_rate / faults / ... of the running server (no restart)."""
        if "faults" in changes and not isinstance(changes["faults"], str):
            changes["faults"] = list(changes["faults"])
        result = self._request("POST", "/config", changes)
        self.config.update({k: v for k, v in changes.items()})
        return result

    def __enter__(self) -> LatencyEndpoint:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.base_url}" if self.alive() else "stopped"
        return f"LatencyEndpoint({state}, latency={self.config.latency}, fail_rate={self.config.fail_rate})"


def _limits(max_connections: int, keepalive: bool):
    import httpx

    return httpx.Limits(max_connections=max_connections,
                        max_keepalive_connections=max_connections if keepalive else 0)


def async_client(base_url: str, *, timeout: float = 60.0, max_retries: int = 0,
                 max_connections: int = 1000, keepalive: bool = False):
    """An openai.AsyncOpenAI for bursts of concurrent requests against the endpoint.

    keepalive=False (max_keepalive_connections=0) opens a fresh localhost connection per request.
    With pooled keep-alive connections httpcore 1.0.9's pool hands one idle HTTP/1.1 connection to
    several queued requests in the same pass; all but one get ConnectionNotAvailable and re-queue
    (encode/httpcore#1110 review; pydantic/httpx2#1075), which partly serialises a burst on a warm
    pool: 64 requests at L=0.2 took ~0.85-1.9 s with the default client, ~0.2-0.5 s without
    keep-alive. openai's default pool (max_connections=1000, max_keepalive_connections=100) is
    otherwise large enough up to 1000 concurrent requests.
    """
    import openai

    return openai.AsyncOpenAI(base_url=base_url, api_key="latency-endpoint", timeout=timeout, max_retries=max_retries,
                              http_client=openai.DefaultAsyncHttpxClient(limits=_limits(max_connections, keepalive),
                                                                         timeout=timeout))


def sync_client(base_url: str, *, timeout: float = 60.0, max_retries: int = 0,
                max_connections: int = 1000, keepalive: bool = True):
    """An openai.OpenAI to share between threads (see `async_client` for the keep-alive caveat;
    with 16 threads the sync pool stayed within ~5-9 % of the ideal time with keep-alive on)."""
    import openai

    return openai.OpenAI(base_url=base_url, api_key="latency-endpoint", timeout=timeout, max_retries=max_retries,
                         http_client=openai.DefaultHttpxClient(limits=_limits(max_connections, keepalive),
                                                               timeout=timeout))


if __name__ == "__main__":  # `python -m workbench.testing.fake_endpoint` kept working after the split
    main()
