"""Variants tab: the search space (`SpaceConfig`) as widgets.

Prompts are edited one by one (name + template, slots checked as you type with
`config.check_template`); chunking is, per strategy, sizes × overlaps (comma-separated integers);
retrieval is kinds × k; embeddings are checkboxes over the spec's entries plus the endpoints the user
configured; models are checkboxes with editable parameters and an "add endpoint" form (`models_editor`).
Identical prompt templates are warned about (they only duplicate variants). `space()` turns the widgets
into the config lists (in the same order as the spec, so a spec round-trips unchanged) or raises
ConfigError naming the field.
"""

from __future__ import annotations

import html
from typing import Callable, Sequence

import ipywidgets as W

from workbench.spec import (
    ChunkingConfig,
    EmbeddingConfig,
    ModelConfig,
    PromptConfig,
    RetrievalConfig,
    SpaceConfig,
    check_template,
    parse_model,
)
from workbench.spec_repeats import MAX_REPEATS, RepeatsConfig
from workbench.errors import ConfigError
from workbench.ui.common import field_help, literal_options, message, parse_ints
from workbench.ui.models_editor import ModelList

STRATEGIES = literal_options(ChunkingConfig, "strategy")  # recursive, token, none
KINDS = literal_options(RetrievalConfig, "kind")  # dense, bm25, hybrid


def _unique(items):
    return list({item: None for item in items})  # frozen configs are hashable; keeps first-seen order


def endpoint_label(cfg: EmbeddingConfig) -> str:
    return f"{cfg.provider}: {cfg.model}" + (f" @ {cfg.base_url}" if cfg.base_url else "")


class PromptEditor:
    """One prompt: name + template, with a live slot check."""

    def __init__(self, prompt: PromptConfig, on_remove: Callable[[PromptEditor], None]) -> None:
        self.context_separator = prompt.context_separator
        self.name = W.Text(value=prompt.name, description="name")
        self.template = W.Textarea(
            value=prompt.template, layout=W.Layout(width="95%", height="150px"),
            tooltip=field_help(PromptConfig, "template"),
        )
        self.status = W.HTML()
        self.remove_button = W.Button(description="Remove", icon="trash", layout=W.Layout(width="110px"))
        self.remove_button.on_click(lambda _: on_remove(self))
        self.template.observe(self._check, "value")
        self._check()
        self.widget = W.VBox([W.HBox([self.name, self.remove_button]), self.template, self.status])

    def _check(self, *_) -> None:
        try:
            check_template(self.template.value)
        except ValueError as exc:
            self.status.value = message(str(exc), "error")
        else:
            self.status.value = message("✓ slots {context} {question}", "ok")

    def config(self) -> PromptConfig:
        name = self.name.value.strip()
        return parse_model(
            PromptConfig,
            {"name": name, "template": self.template.value, "context_separator": self.context_separator},
            f"prompt {name!r}",
        )


