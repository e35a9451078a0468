"""The `synth:` section of a spec: how `workbench synth` makes questions from the spec's own corpus.

Without it, `workbench synth` uses these defaults with the spec's first chunking, first embedding and
first model. Nothing here changes a variant: the section is not part of any variant's hash.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

STYLES = ("factoid", "why_how", "multi_chunk")
Style = Literal["factoid", "why_how", "multi_chunk"]


class SynthConfig(BaseModel):
    """Synthetic questions grounded in the corpus' chunks (see workbench.runner.synth)."""

    # spec.Frozen's settings: spec.py imports this module, so it cannot import spec at module level
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)

    generator: Literal["workbench", "ragas"] = Field(
        "workbench", description="workbench: our grounded span/answer/question prompt (works with the local model); "
        "ragas: ragas' TestsetGenerator on our chunks (needs a capable remote model)")
    span: Literal["chunk", "model"] = Field(
        "chunk", description="chunk: a seeded sentence of the chunk is the span, the model answers from it and asks "
        "(workbench.runner.synth_span); model: the model copies a span from the whole chunk")
    answer_from: Literal["span", "model"] = Field(
        "span", description="With span: chunk — span: a name, number or date of the sentence is the answer and the "
        "model only writes the question (why/how: the sentence is the answer); model: the model picks the answer too")
    n: int = Field(100, ge=1, le=100_000, description="Questions wanted (accepted by every filter)")
    seed: int = Field(1, description="Seeds the chunk sample and the model's sampling")
    styles: list[Style] = Field(
        default_factory=lambda: list(STYLES), min_length=1,
        description="factoid: a fact from one chunk; why_how: a why/how question about one chunk; "
        "multi_chunk: a question that needs two chunks of different documents (both are relevant)",
    )
    model: Any = Field(None, description="The question writer, a model entry like space.model's "
                       "(default: the spec's first model)")
    max_tokens: int = Field(160, ge=32, le=4096, description="Budget of the JSON reply (question, answer, span)")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Some variety: each call has its own seed")
    max_attempts: int | None = Field(
        None, ge=1, description="Model calls at most (default 3 × n); fewer questions than n when filters reject many"
    )
    max_wall_s: float | None = Field(
        None, gt=0, description="Stop making candidates after this many seconds and keep what passed (the report says so)")
    retry_parse: bool = Field(True, description="Ask once more (another seed, 64 more tokens) when a reply does not parse")
    duplicate_similarity: float = Field(
        0.9, gt=0.0, le=1.0, description="A question whose embedding cosine with a kept one reaches this is a near-duplicate"
    )
    answerability: bool = Field(False, description="Also ask the model to answer from the chunk alone; it must agree")

    @field_validator("model", mode="before")
    @classmethod
    def _model_config(cls, value: Any) -> Any:
        from workbench.spec import ModelConfig  # at use: spec.py imports this module

        if value is None or isinstance(value, ModelConfig):
            return value
        try:
            return ModelConfig.model_validate(value)
        except ValidationError as exc:  # one line per problem, named inside synth.model
            raise ValueError("; ".join(f"{'.'.join(map(str, e['loc'])) or 'model'}: {e['msg'].removeprefix('Value error, ')}"
                                       for e in exc.errors(include_input=False))) from None

    @field_validator("styles")
    @classmethod
    def _distinct(cls, styles: list[str]) -> list[str]:
        if len(set(styles)) != len(styles):
            raise ValueError(f"styles lists a style twice: {styles}")
        return styles
