"""The Variants tab's models: a checkbox per model with its generation parameters editable, and a form
that adds an OpenAI-compatible endpoint (model name, base_url, the NAME of the environment variable
holding its key — never a key field).

Every value goes through `ModelConfig` (`parse_model`), so a bad one is one message naming the field.
Fields without a widget (prices) are kept from the config the row started from.
"""

from __future__ import annotations

from typing import Callable, Sequence

import ipywidgets as W

from workbench.errors import ConfigError
from workbench.spec import ModelConfig, parse_model
from workbench.spec_routing import RoutedModel
from workbench.ui.common import field_help, message

# Optional parameters (top_p, seed) are text boxes: blank = unset; pydantic parses the rest.
_NUMBER = W.Layout(width="150px")


def model_label(cfg: ModelConfig) -> str:
    return f"{cfg.provider}: {cfg.model}" + (f" @ {cfg.base_url}" if cfg.base_url else "")


def _blank_none(text: str) -> str | None:
    return text.strip() or None


class ModelRow:
    """One model: ticked = in the space; temperature, max_tokens, top_p and seed editable."""

    def __init__(self, cfg: ModelConfig, ticked: bool) -> None:
        self.base = cfg
        self.routed = isinstance(cfg, RoutedModel)  # a router/cascade/cache entry: ticked or not, edited in YAML
        self.box = W.Checkbox(value=ticked, description=model_label(cfg), indent=False, layout=W.Layout(width="auto"))
        cfg = ModelConfig() if self.routed else cfg
        self.temperature = W.FloatText(  # unbounded here: ModelConfig's bounds give the message
            value=cfg.temperature, step=0.1, description="temperature",
            tooltip=field_help(ModelConfig, "temperature"), layout=_NUMBER, style={"description_width": "initial"},
        )
        self.max_tokens = W.IntText(
            value=cfg.max_tokens, description="max_tokens", tooltip=field_help(ModelConfig, "max_tokens"),
            layout=_NUMBER, style={"description_width": "initial"},
        )
        self.top_p = W.Text(
            value="" if cfg.top_p is None else repr(cfg.top_p), description="top_p", placeholder="(unset)",
            tooltip=field_help(ModelConfig, "top_p"), layout=_NUMBER, style={"description_width": "initial"},
        )
        self.seed = W.Text(
            value="" if cfg.seed is None else str(cfg.seed), description="seed", placeholder="(unset)",
            tooltip="Sampling seed, if the endpoint honours it", layout=_NUMBER, style={"description_width": "initial"},
        )
        numbers = W.HBox([self.temperature, self.max_tokens, self.top_p, self.seed], layout=W.Layout(margin="0 0 6px 24px"))
        self.widget = W.VBox([self.box] if self.routed else [self.box, numbers])

    @property
    def inputs(self) -> list[W.Widget]:
        return [self.box, self.temperature, self.max_tokens, self.top_p, self.seed]

    def config(self) -> ModelConfig:
        """The row's ModelConfig, or ConfigError naming the model and the field."""
        if self.routed:
            return self.base
        data = {
            **self.base.model_dump(mode="json"),
            "temperature": self.temperature.value,
            "max_tokens": self.max_tokens.value,
            "top_p": _blank_none(self.top_p.value),
            "seed": _blank_none(self.seed.value),
        }
        return parse_model(ModelConfig, data, f"model {model_label(self.base)!r}")


class ModelList:
    """The spec's models, the local default and configured endpoints, plus endpoints added in the form."""

    def __init__(self, options: Sequence[ModelConfig], ticked: Sequence[ModelConfig]) -> None:
        self._listeners: list[Callable[[], None]] = []
        self.rows: list[ModelRow] = []
        self.rows_box = W.VBox()
        for cfg in dict.fromkeys(options):  # frozen configs are hashable; first-seen order
            self._add_row(cfg, cfg in ticked)

        wide = W.Layout(width="32%")
        self.new_model = W.Text(description="model", placeholder="e.g. llama3.2 or gpt-4o-mini", layout=wide)
        self.new_base_url = W.Text(description="base_url", placeholder="http://localhost:11434/v1", layout=wide,
                                   tooltip=field_help(ModelConfig, "base_url"))
        self.new_api_key_env = W.Text(description="api_key_env", placeholder="OPENAI_API_KEY (a variable NAME)",
                                      layout=wide, tooltip=field_help(ModelConfig, "api_key_env"),
                                      style={"description_width": "initial"})
        self.add_button = W.Button(description="Add endpoint", icon="plus")
        self.add_button.on_click(lambda _: self.add_endpoint())
        self.add_message = W.HTML()
        self.widget = W.VBox([
            self.rows_box,
            W.HTML("Add an OpenAI-compatible endpoint (its key is read from the environment variable you name):"),
            W.HBox([self.new_model, self.new_base_url, self.new_api_key_env]),
            self.add_button,
            self.add_message,
        ])

    @property
    def boxes(self) -> list[W.Checkbox]:
        return [r.box for r in self.rows]

    @property
    def inputs(self) -> list[W.Widget]:
        return [w for r in self.rows for w in r.inputs]

    def on_change(self, callback: Callable[[], None]) -> None:
        """`callback` after any edit of a row, including rows added later."""
        self._listeners.append(callback)
        for w in self.inputs:
            w.observe(lambda _change: callback(), "value")

    def _add_row(self, cfg: ModelConfig, ticked: bool) -> ModelRow:
        row = ModelRow(cfg, ticked)
        for listener in self._listeners:
            for w in row.inputs:
                w.observe(lambda _change, f=listener: f(), "value")
        self.rows.append(row)
        self.rows_box.children = [r.widget for r in self.rows]
        return row

    def chosen(self) -> list[ModelConfig]:
        """The ticked rows' configs in order, or ConfigError naming the model and field to fix."""
        return [r.config() for r in self.rows if r.box.value]

    def add_endpoint(self) -> ModelRow | None:
        """Validate the form as a ModelConfig and add it ticked; a bad field is one red message."""
        data = {
            "provider": "openai",
            "model": self.new_model.value.strip(),
            "base_url": _blank_none(self.new_base_url.value),
            "api_key_env": _blank_none(self.new_api_key_env.value),
        }
        if not data["model"]:
            self.add_message.value = message("new endpoint: model is empty; give the model name the endpoint serves", "error")
            return None
        if data["base_url"] is None:
            self.add_message.value = message("new endpoint: base_url is empty; give the endpoint's URL, "
                                             "e.g. http://localhost:11434/v1", "error")
            return None
        try:
            cfg = parse_model(ModelConfig, data, "new endpoint")
        except ConfigError as exc:
            self.add_message.value = message(str(exc), "error")
            return None
        same = next((r for r in self.rows if r.base == cfg), None)
        if same is not None:
            same.box.value = True
            self.add_message.value = message(f"{model_label(cfg)} is already in the list (ticked it)", "warn")
            return same
        row = self._add_row(cfg, True)
        self.add_message.value = message(f"added {model_label(cfg)}", "ok")
        self.new_model.value = self.new_base_url.value = self.new_api_key_env.value = ""
        for listener in self._listeners:
            listener()
        return row
