"""Production questions back into an eval set: `workbench harvest --deployment NAME --out new_eval.jsonl`.

One JSONL line per distinct question (case and spacing folded), PII-redacted, in the eval JSONL format the
sweep reads (`id`, `question`, `reference_answers`): a corrected answer from feedback becomes a reference;
an up-voted answer becomes a *candidate* reference (`candidate_references`, `reference_kind: "candidate"`),
kept out of `reference_answers` until a person confirms it; the rest have no reference (retrieval metrics and
LLM judges still apply). Each line carries its provenance (trace ids, first and last time asked); the file's
own provenance (deployment, store, configs, time range) goes to `<out>.provenance.json`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from workbench.errors import DataError
from workbench.handover.serve.service import normalize
from workbench.redact import redact_text


@dataclass(frozen=True)
class Harvest:
    path: Path
    provenance_path: Path
    questions: int
    traces: int
    corrected: int
    candidates: int


def _iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds") if ms else None


def harvest_rows(rows: list[dict], deployment: str) -> list[dict]:
    """Trace rows (`serve_log.trace_row` with spans) → eval items, first-asked first (pure)."""
    groups: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["time_ms"] or 0):
        question = redact_text(row.get("question") or "")
        if question.strip():
            groups.setdefault(normalize(question), []).append({**row, "question": question})
    items = []
    for key, group in groups.items():
        refs = list(dict.fromkeys(redact_text(c) for r in group for c in r["corrections"] if c and c.strip()))
        candidates = list(dict.fromkeys(redact_text(r["answer"]) for r in group
                                        if r.get("positive") and r.get("answer")))
        items.append({
            "id": f"prod-{hashlib.sha256(key.encode()).hexdigest()[:12]}",
            "question": group[0]["question"],
            "reference_answers": refs,
            "reference_kind": "corrected" if refs else "candidate" if candidates else "none",
            "candidate_references": [c for c in candidates if c not in refs],
            "provenance": {"deployment": deployment, "trace_ids": [r["trace_id"] for r in group],
                           "asked": len(group), "first_seen": _iso(group[0]["time_ms"]),
                           "last_seen": _iso(group[-1]["time_ms"])},
        })
    return items


def harvest(deployment: str, out: str | Path, *, tracking_uri: str = "sqlite:///mlruns/mlflow.db",
            since_ms: int | None = None) -> Harvest:
    from workbench.handover.export import write_atomically
    from workbench.tracking.serve_log import read_traces, trace_row

    out = Path(out)
    rows = [trace_row(t) for t in read_traces(tracking_uri, deployment, include_spans=True, since_ms=since_ms)]
    if not rows:
        raise DataError(f"deployment {deployment!r} has no traces{' since then' if since_ms else ''} in "
                        f"{tracking_uri}; serve some requests first, or check --tracking-uri")
    items = harvest_rows(rows, deployment)
    write_atomically(out, "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items))
    times = [r["time_ms"] for r in rows if r["time_ms"]]
    provenance = {
        "deployment": deployment, "tracking_uri": tracking_uri, "traces": len(rows), "questions": len(items),
        "from": _iso(min(times)), "to": _iso(max(times)),
        "config_hashes": sorted({r["config_hash"] for r in rows if r["config_hash"]}),
        "sweep_ids": sorted({r["sweep_id"] for r in rows if r["sweep_id"]}),
        "harvested_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "redacted": True,
    }
    prov_path = out.with_name(out.name + ".provenance.json")
    write_atomically(prov_path, json.dumps(provenance, indent=2) + "\n")
    return Harvest(out, prov_path, len(items), len(rows), sum(i["reference_kind"] == "corrected" for i in items),
                   sum(i["reference_kind"] == "candidate" for i in items))
