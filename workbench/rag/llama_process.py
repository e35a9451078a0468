"""Launcher for llama-cpp-python's OpenAI-compatible server, with reproducible decoding.

    python -m workbench.rag.llama_process --model PATH --port P [--n_ctx 2048] [--n_threads 2]

`workbench.rag.local_model.LocalModelServer` runs this module as a subprocess. It differs from
`python -m llama_cpp.server` in three ways:

* it binds 127.0.0.1 only and serves the model under the alias `SmolLM2-135M-Instruct` (or --alias);
* `interrupt_requests=False`: with the default, a waiting request cuts off a running stream
  (measured: 3 of 4 concurrent streams got no chunk);
* every completion decodes from a reset model state (see `_decode_from_reset_state`).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

from workbench.processes import exit_with_parent


def _decode_from_reset_state() -> None:
    """Make `llama_cpp.Llama.generate` start every completion from an empty KV cache.

    Why: in llama-cpp-python 0.3.36, `Llama.generate(tokens, reset=True)` first compares the new
    prompt with `self._input_ids` (the tokens of the previous request still in the KV cache) and,
    when they share a prefix, keeps those cache cells (`kv_cache_seq_rm(-1, prefix, -1)`) and only
    evaluates the remaining suffix. The logits of the suffix are then computed with a different
    batch split than a cold evaluation of the whole prompt, which changes floating-point
    accumulation; the greedy answer was seen to change ("The port is TCP 7431." vs "The port is
    7431.") when a repeat reused the cached prefix. Sweeps and exported pipelines must give the same
    answer for the same messages regardless of what was asked before, so we give up prefix reuse.

    How: `Llama.reset()` sets `n_tokens = 0` (and `_requires_eval = True`), so generate's prefix
    check (`if reset and self.n_tokens > 0`) is skipped, generate calls `reset()` itself, and its
    first `eval()` runs `kv_cache_seq_rm(-1, 0, -1)` - the whole prompt is evaluated from position 0
    in the same batches as on a fresh server. We also clear the KV memory outright
    (`_ctx.kv_cache_clear()`, the same call `create_embedding` uses) so no cell of an earlier
    request survives. The `LlamaCache` (`cache=True`, the other reuse path in `_create_completion`)
    stays off (its default). Cost: no speed-up from shared prompt prefixes (measured: 2.4 s cold
    vs 0.6 s warm for a ~450-token prompt).
    """
    import llama_cpp

    original = llama_cpp.Llama.generate
    if getattr(original, "_workbench_reset_wrapper", False):
        return

    @functools.wraps(original)
    def generate(self, tokens, *args, **kwargs):
        self.reset()
        self._ctx.kv_cache_clear()
        return original(self, tokens, *args, **kwargs)

    generate._workbench_reset_wrapper = True  # type: ignore[attr-defined]
    llama_cpp.Llama.generate = generate


def build_app(model: str, n_ctx: int = 2048, n_threads: int | None = None, alias: str | None = None,
              port: int = 8000, verbose: bool = False):
    """Build llama-cpp-python's FastAPI app (loads the model) with the workbench settings."""
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    from workbench.spec import LOCAL_MODEL

    _decode_from_reset_state()
    threads = n_threads or max(1, min(os.cpu_count() or 1, 4))
    server_settings = ServerSettings(host="127.0.0.1", port=port, interrupt_requests=False)
    model_settings = ModelSettings(
        model=model,
        model_alias=alias or LOCAL_MODEL,
        n_ctx=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        cache=False,
        verbose=verbose,
    )
    return create_app(server_settings=server_settings, model_settings=[model_settings])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workbench.rag.llama_process", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="Path to a GGUF file")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n_ctx", type=int, default=2048)
    parser.add_argument("--n_threads", type=int, default=None)
    parser.add_argument("--alias", default=None, help="Model name the server answers to")
    parser.add_argument("--verbose", action="store_true", help="llama.cpp's own load/timing output")
    parser.add_argument("--parent_pid", type=int, default=None,
                        help="Exit when this process is gone (no orphan server if the caller is killed)")
    args = parser.parse_args(argv)
    if args.parent_pid:
        exit_with_parent(args.parent_pid)

    import uvicorn

    app = build_app(args.model, n_ctx=args.n_ctx, n_threads=args.n_threads, alias=args.alias,
                    port=args.port, verbose=args.verbose)
    print(f"workbench.rag.llama_process: serving {args.model} on http://127.0.0.1:{args.port}/v1", file=sys.stderr, flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
