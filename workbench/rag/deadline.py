"""httpx clients whose timeout bounds a whole request, for every model client (chat, embeddings, judge).

httpx's timeouts are per operation: its read timeout restarts with every byte, so an endpoint that sends
headers and then one byte every 0.5 s never times out (a sweep with `timeout_s: 2` hung for good). httpx
0.28 has no total timeout, so `send` is bounded here: each HTTP attempt gets `timeout_s` for its headers
and its whole body. On expiry it raises `httpx.ReadTimeout`, which the `openai` client treats as any
timeout (retried with backoff, then `APITimeoutError`), so the normal retry policy applies.

Async: the headers and each body chunk wait under `asyncio.timeout` of what is left, so nothing can
stall past the deadline (not anyio's `fail_after`: the sweep's loop is asyncio's, and anyio's first use
imported its asyncio backend on the loop, ~0.1 s while the first calls waited to be sent).

Sync (`workbench answer`, `load_pipeline`, the embedder): the body is checked against the deadline at every
chunk; a blocking read can only be interrupted by its read timeout, so a server trickling its *headers* is
bounded by the per-read timeout only (the async path has no such gap).
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator

import httpx

# openai's DefaultHttpxClient follows redirects; so do these
DEFAULT_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)


def _ssl_context() -> ssl.SSLContext:
    """httpx's default verifying context (certifi, or SSL_CERT_FILE / SSL_CERT_DIR), made once per process
    and shared by every client: httpx builds one per client otherwise, loading the CA bundle each time
    (~20 ms, on the sweep's event loop when its first model call makes the async client)."""
    with _TLS_LOCK:  # a caller arriving while `prepare_tls`'s thread makes it waits for that one
        return _context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


_TLS_LOCK = threading.Lock()


def prepare_tls() -> None:
    """Make the shared context now, on a thread: loading the CA bundle (~30 ms) releases the GIL, so it
    overlaps the caller's own start-up instead of delaying a sweep's endpoint check."""
    threading.Thread(target=_ssl_context, name="workbench-tls", daemon=True).start()


@functools.lru_cache(maxsize=4)
def _context_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:  # keyed by what httpx reads
    return httpx.create_ssl_context()


def _expired(request: httpx.Request, seconds: float) -> httpx.ReadTimeout:
    return httpx.ReadTimeout(f"no complete response from {request.url.host} within {seconds:g} s "
                             "(execution.timeout_s bounds each whole request)", request=request)


class _SyncBody(httpx.SyncByteStream):
    def __init__(self, inner, deadline: float, request: httpx.Request, seconds: float) -> None:
        self.inner, self.deadline, self.request, self.seconds = inner, deadline, request, seconds

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            if time.monotonic() > self.deadline:
                raise _expired(self.request, self.seconds)
            yield chunk

    def close(self) -> None:
        self.inner.close()


class _AsyncBody(httpx.AsyncByteStream):
    def __init__(self, inner, deadline: float, request: httpx.Request, seconds: float) -> None:
        self.inner, self.deadline, self.request, self.seconds = inner, deadline, request, seconds

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self.inner.__aiter__()
        while True:
            try:
                async with asyncio.timeout(max(0.0, self.deadline - time.monotonic())):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise _expired(self.request, self.seconds) from None
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class DeadlineClient(httpx.Client):
    """An httpx.Client whose `timeout_s` bounds each request's headers and whole body together."""

    def __init__(self, timeout_s: float, **kwargs) -> None:
        kwargs.setdefault("limits", DEFAULT_LIMITS)
        kwargs.setdefault("verify", _ssl_context())
        super().__init__(timeout=timeout_s, follow_redirects=True, **kwargs)
        self.timeout_s = timeout_s

    def send(self, request: httpx.Request, *, stream: bool = False, **kwargs) -> httpx.Response:
        deadline = time.monotonic() + self.timeout_s
        response = super().send(request, stream=True, **kwargs)
        if time.monotonic() > deadline:
            response.close()
            raise _expired(request, self.timeout_s)
        response.stream = _SyncBody(response.stream, deadline, request, self.timeout_s)
        if not stream:
            try:
                response.read()
            except BaseException:
                response.close()
                raise
        return response


def _env_proxies() -> bool:
    return any(scheme in ("http", "https", "all") for scheme in urllib.request.getproxies())


def _aiohttp_transport(verify: ssl.SSLContext, limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """aiohttp under httpx's API (httpx-aiohttp, the transport of openai's `DefaultAioHttpClient`): httpcore's
    pool checks every pooled connection's socket on each request, ~1 ms of the event loop's CPU per model call
    at 16 in flight, and a sweep's loop does nothing else as long. Measured, a fresh `workbench run` of 800
    calls: 12.5-12.9 s against 13.3-13.7 s."""
    from httpx_aiohttp import AiohttpTransport

    return AiohttpTransport(verify=verify, limits=limits)


class AsyncDeadlineClient(httpx.AsyncClient):
    """An httpx.AsyncClient whose `timeout_s` bounds each request's headers and whole body together."""

    def __init__(self, timeout_s: float, **kwargs) -> None:
        kwargs.setdefault("limits", DEFAULT_LIMITS)
        kwargs.setdefault("verify", _ssl_context())
        if not _env_proxies():  # httpx honours HTTP(S)_PROXY / NO_PROXY only with its own transport
            kwargs.setdefault("transport", _aiohttp_transport(kwargs["verify"], kwargs["limits"]))
        super().__init__(timeout=timeout_s, follow_redirects=True, **kwargs)
        self.timeout_s = timeout_s

    async def send(self, request: httpx.Request, *, stream: bool = False, **kwargs) -> httpx.Response:
        deadline = time.monotonic() + self.timeout_s
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await super().send(request, stream=True, **kwargs)
        except TimeoutError:
            raise _expired(request, self.timeout_s) from None
        response.stream = _AsyncBody(response.stream, deadline, request, self.timeout_s)
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response


def limits(max_connections: int) -> httpx.Limits:
    """A pool of `max_connections`, all kept alive (httpx's default 20 keep-alive would churn)."""
    return httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)


__all__ = ["AsyncDeadlineClient", "DeadlineClient", "limits"]
