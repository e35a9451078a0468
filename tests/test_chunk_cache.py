"""A corpus's chunks are kept under the home (workbench.rag.chunk_cache): read back equal, without importing
langchain's splitters; a file that does not match the corpus is split again."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, SQUAD
from workbench.data.corpus import load_corpus
from workbench.rag.chunk_cache import chunks_for, chunks_key
from workbench.rag.chunking import chunk_corpus
from workbench.spec import ChunkingConfig, CorpusSource

CORPUS = CorpusSource(format="squad", path=str(SQUAD))
TOKEN = ChunkingConfig(strategy="token", size=128, overlap=16)

PROBE = """
import sys
from workbench.data.corpus import load_corpus
from workbench.rag.chunk_cache import chunks_for
from workbench.spec import ChunkingConfig, CorpusSource
chunks = chunks_for(load_corpus(CorpusSource(format="squad", path=sys.argv[1])),
                    ChunkingConfig(strategy="token", size=128, overlap=16), sys.argv[2])
print(len(chunks), "langchain_text_splitters" in sys.modules, "tokenizers" in sys.modules)
"""


def test_chunks_are_kept_and_read_back_without_the_splitters(tmp_path):
    corpus = load_corpus(CORPUS)
    first = chunks_for(corpus, TOKEN, tmp_path)
    assert first == chunk_corpus(corpus, TOKEN) and len(first) > 10
    path = tmp_path / "cache" / "chunks" / f"{chunks_key(corpus, TOKEN)}.json"
    assert path.exists()
    other = ChunkingConfig(strategy="recursive", size=500, overlap=50)
    assert chunks_key(corpus, other) != chunks_key(corpus, TOKEN)
    got = subprocess.run([sys.executable, "-c", PROBE, str(SQUAD), str(tmp_path)], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert got.stdout.split() == [str(len(first)), "False", "False"]  # read back: nothing split, nothing loaded


def test_a_file_that_does_not_match_the_corpus_is_split_again(tmp_path, caplog):
    corpus = load_corpus(CORPUS)
    first = chunks_for(corpus, TOKEN, tmp_path)
    path = tmp_path / "cache" / "chunks" / f"{chunks_key(corpus, TOKEN)}.json"
    rows = json.loads(path.read_text())["chunks"]
    rows[3][2] = "Denver lost."  # a chunk whose text is not its document's text at its offsets
    path.write_text(json.dumps({"chunks": rows}))
    assert chunks_for(corpus, TOKEN, tmp_path) == first
    assert "does not match the corpus" in caplog.text
    assert json.loads(path.read_text())["chunks"][3][2] == first[3].text  # rewritten
    path.write_text("{ not json")
    assert chunks_for(corpus, TOKEN, tmp_path) == first and "not a readable chunk list" in caplog.text
