"""Frozen configuration models: one per pipeline stage, one per variant, one per sweep.

Everything the workbench runs is described by these pydantic models. They are frozen (hashable,
safe to share), reject unknown keys, and round-trip through YAML. A variant's id is the sha256 of
its canonical JSON (sorted keys, compact separators): the canonical form is a contract, so cache
keys and MLflow tags stay stable across processes and machines.

Secrets are never fields: a remote endpoint names the environment variable that holds its key.

Over 400 lines: the spec's whole schema stays in one file so it reads top to bottom as the YAML does;
splitting the models by stage would scatter one document's validation over several modules.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import string
import weakref
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AnyHttpUrl, BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError,
                      field_validator, model_validator)

from workbench.errors import ConfigError, TrackingError
from workbench.safe_yaml import parse_yaml, read_yaml  # noqa: F401  (read_yaml: part of this module's API)
from workbench.spec_routing import MODEL_TAGS, RoutedModel, expand_model, inject_named_models, model_kind
from workbench.spec_repeats import RepeatsConfig
from workbench.spec_scale import BACKEND_FIELD, RAY_ADDRESS_FIELD, WORKERS_FIELD, Backend, VectorStoreConfig
from workbench.spec_budget import BudgetConfig
from workbench.spec_search import SearchConfig

LOCAL_MODEL = "SmolLM2-135M-Instruct"
LOCAL_EMBEDDING = "all-MiniLM-L6-v2-int8"
_HTTP_URL = TypeAdapter(AnyHttpUrl)  # checks an endpoint's base_url

# Short and SmolLM2-friendly: one user message, context first, then the question.
DEFAULT_TEMPLATE = (
    "Answer the question using only the context. Reply with a short phrase.\n\n"
    "Context:\n{context}\n\nQuestion: {question}\nAnswer:"
)


class Frozen(BaseModel):
    # No inf/NaN: every config is hashed as strict JSON, and no field means anything by them.
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)


def canonical_json(data: Any) -> str:
    """The hashing contract: sorted keys, compact separators, UTF-8, no lossy `default=str`."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def content_hash(data: Any) -> str:
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- data sources


class CorpusSource(Frozen):
    """Where the documents come from."""

    format: Literal["squad", "jsonl", "folder", "beir"] = Field(
        description="squad: SQuAD v1.1 JSON (document = paragraph); jsonl: one {id, text, title?} per line; "
        "folder: every .txt/.md file below path (id = relative path); beir: a BEIR folder (corpus.jsonl)"
    )
    path: str = Field(description="File or folder, relative to the working directory or absolute")
    follow_symlinks: bool = Field(
        False, description="folder: read files that symbolic links point to (off: links are skipped with a warning, "
        "so a link cannot pull in files from outside the folder)"
    )


class EvalSource(Frozen):
    """Where the questions come from."""

    format: Literal["squad", "jsonl", "csv", "beir"] = Field(
        description="squad: SQuAD v1.1 JSON; jsonl/csv: id, question, reference_answers, relevant_ids?; "
        "beir: a BEIR folder (queries.jsonl + qrels/<split>.tsv)"
    )
    path: str
    limit: int | None = Field(None, ge=1, description="Use only the first N questions (file order)")
    split: str = Field("test", description="qrels split for the beir format")


class DataConfig(Frozen):
    corpus: CorpusSource
    eval: EvalSource


# ---------------------------------------------------------------- one variant's stages


class ChunkingConfig(Frozen):
    strategy: Literal["recursive", "token", "none"] = Field(
        "recursive",
        description="recursive: split on paragraphs, lines, sentences, words, size in characters; "
        "token: the same splitter with size counted in tokens of the local MiniLM tokenizer; "
        "none: one chunk per document",
    )
    size: int = Field(500, ge=1, le=100_000, description="Maximum chunk length (characters or tokens)")
    overlap: int = Field(50, ge=0, description="Overlap between neighbouring chunks (same unit as size)")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingConfig:
        if self.overlap >= self.size:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than size ({self.size})")
        return self


