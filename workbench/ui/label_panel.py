"""The labelling panel under the Results drill-down: correct / partly / wrong, a corrected answer, a note.

It labels the (variant, question) the drill-down shows, through `SweepResults.label` (an MLflow
assessment on that question's trace). Previous / next walk the review queue (`review_queue`: where the
variants disagree most or the judge is least sure, unlabelled first) or the questions in order.
No logic of its own: everything is the API a script would call.

Keyboard shortcuts (`KEYS`) come through `ipyevents` (ipywidgets has no key events): while the mouse is
over the label buttons' row, 1 / 2 / 3 label the shown answer correct / partly / wrong and save it,
n / → and p / ← step to the next / previous one, s saves. ipyevents swallows the keys it watches while
the pointer is over its source, so the source is that row only, never the corrected-answer and note
fields (typing there stays typing).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import ipywidgets as W
from ipyevents import Event

from workbench.errors import WorkbenchError
from workbench.ui.common import message

if TYPE_CHECKING:
    from workbench.ui.results_tab import ResultsTab

KEYS = {"1": ("label", "correct"), "2": ("label", "partly"), "3": ("label", "wrong"), "s": ("save", None),
        "n": ("step", 1), "ArrowRight": ("step", 1), "p": ("step", -1), "ArrowLeft": ("step", -1)}
HINT = "keys (pointer over this row): 1 correct · 2 partly · 3 wrong (each saves) · s save · n/→ next · p/← previous"
ORDERS = [("review queue (disagreement, judge uncertainty)", "queue"), ("question order", "questions")]


class LabelPanel:
    def __init__(self, tab: ResultsTab) -> None:
        self.tab = tab
        self.verdict = W.ToggleButtons(options=[("correct", "correct"), ("partly", "partly"), ("wrong", "wrong")],
                                       value=None, description="label")
        self.corrected = W.Text(description="corrected", placeholder="optional: the right answer",
                                layout=W.Layout(width="60%"))
        self.note = W.Text(description="note", placeholder="optional", layout=W.Layout(width="60%"))
        self.save = W.Button(description="Save label", icon="check", button_style="primary")
        self.previous = W.Button(description="previous", icon="arrow-left")
        self.next = W.Button(description="next", icon="arrow-right")
        self.order = W.Dropdown(options=ORDERS, value="queue", description="walk")
        self.status = W.HTML()
        self.save.on_click(lambda _: self.save_label())
        self.previous.on_click(lambda _: self.step(-1))
        self.next.on_click(lambda _: self.step(1))
        self.keys_row = W.VBox([W.HBox([self.verdict, self.save, self.previous, self.next]),
                                W.HTML(f'<span style="color:#777;font-size:90%">{html.escape(HINT)}</span>')])
        self.keys_row.add_class("wb-label-keys")
        self.keys = Event(source=self.keys_row, watched_events=["keydown"], ignore_modifier_key_events=True)
        self.keys.on_dom_event(self.on_key)
        self.widget = W.VBox([self.keys_row, self.corrected, self.note, self.order, self.status])
        self.widget.add_class("wb-label-panel")

    # ------------------------------------------------------------ what is shown

    def _current(self) -> tuple[str, str] | None:
        row = self.tab.selected_row()
        return None if row is None else (row["variant_hash"], str(row["question_id"]))

    def refresh(self) -> None:
        """Show the current (variant, question)'s label, if it has one."""
        key, results = self._current(), self.tab.results
        found = None if key is None or results is None else next(
            (x for x in results.labels if (x["variant_hash"], str(x["question_id"])) == key), None)
        self.verdict.value = found["verdict"] if found else None
        self.corrected.value = (found or {}).get("corrected") or ""
        self.note.value = (found or {}).get("note") or ""
        self.status.value = "" if found is None else (
            f'<span style="color:#555">labelled <b>{html.escape(str(found["verdict"]))}</b> by '
            f'{html.escape(str(found.get("labeller")))}</span>')

    # ------------------------------------------------------------ actions

    def on_key(self, event: dict[str, Any]) -> None:
        """One ipyevents keydown message (`{"event": "keydown", "key": "1", "ctrlKey": False, ...}`)."""
        if event.get("event") != "keydown" or any(event.get(m) for m in ("ctrlKey", "altKey", "metaKey")):
            return  # a browser or JupyterLab shortcut, not ours
        action, arg = KEYS.get(str(event.get("key")), (None, None))
        if action == "label":
            self.verdict.value = arg
            self.save_label()
        elif action == "save":
            self.save_label()
        elif action == "step":
            self.step(arg)

    def save_label(self) -> dict[str, Any] | None:
        key, results = self._current(), self.tab.results
        if key is None or results is None:
            self.status.value = message("open a variant and a question first", "warn")
            return None
        if self.verdict.value is None:
            self.status.value = message("choose correct, partly or wrong first", "warn")
            return None
        try:
            entry = results.label(key[0], key[1], self.verdict.value, corrected=self.corrected.value.strip() or None,
                                  note=self.note.value.strip() or None)
        except WorkbenchError as exc:
            self.status.value = message(str(exc), "error")
            return None
        self.refresh()
        self.status.value = message(f"saved: {entry['verdict']} (MLflow trace {entry['trace_id']})", "ok")
        return entry

    def _walk(self) -> list[tuple[str, str]]:
        results = self.tab.results
        if self.order.value == "queue":
            queue = results.review_queue()
            short = {v.short_hash: v.hash for v in results.variants}
            pairs = [(short[v], str(q)) for v, q in zip(queue["variant"], queue["question_id"])]
            current = self._current()
            return pairs if current in pairs or current is None else [current, *pairs]
        return [(r["variant_hash"], str(r["question_id"])) for r in results.rows]

    def step(self, delta: int) -> None:
        """Open the previous / next (variant, question) of the chosen walk in the drill-down."""
        if self.tab.results is None:
            return
        pairs = self._walk()
        if not pairs:
            self.status.value = message("nothing left to label in this walk", "ok")
            return
        current = self._current()
        i = pairs.index(current) + delta if current in pairs else 0
        variant, question = pairs[max(0, min(i, len(pairs) - 1))]
        self.tab.open(variant, question)
