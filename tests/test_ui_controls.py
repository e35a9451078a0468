"""The Workbench's state and controls, driven from Python (no browser): the one status line, one progress
bar, Resume / No cache, editable model parameters and endpoints, the duplicate-prompt warning, the
new-vs-cached call count and the Export tab's MLflow link.

Sweeps are real: BM25 over the real SQuAD article, the fake OpenAI endpoint over HTTP (its call counter is
the ground truth for "calls a re-run makes"), the in-memory tracker (or a real sqlite MLflow store).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import ipywidgets as W
import mlflow
import pytest

from conftest import ROOT, small_spec
from memory_tracker import MemoryTracker
from workbench.runner.sweep import run_sweep
from workbench.testing.fake_endpoint import LatencyEndpoint
from workbench.tracking.links import RunLink
from workbench.ui import Workbench
from workbench.ui.common import widget_wording
from workbench.ui.export_tab import link_html

N = 3  # questions


def walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def text(widget) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", widget.value))


@pytest.fixture(scope="module")
def endpoint():
    with LatencyEndpoint(latency=0.01) as ep:
        yield ep


def calls(endpoint) -> int:
    return endpoint.stats()["chat_calls"]


def spec_for(tmp_path: Path, base_url: str, **tracking) -> dict:
    """1 variant (recursive chunks, BM25, one prompt, the fake endpoint's model) × N questions."""
    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}])
    spec["data"]["eval"]["limit"] = N
    spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": base_url, "max_tokens": 8}]
    spec["execution"] = {"concurrency": 2}
    spec["tracking"].update(tracking)
    return spec


def run(wb: Workbench) -> None:
    wb.run(block=True)
    assert wb.error is None, wb.error


def add_second_prompt(wb: Workbench) -> None:
    editor = wb.variants_tab.add_prompt()
    editor.template.value = "Context: {context}\nQ: {question}\nShort answer:"


# ---------------------------------------------------------------- the status line


def test_status_line_after_load_then_run_then_spec_edit(tmp_path, endpoint):
    tracker = MemoryTracker()
    spec = spec_for(tmp_path, endpoint.base_url)
    earlier = run_sweep(spec, progress=False, tracker=tracker)
    wb = Workbench(spec, tracker=tracker)
    status = wb.status
    assert text(status.widget).startswith("Nothing shown yet")
    # the same widget model heads every tab: one line, seen from any tab
    assert all(page.children[0] is status.widget for page in wb.widget.children)

    wb.results_tab.sweep_id.value = "no-such-sweep"
    wb.results_tab.load_button.click()
    assert "wb-error" in wb.results_tab.message.value  # (what it says is the tracker's business)
    wb.load(earlier.sweep_id)
    shown = text(status.widget)
    assert f"Shown: sweep {earlier.sweep_id}" in shown and "loaded from" in shown
    assert "They match the spec in the widgets" in shown
    assert text(wb.results_tab.message) == ""  # the failed load's message is gone with the new results

    add_second_prompt(wb)  # edited after the results were produced: said so, on the same single line
    shown = text(status.widget)
    assert f"Shown: sweep {earlier.sweep_id}" in shown
    assert "edited after these results were produced: variants (1 not in the results, 0 no longer in the spec)" in shown
    wb.data_tab.eval_limit.value = 2
    assert "eval set (source or limit), variants" in text(status.widget)
    wb.data_tab.eval_limit.value = N
    assert status.widget.value.count("wb-msg") == 1

    wb.run_tab.resume.value = False
    run(wb)
    shown = text(status.widget)
    assert wb.results.sweep_id != earlier.sweep_id
    assert f"Shown: sweep {wb.results.sweep_id} (FINISHED, {2 * N} cells, 2 of 2 variants), run now." in shown
    assert "loaded" not in shown and earlier.sweep_id not in shown
    assert "They match the spec in the widgets" in shown
    wb.variants_tab.remove_prompt(wb.variants_tab.prompts[-1])
    assert "variants (0 not in the results, 1 no longer in the spec)" in text(status.widget)
    wb.variants_tab.chunking["recursive"].sizes.value = "x"  # a spec that does not validate
    assert "does not validate" in text(status.widget)


# ---------------------------------------------------------------- progress, Resume, No cache


