"""A real browser reads a sweep in MLflow's own UI: a variant's evaluation view lists every question with
its expected answer and its per-question f1 and exact_match assessments, and the runs read label first.

`mlflow server` (one worker, no job execution) on the sqlite store of a small real sweep (fake endpoint,
BM25), headless Debian Chromium through playwright. Screenshots go to $WORKBENCH_SCREENSHOT_DIR when set
(see test_browser.py), else stay in the test's tmp dir:
  mlflow_eval_runs.png        the experiment's Evaluation runs page (runs named label first, metrics)
  mlflow_run_evaluation.png   a variant's Traces tab: question, response, expected answer, f1, exact_match
  mlflow_compare_variants.png that tab comparing two variants: each question's two traces side by side
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from test_browser import CHROMIUM, CHROMIUM_ARGS, keep_screenshots, require_browser
from test_mlflow_views import sweep_spec
from workbench.processes import free_port, stop_process, wait_until_answers
from workbench.runner.sweep import run_sweep
from workbench.testing.fake_endpoint import LatencyEndpoint
from workbench.tracking.naming import round_sig, variant_run_name

pytestmark = pytest.mark.slow  # an MLflow server and a browser


def matches(text: str, value: float) -> bool:
    """The UI prints a score to 3 decimals (0.4444 -> "0.444", 1.0 -> "1")."""
    return abs(float(text) - round_sig(value)) <= 5e-4


def table(page) -> list[dict[str, str]]:
    """The traces table as {column header: cell text} per row, read from the DOM (role=row / cell)."""
    return page.evaluate("""() => {
        const rows = [...document.querySelectorAll('[role=row]')];
        const head = rows.find(r => [...r.querySelectorAll('[role=columnheader]')].some(c => c.innerText.trim() === 'Request'));
        const names = [...head.querySelectorAll('[role=columnheader]')].map(c => c.innerText.split('\\n')[0].trim());
        return rows.filter(r => r.querySelector('[role=cell]') && r.innerText.includes('tr-')).map(r => {
            const cells = [...r.querySelectorAll('[role=cell]')].map(c => c.innerText.trim());
            const offset = cells.length - names.length;  // a leading selection cell, when the header has none
            return Object.fromEntries(names.map((n, i) => [n, cells[i + offset]]));
        });
    }""")


def close_assistant(page) -> None:
    """MLflow 3.17 opens its Assistant panel over the right of the page: close it for the screenshots."""
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.last.click()
        page.wait_for_timeout(300)


@pytest.fixture
def served(tmp_path):
    """A real sweep in a sqlite store, and `mlflow server` on it."""
    require_browser()
    with LatencyEndpoint(latency=0.02) as ep:
        spec = sweep_spec(tmp_path, ep.base_url)
        results = run_sweep(spec, progress=False)
    port = free_port()
    log = tmp_path / "mlflow_server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", spec["tracking"]["tracking_uri"]],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=log.open("wb"), start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/health", proc, timeout=180, interval=0.5, request_timeout=5,
                           exited=lambda: AssertionError(f"mlflow server exited:\n{log.read_text()[-3000:]}"),
                           late=lambda: AssertionError(f"mlflow server not ready:\n{log.read_text()[-3000:]}"))
        yield url, spec, results
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers (its own session)
        except ProcessLookupError:
            pass
        stop_process(proc, grace=10)


def test_mlflow_ui_shows_per_question_scores_expected_answers_and_label_first_names(served, tmp_path):
    from playwright.sync_api import sync_playwright

    url, spec, results = served
    with urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={spec['experiment']}") as r:
        exp = json.load(r)["experiment"]["experiment_id"]
    variant = results.variants[0]
    run_id = results.run_ids[variant.hash]
    q = results.questions()
    rows = q[q["variant_hash"] == variant.hash]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1800, "height": 1100})
            page.goto(f"{url}/#/experiments/{exp}/evaluation-runs", timeout=120_000)
            names = page.locator("a#run-name-cell")
            names.first.wait_for(timeout=120_000)
            page.wait_for_timeout(1500)  # the metric columns fill in
            close_assistant(page)
            page.screenshot(path=str(tmp_path / "mlflow_eval_runs.png"), full_page=True)
            texts = names.all_inner_texts()
            for v in results.variants:  # each variant's run, named by its label first
                assert any(t.startswith(v.label()) and t.endswith(v.short_hash[:7]) for t in texts), (v.label(), texts)
            assert any(t.startswith(f"{spec['name']} · 2 variants × {len(rows)} q · ") for t in texts), texts

            page.goto(f"{url}/#/experiments/{exp}/runs/{run_id}/evaluations", timeout=120_000)
            page.get_by_text(rows.iloc[0]["question"]).first.wait_for(timeout=120_000)
            heading = page.get_by_role("heading").filter(has_text=variant.label()).first.inner_text()
            assert heading.startswith(variant.label())
            close_assistant(page)
            page.get_by_role("button", name="Columns").first.click()  # f1 is one click away: show it
            page.get_by_role("option", name="f1", exact=True).first.click()
            page.keyboard.press("Escape")
            page.wait_for_timeout(1000)
            page.screenshot(path=str(tmp_path / "mlflow_run_evaluation.png"), full_page=True)
            shown_rows = table(page)

            # side by side: the same questions of another variant, paired with this one's
            other = results.variants[1]
            page.goto(f"{url}/#/experiments/{exp}/runs/{run_id}/evaluations"
                      f"?compareToRunUuid={results.run_ids[other.hash]}", timeout=120_000)
            page.get_by_text(rows.iloc[0]["question"]).first.wait_for(timeout=120_000)
            page.wait_for_timeout(1000)
            close_assistant(page)
            page.screenshot(path=str(tmp_path / "mlflow_compare_variants.png"), full_page=True)
            body = page.inner_text("body")
            paired = {t.strip() for t in page.locator("[data-component-id='mlflow.genai-traces-table.trace-id']")
                      .all_inner_texts() if t.strip().startswith("tr-")}
        finally:
            browser.close()
            keep_screenshots(tmp_path)

    assert len(shown_rows) == len(rows)  # every question is there
    assert variant_run_name(variant) in body and variant_run_name(other) in body
    assert len(paired) == 2 * len(rows)  # a trace of each variant for every question
    by_question = {row["question"]: row for _, row in rows.iterrows()}
    for cells in shown_rows:
        question = json.loads(cells["Request"])["question"]
        row = by_question[question]
        # the expectation, from the DOM (the UI drops the quotes of a quoted answer: "golden anniversary")
        assert cells["Expected output"].strip('"') == row["reference_answers"][0].strip('"')
        assert matches(cells["f1"], row["f1"]), (question, cells)  # the per-question score
        assert matches(cells["exact_match"], row["exact_match"]), (question, cells)
    assert {float(c["f1"]) for c in shown_rows} != {0.0}  # not all zeros: the test can tell scores apart
