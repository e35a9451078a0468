"""chromadb, bm25s, httpx and tenacity imported without what they never use here (workbench.rag.lean_imports):
jsonschema's 1.7 s `rfc3987_syntax` grammar, `overrides`' signature checks, bm25s' `scipy.sparse`, httpx's
command-line client, tenacity's tornado support. Each skip is for the importing thread only and leaves the
module importable afterwards."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

CHROMA = """
import importlib.util, json, sys
from workbench.rag.retrieval import chroma_client
collection = chroma_client(None).create_collection("probe")
collection.add(ids=["a"], embeddings=[[0.0, 1.0]], documents=["x"])
import overrides, chromadb.api.rust as rust
first = {"installed": importlib.util.find_spec("rfc3987_syntax") is not None,
         "jsonschema": "jsonschema" in sys.modules, "skipped": "rfc3987_syntax" not in sys.modules,
         "count": collection.count(), "marked": rust.RustBindingsAPI.heartbeat.__override__,
         "checks_back": overrides.override.__module__}
import rfc3987_syntax  # importable as usual afterwards
print(json.dumps(first))
"""

BM25 = """
import json, sys, threading
from workbench.rag.lean_imports import import_bm25s
other = {}
def elsewhere():  # another thread importing scipy at the same moment is not refused
    try:
        import scipy.sparse
        other["ok"] = True
    except ImportError as exc:
        other["ok"] = repr(exc)
thread = threading.Thread(target=elsewhere)
if sys.argv[1] == "beside":
    thread.start()
bm25s = import_bm25s()
if sys.argv[1] == "beside":
    thread.join()
alone = "scipy" not in sys.modules
if sys.argv[1] != "beside":
    elsewhere()  # importable afterwards
retriever = bm25s.BM25(csc_backend="numpy")
corpus = [["super", "bowl", "denver"], ["broncos", "won"], ["carolina", "panthers", "lost"]]
retriever.index(corpus, show_progress=False)
scores = retriever.get_scores(["broncos"]).tolist()
print(json.dumps({"scipy_skipped": alone and not bm25s.SCIPY_AVAILABLE, "other_thread": other["ok"],
                  "best": scores.index(max(scores))}))
"""


def probe(code: str, *args: str) -> dict:
    got = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)
    assert got.returncode == 0, got.stderr[-3000:]
    return json.loads(got.stdout.strip().splitlines()[-1])


def test_chromadb_works_without_the_iri_grammar_or_the_override_checks():
    # installed with JupyterLab (jupyter-events needs jsonschema[format-nongpl]): the case this module is for
    assert probe(CHROMA) == {"installed": True, "jsonschema": True, "skipped": True, "count": 1, "marked": True,
                             "checks_back": "overrides.overrides"}


def test_bm25s_works_without_scipy_and_scipy_stays_importable():
    assert probe(BM25, "alone") == {"scipy_skipped": True, "other_thread": True, "best": 1}


def test_another_thread_importing_scipy_meanwhile_gets_it():
    assert probe(BM25, "beside")["other_thread"] is True


CLI_STACK = """
import json, sys
from workbench.rag.lean_imports import import_for_the_command_line
import_for_the_command_line()
import httpx, tenacity
skipped = "httpx._main" not in sys.modules and "tornado" not in sys.modules
with httpx.Client() as client:
    pass
retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(2), reraise=True)
calls = []
def flaky():
    calls.append(1)
    if len(calls) < 2:
        raise ValueError("once")
    return "ok"
result = retrying(flaky)
import tornado, httpx._main  # importable as usual afterwards
print(json.dumps({"skipped": skipped, "retried": result == "ok" and len(calls) == 2, "tornado_later": tornado.version_info > (0,)}))
"""


def test_httpx_and_tenacity_work_without_httpx_cli_and_tornado():
    assert probe(CLI_STACK) == {"skipped": True, "retried": True, "tornado_later": True}
