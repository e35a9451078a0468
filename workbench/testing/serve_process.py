"""`workbench serve` in a subprocess on 127.0.0.1, for tests and the serve benchmark; a context manager.

    with ServeProcess("winner.yaml", token="…", args=["--base-url", endpoint.base_url]) as svc:
        httpx.post(svc.url + "/answer", json={"question": "Who won?"}, headers=svc.headers)

`start()` waits until /healthz answers 200 (with the token); `stop()` sends SIGTERM (graceful: answers in
flight finish, traces are flushed) and returns the exit code; SIGKILL only after `grace` seconds.
"""

from __future__ import annotations

import atexit
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from workbench.processes import child_env, free_port, stop_process

TOKEN_ENV = "WORKBENCH_SERVE_TOKEN"


class ServeProcess:
    def __init__(self, export: str | Path, *, token: str | None = None, args: list[str] | tuple[str, ...] = (),
                 cwd: str | Path | None = None, startup_timeout: float = 300.0, grace: float = 60.0):
        self.export, self.token, self.args, self.cwd = Path(export), token, list(args), cwd
        self.startup_timeout, self.grace = startup_timeout, grace
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self) -> ServeProcess:
        env = child_env()
        env.pop(TOKEN_ENV, None)
        if self.token:
            env[TOKEN_ENV] = self.token
        cmd = [sys.executable, "-m", "workbench.cli", "serve", str(self.export), "--port", str(self.port), *self.args]
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=env, cwd=self.cwd)
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"workbench serve exited at start (code {self.process.returncode}):\n{self.log()}")
            try:
                request = urllib.request.Request(self.url + "/healthz", headers=self.headers)
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"workbench serve did not answer within {self.startup_timeout:.0f} s:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-5000:]

    def stop(self) -> int | None:
        process, self.process = self.process, None
        atexit.unregister(self.stop)
        return stop_process(process, grace=self.grace) if process is not None else None

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self._log.close()