class Endpoint(Frozen):
    """An OpenAI-compatible endpoint. The key is read from `api_key_env` at call time, never stored."""

    # a refused base_url may hold a key: pydantic's own error text must not echo it
    model_config = ConfigDict(**Frozen.model_config, hide_input_in_errors=True)

    base_url: str | None = Field(None, description="e.g. https://api.openai.com/v1 or http://localhost:11434/v1")
    api_key_env: str | None = Field(None, description="Name of the environment variable holding the API key")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            try:  # pydantic's URL parser checks the scheme and host; the string itself is kept (hashes)
                _HTTP_URL.validate_python(value)
            except ValidationError:
                raise ValueError("must be an http(s) URL with a host, like http://localhost:11434/v1") from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_credentials_in_base_url(cls, data: Any) -> Any:
        """A key in the URL would reach MLflow params, exports and logs: refuse it (the whole endpoint is
        the error's input, so the workbench's error message never shows the URL)."""
        import re
        from urllib.parse import parse_qsl, urlsplit

        url = data.get("base_url") if isinstance(data, dict) else None
        if isinstance(url, str):
            parts = urlsplit(url.strip())
            params = [k for k, _ in parse_qsl(parts.query, keep_blank_values=True)
                      if re.search(r"key|token|secret|passw|sig|auth|code", k, re.IGNORECASE)]
            if "@" in parts.netloc or params:
                where = "user:password@ in the host" if "@" in parts.netloc else f"the query parameter {params[0]!r}"
                raise ValueError(
                    f"base_url carries credentials ({where}); remove them from the URL, put the key in an "
                    "environment variable and set api_key_env to its name"
                )
        return data

    @field_validator("api_key_env")
    @classmethod
    def _looks_like_env_name(cls, value: str | None) -> str | None:
        if value is not None and (not value.replace("_", "").isalnum() or value[0].isdigit()):
            raise ValueError(
                "api_key_env must be the NAME of an environment variable (like OPENAI_API_KEY); "
                "never put the key itself in a config"
            )
        return value


class EmbeddingConfig(Endpoint):
    provider: Literal["local", "openai"] = Field(
        "local", description="local: MiniLM-L6-v2 int8 ONNX shipped on PyPI; openai: any OpenAI-compatible endpoint"
    )
    model: str = LOCAL_EMBEDDING
    batch_size: int = Field(64, ge=1, le=4096)

    @property
    def vector_key(self) -> str:
        """What the vectors depend on (not batch_size): the key of embedding caches and indexes."""
        return content_hash(self.model_dump(mode="json", exclude={"batch_size"}))

    @model_validator(mode="after")
    def _provider_fields(self) -> EmbeddingConfig:
        if self.provider == "local" and self.model != LOCAL_EMBEDDING:
            raise ValueError(f"the local embedding provider only has model {LOCAL_EMBEDDING!r}, got {self.model!r}")
        if self.provider == "openai" and self.model == LOCAL_EMBEDDING:
            raise ValueError("provider 'openai' needs a model name served by that endpoint, e.g. text-embedding-3-small")
        return self


class RetrievalConfig(Frozen):
    kind: Literal["dense", "bm25", "hybrid"] = Field(
        "dense", description="dense: Chroma cosine; bm25: bm25s; hybrid: reciprocal-rank fusion of both"
    )
    k: int = Field(4, ge=1, le=1000, description="Number of chunks passed to the prompt")
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant (hybrid only)")
    candidates: int = Field(50, ge=1, description="Per-retriever depth fused by hybrid (hybrid only)")


class PromptConfig(Frozen):
    name: str = Field("default", min_length=1)
    template: str = Field(DEFAULT_TEMPLATE, description="Must contain the slots {context} and {question}")
    context_separator: str = "\n\n"

    @field_validator("template")
    @classmethod
    def _slots(cls, template: str) -> str:
        check_template(template)
        return template


