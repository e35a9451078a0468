"""ragas' non-LLM answer metrics computed without importing ragas (workbench.scoring.text_similarity): the same
numbers as ragas on SQuAD answers, and a fresh process that loads them never imports ragas or all of nltk."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from conftest import ROOT, SQUAD

PROBE = """
import json, sys
from workbench.scoring import text_similarity as t
t.load()
heavy = sorted(m for m in ("ragas", "nltk", "sklearn", "scipy", "pandas") if m in sys.modules)
pairs = json.loads(sys.stdin.read())
scores = [[t.rouge_l_f(r, p), t.levenshtein_similarity(r, p)] for r, p in pairs]
import nltk  # the real package, whole, after the lean import
print(json.dumps({"heavy": heavy, "scores": scores, "sent_tokenize": hasattr(nltk, "sent_tokenize"),
                  "stemmer": nltk.stem.porter.PorterStemmer().stem("running")}))
"""


def _squad_pairs(n: int = 40) -> list[tuple[str, str]]:
    """(reference, response) pairs from real SQuAD answers: an answer against another annotator's answer,
    against its own context's first sentence, and against the next question's answer."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    qas = [(p["context"], qa) for article in data for p in article["paragraphs"] for qa in p["qas"]][:n]
    pairs = []
    for (context, qa), (_, nxt) in zip(qas, qas[1:]):
        answers = [a["text"] for a in qa["answers"]]
        pairs += [(answers[0], answers[-1] + " indeed"), (answers[0], context.split(". ")[0]),
                  (answers[0], nxt["answers"][0]["text"])]
    return pairs


def test_same_numbers_as_ragas_and_no_ragas_or_nltk_package_import():
    from ragas.metrics.collections import DistanceMeasure, NonLLMStringSimilarity, RougeScore

    pairs = _squad_pairs()
    got = subprocess.run([sys.executable, "-c", PROBE], input=json.dumps(pairs), capture_output=True, text=True,
                         cwd=ROOT, check=True)
    probe = json.loads(got.stdout)
    assert probe["heavy"] == []  # neither ragas nor nltk's package (sklearn, scipy, pandas) was imported
    assert probe["sent_tokenize"] and probe["stemmer"] == "run"

    rouge, similarity = RougeScore(rouge_type="rougeL", mode="fmeasure"), NonLLMStringSimilarity(
        distance_measure=DistanceMeasure.LEVENSHTEIN)

    async def ragas_scores():
        return [[(await rouge.ascore(reference=r, response=p)).value,
                 (await similarity.ascore(reference=r, response=p)).value] for r, p in pairs]

    expected = asyncio.run(ragas_scores())
    assert [v for s in probe["scores"] for v in s] == pytest.approx([v for s in expected for v in s], abs=1e-12)
    assert 0 < sum(s[0] for s in expected) < len(pairs)  # the pairs are neither all equal nor all disjoint


RACE = """
import sys, threading, types
sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
from workbench.scoring import text_similarity as t
stop = threading.Event()
def churn():  # another thread importing modules, as the sweep's other workers do while the scorer loads
    i = 0
    while not stop.is_set():
        sys.modules[f"_churn_{i}"] = types.ModuleType("churn")
        sys.modules.pop(f"_churn_{i - 50}", None)
        i += 1
threading.Thread(target=churn, daemon=True).start()
for _ in range(200):
    t._forget_nltk()
t.load()
stop.set()
print(t.rouge_l_f("the running man", "a man running"))
"""


def test_loading_the_scorer_while_another_thread_imports_does_not_trip_over_sys_modules():
    # CI once failed: "dictionary changed size during iteration" in the list comprehension over sys.modules
    got = subprocess.run([sys.executable, "-c", RACE], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert got.returncode == 0, got.stderr[-2000:]
    assert 0 < float(got.stdout) < 1
