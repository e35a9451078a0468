"""chromadb imported without jsonschema's 1.7 s `rfc3987_syntax` import (workbench.rag.chroma_import)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

PROBE = """
import importlib.util, json, sys, time
from workbench.rag.retrieval import chroma_client
t = time.process_time()
collection = chroma_client(None).create_collection("probe")
collection.add(ids=["a"], embeddings=[[0.0, 1.0]], documents=["x"])
first = {"installed": importlib.util.find_spec("rfc3987_syntax") is not None,
         "jsonschema": "jsonschema" in sys.modules, "skipped": "rfc3987_syntax" not in sys.modules,
         "count": collection.count()}
first["later"] = sys.modules.get("rfc3987_syntax", "absent")  # not a None left behind: importable as usual
print(json.dumps(first))
"""


def test_chromadb_works_and_jsonschema_skipped_the_iri_grammar():
    got = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, check=True)
    probe = json.loads(got.stdout.strip().splitlines()[-1])
    # installed with JupyterLab (jupyter-events needs jsonschema[format-nongpl]): the case this module is for
    assert probe == {"installed": True, "jsonschema": True, "skipped": True, "count": 1, "later": "absent"}
