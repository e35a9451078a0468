"""Human labels on a sweep's answers, the review queue, promoting corrections, and judge agreement.

    results.label("3f2a", "Who won Super Bowl 50?", "partly", corrected="Denver Broncos", note="team only")
    results.review_queue()        # what to label next: variants disagree most, or the judge is least sure
    results.promote_corrections() # a new eval-set version beside the old one (never overwritten)
    results.judge_agreement()     # accuracy and Cohen's κ of each judged metric against the labels

The labels live in MLflow (tracking/labels.py) and `load_sweep` reads them back into `results.labels`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.errors import ConfigError, DataError
from workbench.scoring import catalogue
from workbench.scoring.agreement import MIN_LABELS, Agreement, agreement
from workbench.tracking import labels as store

if TYPE_CHECKING:
    from workbench.analysis.results import SweepResults


def _uri(results: SweepResults) -> str:
    if not results.spec.tracking.enabled and results.tracking_uri is None:
        raise ConfigError("labels are stored in MLflow, and this sweep ran with tracking.enabled: false")
    return results.tracking_uri or results.spec.tracking.tracking_uri


def question_id(results: SweepResults, variant_hash: str, question: str) -> str:
    """A question of the variant by its id or its exact text."""
    rows = [r for r in results.rows if r["variant_hash"] == variant_hash]
    for key in ("question_id", "question"):
        found = [r["question_id"] for r in rows if str(r.get(key)) == question]
        if found:
            return str(found[0])
    raise ConfigError(f"question: {question!r} is neither the id nor the text of a question of variant "
                      f"{variant_hash[:12]}; see results.questions() for both")


def label(results: SweepResults, variant: str, question: str, verdict: str, corrected: str | None = None,
          note: str | None = None) -> dict[str, Any]:
    """Log a human label on the (variant, question)'s trace and keep it in `results.labels`."""
    store.check_verdict(verdict)  # before any look-up
    v = results.variant(variant)
    qid = question_id(results, v.hash, question)
    uri = _uri(results)
    trace_id = store.find_trace(uri, results.sweep_id, v.hash, qid)
    logged = store.log_label(uri, trace_id, verdict, corrected, note)
    entry = {"variant_hash": v.hash, "question_id": qid, **logged}
    results.labels[:] = [x for x in results.labels if (x["variant_hash"], x["question_id"]) != (v.hash, qid)] + [entry]
    return entry


def labels_frame(results: SweepResults) -> pd.DataFrame:
    """One row per labelled (variant, question): the label beside the question, answer and scores."""
    cols = ["variant_hash", "question_id", "verdict", "corrected", "note", "labeller"]
    lab = pd.DataFrame(results.labels, columns=cols + ["trace_id"])[cols]
    if lab.empty or not results.rows:
        return lab
    rows = pd.DataFrame(results.rows)
    rows["question_id"] = rows["question_id"].astype(str)
    return lab.merge(rows, on=["variant_hash", "question_id"], how="left")


def judged_metrics(rows: pd.DataFrame) -> list[str]:
    return [m for m in catalogue.names("judged") if m in rows.columns and rows[m].notna().any()]


def review_queue(results: SweepResults, pass_metric: str | None = None) -> pd.DataFrame:
    """Unlabelled (variant, question) pairs, most worth a look first.

    disagreement: how far the variants' scores on the question spread (std of `pass_metric`, default f1
    or the first answer metric present; ×2 so a 0/1 split is 1); uncertainty: how near 0.5 the judge's
    scores are (1 − 2·|score − 0.5|, the mean over judged metrics). priority = the larger of the two.
    """
    rows = pd.DataFrame(results.rows)
    if rows.empty:
        return pd.DataFrame(columns=["variant", "question_id", "question", "priority", "disagreement", "uncertainty"])
    rows["question_id"] = rows["question_id"].astype(str)
    metric = pass_metric or next((m for m in ("f1", "exact_match", *catalogue.names("answer"), "hit_at_k")
                                  if m in rows.columns and rows[m].notna().any()), None)
    rows["disagreement"] = (rows.groupby("question_id")[metric].transform(lambda x: x.std(ddof=0) * 2)
                            if metric else 0.0)
    judged = judged_metrics(rows)
    rows["uncertainty"] = (1 - 2 * (rows[judged] - 0.5).abs()).mean(axis=1) if judged else np.nan
    rows["priority"] = rows[["disagreement", "uncertainty"]].max(axis=1).fillna(0.0)
    done = {(x["variant_hash"], str(x["question_id"])) for x in results.labels}
    todo = rows[[(h, q) not in done for h, q in zip(rows["variant_hash"], rows["question_id"])]]
    out = todo.sort_values(["priority", "question_id"], ascending=[False, True], kind="stable")
    return out[["variant", "question_id", "question", "priority", "disagreement", "uncertainty"]].reset_index(drop=True)


