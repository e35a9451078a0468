"""The speed benchmark's --quick run: every figure printed as a number, every invariant holds.

No timing assertions: the figures are measured on a shared machine; only the counts are checked.
"""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the benchmark script runs real sweeps in subprocesses

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "benchmarks" / "run.py"

FIGURES = (
    "wall_vs_ideal",
    "wall_vs_ideal_generation",
    "index_build_s",
    "retrieval_s",
    "speedup_vs_sequential",
    "index_builds",
    "unique_index_keys",
    "embedding_calls",
    "embedded_texts",
    "unique_texts",
    "embedded_chunk_texts",
    "unique_chunk_texts",
    "rerun_model_calls",
    "rerun_wall_ratio",
    "executor_only_vs_ideal",
    "raw_async_keepalive_vs_ideal",
    "raw_async_no_keepalive_vs_ideal",
    "traces_logged",
    "rerun_traces_logged",
    "mlflow_share",
    "mlflow_tail_share",
    "mlflow_logging_thread_share",
    "new_sweep_model_calls",
    "new_sweep_wall_ratio",
    "mlflow_share_by_difference",
    "embed_vs_raw_onnx",
    "retrieval_p50_ms_10k",
    "peak_rss_mb",
)
LINE = re.compile(r"^([a-z][a-z0-9_]*): (\S+)")


@pytest.fixture(scope="module")
def quick():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    figures = {}
    for line in proc.stdout.splitlines():
        m = LINE.match(line)
        if m:
            figures[m.group(1)] = m.group(2)
    return proc, figures


def test_quick_benchmark_exits_zero(quick):
    proc, _ = quick
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_is_printed_as_a_number(quick, name):
    _, figures = quick
    assert name in figures, f"{name} not printed; got {sorted(figures)}"
    assert math.isfinite(float(figures[name])), f"{name}: {figures[name]!r}"


def test_invariants(quick):
    _, f = quick
    assert int(f["rerun_model_calls"]) == 0
    assert int(f["index_builds"]) == int(f["unique_index_keys"]) > 0
    assert int(f["embedded_texts"]) == int(f["unique_texts"]) > 0
    assert int(f["embedded_chunk_texts"]) == int(f["unique_chunk_texts"]) > 0
