"""workbench.processes with real subprocesses and sockets: readiness, its two failures, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import workbench
from workbench.processes import child_env, free_port, stop_process, wait_until_answers


def python(code: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, **kw)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


class Exited(Exception):
    pass


class Late(Exception):
    pass


def wait(url: str, proc: subprocess.Popen, timeout: float) -> None:
    wait_until_answers(url, proc, timeout=timeout, interval=0.05, exited=lambda: Exited(proc.returncode),
                       late=lambda: Late(url))


def test_returns_once_a_server_on_the_free_port_answers(tmp_path):
    port = free_port()
    (tmp_path / "ready").write_text("yes")
    server = python(f"import http.server, functools; http.server.ThreadingHTTPServer(('127.0.0.1', {port}), "
                    f"functools.partial(http.server.SimpleHTTPRequestHandler, directory={str(tmp_path)!r}))"
                    ".serve_forever()", stderr=subprocess.DEVNULL)
    try:
        wait(f"http://127.0.0.1:{port}/ready", server, timeout=30)
        assert server.poll() is None
    finally:
        stop(server)


def test_a_process_that_dies_before_answering_raises_the_exited_error():
    proc = python("raise SystemExit(3)")
    with pytest.raises(Exited) as info:
        wait(f"http://127.0.0.1:{free_port()}/", proc, timeout=30)
    assert info.value.args == (3,)


def test_a_process_that_never_answers_raises_the_late_error_after_the_timeout():
    proc = python("import time; time.sleep(60)")
    try:
        start = time.monotonic()
        with pytest.raises(Late):
            wait(f"http://127.0.0.1:{free_port()}/", proc, timeout=0.5)
        assert 0.5 <= time.monotonic() - start < 10
        assert proc.poll() is None  # waiting never kills the process; the caller decides
    finally:
        stop(proc)


def test_a_child_exits_when_its_parent_is_killed(tmp_path):
    # parent -> child; the child watches the parent. SIGKILL the parent: the child must follow.
    pid_file = tmp_path / "child.pid"
    child = (f"import os, time; from workbench.processes import exit_with_parent; "
             f"exit_with_parent(os.getppid(), interval=0.1); open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
             f"time.sleep(60)")
    parent = python(f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(60)")
    child_pid = None
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child_pid = int(pid_file.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child_pid), "the child outlived its killed parent"
    finally:
        stop(parent)
        if child_pid and _alive(child_pid):
            os.kill(child_pid, signal.SIGKILL)


def test_a_child_imports_this_same_workbench_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)  # only what child_env adds
    proc = subprocess.run([sys.executable, "-c", "import workbench; print(workbench.__file__)"], cwd=tmp_path,
                          env=child_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == workbench.__file__


def test_stop_process_terminates_and_kills_what_ignores_sigterm():
    polite = python("import time; time.sleep(60)")
    assert stop_process(polite, grace=10) == -signal.SIGTERM
    stubborn = python("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      "print('ready', flush=True); time.sleep(60)", stdout=subprocess.PIPE)
    assert stubborn.stdout.readline() == b"ready\n"  # SIGTERM is ignored from here on
    start = time.monotonic()
    assert stop_process(stubborn, grace=0.5) == -signal.SIGKILL
    assert time.monotonic() - start < 10
    assert stop_process(stubborn, grace=0.5) == -signal.SIGKILL  # already ended: nothing to do


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it has exited all the same
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
