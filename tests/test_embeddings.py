"""Embedders: the real offline MiniLM, a real HTTP OpenAI-compatible server, the disk cache."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from workbench.rag import embeddings
from workbench.spec import EmbeddingConfig
from workbench.rag.embeddings import CachedEmbedder, LocalMiniLM, OpenAIEmbedder, make_embedder
from workbench.errors import ModelError


@pytest.fixture(scope="module")
def minilm() -> LocalMiniLM:
    return LocalMiniLM(batch_size=8)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


# ---------------------------------------------------------------- local MiniLM


def test_local_shape_dtype_and_unit_norms(minilm):
    vectors = minilm.embed(["Hello world.", "A second, somewhat longer sentence about football.", ""])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert minilm.name == "all-MiniLM-L6-v2-int8" and minilm.dim == 384


def test_local_empty_input_gives_zero_rows(minilm):
    vectors = minilm.embed([])
    assert vectors.shape == (0, 384) and vectors.dtype == np.float32


def test_local_semantic_sanity(minilm):
    cat, kitten, revenue = minilm.embed(
        ["The cat sits on the mat", "A kitten is sitting on a rug", "Quarterly revenue grew 5%"]
    )
    assert cos(cat, kitten) > 0.5
    assert cos(cat, kitten) > cos(cat, revenue) + 0.3


def test_local_padding_invariance(minilm):
    short = "Denver won the game."
    long = " ".join(["The Broncos defeated the Carolina Panthers in Santa Clara, California."] * 12)
    alone = minilm.embed([short])[0]
    minilm_one_batch = LocalMiniLM(batch_size=64)  # both texts in one padded batch
    together = minilm_one_batch.embed([long, short])[1]
    np.testing.assert_allclose(alone, together, atol=1e-5)


def test_local_order_restored_after_length_sorting(minilm):
    texts = [f"{'word ' * n}number {n}" for n in (3, 40, 1, 17, 25, 0, 9, 33, 2, 60, 5)]
    batched = minilm.embed(texts)  # batch_size=8: two batches of length-sorted texts
    one_by_one = np.stack([minilm.embed([t])[0] for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    # and the rows really differ, so a permutation would have been caught
    assert np.min(np.linalg.norm(batched[:, None] - batched[None], axis=2) + np.eye(len(texts))) > 1e-3


def test_local_truncates_long_texts_without_error(minilm):
    vector = minilm.embed(["token " * 2000])
    assert vector.shape == (1, 384) and np.isfinite(vector).all()


def test_local_sha256_mismatch_is_a_model_error_naming_the_file(tmp_path):
    real = embeddings.package_file(*embeddings.MODEL_RESOURCE)
    corrupt = tmp_path / "model.onnx"
    shutil.copyfile(real, corrupt)
    with open(corrupt, "r+b") as fh:  # flip one byte in the middle
        fh.seek(real.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelError, match=r"model\.onnx.*sha256.*pip install --force-reinstall") as info:
        LocalMiniLM(model_path=corrupt)
    assert str(corrupt) in str(info.value)


def test_local_tokenizer_sha256_checked_too(tmp_path):
    bad = tmp_path / "tokenizer.json"
    text = embeddings.package_file(*embeddings.TOKENIZER_RESOURCE).read_text(encoding="utf-8")
    bad.write_text(text.replace('"[UNK]"', '"[UNKNOWN]"', 1), encoding="utf-8")
    with pytest.raises(ModelError, match="tokenizer.json"):
        LocalMiniLM(tokenizer_path=bad)


def test_local_missing_file_is_a_model_error(tmp_path):
    missing = tmp_path / "nowhere" / "model.onnx"
    with pytest.raises(ModelError, match=r"missing.*reinstall"):
        LocalMiniLM(model_path=missing)


def test_recorded_hashes_match_the_installed_files():
    assert embeddings.sha256_file(embeddings.package_file(*embeddings.MODEL_RESOURCE)) == embeddings.MODEL_SHA256
    tok = embeddings.package_file(*embeddings.TOKENIZER_RESOURCE)
    assert embeddings.sha256_file(tok) == embeddings.TOKENIZER_SHA256


# ---------------------------------------------------------------- disk cache


class CountingEmbedder:
    """A deterministic fake inner embedder that records what it was asked to embed."""

    name = "counting"
    dim = 8

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def embed(self, texts):
        self.seen.append(list(texts))
        rows = [np.frombuffer(t.encode("utf-8").ljust(8, b"_")[:8], dtype=np.uint8).astype(np.float32) + len(t)
                for t in texts]
        return embeddings.normalise(np.array(rows).reshape(len(texts), 8))


def test_cache_second_call_makes_no_inner_call(tmp_path):
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, EmbeddingConfig(), tmp_path / "cache")
    first = cached.embed(["alpha", "beta", "gamma"])
    assert (cached.calls, cached.misses, cached.hits) == (1, 3, 0)
    second = cached.embed(["gamma", "alpha", "beta"])
    assert (cached.calls, cached.misses, cached.hits) == (1, 3, 3)
    assert len(inner.seen) == 1
    np.testing.assert_array_equal(second, first[[2, 0, 1]])
    assert second.dtype == np.float32


def test_cache_embeds_only_the_new_text_and_survives_reopening(tmp_path):
    inner = CountingEmbedder()
    CachedEmbedder(inner, EmbeddingConfig(), tmp_path / "cache").embed(["alpha", "beta"])
    reopened = CachedEmbedder(inner, EmbeddingConfig(), tmp_path / "cache")  # a new process would do this
    out = reopened.embed(["alpha", "delta", "beta", "delta"])
    assert inner.seen[-1] == ["delta"]  # only the miss, once, in one call
    assert (reopened.calls, reopened.misses, reopened.hits) == (1, 1, 3)
    np.testing.assert_array_equal(out[1], out[3])
    np.testing.assert_array_equal(out[1], inner.embed(["delta"])[0])


def test_cache_a_different_config_misses(tmp_path):
    inner = CountingEmbedder()
    CachedEmbedder(inner, EmbeddingConfig(), tmp_path / "cache").embed(["alpha"])
    other = CachedEmbedder(
        inner, EmbeddingConfig(provider="openai", model="text-embedding-3-small"), tmp_path / "cache"
    )
    other.embed(["alpha"])
    assert (other.misses, other.hits, other.calls) == (1, 0, 1)


def test_cache_stores_no_api_key(tmp_path, monkeypatch):
    monkeypatch.setenv("WB_TEST_SECRET_KEY", "sk-very-secret-value")
    cfg = EmbeddingConfig(provider="openai", model="m", api_key_env="WB_TEST_SECRET_KEY", base_url="http://x/v1")
    CachedEmbedder(CountingEmbedder(), cfg, tmp_path / "cache").embed(["alpha"])
    blob = b"".join(p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert b"sk-very-secret-value" not in blob


def test_make_embedder_wraps_in_cache_when_dir_given(tmp_path):
    plain = make_embedder(EmbeddingConfig())
    assert isinstance(plain, LocalMiniLM)
    cached = make_embedder(EmbeddingConfig(), cache_dir=tmp_path / "emb")
    assert isinstance(cached, CachedEmbedder) and cached.dim == 384
    a = cached.embed(["Super Bowl 50"])
    b = cached.embed(["Super Bowl 50"])
    assert cached.hits == 1 and cached.calls == 1
    np.testing.assert_allclose(a, plain.embed(["Super Bowl 50"]), atol=1e-6)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- OpenAI-compatible endpoint


def test_openai_missing_env_var_is_named(monkeypatch):
    monkeypatch.delenv("WB_NO_SUCH_KEY", raising=False)
    cfg = EmbeddingConfig(provider="openai", model="text-embedding-3-small", api_key_env="WB_NO_SUCH_KEY")
    with pytest.raises(ModelError, match="set the environment variable WB_NO_SUCH_KEY"):
        make_embedder(cfg)


class FakeEmbeddingsServer:
    """A tiny OpenAI-compatible /v1/embeddings server on 127.0.0.1 (stdlib only)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(body)
                owner.auth.append(self.headers.get("Authorization"))
                if self.path != "/v1/embeddings":
                    self.send_response(404)
                    self.end_headers()
                    return
                inputs = body["input"]
                data = [
                    # un-normalised, text-dependent vectors: [len, index-in-batch+1, 3]
                    {"object": "embedding", "index": i, "embedding": [float(len(t)), float(i + 1), 3.0]}
                    for i, t in enumerate(inputs)
                ]
                data.reverse()  # out of order on purpose: the client must sort by index
                payload = json.dumps(
                    {"object": "list", "data": data, "model": body["model"],
                     "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_embedder_over_real_http(monkeypatch):
    monkeypatch.setenv("WB_FAKE_KEY", "sk-test")
    with FakeEmbeddingsServer() as server:
        cfg = EmbeddingConfig(
            provider="openai", model="fake-embed", base_url=server.base_url, api_key_env="WB_FAKE_KEY", batch_size=2
        )
        embedder = make_embedder(cfg)
        texts = ["a", "bbbb", "cc", "ddddddd", "e"]
        vectors = embedder.embed(texts)
    assert vectors.shape == (5, 3) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    # batch_size=2 → requests of 2, 2, 1; index within each batch is 1, 2, 1, 2, 1
    assert [r["input"] for r in server.requests] == [["a", "bbbb"], ["cc", "ddddddd"], ["e"]]
    assert all(r["model"] == "fake-embed" for r in server.requests)
    assert server.auth == ["Bearer sk-test"] * 3
    expected = np.array([[1, 1, 3], [4, 2, 3], [2, 1, 3], [7, 2, 3], [1, 1, 3]], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert embedder.dim == 3 and embedder.name == "fake-embed"


def test_openai_unreachable_base_url_is_named():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    embedder = OpenAIEmbedder(EmbeddingConfig(provider="openai", model="m", base_url=url), max_retries=0)
    with pytest.raises(ModelError, match=f"cannot reach the embeddings endpoint {url}"):
        embedder.embed(["hello"])
