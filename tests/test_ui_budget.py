"""The Run tab's budget fields: they set the spec's `budget` (the BudgetConfig the CLI's --max-* flags set), a run
stops at them, and the spec's calls (and the estimate's USD and wall, when it is on) are shown beside them."""

from __future__ import annotations

import html
import re
import time

from memory_tracker import MemoryTracker
from test_ui_controls import N, calls, endpoint, spec_for  # noqa: F401  (endpoint: the module's fixture)
from workbench.runner.budget import with_budget
from workbench.spec import load_spec
from workbench.ui import Workbench


def shown(widget, wanted: str = "", wait: float = 0.0) -> str:
    deadline = time.time() + wait
    while True:
        out = html.unescape(re.sub(r"<[^>]+>", "", widget.value))
        if wanted in out or time.time() >= deadline:
            return out
        time.sleep(0.05)


def test_budget_fields_set_the_spec_stop_the_run_and_show_the_estimate_beside_them(tmp_path, endpoint):  # noqa: F811
    spec = spec_for(tmp_path, endpoint.base_url)
    spec["space"]["model"][0].update(price_input_per_mtok=1.0, price_output_per_mtok=4.0)
    wb = Workbench(spec, tracker=MemoryTracker())
    budget = wb.run_tab.budget
    assert budget.widget in wb.run_tab.widget.children and wb.spec().budget.capped is False  # 0: no cap
    assert f"{N} new model calls" in shown(budget.line)

    budget.max_calls.value, budget.max_wall_s.value = 2, 600
    # the same config the CLI's flags give: `with_budget` over the spec without caps
    assert wb.spec().budget == with_budget(load_spec(spec), max_calls=2, max_wall_s=600).budget
    assert "expected to stop at the budget (max calls 2)" in shown(budget.line)

    wb.estimate_view.enabled.value = True  # the estimate's USD and wall appear beside the caps too
    line = shown(budget.line, " · USD", wait=60)
    assert re.search(r"USD \d+\.\d{4}", line) and "max calls 2" in line

    before = calls(endpoint)
    wb.run(block=True)
    assert wb.error is None and calls(endpoint) - before == 2  # stopped at the cap
    assert wb.results.stats["stopped_by"] == "budget"
    assert "stopped by budget: max_calls 2" in shown(wb.run_tab.status)

    wb.estimate_view.close()