def template_slots(template: str) -> set[str]:
    """The slot names of a template; only plain `{name}` slots are allowed.

    A format spec or conversion (`{question:>30000000}`, `{context:%Y}`, `{question!r}`) would pass
    `str.format` checks here and then crash or inflate every prompt of the sweep; MLflow's prompt
    registry (`{{name}}`) could not hold them either.
    """
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:  # unbalanced braces
        raise ValueError(f"template is not a valid format string ({exc}); write literal braces as {{{{ and }}}}")
    for name, spec, conv in fields:
        if spec or conv:
            written = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            raise ValueError(
                f"template slot {written} has a format spec or conversion; write it as plain {{{name}}} "
                "(only {context} and {question}, no ':…' or '!…'; literal braces as {{ and }})"
            )
    return {name for name, _, _ in fields}


def check_template(template: str) -> None:
    slots = template_slots(template)
    missing = {"context", "question"} - slots
    extra = slots - {"context", "question"}
    if missing:
        raise ValueError(f"template lacks the slot(s) {', '.join('{' + m + '}' for m in sorted(missing))}")
    if extra:
        raise ValueError(
            f"template has unknown slot(s) {', '.join('{' + e + '}' for e in sorted(extra))}; "
            "only {context} and {question} are filled (write literal braces as {{ and }})"
        )


class ModelConfig(Endpoint):
    provider: Literal["local", "openai"] = Field(
        "local",
        description="local: SmolLM2-135M-Instruct served on 127.0.0.1 by llama-cpp-python; "
        "openai: any OpenAI-compatible base_url (OpenAI, vLLM, Ollama, llama.cpp server)",
    )
    model: str = LOCAL_MODEL
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(48, ge=1, le=32_768)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    price_input_per_mtok: float | None = Field(
        None, ge=0, description="USD per million prompt tokens; overrides genai-prices (local models default to 0)"
    )
    price_output_per_mtok: float | None = Field(None, ge=0, description="USD per million completion tokens")

    @model_validator(mode="after")
    def _provider_fields(self) -> ModelConfig:
        if self.provider == "local" and self.model != LOCAL_MODEL:
            raise ValueError(f"the local provider only serves {LOCAL_MODEL!r}, got {self.model!r}")
        if self.provider == "openai" and self.model == LOCAL_MODEL and self.base_url is None:
            raise ValueError("provider 'openai' needs a model name (and usually a base_url)")
        if (self.price_input_per_mtok is None) != (self.price_output_per_mtok is None):
            raise ValueError("set both price_input_per_mtok and price_output_per_mtok, or neither")
        return self


RoutedModel.complete(ModelConfig)  # spec_routing is a leaf: its RoutedModel holds ModelConfigs from here on
# a plain model or a routed one, told apart by their keys (errors then name only the fields of the one meant)
AnyModel = Annotated[Annotated[ModelConfig, Tag(MODEL_TAGS[0])] | Annotated[RoutedModel, Tag(MODEL_TAGS[1])],
                     Discriminator(model_kind)]


_HASHES: dict[int, tuple[weakref.ref, str]] = {}  # id(variant) -> (the variant, its hash): VariantConfig.hash


class VariantConfig(Frozen):
    """One point of the search space: everything needed to answer a question.

    A retrieval-only variant (sweep `stage: retrieve`) has no prompt and no model.
    """

    chunking: ChunkingConfig = ChunkingConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    prompt: PromptConfig | None = PromptConfig()
    model: AnyModel | None = ModelConfig()  # routed: spec_routing (a plain model's hash is unchanged)

    @model_validator(mode="after")
    def _both_or_neither(self) -> VariantConfig:
        if (self.prompt is None) != (self.model is None):
            raise ValueError("a variant has both a prompt and a model (generation) or neither (retrieval only)")
        return self

    @property
    def retrieval_only(self) -> bool:
        return self.model is None

    @property
    def hash(self) -> str:
        """Full sha256 of the canonical JSON; the variant's id, cache key and MLflow tag."""
        # Asked per cell and per row (~35 us each): computed once per object. Kept by identity beside it, not in
        # it, so a model_copy(update=...) never inherits a stale one; frozen, so it cannot go stale otherwise.
        known = _HASHES.get(id(self))
        if known is not None and known[0]() is self:
            return known[1]
        digest = content_hash(self.model_dump(mode="json"))
        _HASHES[id(self)] = (weakref.ref(self, lambda _, k=id(self): _HASHES.pop(k, None)), digest)
        return digest

    @property
    def short_hash(self) -> str:
        return self.hash[:12]

    def flat_params(self) -> dict[str, Any]:
        """Dotted params for MLflow (`chunking.size`, `retrieval.k`, …); None values left out."""
        return {k: v for k, v in flatten(self.model_dump(mode="json")).items() if v is not None}

    def label(self) -> str:
        """A short human name for tables and plots."""
        c, r = self.chunking, self.retrieval
        chunk = "whole-doc" if c.strategy == "none" else f"{c.strategy}{c.size}/{c.overlap}"
        head = f"{chunk} · {self.embedding.model.split('/')[-1]} · {r.kind}@{r.k}"
        if self.prompt is None or self.model is None:
            return head
        return f"{head} · {self.prompt.name} · {self.model.model}"


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


