"""A stand-in for the local llama.cpp server that can die mid-sweep: what a real server cannot do on cue.

`FakeLocalServer` has the supervisor interface the sweep uses of `rag.local_model.LocalModelServer`
(`start`, `stop`, `restart` on the same port, `alive`, `check`, `base_url`, `log_path`) and serves the
OpenAI protocol over real HTTP (`LatencyEndpoint`, so planted routing answers too). `kill()` SIGKILLs the
process the way the OOM killer would; `restart()` brings it back on its port, as the real one does.

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("workbench.rag.local_model.LocalModelServer", FakeLocalServer.factory(latency=0.005))
        run_sweep(spec, on_start=lambda _: FakeLocalServer.started[-1].kill_after(3))  # dies mid-run
"""

from __future__ import annotations

import functools
import signal
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from workbench.errors import ModelError
from workbench.testing.fake_endpoint import LatencyEndpoint


class FakeLocalServer(LatencyEndpoint):
    started: ClassVar[list[FakeLocalServer]] = []  # every instance started, newest last (the test's handle)

    def __init__(self, log_dir: str | Path | None = None, **endpoint: Any):
        log = Path(log_dir) / "fake_local_server.log" if log_dir is not None else None
        super().__init__(log_path=log, **endpoint)
        self.restarts = 0

    @classmethod
    def factory(cls, **endpoint: Any):
        """What `Environment.open` calls as `LocalModelServer(log_dir=...)`, with these endpoint settings."""
        return functools.partial(cls, **endpoint)

    def start(self) -> FakeLocalServer:
        super().start()
        if self not in FakeLocalServer.started:
            FakeLocalServer.started.append(self)
        return self

    def kill(self) -> None:
        """SIGKILL the server without stopping it: it is gone, the supervisor has not noticed yet."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    def kill_after(self, calls: int, poll_s: float = 0.005) -> threading.Thread:
        """Kill the server once it has received `calls` chat requests (watched from a thread)."""
        def watch() -> None:
            while self.alive():
                try:
                    if self.stats()["chat_calls"] >= calls:
                        self.kill()
                        return
                except OSError:
                    return
                time.sleep(poll_s)

        thread = threading.Thread(target=watch, name="fake-local-killer", daemon=True)
        thread.start()
        return thread

    def restart(self) -> FakeLocalServer:
        self.stop()  # keeps self.port: the new process listens where the sweep's clients point
        self.restarts += 1
        return self.start()

    def check(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise ModelError(f"the local model server exited (return code {self._process.returncode})")


__all__ = ["FakeLocalServer"]
