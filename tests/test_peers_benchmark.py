"""The whole-command benchmark's --quick run (issue 20): the CLI as a fresh process and the asyncio floor on
the same messages; it exits 0 only when every run succeeded, the CLI made one call per unique message and
its reported wall ends after its last table was logged. No timing is asserted (a shared machine)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # fresh processes: the CLI (with its MLflow helper) and a peer

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks" / "peers.py"
LINES = ("cli_wall_vs_ideal_cold", "cli_start_to_first_call_s", "cli_last_call_to_exit_s",
         "cli_first_answer_visible_s", "cli_peak_rss_mb", "cli_calls_minus_unique_messages", "cli_reported_wall_s",
         "peer_asyncio_wall_s")


def test_quick_peers_run_holds_its_invariants():
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    values = dict(re.findall(r"^(\w+): (\S+)", done.stdout, re.M))
    assert set(LINES) <= set(values), done.stdout
    assert values["cli_calls_minus_unique_messages"] == "0"
    assert float(values["cli_peak_rss_mb"]) > 0 and float(values["peer_asyncio_wall_s"]) > 0