# ---------------------------------------------------------------- the sweep


class SpaceConfig(Frozen):
    """Lists per axis; the sweep is their Cartesian product (grid)."""

    chunking: list[ChunkingConfig] = Field(default_factory=lambda: [ChunkingConfig()], min_length=1)
    embedding: list[EmbeddingConfig] = Field(default_factory=lambda: [EmbeddingConfig()], min_length=1)
    retrieval: list[RetrievalConfig] = Field(default_factory=lambda: [RetrievalConfig()], min_length=1)
    prompt: list[PromptConfig] = Field(default_factory=lambda: [PromptConfig()], min_length=1)
    model: list[AnyModel] = Field(default_factory=lambda: [ModelConfig()], min_length=1)

    def variants(self, stage: str = "generate") -> list[VariantConfig]:
        prompts: list[PromptConfig | None] = list(self.prompt) if stage == "generate" else [None]
        models: list[Any] = [x for m in self.model for x in expand_model(m)] if stage == "generate" else [None]
        seen: dict[str, VariantConfig] = {}
        for c, e, r, p, m in itertools.product(self.chunking, self.embedding, self.retrieval, prompts, models):
            v = VariantConfig(chunking=c, embedding=e, retrieval=r, prompt=p, model=m)
            seen.setdefault(v.hash, v)  # identical entries in a list are one variant
        return list(seen.values())


