"""The Run tab's budget: max USD, max calls and max wall seconds (0 = no cap), the spec's `budget:` section,
which `workbench run --max-usd/--max-calls/--max-wall-s` also set (the same `BudgetConfig`, the same guard),
and beside them what the spec would cost: its new model and judge calls (`count_calls`), and the estimate's
USD and wall when the Variants tab's estimate is on. A thin face: no arithmetic beyond "is it over the cap".
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from workbench.spec_budget import BudgetConfig

_WIDTH = {"description_width": "initial"}


def _cap(value: float) -> float | None:
    return float(value) if value and value > 0 else None


class BudgetView:
    def __init__(self, base: BudgetConfig | None = None) -> None:
        base = base or BudgetConfig()
        self.max_usd = W.BoundedFloatText(value=base.max_usd or 0.0, min=0, max=1e9, step=0.5, description="max USD",
                                          tooltip="USD the sweep may spend on model and judge calls, its resumed "
                                          "runs included (0: no cap)", style=_WIDTH, layout=W.Layout(width="180px"))
        self.max_calls = W.BoundedIntText(value=base.max_calls or 0, min=0, max=10**9, description="max calls",
                                          tooltip="Model and judge calls the sweep may make, resumed runs included "
                                          "(0: no cap)", style=_WIDTH, layout=W.Layout(width="180px"))
        self.max_wall_s = W.BoundedFloatText(value=base.max_wall_s or 0.0, min=0, max=1e9, step=60,
                                             description="max wall s", tooltip="Seconds this run may take (0: no cap)",
                                             style=_WIDTH, layout=W.Layout(width="190px"))
        self.line = W.HTML()  # what the spec would cost, beside the caps
        self.widget = W.HBox([W.HTML("<b>budget</b>"), self.max_usd, self.max_calls, self.max_wall_s, self.line])
        self._calls: Any = None  # the spec's CallCount (new and cached generation calls)
        self._estimate: dict[str, Any] | None = None  # workbench.estimate(spec).to_dict(), when it ran

    @property
    def inputs(self) -> list[W.Widget]:
        return [self.max_usd, self.max_calls, self.max_wall_s]

    def section(self) -> dict[str, Any]:
        """The spec's `budget:` section these fields describe (the spec validates it)."""
        calls = int(self.max_calls.value)
        return {"max_usd": _cap(self.max_usd.value), "max_calls": calls if calls > 0 else None,
                "max_wall_s": _cap(self.max_wall_s.value)}

    # ------------------------------------------------------------ the estimate beside the caps

    def show_calls(self, calls: Any) -> None:
        """The spec's generation calls (a CallCount, or None when its data cannot be loaded)."""
        self._calls = calls
        self._draw()

    def show_estimate(self, estimate: dict[str, Any] | Exception | None) -> None:
        """The Variants tab's estimate (its dict), or None / an error when there is none for this spec."""
        self._estimate = estimate if isinstance(estimate, dict) else None
        self._draw()

    def _draw(self) -> None:
        parts, over = [], []
        est, cap = self._estimate, self.section()
        calls = est["model_calls"] if est else (self._calls.new if self._calls is not None else None)
        judge = est["judge_calls"] if est else 0
        if calls is not None:
            parts.append(f"{calls:,} new model calls" + (f" + {judge:,} judge calls" if judge else ""))
            if cap["max_calls"] is not None and calls + judge > cap["max_calls"]:
                over.append(f"max calls {cap['max_calls']:,}")
        for key, name, unit, digits, field in (("usd", "USD", "", 4, "max_usd"), ("wall_s", "wall", " s", 1, "max_wall_s")):
            r = (est or {}).get(key) or {}
            if r.get("expected") is None:
                continue
            parts.append(f"{name} {r['expected']:,.{digits}f}{unit} (up to {r['high']:,.{digits}f}{unit})"
                         if r.get("high") is not None else f"{name} {r['expected']:,.{digits}f}{unit}")
            if cap[field] is not None and r["expected"] > cap[field]:
                over.append(f"{name} {cap[field]:g}{unit}")
        if not parts:
            self.line.value = ""
            return
        text = "estimate: " + " · ".join(parts) + ("" if est else " (tick the Variants tab's estimate for USD and wall)")
        warn = (f"<br><span style='color:#b60'>expected to stop at the budget ({html.escape(', '.join(over))}): the "
                "answered cells are kept, run again with a larger budget to go on</span>") if over else ""
        self.line.value = f"<small>{html.escape(text)}</small>{warn}"
