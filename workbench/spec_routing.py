"""Routing, cascades and response caching as one more axis of the sweep (declarative, frozen configs).

    space:
      model:
        - {provider: local}                                          # a plain model stays as it is
        - router: {signal: question_tokens, threshold: [16, 24], below: small, above: large}
        - cascade: {first: small, then: large, escalate_when: {signal: answer_logprob_mean, below: [-0.8, -1.2]}}
        - {use: small, cache: {kind: semantic, threshold: 0.92}}
    models:                                                          # named models the entries refer to
      small: {provider: local}
      large: {provider: openai, model: gpt-4o-mini, base_url: ..., api_key_env: OPENAI_API_KEY}

A `RoutedModel` is a chat model that picks one of its named models per question (rag/routing.py runs it).
In a spec its names refer to the top-level `models:`, which `inject_named_models` copies into each entry
(only the ones it uses), so a variant is self-contained: its hash, MLflow params and export carry the
models it may call. A list of thresholds expands into one variant per threshold (`expand_model`).
Nothing here is evaluated as code: a signal is a name from the lists below.

Signals (computed in `workbench.rag.signals`, documented there):
- before answering (router): question_tokens, retrieval_top_score, retrieval_margin, top_hit_agreement;
  the question goes to `below` when the signal is under the threshold, else to `above`.
- after the first model answered (cascade): answer_logprob_mean, sample_agreement, judge_faithfulness
  escalate when under `below`; dont_know escalates an empty or "I don't know" answer (no threshold).

This module imports nothing of ours: `spec.py` imports it for its field types and completes `RoutedModel`
with its `ModelConfig` (`RoutedModel.complete`) right after defining it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from workbench.spec import ModelConfig

ROUTER_SIGNALS = ("question_tokens", "retrieval_top_score", "retrieval_margin", "top_hit_agreement")
CASCADE_SIGNALS = ("answer_logprob_mean", "dont_know", "sample_agreement", "judge_faithfulness")
RouterSignal = Literal["question_tokens", "retrieval_top_score", "retrieval_margin", "top_hit_agreement"]
CascadeSignal = Literal["answer_logprob_mean", "dont_know", "sample_agreement", "judge_faithfulness"]
ROUTING_KEYS = ("router", "cascade", "use")


class _Frozen(BaseModel):
    # the same contract as spec.Frozen (strict JSON for hashing); not imported to keep this module a leaf
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)

    def __hash__(self) -> int:  # dict and list fields: hash the canonical JSON (a variant is a dict key)
        return hash(json.dumps(self.model_dump(mode="json"), sort_keys=True))


Threshold = float | list[float]


def _shown(value: Threshold) -> str:
    """A threshold in a label: `24`, or `[16,24]` for an entry not yet expanded into variants."""
    return f"{value:g}" if not isinstance(value, list) else "[" + ",".join(f"{v:g}" for v in value) + "]"


def _scalar(value: Threshold | None) -> bool:
    return not isinstance(value, list)


class RouterConfig(_Frozen):
    """Pick a model before answering: `below` when the signal is under `threshold`, else `above`."""

    signal: RouterSignal = Field(description="question_tokens | retrieval_top_score | retrieval_margin | "
                                 "top_hit_agreement (see workbench.rag.signals)")
    threshold: Threshold = Field(description="A number, or a list: one variant per threshold")
    below: str = Field(min_length=1, description="Named model for questions whose signal is under the threshold")
    above: str = Field(min_length=1, description="Named model for the others")


class EscalateWhen(_Frozen):
    signal: CascadeSignal = Field(description="answer_logprob_mean | dont_know | sample_agreement | judge_faithfulness")
    below: Threshold | None = Field(None, description="Escalate when the signal is under this (a list: one variant "
                                    "each); dont_know takes none")
    second_temperature: float = Field(0.7, gt=0.0, le=2.0, description="sample_agreement: the second sample's "
                                      "temperature (seeded, so it is reproducible)")

    @model_validator(mode="after")
    def _threshold_fits_signal(self) -> EscalateWhen:
        if self.signal == "dont_know" and self.below is not None:
            raise ValueError("signal dont_know escalates an empty or \"don't know\" answer: remove `below`")
        if self.signal != "dont_know" and self.below is None:
            raise ValueError(f"signal {self.signal} needs `below` (escalate when the signal is under it)")
        return self


class CascadeConfig(_Frozen):
    """`first` answers; the question escalates to `then` when `escalate_when` says the answer is weak
    (a cascade pays for both calls then)."""

    first: str = Field(min_length=1)
    then: str = Field(min_length=1)
    escalate_when: EscalateWhen


class CacheConfig(_Frozen):
    """A response cache in front of the model: exact (normalised text) or semantic (embedding cosine)."""

    kind: Literal["exact", "semantic"] = "exact"
    threshold: float = Field(0.92, gt=0.0, le=1.0, description="semantic: the least cosine similarity of a hit")
    # the stream a sweep replays through the cache (workbench.data.query_stream): the eval set, plus these
    paraphrases: int = Field(1, ge=0, le=5, description="Rewordings of each question, later in the stream")
    repeats: int = Field(1, ge=0, le=5, description="Exact repeats of each question, later in the stream")


class RoutedModel(_Frozen):
    """A chat model that picks one of `models` per question: a router, a cascade, or one named model
    (`use`, e.g. with a cache). Exactly one of router / cascade / use."""

    router: RouterConfig | None = None
    cascade: CascadeConfig | None = None
    use: str | None = Field(None, min_length=1, description="One named model (with a cache, say)")
    cache: CacheConfig | None = None
    models: dict[str, ModelConfig] = Field(default_factory=dict, description="Filled from the spec's `models:`")

    @model_validator(mode="after")
    def _one_kind_and_known_names(self) -> RoutedModel:
        given = [k for k in ROUTING_KEYS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a routed model has exactly one of router, cascade, use; got {given or 'none'}")
        unknown = [n for n in self.names if n not in self.models]
        if unknown:
            known = ", ".join(sorted(self.models)) or "none"
            raise ValueError(f"no model named {', '.join(map(repr, unknown))} in `models:` (known: {known}); "
                             "add it under the spec's top-level models")
        return self

    @property
    def kind(self) -> Literal["router", "cascade", "use"]:
        return next(k for k in ROUTING_KEYS if getattr(self, k) is not None)  # type: ignore[return-value]

    @property
    def names(self) -> list[str]:
        """The named models it may call, in the order it calls them (router: below, above)."""
        if self.router is not None:
            return list(dict.fromkeys([self.router.below, self.router.above]))
        if self.cascade is not None:
            return list(dict.fromkeys([self.cascade.first, self.cascade.then]))
        return [self.use] if self.use else []

    @property
    def threshold(self) -> float | None:
        if self.router is not None:
            return self.router.threshold  # type: ignore[return-value]
        if self.cascade is not None:
            return self.cascade.escalate_when.below  # type: ignore[return-value]
        return None

    # what code written for a plain ModelConfig reads (labels, tracking, the UI)
    @property
    def provider(self) -> str:
        return "routed"

    @property
    def model(self) -> str:
        """A short name: `router(question_tokens<24: small|large)`, `cascade(small→large@-1.2)`, `small`."""
        cache = ""
        if self.cache is not None:
            cache = f"+{self.cache.kind}cache" + (f"@{self.cache.threshold:g}" if self.cache.kind == "semantic" else "")
        if self.router is not None:
            r = self.router
            return f"router({r.signal}<{_shown(r.threshold)}: {r.below}|{r.above}){cache}"
        if self.cascade is not None:
            c = self.cascade
            at = "" if c.escalate_when.below is None else f"<{_shown(c.escalate_when.below)}"
            return f"cascade({c.first}→{c.then} if {c.escalate_when.signal}{at}){cache}"
        return f"{self.use}{cache}"

    @property
    def base_url(self) -> None:
        return None

    @property
    def api_key_env(self) -> None:
        return None

    @classmethod
    def complete(cls, model_config: type) -> None:
        """Resolve `models: dict[str, ModelConfig]` (spec.py calls this right after defining ModelConfig)."""
        cls.model_rebuild(_types_namespace={"ModelConfig": model_config})

    def expanded(self) -> list[RoutedModel]:
        """One routed model per threshold of a list (a scalar threshold: itself)."""
        if self.router is not None and not _scalar(self.router.threshold):
            return [self.model_copy(update={"router": self.router.model_copy(update={"threshold": t})})
                    for t in self.router.threshold]  # type: ignore[union-attr]
        if self.cascade is not None and not _scalar(self.cascade.escalate_when.below):
            esc = self.cascade.escalate_when
            return [self.model_copy(update={"cascade": self.cascade.model_copy(
                update={"escalate_when": esc.model_copy(update={"below": t})})}) for t in esc.below]  # type: ignore[union-attr]
        return [self]


MODEL_TAGS = ("ModelConfig", "RoutedModel")  # union tags; spec.py leaves them out of error locations


def model_kind(value: Any) -> str:
    """Which model a space.model entry is: routed when it has router, cascade or use."""
    if isinstance(value, dict):
        return MODEL_TAGS[1] if any(k in value for k in ROUTING_KEYS) else MODEL_TAGS[0]
    return MODEL_TAGS[1] if isinstance(value, RoutedModel) else MODEL_TAGS[0]


def expand_model(entry: Any) -> list[Any]:
    """A space.model entry as the model configs of its variants (a threshold list: one per threshold)."""
    return entry.expanded() if isinstance(entry, RoutedModel) else [entry]


def chat_configs(model: Any) -> list[ModelConfig]:
    """Every plain model config a variant's model may call (a plain model: itself; none: [])."""
    if model is None:
        return []
    if isinstance(model, RoutedModel):
        return [model.models[n] for n in model.names]
    return [model]