class JudgeConfig(Endpoint):
    """An LLM judge for ragas' LLM-judged metrics. Off unless the spec has a `judge` section."""

    provider: Literal["local", "openai"] = Field(
        "local", description="local: the offline SmolLM2 server (parses, judges poorly); openai: any OpenAI-compatible base_url"
    )
    model: str = LOCAL_MODEL
    # Names from the metric catalogue (workbench.scoring.catalogue, a layer above this one): a sweep
    # checks them before any work (`catalogue.check_judge`), a Judge when it is made.
    metrics: list[str] = Field(
        default_factory=lambda: ["faithfulness", "answer_relevancy", "context_precision", "context_recall"],
        min_length=1,
        description="LLM-judged metrics to compute (see workbench.scoring.catalogue for the names)",
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(
        1024, ge=16, le=32_768, description="Default 256 for the local judge (its 2,048-token window), 1024 otherwise"
    )
    embedding: EmbeddingConfig = Field(
        default_factory=EmbeddingConfig, description="Embeddings answer_relevancy compares questions with"
    )

    @model_validator(mode="before")
    @classmethod
    def _local_default_budget(cls, data: Any) -> Any:
        if isinstance(data, dict) and "max_tokens" not in data and data.get("provider", "local") == "local":
            data = {**data, "max_tokens": 256}
        return data

    @model_validator(mode="after")
    def _provider_fields(self) -> JudgeConfig:
        if self.provider == "local" and self.model != LOCAL_MODEL:
            raise ValueError(f"the local provider only serves {LOCAL_MODEL!r}, got {self.model!r}")
        return self


class ExecutionConfig(Frozen):
    """How the sweep runs (not what it computes): these fields never change a variant's hash or answers."""

    concurrency: int = Field(8, ge=1, le=1024, description="Requests in flight per remote endpoint")
    local_concurrency: int = Field(1, ge=1, le=16, description="The local llama.cpp server answers one request at a time")
    requests_per_minute: float | None = Field(None, gt=0, description="Per-endpoint request rate limit")
    tokens_per_minute: float | None = Field(None, gt=0, description="Per-endpoint token rate limit (prompt estimate + max_tokens)")
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout")
    max_retries: int = Field(4, ge=0, le=20, description="Retries on 429/5xx/timeouts/bad responses, exponential backoff with jitter")
    cache: bool = Field(True, description="Reuse cached generations and judge scores (content-addressed)")
    backend: Backend = BACKEND_FIELD  # scale-out (workbench.spec_scale)
    ray_address: str | None = RAY_ADDRESS_FIELD
    workers: int = WORKERS_FIELD


class TrackingConfig(Frozen):
    tracking_uri: str = Field("sqlite:///mlruns/mlflow.db", description="Any MLflow tracking URI")
    artifact_location: str = Field("mlruns/artifacts", description="Artifact root for a new experiment")
    enabled: bool = True
    redact: bool = Field(
        False, description="Replace e-mails, phone, card and IBAN numbers in every logged text: questions, prompts, contexts, "
        "answers, reference answers and document ids"
    )
    # The helper stores traces in batches as rows (~3-4 ms of its CPU each on sqlite, trace_rows.py), so every
    # question is traced by default; a cap keeps the store small when traces are bulky (many long contexts each).
    max_traces_per_variant: int | None = Field(
        None, ge=0,
        description="Questions traced per variant, the first N; null (the default) traces every question (the "
        "table always holds every question)",
    )


from workbench.spec_synth import SynthConfig  # noqa: E402  (kept beside the one field that holds it)


class SweepSpec(Frozen):
    name: str = Field(min_length=1)
    experiment: str | None = Field(None, description="MLflow experiment name (default: name)")
    data: DataConfig
    space: SpaceConfig = SpaceConfig()
    stage: Literal["generate", "retrieve"] = Field(
        "generate", description="retrieve: stop after retrieval (no prompt, no model, zero model calls)"
    )
    retrieval_cutoffs: list[int] = Field(
        default_factory=list,
        description="Extra cut-offs for retrieval metrics, e.g. [10, 100] adds ndcg_at_10, recall_at_100, mrr_at_10, …",
    )
    tracking: TrackingConfig = TrackingConfig()
    execution: ExecutionConfig = ExecutionConfig()
    judge: JudgeConfig | None = Field(None, description="LLM judge for ragas metrics; none = those metrics are off")
    models: dict[str, ModelConfig] = Field(default_factory=dict, description="Named models that routers, cascades "
                                           "and cached entries of space.model refer to (see workbench.spec_routing)")
    repeats: RepeatsConfig = Field(default_factory=RepeatsConfig, description="Answers per question and judge passes per answer")
    budget: BudgetConfig = Field(default_factory=BudgetConfig, description="Caps on calls, USD and wall time (spec_budget.py)")
    synth: SynthConfig | None = Field(None, description="`workbench synth`: synthetic questions from the corpus")
    home: str = Field(".workbench", description="Workbench home: Chroma collections, caches, sweep records")
    vector_store: VectorStoreConfig = VectorStoreConfig()  # where dense indexes live (workbench.spec_scale)
    search: SearchConfig = Field(default_factory=SearchConfig, description="grid (default), random, halving or optuna")

    _named_models = model_validator(mode="before")(classmethod(lambda cls, data: inject_named_models(data)))

    @field_validator("retrieval_cutoffs")
    @classmethod
    def _cutoffs_positive(cls, cutoffs: list[int]) -> list[int]:
        if any(c < 1 for c in cutoffs):
            raise ValueError(f"every cut-off must be at least 1, got {cutoffs}")
        return sorted(set(cutoffs))

    @model_validator(mode="after")
    def _stage_axes(self) -> SweepSpec:
        if self.stage == "retrieve":
            given = sorted({"prompt", "model"} & self.space.model_fields_set)
            if given:
                raise ValueError(
                    f"stage 'retrieve' stops before generation: remove space.{' and space.'.join(given)} "
                    "(or set stage: generate)"
                )
            if self.judge is not None:
                raise ValueError("stage 'retrieve' has no answers to judge: remove the judge section")
        if self.repeats.generation > 1 and self.search.strategy in ("halving", "optuna"):
            raise ValueError(f"search.strategy {self.search.strategy} compares variants on single answers: use "
                             "repeats.generation 1 with it (or strategy grid / random with repeats)")
        return self

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name

    @property
    def hash(self) -> str:
        return content_hash(self.stable_dump())

    def stable_dump(self, exclude: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
        """The spec as JSON for its hash and resume key: sections added in later versions are left out while
        they hold their defaults, so a spec that does not use them keeps its sweep id and can resume."""
        out = self.model_dump(mode="json", exclude=set(exclude))
        for name in _LATER_SECTIONS - set(exclude):
            if out.get(name) == _default_dump(name):
                del out[name]
        for section, fields in _LATER_FIELDS.items():
            cfg = getattr(self, section)
            for name in fields if section in out else ():
                if out[section].get(name) == _default_dump(name, type(cfg)):
                    del out[section][name]
        return out

    def variants(self) -> list[VariantConfig]:
        return self.space.variants(self.stage)


_LATER_SECTIONS = frozenset({"models", "repeats", "budget", "vector_store", "search", "synth"})
_LATER_FIELDS = {"execution": ("backend", "ray_address", "workers")}


def _default_dump(name: str, model: type[BaseModel] | None = None) -> Any:
    field = (model or SweepSpec).model_fields[name]
    value = field.default_factory() if field.default_factory is not None else field.default
    return TypeAdapter(field.annotation).dump_python(value, mode="json")


# ---------------------------------------------------------------- YAML in and out


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s) in the configuration:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p not in MODEL_TAGS) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling; see `workbench run --help` for the spec format)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        value = err.get("input")
        # Never echo what may be a secret (a key pasted into the wrong field) or a whole section.
        hide = err["type"] in ("missing", "extra_forbidden") or "api_key" in loc or isinstance(value, (dict, list))
        shown = "" if hide else f" (got {value!r})"
        lines.append(f"  - {loc}: {msg}{shown}")
    return "\n".join(lines)


