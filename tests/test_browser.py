"""A real browser runs the quickstart notebook in JupyterLab (its end-to-end test: what it prints and writes is
checked here): the plotly figures and the Workbench tabs render,
the Results tab's figures fill a 1,400 px window, clicking a heat-map cell opens that question in the
drill-down, the answer grid renders, and labelling that answer (a click on "wrong" + Save, then the key 2
through ipyevents) lands as MLflow assessments in the notebook's tracking store.

Needs Chromium at /usr/bin/chromium and the `playwright` Python package (never `playwright install`: the
system Chromium is used). Missing either is a test FAILURE with the install commands, never a skip.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from workbench.processes import free_port, stop_process, wait_until_answers

pytestmark = pytest.mark.slow  # JupyterLab in headless Chromium, running the quickstart sweep

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TABS = ("Data", "Variants", "Run", "Results", "Export")
RUN_ALL_TIMEOUT_S = 900  # the sweep: 4 variants x 5 questions on the local model (~2 min idle, far more on a busy machine)


def require_browser() -> None:
    problems = []
    if not Path(CHROMIUM).is_file():
        problems.append(f"Chromium is missing at {CHROMIUM}: install it with `apt-get install -y chromium`")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append(
            "the playwright Python package is missing: `pip install playwright` into this venv "
            "(it is in the dev extras: pip install -e '.[dev]'); do NOT run `playwright install`, "
            f"the test drives the system Chromium at {CHROMIUM}"
        )
    if problems:
        pytest.fail(
            "REAL-BROWSER TEST CANNOT RUN — this is a failure, not a skip:\n  - " + "\n  - ".join(problems),
            pytrace=False,
        )


def keep_screenshots(tmp_path: Path) -> None:
    """Copy the screenshots to $WORKBENCH_SCREENSHOT_DIR, if set, for a human look (CI artefacts)."""
    keep = os.environ.get("WORKBENCH_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in tmp_path.glob("*.png"):
            shutil.copy(png, Path(keep) / png.name)


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    wait_until_answers(
        url, proc, timeout=timeout, interval=0.5, request_timeout=5,
        exited=lambda: AssertionError(f"jupyter lab exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}"),
        late=lambda: AssertionError(f"jupyter lab not ready after {timeout} s:\n{log.read_text(errors='replace')[-3000:]}"),
    )


@pytest.fixture
def jupyter(tmp_path):
    """JupyterLab serving a temp copy of the repo's notebooks and experiments; all its state under tmp."""
    require_browser()  # fail loudly before starting anything
    work = tmp_path / "repo"
    shutil.copytree(ROOT / "notebooks", work / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(ROOT / "experiments", work / "experiments", ignore=shutil.ignore_patterns("exports"))
    state = tmp_path / "jupyter"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(state / "config"),  # no user config changes what the test sees
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "JUPYTER_DATA_DIR": str(state / "data"),  # the venv's kernel and lab extensions are still found via sys.prefix
    }
    env.pop("OPENAI_API_KEY", None)  # offline
    env["WORKBENCH_LABELLER"] = "browser-test"  # the labels' source, checked in MLflow
    port, token = free_port(), secrets.token_hex(16)
    log = tmp_path / "jupyter.log"
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--allow-root", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={work}",
        f"--LabApp.user_settings_dir={state / 'settings'}",
        f"--LabApp.workspaces_dir={state / 'workspaces'}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/api/status?token={token}", proc, log)
        yield {"base": base, "token": token, "work": work, "log": log}
    finally:
        # shut down the server and its kernels (the kernel stops its local model server on exit)
        try:
            req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST", data=b"")
            urllib.request.urlopen(req, timeout=10).close()
            proc.wait(timeout=60)
        except Exception:
            stop_process(proc, grace=30)


