"""The Variants tab's cost line: prompt and completion tokens, USD and wall time of the widgets' spec, as
`workbench.estimate` gives them (a thin face: no arithmetic here).

The estimate renders real prompts, so it needs the indexes: the first estimate of a new chunking builds its
index (which the run then reuses). It is opt-in (a checkbox) and runs on one background thread, newest spec
first; a spec that changed while it ran is estimated again, an outdated answer is never shown.
"""

from __future__ import annotations

import html
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import ipywidgets as W

from workbench.errors import WorkbenchError
from workbench.spec import SweepSpec


def _figure(r: dict[str, Any], unit: str = "", digits: int = 0) -> str:
    if r["expected"] is None:
        return "unknown"
    f = (lambda v: "?" if v is None else f"{v:,.{digits}f}{unit}")
    return f"{f(r['expected'])} <small>({f(r['low'])} – {f(r['high'])})</small>"


class EstimateView:
    def __init__(self) -> None:
        self.enabled = W.Checkbox(value=False, indent=False, description="estimate tokens, USD and wall time",
                                  tooltip="Renders a sample of real prompts per variant (builds missing indexes)")
        self.line = W.HTML()
        self.widget = W.VBox([self.enabled, self.line])
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="workbench-estimate")
        self._lock = threading.Lock()
        self._wanted: Any = None  # the key of the newest spec asked for
        self._memo: dict[Any, Any] = {}  # key -> estimate dict or the error
        self._spec: SweepSpec | None = None
        self.listeners: list[Callable[[Any], None]] = []  # each shown result (a dict, an error, None), e.g. the budget's
        self.enabled.observe(lambda _: self.update(self._spec), "value")

    def update(self, spec: SweepSpec | None) -> Future | None:
        """Show the estimate of `spec` (None: it does not validate); answers the background job, if one started."""
        from workbench.runner.estimate import records_signature

        self._spec = spec
        if spec is None or not self.enabled.value or spec.stage != "generate":
            self.line.value = ""
            self._tell(None)
            return None
        key = (spec.hash, records_signature(Path(spec.home)))
        with self._lock:
            self._wanted = key
            if key in self._memo:
                self._show(self._memo[key])
                return None
        self.line.value = "<i>estimating tokens, USD and wall time…</i>"
        self._tell(None)  # the last one is outdated
        return self._pool.submit(self._work, spec, key)

    def _work(self, spec: SweepSpec, key: Any) -> None:
        from workbench.runner.estimate import estimate

        with self._lock:
            if key != self._wanted:
                return  # a newer spec was asked for meanwhile
        try:
            result: Any = estimate(spec).to_dict()
        except WorkbenchError as exc:
            result = exc
        with self._lock:
            self._memo[key] = result
            if key == self._wanted:
                self._show(result)

    def _tell(self, result: Any) -> None:
        for listener in self.listeners:
            listener(result)

    def _show(self, result: Any) -> None:
        self._tell(result)
        if isinstance(result, Exception):
            self.line.value = f"<span style='color:#b00'>estimate: {html.escape(str(result))}</span>"
            return
        notes = "".join(f"<br><small>{html.escape(n)}</small>" for n in result["notes"])
        self.line.value = (f"<b>prompt tokens {_figure(result['prompt_tokens'])} · completion tokens "
                           f"{_figure(result['completion_tokens'])} · USD {_figure(result['usd'], digits=4)} · wall "
                           f"{_figure(result['wall_s'], ' s', 1)}</b>{notes}")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