class ChunkingRow:
    """One strategy: a checkbox, and (except for `none`) sizes × overlaps."""

    def __init__(self, strategy: str, configs: Sequence[ChunkingConfig]) -> None:
        self.strategy = strategy
        self.configs = list(configs)  # the spec's entries of this strategy (kept for `none`)
        self.enabled = W.Checkbox(value=bool(configs), description=strategy, indent=False, layout=W.Layout(width="110px"))
        sizes = _unique(c.size for c in configs) or [ChunkingConfig().size]
        overlaps = _unique(c.overlap for c in configs) or [ChunkingConfig().overlap]
        self.sizes = W.Text(
            value=", ".join(map(str, sizes)), description="sizes", tooltip=field_help(ChunkingConfig, "size"),
        )
        self.overlaps = W.Text(
            value=", ".join(map(str, overlaps)), description="overlaps",
            tooltip=field_help(ChunkingConfig, "overlap"),
        )
        # A spec list that is not a full sizes × overlaps grid for this strategy widens to the grid.
        self.widened = bool(configs) and len(_unique(configs)) != len(sizes) * len(overlaps)
        parts: list[W.Widget] = [self.enabled]
        if strategy != "none":
            parts += [self.sizes, self.overlaps]
        self.widget = W.HBox(parts)

    @property
    def inputs(self) -> list[W.Widget]:
        return [self.enabled, self.sizes, self.overlaps]

    def configs_from_widgets(self) -> list[ChunkingConfig]:
        if not self.enabled.value:
            return []
        if self.strategy == "none":
            return self.configs[:1] or [ChunkingConfig(strategy="none")]
        sizes = parse_ints(self.sizes.value, f"chunking {self.strategy} sizes")
        overlaps = parse_ints(self.overlaps.value, f"chunking {self.strategy} overlaps")
        out = []
        for size in sizes:
            for overlap in overlaps:
                where = f"chunking {self.strategy} sizes/overlaps (size {size}, overlap {overlap})"
                if overlap >= size:  # the config says so too; here the message names the two fields
                    raise ConfigError(
                        f"chunking {self.strategy} overlaps: overlap {overlap} must be smaller than size {size} "
                        f"(every overlap is paired with every size)"
                    )
                out.append(parse_model(ChunkingConfig, {"strategy": self.strategy, "size": size, "overlap": overlap}, where))
        return out


class ChoiceList:
    """Checkboxes over configs (embeddings or models); `chosen()` keeps the options' order."""

    def __init__(self, options: Sequence, ticked: Sequence) -> None:
        self.options = _unique(options)
        self.boxes = [
            W.Checkbox(value=o in ticked, description=endpoint_label(o), indent=False, layout=W.Layout(width="auto"))
            for o in self.options
        ]
        self.widget = W.VBox(self.boxes)

    def chosen(self) -> list:
        return [o for o, box in zip(self.options, self.boxes) if box.value]