def next_version_path(path: Path) -> Path:
    """`eval.jsonl` -> `eval.v2.jsonl` (or the next free number): the original is never touched."""
    stem = path.stem
    base, _, num = stem.rpartition(".v")
    start = int(num) + 1 if base and num.isdigit() else 2
    base = base if base and num.isdigit() else stem
    for n in range(start, start + 10_000):
        candidate = path.with_name(f"{base}.v{n}.jsonl")
        if not candidate.exists():
            return candidate
    raise DataError(f"{path}: no free version name beside it")


def promote_corrections(results: SweepResults, out: str | Path | None = None) -> Path:
    """The eval set with each corrected answer as the first reference answer of its question, as JSONL
    beside the original (`<name>.v2.jsonl`, …); the old references and the label's provenance are kept."""
    from workbench.data.corpus import load_corpus
    from workbench.data.evalset import load_eval
    from workbench.data.synth_filters import write_eval_jsonl

    corrected = [x for x in results.labels if x.get("corrected")]
    if not corrected:
        raise ConfigError("no corrected answers to promote; label an answer with corrected='…' first")
    src = results.spec.data.eval.model_copy(update={"limit": None})  # a version of the whole set
    evalset = load_eval(src, load_corpus(results.spec.data.corpus))
    by_q: dict[str, dict] = {}
    for x in sorted(corrected, key=lambda x: x.get("time_ms") or 0):
        by_q[str(x["question_id"])] = x  # the newest correction of a question wins
    rows = []
    for item in evalset:
        row: dict[str, Any] = {"id": item.id, "question": item.question, "reference_answers": list(item.reference_answers),
                               "relevant_ids": list(item.relevant_ids)}
        fix = by_q.get(str(item.id))
        if fix is not None:
            row["reference_answers"] = [fix["corrected"], *(a for a in item.reference_answers if a != fix["corrected"])]
            row["provenance"] = {"corrected_by": fix.get("labeller"), "trace_id": fix.get("trace_id"),
                                 "previous_reference_answers": list(item.reference_answers)}
        rows.append(row)
    original = Path(src.path)
    target = Path(out) if out is not None else next_version_path(
        original if original.suffix == ".jsonl" else original.with_suffix(".jsonl"))
    write_eval_jsonl(rows, target)
    meta = {"source": evalset.source, "source_digest": evalset.digest, "sweep_id": results.sweep_id,
            "corrected_questions": sorted(by_q)}
    target.with_name(target.stem + ".provenance.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return target


def judge_agreement(results: SweepResults, *, positive: tuple[str, ...] = ("correct",), min_labels: int = MIN_LABELS,
                    log: bool = True) -> pd.DataFrame:
    """Per judged metric: accuracy and Cohen's κ (95 % CIs) of the judge against the human labels, the
    chosen threshold and the confusion counts; logged to the sweep's parent run when `log`."""
    lab = labels_frame(results)
    found: list[Agreement] = []
    for metric in judged_metrics(lab) if not lab.empty else []:
        both = lab[lab[metric].notna()]
        found.append(agreement(metric, both[metric].tolist(), both["verdict"].isin(positive).astype(int).tolist(),
                               min_labels=min_labels))
    frame = pd.DataFrame([a.row() for a in found])
    if frame.empty:
        frame = pd.DataFrame(columns=["metric", "n", "threshold", "accuracy", "kappa", "note"])
    frame = frame.set_index("metric")
    if log and results.parent_run_id and not frame.empty:
        store.log_agreement(_uri(results), results.parent_run_id, frame.reset_index().to_dict("records"))
    return frame


def agreement_warning(frame: pd.DataFrame) -> str | None:
    """One line for the Results view when a judge agrees poorly with the labels, else None."""
    if frame.empty or "low" not in frame.columns:
        return None
    low = frame[frame["low"].astype(bool)]
    if low.empty:
        return None
    parts = [f"{m} κ={'n/a' if pd.isna(r['kappa']) else f'{r.kappa:.2f}'} on {int(r.n)} labels" for m, r in low.iterrows()]
    return "low judge agreement with human labels: " + "; ".join(parts) + " — read these judged numbers with care"
