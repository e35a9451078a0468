"""`repeats:` in a sweep spec — how many answers per (variant, question) and judge passes per answer.

    repeats: {generation: 3, judge: 2}

Repeat r of a question is its own model call: answer 0 is the variant's usual one (its seed, its cache
entry, so a sweep without repeats is unchanged), answer r > 0 asks with seed `repeat_seed(seed, r)`, so
each repeat is its own generation cache entry and never served from another's answer. The answers differ
only when the model samples (temperature > 0); the sweep notes it when they cannot. Judge pass j > 0 is
its own judge cache entry too. `scoring.variance` splits the spread they show into question, generation
and judge variance.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from workbench.spec_routing import RoutedModel

MAX_REPEATS = 50


class RepeatsConfig(BaseModel):
    # the spec's Frozen settings (spec.py imports this module, so it cannot import spec.py)
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)

    generation: int = Field(1, ge=1, le=MAX_REPEATS, description="Answers per (variant, question), distinct seeds")
    judge: int = Field(1, ge=1, le=MAX_REPEATS, description="Judge passes per answer (LLM-judged metrics)")

    @property
    def cells_per_question(self) -> int:
        return self.generation


def repeat_seed(seed: int | None, repeat: int) -> int | None:
    """The seed answer `repeat` is asked with: the variant's own for repeat 0, then distinct ones.

    >>> repeat_seed(None, 0), repeat_seed(None, 2), repeat_seed(7, 2)
    (None, 2, 9)
    """
    if repeat == 0:
        return seed
    return (seed or 0) + repeat


def for_repeat(model, repeat: int):
    """The model config answer `repeat` is asked with (its own generation cache key): the sweep and the
    estimate both use this, so an estimate looks up exactly the keys the sweep writes. A router or cascade
    (`RoutedModel`): every named model it may call gets the repeat's seed, the small and the large alike."""
    if repeat == 0:
        return model
    if isinstance(model, RoutedModel):
        return model.model_copy(update={"models": {name: for_repeat(m, repeat) for name, m in model.models.items()}})
    return model.model_copy(update={"seed": repeat_seed(model.seed, repeat)})


__all__ = ["MAX_REPEATS", "RepeatsConfig", "for_repeat", "repeat_seed"]