def test_one_progress_bar_and_resume_and_no_cache_reach_run_sweep(tmp_path, endpoint):
    tracker = MemoryTracker()
    wb = Workbench(spec_for(tmp_path, endpoint.base_url), tracker=tracker)
    rt = wb.run_tab
    assert rt.resume.value is True and rt.no_cache.value is False
    assert rt.resume in rt.options_row.children and rt.no_cache in rt.options_row.children

    before = calls(endpoint)
    run(wb)
    first = wb.results
    assert calls(endpoint) - before == N
    assert len(rt.progress_output.outputs) == 1
    first_bar = rt.progress.widget.model_id

    # Resume ticked: the identical finished sweep is returned as is; the messages name the widget's control
    before = calls(endpoint)
    run(wb)
    assert wb.results.sweep_id == first.sweep_id and wb.results.stats["reused_cells"] == N
    assert calls(endpoint) == before
    for widget in (rt.status, wb.status.widget):
        assert "untick Resume" in text(widget) and "--no-resume" not in text(widget), text(widget)
    # replaced, not stacked: one display in the Output, and it is this run's bar
    outputs = rt.progress_output.outputs
    assert len(outputs) == 1
    assert outputs[0]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] == rt.progress.widget.model_id
    assert rt.progress.widget.model_id != first_bar

    # Resume unticked: a new sweep, every answer from the cache (no model calls)
    rt.resume.value = False
    before = calls(endpoint)
    run(wb)
    assert wb.results.sweep_id != first.sweep_id and calls(endpoint) == before
    assert wb.results.stats["generation_cache_hits"] == N

    # No cache ticked: the models are called again
    rt.resume.value = True
    rt.no_cache.value = True
    before = calls(endpoint)
    run(wb)
    assert calls(endpoint) - before == N and wb.results.stats["model_calls"] == N
    assert len(rt.progress_output.outputs) == 1


# ---------------------------------------------------------------- models and endpoints


def test_model_parameters_edit_round_trips_into_the_spec(tmp_path, endpoint):
    wb = Workbench(spec_for(tmp_path, endpoint.base_url))
    row = wb.variants_tab.models.rows[0]
    assert wb.spec().space.model[0] == row.base  # unchanged widgets give the spec's model back
    row.temperature.value = 0.7
    row.max_tokens.value = 64
    row.top_p.value = "0.9"
    row.seed.value = "7"
    model = wb.spec().space.model[0]
    assert (model.temperature, model.max_tokens, model.top_p, model.seed) == (0.7, 64, 0.9, 7)
    assert model.base_url == endpoint.base_url and model.model == "latency-endpoint"
    row.top_p.value = ""
    assert wb.spec().space.model[0].top_p is None


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [("temperature", 3.0, "temperature: Input should be less than or equal to 2"),
     ("max_tokens", 0, "max_tokens: Input should be greater than or equal to 1"),
     ("top_p", "lots", "top_p: Input should be a valid number")],
)
def test_a_bad_model_parameter_is_one_message_naming_the_field(field, value, named):
    wb = Workbench(str(ROOT / "experiments" / "quickstart.yaml"))
    getattr(wb.variants_tab.models.rows[0], field).value = value
    shown = text(wb.variants_tab.errors)
    assert named in shown and "model 'local: SmolLM2-135M-Instruct'" in shown, shown
    assert "Traceback" not in shown and wb.run_tab.run_button.disabled
    assert text(wb.variants_tab.count).startswith("variants: –")


def test_add_an_endpoint_model_validated_by_the_config(tmp_path, endpoint):
    wb = Workbench(spec_for(tmp_path, endpoint.base_url))
    models = wb.variants_tab.models
    texts = [w.description for w in walk(models.widget) if isinstance(w, (W.Text, W.Password))]
    assert "api_key_env" in texts and not [d for d in texts if "key" in d and d != "api_key_env"]  # no key field
    models.new_model.value = "llama3.2"
    models.new_base_url.value = "localhost:11434/v1"  # no scheme
    models.add_button.click()
    shown = text(models.add_message)
    assert "base_url: must be an http(s) URL with a host" in shown and "new endpoint" in shown
    assert len(models.rows) == 2  # nothing added (the spec's model and the local default)

    models.new_base_url.value = "http://localhost:11434/v1"
    models.new_api_key_env.value = "sk-live-abc123"  # a key pasted where the variable's name goes
    models.add_button.click()
    shown = text(models.add_message)
    assert "api_key_env" in shown and "NAME of an environment variable" in shown
    assert "sk-live-abc123" not in shown and len(models.rows) == 2

    models.new_api_key_env.value = "OLLAMA_KEY"
    models.add_button.click()
    assert len(models.rows) == 3 and models.rows[-1].box.value
    added = wb.spec().space.model[-1]
    assert (added.provider, added.model, added.base_url, added.api_key_env) == (
        "openai", "llama3.2", "http://localhost:11434/v1", "OLLAMA_KEY")
    assert text(wb.variants_tab.count).startswith(f"2 variants × {N} questions")
    models.rows[-1].temperature.value = 0.5  # a row added later also reaches the spec and the count
    assert wb.spec().space.model[-1].temperature == 0.5
    models.new_model.value, models.new_base_url.value, models.new_api_key_env.value = (
        "llama3.2", "http://localhost:11434/v1", "OLLAMA_KEY")
    models.add_button.click()
    assert len(models.rows) == 3 and "already in the list" in text(models.add_message)


# ---------------------------------------------------------------- prompts


def test_add_prompt_warns_about_an_identical_template():
    wb = Workbench(str(ROOT / "experiments" / "quickstart.yaml"))
    vt = wb.variants_tab
    assert text(vt.prompt_warning) == ""
    editor = vt.add_prompt()  # the default template, which the quickstart's "concise" prompt already is
    shown = text(vt.prompt_warning)
    assert f"prompts 'concise', '{editor.name.value}' have identical templates" in shown
    assert "wb-warn" in vt.prompt_warning.value
    editor.template.value = "Context: {context}\nQ: {question}\nA:"
    assert text(vt.prompt_warning) == ""
    editor.template.value = vt.prompts[0].template.value
    assert "identical templates" in text(vt.prompt_warning)
    vt.remove_prompt(editor)
    assert text(vt.prompt_warning) == ""


