"""The sweep's retrieval top scores, the baseline the monitor compares production against (drift).

The sweep records which chunks it retrieved but not their scores; retrieval is deterministic, so the
service measures them again at start-up, on the export's own eval questions through its own index, and
keeps them as a tag on the deployment's experiment. Best effort: an eval set that is no longer there
leaves the monitor without a baseline, never the service without answers.
"""

from __future__ import annotations

import sys

from workbench.spec import EvalSource

TAG = "workbench.sweep_top_scores"
MAX_QUESTIONS = 200  # ~1.5 KB of JSON: fits an experiment tag


def sweep_top_scores(export: dict, rag, limit: int = MAX_QUESTIONS) -> list[float]:
    from workbench.data.evalset import load_eval

    source = EvalSource.model_validate(export["data"]["eval"])
    items = load_eval(source).items[:limit]
    return [round(float(hits[0].score), 4) for hits in (rag.retrieve(i.question)[0] for i in items) if hits]


def record_baseline(export: dict, rag, tracking_uri: str, deployment: str) -> list[float] | None:
    from workbench.tracking.serve_log import set_deployment_tag

    try:
        scores = sweep_top_scores(export, rag)
        set_deployment_tag(tracking_uri, deployment, TAG, scores)
        return scores
    except Exception as exc:
        print(f"workbench serve: no retrieval baseline for the monitor ({type(exc).__name__}: {exc})",
              file=sys.stderr, flush=True)
        return None
