"""The notebooks run top to bottom, headless, in a real kernel of this venv, offline.

The quickstart notebook's end-to-end run is tests/test_browser.py (Run All in JupyterLab in Chromium checks
what it prints and writes too): running the same sweep twice bought the suite a minute and no coverage.

Each notebook runs in a temp copy of the repo's notebooks/ and experiments/ (so MLflow's `mlruns/`, the
workbench home `.workbench/` and `experiments/exports/` are written under tmp and the repo's notebooks stay
clean), from its notebooks/ folder, as Jupyter would run it; its first cell moves to the copy's root.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
WIDGET = "application/vnd.jupyter.widget-view+json"
PLOTLY = "application/vnd.plotly.v1+json"


def copy_repo_parts(dest: Path) -> Path:
    """What the notebooks need: the notebooks and the experiments (specs and data), no earlier exports."""
    shutil.copytree(ROOT / "notebooks", dest / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(ROOT / "experiments", dest / "experiments", ignore=shutil.ignore_patterns("exports"))
    return dest


def execute(workdir: Path, name: str) -> tuple[nbformat.NotebookNode, float]:
    """Run the notebook with nbclient; a probe cell first records which Python the kernel runs."""
    nb = nbformat.read(workdir / "notebooks" / name, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell("import sys; print('KERNEL-PYTHON', sys.prefix)"))
    client = NotebookClient(
        nb,
        timeout=600,  # per cell; the sweep cell asks the local model one question at a time
        kernel_name="python3",
        allow_errors=False,
        resources={"metadata": {"path": str(workdir / "notebooks")}},
    )
    started = time.perf_counter()
    client.execute()
    took = time.perf_counter() - started
    nbformat.write(nb, workdir / f"executed-{name}")  # kept in tmp for a look after a failure
    return nb, took


def outputs(nb) -> list[tuple[int, dict]]:
    return [(i, o) for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.get("outputs", [])]


def text_of(o: dict) -> str:
    if o.get("output_type") == "stream":
        return o.get("text", "")
    data = o.get("data", {})
    return str(data.get("text/plain", "")) + str(data.get("text/html", ""))


def all_text(nb) -> str:
    return "\n".join(text_of(o) for _, o in outputs(nb))


def check_common(nb, export: Path) -> None:
    errors = [o for _, o in outputs(nb) if o.get("output_type") == "error"]
    assert not errors, f"error outputs: {[(e['ename'], e['evalue']) for e in errors]}"
    probe = "".join(text_of(o) for o in nb.cells[0].outputs)
    assert f"KERNEL-PYTHON {sys.prefix}" in probe, f"the kernel is not this venv's Python: {probe!r} vs {sys.prefix}"

    text = all_text(nb)
    reason = [line for line in text.splitlines() if line.startswith("reason: ")]
    assert reason and len(reason[0]) > len("reason: ") + 10, "best()'s reason was not printed"
    assert "winner: " in text

    from workbench.handover.export import read_export

    assert export.is_file(), f"the notebook did not write {export}"
    doc = read_export(export)  # parses and verifies its hashes
    winner = next(line for line in text.splitlines() if line.startswith("winner: ")).split()[1]
    assert doc["variant_hash"].startswith(winner)
    assert "A: " in text, "load_pipeline did not answer"

    plotly = [o for _, o in outputs(nb) if PLOTLY in o.get("data", {})]
    assert plotly, "no plotly figure in the outputs"

    last = nb.cells[-1]
    assert last.cell_type == "code"
    assert any(WIDGET in o.get("data", {}) for o in last.outputs), "the last cell does not display the Workbench widget"
    assert "exported winner: " in "".join(text_of(o) for o in last.outputs)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_own_data_notebook_runs_end_to_end(tmp_path, record_property, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # offline: the remote model stays out
    work = copy_repo_parts(tmp_path)
    nb, took = execute(work, "02_your_own_data.ipynb")
    record_property("seconds", round(took))
    print(f"02_your_own_data.ipynb ran in {took:.0f} s")

    check_common(nb, work / "experiments" / "exports" / "my_docs_winner.yaml")
    text = all_text(nb)
    assert "OPENAI_API_KEY is not set: local model only" in text
    assert "4 variants x 6 questions" in text
    assert "hit_at_k" in text  # retrieval metrics computed from the CSV's relevant_ids


def test_saved_notebooks_are_clean_nbformat4():
    for name in ("01_quickstart.ipynb", "02_your_own_data.ipynb"):
        nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        nbformat.validate(nb)
        assert nb.nbformat == 4
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name}: saved with outputs"