# Runs in the page: what the notebook shows so far.
PAGE_STATE_JS = """
() => {
  const text = (el) => (el.textContent || '').trim();
  const visible = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  let tabs = [...document.querySelectorAll('.widget-tab .lm-TabBar-tabLabel, .jupyter-widget-tab .lm-TabBar-tabLabel')];
  if (!tabs.length) tabs = [...document.querySelectorAll('.widget-tab .p-TabBar-tabLabel, .lm-TabBar-tabLabel')];
  const outputs = [...document.querySelectorAll('.jp-OutputArea-output')];
  const tracebacks = outputs.map(text).filter(t => t.includes('Traceback (most recent call last)'));
  return {
    plotly: document.querySelectorAll('.js-plotly-plot').length,
    tabLabels: tabs.map(text),
    visibleTabLabels: tabs.filter(visible).map(text),
    tracebacks: tracebacks.map(t => t.slice(-1500)),
    prompts: [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(text).join(' '),
  };
}
"""


# Runs in the page: every cell's output text. textContent, not innerText: it does not depend on layout
# (off-screen cells are skipped by content-visibility), and a stream's <pre> keeps its line breaks.
OUTPUT_TEXT_JS = """
() => [...document.querySelectorAll('.jp-OutputArea-output')].map(el => el.textContent || '').join('\\n')
"""


# Runs in the page: the Results tab's figures (inside the Workbench's tab panel) and what they draw.
RESULTS_JS = """
() => {
  const tab = [...document.querySelectorAll('.jupyter-widget-tab, .widget-tab')].pop();
  const plots = tab ? [...tab.querySelectorAll('.js-plotly-plot')].filter(p => p.getBoundingClientRect().width > 0) : [];
  const detail = document.querySelector('.wb-detail');
  return {
    figures: plots.map(p => ({
      div: Math.round(p.getBoundingClientRect().width),
      svg: Math.round((p.querySelector('.main-svg') || p).getBoundingClientRect().width),
      title: ((p.querySelector('.gtitle') || {}).textContent || '').slice(0, 60),
    })),
    gridCells: tab ? tab.querySelectorAll('.wb-answer-grid .wb-cell').length : 0,
    gridRows: tab ? tab.querySelectorAll('.wb-answer-grid tbody tr').length : 0,
    tableCells: tab ? tab.querySelectorAll('table[id^="T_"] td').length : 0,
    question: detail ? detail.dataset.question : null,
    variant: detail ? detail.dataset.variant : null,
  };
}
"""
MIN_FIGURE_PX = 900  # at a 1,400 px window (the file browser open), the tab panel is ~930 px wide


def check_results_view(page, tmp_path: Path) -> dict:
    """The Results tab at 1,400 px: figures fill the width, a heat-map click opens that question, the grid renders."""
    results = page.evaluate(RESULTS_JS)
    for _ in range(30):  # the figures re-measure once drawn; give them a moment
        if len(results["figures"]) >= 3 and all(f["svg"] >= MIN_FIGURE_PX for f in results["figures"]):
            break
        page.wait_for_timeout(1_000)
        results = page.evaluate(RESULTS_JS)
    assert len(results["figures"]) >= 3, results
    assert all(f["svg"] >= MIN_FIGURE_PX for f in results["figures"]), f"figures narrower than {MIN_FIGURE_PX} px: {results}"
    assert results["gridCells"] >= 4 and results["gridCells"] % results["gridRows"] == 0, results
    assert results["tableCells"] > 0, results

    tab = page.locator(".jupyter-widget-tab, .widget-tab").last
    heat = tab.locator(".js-plotly-plot:visible").nth(2)  # the Run tab's (hidden) search figure comes first in the DOM
    heat.scroll_into_view_if_needed(timeout=30_000)
    page.wait_for_timeout(1_000)
    heat.screenshot(path=str(tmp_path / "results_heatmap.png"))
    before = results["question"]
    area = heat.locator(".nsewdrag").first.bounding_box()
    rows = heat.locator(".ytick").count()
    assert rows >= 2, f"the heat map labels {rows} rows"
    after = before
    for row in reversed(range(rows)):  # a row whose question is not the one shown (the last usually is not)
        page.mouse.click(area["x"] + area["width"] * 0.3, area["y"] + area["height"] * (row + 0.5) / rows)
        for _ in range(20):
            page.wait_for_timeout(500)
            after = page.evaluate(RESULTS_JS)["question"]
            if after != before:
                break
        if after != before:
            break
    assert after and after != before, f"clicking heat-map cells did not change the drill-down's question ({before})"
    tab.locator(".wb-detail").first.scroll_into_view_if_needed(timeout=30_000)
    page.screenshot(path=str(tmp_path / "results_drilldown.png"))
    grid = tab.locator(".wb-answer-grid").first
    grid.scroll_into_view_if_needed(timeout=30_000)
    page.screenshot(path=str(tmp_path / "results_answer_grid.png"))
    tab.locator(".js-plotly-plot:visible").nth(1).screenshot(path=str(tmp_path / "results_bars.png"))
    return {**results, "clicked_question": after, "variant": page.evaluate(RESULTS_JS)["variant"]}


