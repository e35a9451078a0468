"""A logged sweep read back from MLflow alone: the fields of a SweepResults (spec, variants, rows, …)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from workbench.errors import TrackingError
from workbench.tracking.labels import read_labels
from workbench.tracking.store import require_existing_store


def read_sweep(sweep_id: str, tracking_uri: str) -> dict[str, Any]:
    """The sweep's parent run (spec, data digests, wall time, status) and each variant's YAML and table,
    in the spec's variant order."""
    import mlflow

    from workbench.spec import SweepSpec, check_sweep_id, load_variant, parse_model, read_yaml

    check_sweep_id(sweep_id)  # it goes into a filter string below
    require_existing_store(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.`workbench.sweep_id` = '{sweep_id}'", output_format="list"
    )
    parents = [r for r in runs if r.data.tags.get("workbench.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("workbench.kind") == "variant"]
    if not parents:
        raise TrackingError(
            f"no sweep {sweep_id!r} at {tracking_uri}; list sweeps in the MLflow UI (tag workbench.sweep_id) "
            "or pass the right --tracking-uri"
        )
    parent = parents[0]
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = client.download_artifacts(parent.info.run_id, "sweep.yaml", tmp)
        spec = parse_model(SweepSpec, read_yaml(spec_path), f"sweep {sweep_id}")
        variants, rows, run_ids, searched = [], [], {}, {}
        order = {v.hash: i for i, v in enumerate(spec.variants())}  # the spec's order, not the execution order
        for child in sorted(children, key=lambda r: (order.get(r.data.tags.get("workbench.variant_hash"), len(order)),
                                                     r.info.start_time)):
            d = Path(tmp) / child.info.run_id
            variant = load_variant(client.download_artifacts(child.info.run_id, "variant.yaml", str(d)))
            table = json.loads(Path(client.download_artifacts(child.info.run_id, "eval_results.json", str(d))).read_text())
            for values in table["data"]:
                rows.append({"variant_hash": variant.hash, "variant": variant.short_hash, **dict(zip(table["columns"], values))})
            variants.append(variant)
            run_ids[variant.hash] = child.info.run_id
            searched.update(_search_state(variant.hash, child.data.tags))
    params = parent.data.params
    data_info = {k: params[k] for k in params if k.startswith("data.")}
    return dict(
        spec=spec,
        sweep_id=sweep_id,
        variants=variants,
        rows=rows,
        run_ids=run_ids,
        parent_run_id=parent.info.run_id,
        data_info=data_info,
        wall_s=parent.data.metrics.get("wall_s"),
        status=parent.info.status,
        tracking_uri=tracking_uri,
        # a halving / optuna search: where each variant stopped (its run's tags), so a loaded search's
        # comparisons leave out the variants that did not answer every question, as the live results do
        search={"strategy": spec.search.strategy, "variants": searched} if searched else {},
        labels=read_labels(tracking_uri, sweep_id),
    )


def _search_state(variant_hash: str, tags: dict[str, str]) -> dict[str, dict[str, Any]]:
    if "workbench.search.strategy" not in tags:
        return {}
    stopped = tags.get("workbench.search.stopped", "no")
    return {variant_hash: {"rung": int(tags.get("workbench.search.rung", -1)),
                           "questions": int(tags.get("workbench.search.questions", 0)),
                           "stopped": None if stopped == "no" else stopped}}
