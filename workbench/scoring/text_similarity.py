"""ragas' two non-LLM answer metrics computed with the libraries ragas calls, without importing ragas.

`ragas.metrics.collections.RougeScore(rouge_type="rougeL", mode="fmeasure")` is
`rouge_score.RougeScorer(["rougeL"], use_stemmer=True).score(reference, response)["rougeL"].fmeasure`, and
`NonLLMStringSimilarity(LEVENSHTEIN)` is `1 - rapidfuzz.distance.Levenshtein.normalized_distance(reference,
response)` (tests/test_text_similarity.py checks both against ragas on SQuAD answers). Importing ragas for them
costs ~3.4 s of CPU (langchain, datasets, langsmith) and rouge_score's `import nltk` another ~2 s (nltk's
package `__init__` loads scikit-learn, scipy.stats and pandas for its classifiers); a sweep pays both while
its event loop waits on the same GIL. rouge_score needs one thing from nltk, the Porter stemmer, so
`_rouge_scorer_module` imports rouge_score with nltk's package present but its `__init__` not run, then
takes those bare modules out of `sys.modules`: a later `import nltk` anywhere in the process loads the
whole real package as usual.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types
from functools import cache
from pathlib import Path
from typing import Any

_IMPORT_LOCK = threading.Lock()


def _bare_packages(top: str, *subpackages: str) -> dict[str, types.ModuleType] | None:
    """Package `top` and its `subpackages` with their submodule paths but without running any `__init__`
    (None if `top` is not installed). `find_spec` of a dotted name would import its parent: paths are joined."""
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    out = {}
    for name in (top, *subpackages):
        module = types.ModuleType(name)
        rest = name.split(".")[1:]
        module.__path__ = [str(Path(p, *rest)) for p in spec.submodule_search_locations]
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        module.__spec__.submodule_search_locations = module.__path__
        out[name] = module
    return out


@cache
def _rouge_scorer_module() -> Any:
    with _IMPORT_LOCK:
        if "nltk" in sys.modules or "rouge_score.rouge_scorer" in sys.modules:
            return importlib.import_module("rouge_score.rouge_scorer")
        bare = _bare_packages("nltk", "nltk.stem")
        if bare is None:
            return importlib.import_module("rouge_score.rouge_scorer")  # rouge_score's own import error
        sys.modules.update(bare)
        try:
            return importlib.import_module("rouge_score.rouge_scorer")
        except ImportError:  # an nltk whose stemmer needs its package __init__: the ordinary import
            for name in [n for n in sys.modules.copy() if n.startswith("rouge_score")]:
                del sys.modules[name]
            _forget_nltk()
            return importlib.import_module("rouge_score.rouge_scorer")
        finally:
            _forget_nltk(only_bare=bare)


def _forget_nltk(only_bare: dict[str, types.ModuleType] | None = None) -> None:
    """Drop nltk and its submodules from `sys.modules` (rouge_score keeps the stemmer module it holds)."""
    if only_bare is not None and sys.modules.get("nltk") is not only_bare["nltk"]:
        return  # another thread imported the real nltk meanwhile: leave it
    # a snapshot: other threads import while this runs, and iterating sys.modules itself can then raise
    for name in [n for n in sys.modules.copy() if n == "nltk" or n.startswith("nltk.")]:
        sys.modules.pop(name, None)


@cache
def _rouge_l_scorer() -> Any:
    return _rouge_scorer_module().RougeScorer(["rougeL"], use_stemmer=True)


def load() -> None:
    """Import what the two metrics need (~0.2 s): a sweep does it on a worker thread before its first score."""
    _rouge_l_scorer()
    from rapidfuzz.distance import Levenshtein  # noqa: F401


def rouge_l_f(reference: str, response: str) -> float:
    """ROUGE-L F-measure with the Porter stemmer, as ragas' `RougeScore(rouge_type="rougeL")`."""
    return float(_rouge_l_scorer().score(reference, response)["rougeL"].fmeasure)


def levenshtein_similarity(reference: str, response: str) -> float:
    """1 - normalised Levenshtein distance of the raw strings, as ragas' `NonLLMStringSimilarity`."""
    from rapidfuzz.distance import Levenshtein

    return float(1 - Levenshtein.normalized_distance(reference, response))


__all__ = ["levenshtein_similarity", "load", "rouge_l_f"]
