"""What a sweep does not need is never loaded (issue 20): the CLI and the runner import no ragas, Chroma,
MLflow or onnxruntime; a BM25 sweep never opens Chroma; the MiniLM model is verified when its embedder
is made and loaded only when something is embedded (a sweep whose vectors are cached never holds it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import small_spec
from workbench.data.corpus import load_corpus
from workbench.rag.assemble import build_pipeline
from workbench.rag.embeddings import LocalMiniLM
from workbench.runner.workspace import Workspace
from workbench.spec import load_spec

HEAVY = ("ragas", "chromadb", "mlflow", "onnxruntime")


def test_the_cli_and_the_runner_import_none_of_the_heavy_libraries():
    code = ("import sys, workbench.cli, workbench.runner.sweep, workbench.runner.execution; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_bm25_sweep_never_opens_chroma_nor_loads_the_embedding_model(tmp_path):
    spec = load_spec(small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}]))
    ws = Workspace(home=tmp_path / "home", corpus=load_corpus(spec.data.corpus))
    variant = spec.variants()[0]
    pipe = build_pipeline(variant, ws.index(variant), None)
    assert pipe.retrieve("Who won Super Bowl 50?")[0]  # it retrieved
    assert ws.client._made is None  # Chroma's client was never made
    assert all(e.inner._loaded is None for e in ws._embedders.values())  # nor the model loaded


def test_the_embedding_model_loads_on_the_first_embed():
    model = LocalMiniLM()
    assert model._loaded is None
    vectors = model.embed(["Denver won Super Bowl 50."])
    assert vectors.shape == (1, model.dim) and model._loaded is not None


def test_embedding_batches_stay_small_enough_to_bound_memory(monkeypatch):
    """At 64 texts of ~128 tokens a batch, onnxruntime held ~770 MB of activations at once (issue 20's 1.1 GB
    CLI); batches are bounded to MAX_BATCH_TOKENS (512) tokens, so ~4 chunks of 500 characters."""
    import numpy as np

    model = LocalMiniLM()
    sizes: list[int] = []
    monkeypatch.setattr(model, "_embed_batch", lambda texts: sizes.append(len(texts)) or np.zeros((len(texts), model.dim)))
    model.embed(["The Broncos defeated the Carolina Panthers at Levi's Stadium. " * 8] * 100)  # ~500 chars each
    assert sum(sizes) == 100 and max(sizes) <= 4


@pytest.mark.slow  # a fresh process: onnxruntime's import and a session, measured from outside
def test_loading_the_embedding_model_gives_its_optimisation_copies_back():
    """An onnxruntime session of the 23 MB int8 MiniLM raised RSS by ~160 MB, ~60 of them freed copies from the
    graph optimisation that malloc kept; given back (`give_back_memory`), the session costs ~100 MB."""
    code = ("import psutil, onnxruntime; from workbench.rag.embeddings import LocalMiniLM; from workbench.heap import give_back_memory; "
            "p = psutil.Process(); m = LocalMiniLM(); give_back_memory(); before = p.memory_info().rss; m._model(); "
            "print((p.memory_info().rss - before) / 2**20)")
    grown = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert grown < 130, f"loading the embedding model raised RSS by {grown:.0f} MB"
