"""Old import path of the corpus and eval-set loaders, kept only for `workbench.runner.sweep`.

The loaders live in `workbench.data.corpus` and `workbench.data.evalset`; delete this module once the
runner imports from there.
"""

from workbench.data.corpus import Corpus, Document, load_corpus
from workbench.data.evalset import EvalItem, EvalSet, load_eval

__all__ = ["Corpus", "Document", "EvalItem", "EvalSet", "load_corpus", "load_eval"]