# ---------------------------------------------------------------- new vs cached calls


def count_line(wb: Workbench) -> tuple[int, int]:
    m = re.search(r"(\d+) new, (\d+) cached", text(wb.variants_tab.count))
    assert m, text(wb.variants_tab.count)
    return int(m.group(1)), int(m.group(2))


def test_new_vs_cached_count_equals_the_calls_a_run_makes(tmp_path, endpoint):
    wb = Workbench(spec_for(tmp_path, endpoint.base_url), tracker=MemoryTracker())
    assert count_line(wb) == (N, 0)  # nothing ran yet
    assert "estimate" in text(wb.variants_tab.count)
    before = calls(endpoint)
    run(wb)
    assert calls(endpoint) - before == N
    assert count_line(wb) == (0, N)  # refreshed when the sweep ended

    add_second_prompt(wb)
    assert count_line(wb) == (N, N)
    row = wb.variants_tab.models.rows[0]
    row.temperature.value = 0.5  # another sampling parameter: another cache key for every call
    assert count_line(wb) == (2 * N, 0) and wb.call_count().total == 2 * N
    row.temperature.value = 0.0
    new, cached = count_line(wb)
    assert (new, cached) == (N, N)
    wb.run_tab.no_cache.value = True
    assert count_line(wb) == (2 * N, 0)
    wb.run_tab.no_cache.value = False

    before = calls(endpoint)
    run(wb)
    assert calls(endpoint) - before == new  # the count is what the endpoint saw
    assert wb.results.stats["generation_cache_hits"] == cached
    assert count_line(wb) == (0, 2 * N)


# ---------------------------------------------------------------- export


def test_export_default_path_is_the_notebooks():
    wb = Workbench(str(ROOT / "experiments" / "quickstart.yaml"))
    assert wb.export_tab.path.value == "experiments/exports/quickstart_winner.yaml"
    notebook = json.loads((ROOT / "notebooks" / "01_quickstart.ipynb").read_text(encoding="utf-8"))
    assert any(wb.export_tab.path.value in "".join(c["source"]) for c in notebook["cells"])


def test_export_links_to_the_run_in_the_mlflow_ui(tmp_path, endpoint):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    wb = Workbench(spec_for(tmp_path, endpoint.base_url, tracking_uri=uri))  # the real MLflow store
    run(wb)
    ex = wb.export_tab
    ex.mode.value = "variant"
    ex.path.value = str(tmp_path / "winner.yaml")
    ex.export_button.click()
    assert ex.exported_path is not None, text(ex.message)
    variant = wb.results.variants[0]
    run_id = wb.results.run_ids[variant.hash]
    experiment_id = mlflow.MlflowClient(uri).get_run(run_id).info.experiment_id
    url = f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}"
    assert f'<a href="{url}"' in ex.link.value
    assert f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000" in text(ex.link)
    assert f"open it with: mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000" in text(wb.run_tab.status)

    # a sweep this store does not hold: the message names the widget's control, not the CLI's flag
    wb.results_tab.sweep_id.value = "no-such-sweep"
    wb.results_tab.load_button.click()
    shown = text(wb.results_tab.message)
    assert "no-such-sweep" in shown and "the Run tab's tracking URI" in shown and "--tracking-uri" not in shown


def test_the_tracking_uri_field_is_what_runs_log_to(tmp_path, endpoint):
    wb = Workbench(spec_for(tmp_path, endpoint.base_url))
    assert wb.run_tab.tracking_uri.value == wb.spec().tracking.tracking_uri == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    wb.run_tab.tracking_uri.value = "  "
    assert "tracking URI (Run tab): empty" in text(wb.run_tab.problem) and wb.run_tab.run_button.disabled
    wb.run_tab.tracking_uri.value = "sqlite:////proc/no-such-dir/mlflow.db"  # a folder nobody can create
    assert wb.spec().tracking.tracking_uri == "sqlite:////proc/no-such-dir/mlflow.db"
    wb.run(block=True)
    shown = text(wb.run_tab.status)
    assert "wb-error" in wb.run_tab.status.value and "sqlite:////proc/no-such-dir/mlflow.db" in shown
    assert "--tracking-uri" not in shown and "Traceback" not in shown, shown


def test_cli_flags_in_messages_become_the_widget_controls():
    assert widget_wording("pass --tracking-uri; --no-resume starts anew; --no-cache calls; pip --no-cache-dir") == (
        "pass the Run tab's tracking URI; Resume unticked (Run tab) starts anew; No cache ticked (Run tab) calls; "
        "pip --no-cache-dir")


def test_a_tracking_server_link_is_the_servers_own_address():
    shown = link_html(RunLink("abc123", "http://mlflow.internal:8080/#/experiments/4/runs/abc123"))
    assert '<a href="http://mlflow.internal:8080/#/experiments/4/runs/abc123"' in shown
    assert "mlflow ui" not in shown