def label_in_browser(page, tmp_path: Path) -> None:
    """In the drill-down's labelling panel: click "wrong", then Save; then, the pointer over the buttons'
    row, press 2 (ipyevents' shortcut: partly, saved at once)."""
    panel = page.locator(".wb-label-panel").last
    panel.scroll_into_view_if_needed(timeout=30_000)
    panel.locator("button", has_text="wrong").first.click()
    panel.locator("button", has_text="Save label").first.click()
    panel.get_by_text("saved: wrong").wait_for(timeout=60_000)
    panel.locator(".wb-label-keys").first.hover()
    page.keyboard.press("2")
    panel.get_by_text("saved: partly").wait_for(timeout=60_000)
    page.screenshot(path=str(tmp_path / "results_labelled.png"))


def check_labels_in_mlflow(work: Path, question_id: str, variant: str) -> None:
    """Both labels are `human_verdict` assessments on that (variant, question)'s trace, by the labeller."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{work}/mlruns/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    traces = client.search_traces(locations=experiments, max_results=500,
                                  filter_string=f"tags.`workbench.question_id` = '{question_id}'")
    labelled = []
    for info in traces:
        trace = client.get_trace(info.info.trace_id)
        human = sorted((a for a in trace.info.assessments if a.name == "human_verdict"), key=lambda a: a.create_time_ms)
        if human:
            labelled.append((trace.info.tags.get("workbench.variant_hash", ""), human))
    assert len(labelled) == 1, f"expected one labelled trace of question {question_id}, got {labelled}"
    variant_hash, human = labelled[0]
    assert variant_hash.startswith(variant), (variant_hash, variant)  # the drill-down shows the short hash
    assert [a.value for a in human] == ["wrong", "partly"]
    assert {a.source.source_id for a in human} == {"browser-test"} and human[0].source.source_type == "HUMAN"


@pytest.mark.timeout(1500)
def test_quickstart_renders_plotly_and_workbench_in_chromium(jupyter, tmp_path):
    require_browser()
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    base, token = jupyter["base"], jupyter["token"]
    shot = tmp_path / "quickstart.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(f"{base}/lab/tree/notebooks/01_quickstart.ipynb?token={token}", timeout=120_000)
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
            # "Select Kernel" (shown when JupyterLab cannot pick one by itself): accept the proposed kernel
            try:
                page.locator(".jp-Dialog .jp-mod-accept").click(timeout=8_000)
            except PlaywrightTimeout:
                pass
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator, .jp-KernelStatus", timeout=60_000)

            # Run → Run All Cells, through the menu bar as a user would
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

            deadline = time.monotonic() + RUN_ALL_TIMEOUT_S
            state: dict = {}
            idle_polls = 0
            while time.monotonic() < deadline:
                state = page.evaluate(PAGE_STATE_JS)
                assert not state["tracebacks"], "a cell failed in the browser:\n" + "\n---\n".join(state["tracebacks"])
                if state["plotly"] and all(t in state["tabLabels"] for t in TABS):
                    break
                # Run All stops at a failing cell: nothing queued or running any more, and no Workbench
                idle_polls = idle_polls + 1 if "[*]" not in state["prompts"] and any(c.isdigit() for c in state["prompts"]) else 0
                if idle_polls >= 5:
                    page.screenshot(path=str(tmp_path / "stopped.png"), full_page=True)
                    keep_screenshots(tmp_path)
                    pytest.fail(f"Run All stopped before the Workbench rendered (a cell failed?): {json.dumps(state)}")
                page.wait_for_timeout(2_000)
            else:
                page.screenshot(path=str(tmp_path / "timeout.png"), full_page=True)
                keep_screenshots(tmp_path)
                log = jupyter["log"].read_text(errors="replace")[-3000:]
                pytest.fail(f"after {RUN_ALL_TIMEOUT_S} s: {json.dumps(state)}\njupyter log tail:\n{log}")

            # bring the Workbench (last cell) into view; its five tab labels must be visible
            tab_bar = page.locator(".widget-tab .lm-TabBar, .jupyter-widget-tab .lm-TabBar").last
            tab_bar.scroll_into_view_if_needed(timeout=30_000)
            for label in TABS:
                loc = tab_bar.locator(".lm-TabBar-tabLabel", has_text=label).first
                loc.wait_for(state="visible", timeout=30_000)
            page.wait_for_timeout(1_500)  # let the plots settle after the scroll
            page.screenshot(path=str(shot), full_page=True)
            # the first plotly figure, on its own (it sits above the Workbench in the notebook)
            page.locator(".js-plotly-plot").first.screenshot(path=str(tmp_path / "quickstart_pareto.png"), timeout=30_000)
            final = page.evaluate(PAGE_STATE_JS)
            text = page.evaluate(OUTPUT_TEXT_JS)
            results = check_results_view(page, tmp_path)
            label_in_browser(page, tmp_path)
        finally:
            browser.close()
            keep_screenshots(tmp_path)  # also when a check failed: the pictures show why

    print(f"screenshots: {sorted(str(p) for p in tmp_path.glob('*.png'))}; state: {json.dumps(final)}; "
          f"results: {json.dumps(results)}")
    assert shot.is_file() and shot.stat().st_size > 10_000, f"screenshot missing or empty: {shot}"
    assert final["plotly"] >= 3, final
    assert all(t in final["visibleTabLabels"] for t in TABS), final
    export = jupyter["work"] / "experiments" / "exports" / "quickstart_winner.yaml"
    assert export.is_file(), "Run All did not reach the export cell"
    check_notebook_outputs(jupyter["work"], text, export)
    check_labels_in_mlflow(jupyter["work"], results["clicked_question"], results["variant"])
    keep_screenshots(tmp_path)


def check_notebook_outputs(work: Path, text: str, export: Path) -> None:
    """What the quickstart printed, what it wrote and where (this run is the quickstart notebook's end-to-end
    test: tests/test_notebooks.py runs the other notebook with nbclient)."""
    from workbench.handover.export import read_export
    from workbench.spec import load_spec

    assert "4 variants x 5 questions" in text, text[-2000:]
    reason = [line for line in text.splitlines() if line.startswith("reason: ")]
    assert reason and len(reason[0]) > len("reason: ") + 10, "best()'s reason was not printed"
    winner = next(line for line in text.splitlines() if line.startswith("winner: ")).split()[1]
    doc = read_export(export)  # parses and verifies its hashes
    assert doc["variant_hash"].startswith(winner)
    assert "A: " in text, "load_pipeline did not answer"
    assert "exported winner: " in text
    for h in (v.short_hash for v in load_spec(ROOT / "experiments" / "quickstart.yaml").variants()):
        assert h in text, f"variant {h} missing from the summary table"
    # MLflow and the workbench home were written in the copy, not in the repo
    assert (work / "mlruns" / "mlflow.db").is_file()
    assert (work / ".workbench" / "sweeps").is_dir()
