"""Prompt tokens counted with each model's own tokenizer, offline.

- the local SmolLM2: the GGUF's own vocabulary (vocab-only `LlamaModel`, no context, ~0.6 s once per process)
  over the prompt rendered with the GGUF's own chat template, as llama.cpp's server renders it;
- OpenAI models: tiktoken, with the BPE files the `bpe-openai` package ships written into tiktoken's cache
  (tiktoken itself would download them), plus OpenAI's per-message framing (3 tokens a message, 3 for the
  reply's priming);
- any other model: about 4 characters a token, marked `exact=False` so the estimate widens its range and
  the budget guard projects from 3 characters a token (an overcount: a cap must not be passed).
"""

from __future__ import annotations

import atexit
import functools
import gzip
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from workbench.spec import ModelConfig

_TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"  # tiktoken's cache key


@dataclass(frozen=True)
class TokenCounter:
    """Counts a chat request's prompt tokens for one model; `how` says with what (for the estimate's notes)."""

    count_text: Callable[[list[dict]], int]
    exact: bool
    how: str

    def count(self, messages: list[dict]) -> int:
        return self.count_text(messages)

    def upper(self, messages: list[dict]) -> int:
        """A count the endpoint's usage should not exceed (what a budget projects from)."""
        if self.exact:
            return self.count(messages) + 8  # a chat template we may not render byte for byte
        return sum(len(str(m.get("content", ""))) for m in messages) // 3 + 8 * len(messages)


def counter_for(cfg: ModelConfig) -> TokenCounter:
    if cfg.provider == "local":
        return _local_counter()
    return _openai_counter(cfg.model)


@functools.lru_cache(maxsize=1)
def _local_counter() -> TokenCounter:
    import llama_cpp
    from llama_cpp._internals import LlamaModel
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from workbench.rag.local_model import local_model_path

    # The vocabulary alone, no context: `Llama(vocab_only=True)` also builds a llama_context, whose
    # "n_ctx_seq (512) > n_ctx_train (0)" warning reaches stderr even with verbose=False (llama-cpp-python
    # 0.3's log callback maps ggml's WARN level to ERROR).
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    vocab = LlamaModel(path_model=str(local_model_path()), params=params, verbose=False)
    # freed before interpreter shutdown: its __del__ at shutdown finds llama_cpp's globals gone and prints
    # an "Exception ignored" traceback at the end of every CLI run and test session
    atexit.register(vocab.close)
    template = vocab.metadata().get("tokenizer.chat_template")
    eos = vocab.token_get_text(vocab.token_eos())
    bos = vocab.token_get_text(vocab.token_bos())
    formatter = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos) if template else None

    def count(messages: list[dict]) -> int:
        if formatter is None:
            text = "".join(str(m.get("content", "")) for m in messages)
        else:
            text = formatter(messages=messages).prompt
        return len(vocab.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    return TokenCounter(count, True, "the local model's own tokenizer and chat template")


def _approximate(why: str) -> TokenCounter:
    def count(messages: list[dict]) -> int:
        return sum(len(str(m.get("content", ""))) for m in messages) // 4 + 4 * len(messages)

    return TokenCounter(count, False, f"~4 characters a token ({why})")


@functools.lru_cache(maxsize=32)
def _openai_counter(model: str) -> TokenCounter:
    import tiktoken

    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        return _approximate(f"no tokenizer known for model {model!r}")
    try:
        _offline_bpe(name)
        encoding = tiktoken.get_encoding(name)
    except Exception as exc:  # no offline file and no network: an approximate count, said so
        return _approximate(f"tiktoken's {name} is not available offline: {type(exc).__name__}")

    def count(messages: list[dict]) -> int:
        return sum(3 + len(encoding.encode(str(m.get("content", "")), disallowed_special=())) for m in messages) + 3

    return TokenCounter(count, True, f"tiktoken {name}")


def _offline_bpe(name: str) -> None:
    """Put `bpe-openai`'s copy of tiktoken's BPE file where tiktoken looks first (tiktoken checks its sha256)."""
    from importlib.resources import files

    cache = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or Path(tempfile.gettempdir()) / "data-gym-cache")
    target = cache / hashlib.sha1(_TIKTOKEN_URL.format(name=name).encode()).hexdigest()
    if target.exists():
        return
    source = files("bpe_openai") / "data" / f"{name}.tiktoken.gz"
    data = gzip.decompress(source.read_bytes())
    cache.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(target)
