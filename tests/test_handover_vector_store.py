"""An export remembers where its sweep's dense index lives (`vector_store`): load_pipeline opens that Chroma
server, and says so clearly when it is gone or the block is malformed. The round trip against a real
`chroma run` (same answers, nothing embedded locally) is in tests/test_scale_out.py."""

from __future__ import annotations

import pytest

from conftest import SQUAD
from workbench.data.corpus import load_corpus
from workbench.errors import ConfigError, StorageError
from workbench.handover.export import HEADER, load_pipeline
from workbench.handover.seal import FORMAT, seal
from workbench.processes import free_port
from workbench.spec import CorpusSource, VariantConfig, dump_yaml


def write_export(tmp_path, vector_store, retrieval="dense"):
    source = CorpusSource(format="squad", path=str(SQUAD))
    variant = VariantConfig.model_validate({"chunking": {"strategy": "recursive", "size": 400, "overlap": 40},
                                            "retrieval": {"kind": retrieval, "k": 3},
                                            "model": {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"},
                                            "prompt": {"name": "p", "template": "{context}\n{question}"}})
    doc = {"format": FORMAT, "variant_hash": variant.hash, "variant": variant.model_dump(mode="json"),
           "data": {"corpus": source.model_dump(mode="json"), "corpus_digest": load_corpus(source).digest},
           "provenance": {}, "examples": [], "vector_store": vector_store}
    path = tmp_path / "winner.yaml"
    path.write_text(HEADER + dump_yaml(seal(doc)))
    return path


def test_an_export_whose_chroma_server_is_gone_is_one_clear_error(tmp_path):
    port = free_port()  # nothing listens there
    path = write_export(tmp_path, {"kind": "chroma_server", "host": "127.0.0.1", "port": port, "ssl": False})
    with pytest.raises(StorageError) as info:
        load_pipeline(path, home=tmp_path / "prod")
    assert f"http://127.0.0.1:{port}" in str(info.value) and "chroma run" in str(info.value)
    assert not (tmp_path / "prod" / "chroma").exists()  # it never fell back to an empty local store


def test_a_bm25_winner_needs_no_vector_store(tmp_path):
    path = write_export(tmp_path, {"kind": "chroma_server", "host": "127.0.0.1", "port": free_port(), "ssl": False},
                        retrieval="bm25")
    with load_pipeline(path, home=tmp_path / "prod") as pipe:
        hits, _ = pipe.rag.retrieve("Which NFL team won Super Bowl 50?")
        assert len(hits) == 3  # BM25 answered; the dead server was never asked


def test_a_malformed_vector_store_block_names_the_field(tmp_path):
    path = write_export(tmp_path, {"kind": "chroma_server", "port": 8000})  # no host
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, home=tmp_path / "prod")
    assert "vector_store" in str(info.value) and "host" in str(info.value)