def parse_model(cls: type[BaseModel], data: Any, source: str = "config") -> Any:
    """Validate `data` as `cls`, turning pydantic's error into one ConfigError naming each field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def load_spec(spec: str | Path | dict | SweepSpec) -> SweepSpec:
    """Accept a path to YAML, a plain dict or a SweepSpec."""
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, dict):
        return parse_model(SweepSpec, spec, "spec")
    return parse_model(SweepSpec, read_yaml(spec), str(spec))


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (prompt templates) as readable `|` blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value and value.strip() else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True)


def to_yaml(model: BaseModel) -> str:
    return dump_yaml(model.model_dump(mode="json"))


def load_variant(data: str | Path | dict) -> VariantConfig:
    if isinstance(data, dict):
        return parse_model(VariantConfig, data, "variant")
    return parse_model(VariantConfig, read_yaml(data), str(data))


# ---------------------------------------------------------------- sweep ids

# What `runner.resume.new_sweep_id` makes: <UTC yyyymmdd-hhmmss>-<6 hex of the spec hash>[-n]. Checked where a
# sweep id comes in from outside, before it goes into an MLflow filter string (which has no quoting of its own).
SWEEP_ID_PATTERN = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}(-[1-9]\d{0,5})?")


def check_sweep_id(sweep_id: Any) -> str:
    if not isinstance(sweep_id, str) or not SWEEP_ID_PATTERN.fullmatch(sweep_id):
        raise TrackingError(
            f"no sweep {sweep_id!r}: a sweep id looks like 20261127-025350-17646e; copy the id `workbench run` "
            "printed (a store's sweeps are its workbench.sweep_id tags in the MLflow UI; check --tracking-uri too)"
        )
    return sweep_id