def inject_named_models(data: Any) -> Any:
    """A spec mapping whose routed space.model entries carry the named models they use (copied from the
    top-level `models:`). An unknown name is left for the entry's own check, which names it."""
    if not isinstance(data, dict) or not isinstance(data.get("space"), dict):
        return data
    named = data.get("models") or {}
    entries = data["space"].get("model")
    if not isinstance(named, dict) or not isinstance(entries, list):
        return data
    out = []
    for i, entry in enumerate(entries):
        cascade = entry.get("cascade") if isinstance(entry, dict) else None
        signal = (cascade.get("escalate_when") or {}).get("signal") if isinstance(cascade, dict) else None
        judge = data.get("judge")
        metrics = judge.get("metrics") if isinstance(judge, dict) else None
        if signal == "judge_faithfulness" and (judge is None or (isinstance(metrics, list) and "faithfulness" not in metrics)):
            raise ValueError(f"space.model[{i}].cascade.escalate_when: the signal judge_faithfulness needs a judge; "
                             "add a `judge` section with faithfulness in its metrics (or choose another signal)")
        if isinstance(entry, dict) and any(k in entry for k in ROUTING_KEYS) and "models" not in entry:
            used = _names_in(entry)
            entry = {**entry, "models": {n: named[n] for n in used if n in named}}
        out.append(entry)
    return {**data, "space": {**data["space"], "model": out}}


def _names_in(entry: dict) -> list[str]:
    names: list[str] = []
    for key, fields in (("router", ("below", "above")), ("cascade", ("first", "then"))):
        part = entry.get(key)
        if isinstance(part, dict):
            names += [part[f] for f in fields if isinstance(part.get(f), str)]
    if isinstance(entry.get("use"), str):
        names.append(entry["use"])
    return names


__all__ = ["CASCADE_SIGNALS", "MODEL_TAGS", "model_kind", "ROUTER_SIGNALS", "CacheConfig", "CascadeConfig", "EscalateWhen", "RoutedModel",
           "RouterConfig", "chat_configs", "expand_model", "inject_named_models"]
