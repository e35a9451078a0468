"""An index build embeds on a second thread only while no model call is out (issue 20: in a cold sweep the calls
ran out of work and waited for the dense index while the core the build leaves them sat idle)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from conftest import SQUAD
from workbench.data.corpus import load_corpus
from workbench.spec import CorpusSource
from workbench.rag.embed_batches import embed_planned, plan
from workbench.rag.embeddings import LocalMiniLM
from workbench.runner.workspace import Workspace


def _fake_embed(log: list):
    def embed(idx: list[int]) -> np.ndarray:
        log.append(threading.current_thread().name)
        time.sleep(0.01)
        return np.array([[i, 1.0] for i in idx], dtype=np.float32)
    return embed


def test_the_plan_covers_every_text_once_longest_first():
    texts = ["a" * n for n in (10, 2000, 300, 40, 1200)]
    batches = plan(texts, batch_size=2, max_tokens=256)
    assert sorted(i for b in batches for i in b) == list(range(5))
    assert batches[0] == [1, 4]  # the longest, truncated at 256 tokens: two make a batch of 512
    assert batches[-1][-1] == 0 and all(len(b) <= 2 for b in batches)
    assert plan(texts, batch_size=8, max_tokens=1024)[0] == [1]  # ~500 tokens: alone


@pytest.mark.parametrize("spare", [True, False])
def test_a_second_thread_embeds_only_while_a_core_is_spare(spare):
    log: list[str] = []
    batches = [[i] for i in range(12)]
    out = embed_planned(batches, 12, 2, _fake_embed(log), spare_core=lambda: spare)
    assert out[:, 0].tolist() == list(range(12))  # every text, in input order
    helpers = log.count("workbench-embed-spare")
    assert (helpers > 0) is spare and len(log) == 12


def test_the_second_thread_steps_back_when_calls_are_out_again():
    log: list[str] = []
    calls_out = threading.Event()

    def embed(idx):
        if len(log) == 3:
            calls_out.set()  # from now on the core is the calls'
        return _fake_embed(log)(idx)

    embed_planned([[i] for i in range(20)], 20, 2, embed, spare_core=lambda: not calls_out.is_set())
    after = log[4:]
    assert after.count("workbench-embed-spare") <= 1  # at most the batch it had taken


def test_a_failed_batch_is_raised_by_the_caller():
    def embed(idx):
        if idx == [5]:
            raise ValueError("batch 5")
        return np.zeros((1, 2), dtype=np.float32)

    with pytest.raises(ValueError, match="batch 5"):
        embed_planned([[i] for i in range(10)], 10, 2, embed, spare_core=lambda: True)


def test_the_local_model_gives_the_same_vectors_with_a_spare_core():
    corpus = load_corpus(CorpusSource(format="squad", path=str(SQUAD)))
    texts = [doc.text[:600] for doc in corpus.documents][:40]
    model = LocalMiniLM(batch_size=8, share_cpu=True)
    alone = model.embed(texts)
    model.spare_core = lambda: True
    assert np.array_equal(model.embed(texts), alone)


def test_a_sweep_lends_the_spare_core_only_to_builds_that_leave_one(tmp_path):
    from workbench.spec import EmbeddingConfig

    class V:
        embedding = EmbeddingConfig(provider="local")

    for share in (True, False):
        ws = Workspace(home=tmp_path, corpus=None, share_cpu=share)
        made = ws.embedder(V)
        ws.lend_spare_core(lambda: True)
        lent = getattr(made, "inner", made).spare_core
        assert (lent is not None) is share
