"""Real servers on 127.0.0.1 for the scale-out tests and benchmark: a Ray cluster (`ray start --head` plus
worker node processes) and a Chroma server (`chroma run`). Each runs in its own process group, which is
what `stop` ends: never `ray stop`, which would end every Ray on the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workbench.processes import child_env, free_port, wait_until_answers

BIN = Path(sys.executable).parent
RAY = [sys.executable, "-m", "workbench.testing.ray_patient"]  # `ray` with patience for a loaded machine


def _spawn(args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env or child_env(),
                            start_new_session=True)


def _end(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class RayCluster:
    """`ray start --head --block` and `nodes` extra worker nodes, each `ray start --address ... --block`.

    `address` is what `execution.ray_address` (or `ray.init(address=...)`) takes.
    """

    def __init__(self, nodes: int = 1, head_cpus: int = 2, node_cpus: int = 2, dashboard: bool = True):
        self.nodes, self.head_cpus, self.node_cpus, self.dashboard = nodes, head_cpus, node_cpus, dashboard
        # a short path: Ray's unix sockets live under it (108 bytes at most)
        self.temp = Path(tempfile.mkdtemp(prefix="wbray-", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []

    def _env(self) -> dict:
        # A loaded machine (2 cores shared by many): the raylet waits for its agents' port files for
        # agent_register_timeout_ms (30 s by default), which their imports alone can exceed. The agents'
        # ports are left to them (an explicit port would skip that wait and hit a fixed 30 s one instead).
        return {**child_env(), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
                "RAY_agent_register_timeout_ms": "180000", "RAY_raylet_start_wait_time_s": "180"}

    def start(self, attempts: int = 5) -> RayCluster:
        """Start the cluster; on a loaded machine a node can miss Ray's own start-up deadlines (its agents
        import slowly), so a failed start is stopped and tried again."""
        for attempt in range(attempts):
            try:
                return self._start()
            except RuntimeError:
                self.stop()
                self.temp.mkdir(parents=True, exist_ok=True)
                self.procs = []
                if attempt == attempts - 1:
                    raise
        return self

    def _start(self) -> RayCluster:
        head = [*RAY, "start", "--head", "--block", f"--port={self.port}", "--node-ip-address=127.0.0.1",
                f"--num-cpus={self.head_cpus}", f"--temp-dir={self.temp}", "--disable-usage-stats",
                f"--dashboard-port={free_port()}"]
        head += ["--include-dashboard=true", "--dashboard-host=127.0.0.1"] if self.dashboard else ["--include-dashboard=false"]
        self.procs.append(_spawn(head, self.temp / "head.log", self._env()))
        self._wait_started(self.procs[0], self.temp / "head.log")
        for n in range(self.nodes):
            node = [*RAY, "start", "--block", f"--address={self.address}", "--node-ip-address=127.0.0.1",
                    f"--num-cpus={self.node_cpus}", "--disable-usage-stats"]
            self.procs.append(_spawn(node, self.temp / f"node{n}.log", self._env()))
        for n, proc in enumerate(self.procs[1:]):
            self._wait_started(proc, self.temp / f"node{n}.log")
        return self

    def _wait_started(self, proc: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
        """`ray start` prints "Ray runtime started" once its node has joined (cheaper than polling with a driver)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "Ray runtime started" in text:
                return
            crashed = [f for f in self.temp.glob("session_*/logs/raylet*.out")
                       if "Check failed" in f.read_text(errors="replace")]
            if crashed:  # its raylet gave up waiting for its agents: no use waiting for this attempt
                raise RuntimeError(f"a raylet of this cluster crashed at start-up: see {crashed[0]}")
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited: {text[-2000:]}")
            time.sleep(0.3)
        raise RuntimeError(f"ray start did not finish in {timeout:.0f} s: see {log}")

    def stop(self, keep_logs: bool = False) -> None:
        for proc in reversed(self.procs):
            _end(proc, grace=3.0)  # a worker node ends in ~2 s on SIGTERM; the head never does (measured): then SIGKILL
        if not keep_logs:
            shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> RayCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ChromaServer:
    """`chroma run` on 127.0.0.1 with its data under `path`."""

    def __init__(self, path: Path):
        self.path, self.port = Path(path), free_port()
        self.host = "127.0.0.1"

    def start(self) -> ChromaServer:
        self.path.mkdir(parents=True, exist_ok=True)
        self.proc = _spawn([str(BIN / "chroma"), "run", "--host", self.host, "--port", str(self.port),
                            "--path", str(self.path / "data")], self.path / "chroma.log")
        log = self.path / "chroma.log"
        wait_until_answers(f"http://{self.host}:{self.port}/api/v2/heartbeat", self.proc, timeout=60, interval=0.3,
                           exited=lambda: RuntimeError(f"chroma run exited: {log.read_text()[-2000:]}"),
                           late=lambda: RuntimeError(f"chroma run did not answer in 60 s: {log.read_text()[-2000:]}"))
        return self

    def stop(self) -> None:
        _end(self.proc)

    def __enter__(self) -> ChromaServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