class VariantsTab:
    def __init__(
        self,
        space: SpaceConfig,
        *,
        stage: str = "generate",
        endpoints: Sequence[ModelConfig | EmbeddingConfig] = (),
        repeats: RepeatsConfig = RepeatsConfig(),
    ) -> None:
        self.stage = stage
        self._listeners: list[Callable[[], None]] = []

        # prompts
        self.prompt_warning = W.HTML()  # identical templates
        self.prompts: list[PromptEditor] = []
        self.prompt_box = W.VBox()
        self.add_prompt_button = W.Button(description="Add prompt", icon="plus")
        self.add_prompt_button.on_click(lambda _: self.add_prompt())
        for prompt in space.prompt:
            self.add_prompt(prompt, notify=False)

        # chunking
        # strategies (and retrieval kinds) in the spec's order first, so the spec round-trips unchanged
        strategies = _unique([*(c.strategy for c in space.chunking), *STRATEGIES])
        self.chunking = {s: ChunkingRow(s, [c for c in space.chunking if c.strategy == s]) for s in strategies}
        widened = [s for s, row in self.chunking.items() if row.widened]
        self.chunking_note = W.HTML(
            message(f"the spec's {', '.join(widened)} chunking list is not a sizes × overlaps grid: shown as the grid", "warn")
            if widened
            else ""
        )

        # embeddings: the spec's, the local default, and configured embedding endpoints
        embed_endpoints = [e for e in endpoints if isinstance(e, EmbeddingConfig)]
        self.embedding = ChoiceList([*space.embedding, EmbeddingConfig(), *embed_endpoints], space.embedding)

        # retrieval: kinds × k; other fields (rrf_k, candidates) kept from the spec's entry of that kind
        self._retrieval_base = {k: next((r for r in space.retrieval if r.kind == k), RetrievalConfig(kind=k)) for k in KINDS}
        kinds_in_spec = {r.kind for r in space.retrieval}
        self.retrieval_kinds = {
            k: W.Checkbox(value=k in kinds_in_spec, description=k, indent=False, layout=W.Layout(width="90px"))
            for k in _unique([*(r.kind for r in space.retrieval), *KINDS])
        }
        self.retrieval_k = W.Text(
            value=", ".join(str(k) for k in _unique(r.k for r in space.retrieval)),
            description="k", tooltip=field_help(RetrievalConfig, "k"),
        )

        # models: the spec's, the local default if the spec has no local model, configured endpoints
        model_endpoints = [e for e in endpoints if isinstance(e, ModelConfig)]
        local = [] if any(m.provider == "local" for m in space.model) else [ModelConfig()]
        self.models = ModelList([*space.model, *local, *model_endpoints], space.model)

        # repeats (spec `repeats`): answers per question with distinct seeds, judge passes per answer
        self.repeat_answers = W.BoundedIntText(value=repeats.generation, min=1, max=MAX_REPEATS, description="answers",
                                               tooltip="answers per question (distinct seeds; sample with temperature > 0)",
                                               layout=W.Layout(width="160px"))
        self.repeat_judge = W.BoundedIntText(value=repeats.judge, min=1, max=MAX_REPEATS, description="judge passes",
                                             tooltip="judge passes per answer (with a judge configured)",
                                             layout=W.Layout(width="190px"))

        self.errors = W.HTML()
        self.count = W.HTML()

        generate = [
            W.HTML("<b>Prompts</b>"),
            self.prompt_box,
            self.add_prompt_button,
            self.prompt_warning,
        ]
        models = [W.HTML("<b>Models</b>"), self.models.widget,
                  W.HTML("<b>Repeats</b> (per question: the variance split and CIs that count it)"),
                  W.HBox([self.repeat_answers, self.repeat_judge])]
        retrieve_only = W.HTML(message("stage 'retrieve': no prompts and no models (retrieval metrics only)", "info"))
        self.widget = W.VBox(
            [
                *(generate if stage == "generate" else [retrieve_only]),
                W.HTML("<b>Chunking</b> (per strategy: sizes × overlaps)"),
                *(row.widget for row in self.chunking.values()),
                self.chunking_note,
                W.HTML("<b>Embedding</b>"),
                self.embedding.widget,
                W.HTML("<b>Retrieval</b> (kinds × k)"),
                W.HBox([*self.retrieval_kinds.values(), self.retrieval_k]),
                *(models if stage == "generate" else []),
                self.errors,
                self.count,
            ]
        )

    # ------------------------------------------------------------ observing

    @property
    def inputs(self) -> list[W.Widget]:
        """Every widget whose value is part of the space (prompt editors and model rows, which can be
        added later, report through on_change)."""
        out: list[W.Widget] = []
        for row in self.chunking.values():
            out += row.inputs
        out += self.embedding.boxes + list(self.retrieval_kinds.values()) + [self.retrieval_k]
        return out + [self.repeat_answers, self.repeat_judge]

    def on_change(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)
        for w in self.inputs:
            w.observe(lambda _change: callback(), "value")
        self.models.on_change(callback)

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    # ------------------------------------------------------------ prompts

    def add_prompt(self, prompt: PromptConfig | None = None, notify: bool = True) -> PromptEditor:
        if prompt is None:
            taken = {p.name.value for p in self.prompts}
            name = next(f"prompt{i}" for i in range(1, 1000) if f"prompt{i}" not in taken)
            prompt = PromptConfig(name=name)
        editor = PromptEditor(prompt, self.remove_prompt)
        editor.name.observe(lambda _: self._notify(), "value")
        editor.template.observe(lambda _: self._check_duplicates(), "value")
        editor.template.observe(lambda _: self._notify(), "value")
        self.prompts.append(editor)
        self.prompt_box.children = [p.widget for p in self.prompts]
        self._check_duplicates()
        if notify:
            self._notify()
        return editor

    def remove_prompt(self, editor: PromptEditor) -> None:
        self.prompts.remove(editor)
        self.prompt_box.children = [p.widget for p in self.prompts]
        self._check_duplicates()
        self._notify()

    def duplicate_prompts(self) -> list[list[str]]:
        """Names of prompts sharing one template (each group in order): they only repeat variants."""
        groups: dict[str, list[str]] = {}
        for p in self.prompts:
            groups.setdefault(p.template.value, []).append(p.name.value.strip() or "(unnamed)")
        return [names for names in groups.values() if len(names) > 1]

    def _check_duplicates(self) -> None:
        text = "; ".join(f"prompts {', '.join(map(repr, names))} have identical templates" for names in self.duplicate_prompts())
        self.prompt_warning.value = message(
            f"{text}: edit one (identical prompts give identical answers, only more variants) or remove it", "warn"
        ) if text else ""

    # ------------------------------------------------------------ widgets -> config

    def space(self) -> dict:
        """The `space` section as plain data, or ConfigError naming the field to fix."""
        chunking = [c for row in self.chunking.values() for c in row.configs_from_widgets()]
        if not chunking:
            raise ConfigError(f"chunking: tick at least one strategy ({', '.join(STRATEGIES)})")
        embedding = self.embedding.chosen()
        if not embedding:
            raise ConfigError("embedding: tick at least one embedding model")
        kinds = [k for k, box in self.retrieval_kinds.items() if box.value]
        if not kinds:
            raise ConfigError(f"retrieval kinds: tick at least one of {', '.join(KINDS)}")
        ks = parse_ints(self.retrieval_k.value, "retrieval k")
        retrieval = [
            parse_model(
                RetrievalConfig, {**self._retrieval_base[kind].model_dump(mode="json"), "kind": kind, "k": k}, f"retrieval {kind} k={k}"
            )
            for kind in kinds
            for k in ks
        ]
        space: dict = {
            "chunking": [c.model_dump(mode="json") for c in chunking],
            "embedding": [e.model_dump(mode="json") for e in embedding],
            "retrieval": [r.model_dump(mode="json") for r in retrieval],
        }
        if self.stage == "generate":
            if not self.prompts:
                raise ConfigError("prompts: add at least one prompt")
            prompts = [p.config() for p in self.prompts]
            names = [p.name for p in prompts]
            if len(set(names)) != len(names):
                raise ConfigError(f"prompts: names must be distinct, got {names}")
            models = self.models.chosen()
            if not models:
                raise ConfigError("models: tick at least one model")
            space["prompt"] = [p.model_dump(mode="json") for p in prompts]
            space["model"] = [m.model_dump(mode="json") for m in models]
        return space

    def repeats(self) -> dict:
        """The `repeats` section as plain data (retrieval only: none)."""
        if self.stage != "generate":
            return {"generation": 1, "judge": 1}
        return {"generation": int(self.repeat_answers.value), "judge": int(self.repeat_judge.value)}

    def show_error(self, error: Exception | None) -> None:
        self.errors.value = message(str(error), "error") if error else ""

    def show_count(self, variants: int | None, questions: int | None, calls=None) -> None:
        """calls: a `workbench.runner.estimate.CallCount` for these variants and questions, if known."""
        if variants is None:
            self.count.value = "<b>variants: –</b> (fix the errors above)"
            return
        answers = self.repeats()["generation"]
        m = "?" if questions is None else str(questions)
        m += f" questions × {answers} answers" if answers > 1 else " questions"
        total = "?" if questions is None else str(variants * questions * answers)
        unit = "model calls" if self.stage == "generate" else "cells (retrieval only, no model calls)"
        hint = "" if questions is not None else " — load the data or set a limit to count the questions"
        noun = "variant" if variants == 1 else "variants"
        split = ""
        if self.stage == "generate" and calls is not None:
            split = f": {calls.new} new, {calls.cached} cached ({html.escape(calls.basis)})"
        elif self.stage == "generate" and questions is not None:
            split = " (new vs cached: unknown until the data loads; see the Data tab)"
        judge = self.repeats()["judge"]
        passes = f"; each answer judged {judge} times ({judge} × the judge's calls)" if judge > 1 else ""
        self.count.value = f"<b>{variants} {noun} × {m} = {total} {html.escape(unit)}</b>{split}{passes}{hint}"
