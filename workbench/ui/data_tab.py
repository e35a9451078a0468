"""Data tab: corpus and eval sources (the spec's `data` section) and a Load button that shows counts,
digests and a preview through `workbench.data.corpus.load_corpus` / `evalset.load_eval`."""

from __future__ import annotations

import logging
from typing import Any

import ipywidgets as W
import pandas as pd

from workbench.spec import CorpusSource, DataConfig, EvalSource, parse_model
from workbench.errors import WorkbenchError
from workbench.ui.common import field_help, literal_options, message, shorten, table_html

log = logging.getLogger(__name__)
PREVIEW_ROWS = 5


class DataTab:
    """Widgets for `DataConfig`; `data()` is the config they describe, `load()` reads the files."""

    def __init__(self, data: DataConfig) -> None:
        wide = W.Layout(width="70%")
        self.corpus_format = W.Dropdown(
            options=literal_options(CorpusSource, "format"), value=data.corpus.format, description="format",
            tooltip=field_help(CorpusSource, "format"),
        )
        self.corpus_path = W.Text(
            value=data.corpus.path, description="path", layout=wide, tooltip=field_help(CorpusSource, "path")
        )
        self.eval_format = W.Dropdown(
            options=literal_options(EvalSource, "format"), value=data.eval.format, description="format",
            tooltip=field_help(EvalSource, "format"),
        )
        self.eval_path = W.Text(value=data.eval.path, description="path", layout=wide)
        self.eval_limit = W.BoundedIntText(
            value=data.eval.limit or 0, min=0, max=10**9, description="limit",
            tooltip=field_help(EvalSource, "limit") + "; 0 = all questions",
        )
        self.eval_split = W.Text(value=data.eval.split, description="split", tooltip=field_help(EvalSource, "split"))
        self.load_button = W.Button(description="Load", icon="folder-open", tooltip="Load corpus and eval set, show counts and digests")
        self.message = W.HTML()
        self.summary = W.HTML()
        self.preview = W.HTML()
        self.load_button.on_click(lambda _: self.load())

        self.corpus = None
        self.evalset = None
        self.loaded_eval_source: EvalSource | None = None
        self._listeners: list = []

        self.widget = W.VBox(
            [
                W.HTML("<b>Corpus</b>"),
                self.corpus_format,
                self.corpus_path,
                W.HTML("<b>Evaluation set</b>"),
                self.eval_format,
                self.eval_path,
                W.HBox([self.eval_limit, self.eval_split]),
                self.load_button,
                self.message,
                self.summary,
                self.preview,
            ]
        )

    @property
    def inputs(self) -> list[W.Widget]:
        """The widgets whose value is part of the spec (the app observes them)."""
        return [self.corpus_format, self.corpus_path, self.eval_format, self.eval_path, self.eval_limit, self.eval_split]

    # ------------------------------------------------------------ widgets -> config

    def data(self) -> DataConfig:
        return parse_model(
            DataConfig,
            {
                "corpus": {"format": self.corpus_format.value, "path": self.corpus_path.value.strip()},
                "eval": {
                    "format": self.eval_format.value,
                    "path": self.eval_path.value.strip(),
                    "limit": self.eval_limit.value or None,
                    "split": self.eval_split.value.strip() or "test",
                },
            },
            "data",
        )

    def question_count(self) -> int | None:
        """Questions the sweep will use: the loaded set's size if it matches the widgets, else the limit."""
        try:
            source = self.data().eval
        except WorkbenchError:
            return None
        if self.evalset is not None and source == self.loaded_eval_source:
            return len(self.evalset)
        return source.limit

    # ------------------------------------------------------------ load

    def load(self) -> bool:
        """Load both files; show counts, digests and a preview, or a red message. Never raises."""
        from workbench.data.corpus import load_corpus
        from workbench.data.evalset import load_eval

        self.message.value = message("loading…", "info")
        try:
            data = self.data()
            corpus = load_corpus(data.corpus)
            evalset = load_eval(data.eval, corpus)
        except WorkbenchError as exc:
            self.message.value = message(str(exc), "error")
            return False
        except Exception as exc:  # a loader bug must not leave a traceback in the tab
            log.exception("loading data failed")
            self.message.value = message(f"unexpected error while loading: {type(exc).__name__}: {exc}", "error")
            return False
        self.corpus, self.evalset, self.loaded_eval_source = corpus, evalset, data.eval
        self.message.value = message("loaded", "ok")
        self.summary.value = (
            f"<b>{len(corpus)} documents</b> · corpus digest <code>{corpus.digest[:12]}</code><br>"
            f"<b>{len(evalset)} questions</b> · eval digest <code>{evalset.digest[:12]}</code>"
            + ("" if evalset.has_relevance else " · no relevant ids: retrieval metrics will be skipped")
            + ("" if evalset.has_references else " · no reference answers: answer metrics will be skipped")
        )
        self.preview.value = self._preview_html(corpus, evalset)
        for listener in self._listeners:
            listener()
        return True

    def on_loaded(self, callback) -> None:
        self._listeners.append(callback)

    @staticmethod
    def _preview_html(corpus: Any, evalset: Any) -> str:
        docs = pd.DataFrame(
            [{"id": d.id, "title": d.title or "", "text": shorten(d.text, 120)} for d in corpus.documents[:PREVIEW_ROWS]]
        )
        questions = pd.DataFrame(
            [
                {
                    "id": i.id,
                    "question": shorten(i.question, 100),
                    "reference answers": " | ".join(i.reference_answers[:3]),
                    "relevant ids": ", ".join(i.relevant_ids[:3]),
                }
                for i in evalset.items[:PREVIEW_ROWS]
            ]
        )
        return f"<b>Documents</b>{table_html(docs)}<b>Questions</b>{table_html(questions)}"
