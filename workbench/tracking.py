"""MLflow adapter: one parent run per sweep, one child run per variant, traces per question.

Everything about MLflow lives here; the sweep hands over plain rows and metric dicts. A variant is
logged in one go when it finishes (params, metrics, table, YAML, dataset, traces), which keeps the
tracking cost a small share of the sweep.
"""

from __future__ import annotations

import functools
import getpass
import platform
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from workbench import __version__
from workbench.config import SweepSpec, TrackingConfig, VariantConfig, to_yaml
from workbench.errors import TrackingError

TABLE_COLUMNS = (
    "question_id",
    "question",
    "answer",
    "reference_answers",
    "relevant_ids",
    "retrieved_doc_ids",
    "retrieved_chunk_ids",
    "contexts",
    "exact_match",
    "f1",
    "rouge_l",
    "string_similarity",
    "hit_at_k",
    "recall_at_k",
    "mrr",
    "ndcg_at_k",
    "latency_retrieve_s",
    "latency_generate_s",
    "latency_total_s",
    "tokens_prompt",
    "tokens_completion",
    "cost_usd",
    "error",
)


TRACE_MAX_DOCS, TRACE_TEXT_CHARS = 20, 1000

# Row fields that are not per-question results (or are too bulky for the table).
_NOT_IN_TABLE = {"variant_hash", "variant", "messages", "started_at_ns"}


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def _audit_tags() -> tuple[tuple[str, str], ...]:
    tags = {"workbench.version": __version__, "workbench.user": getpass.getuser(), "workbench.host": platform.node()}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tuple(tags.items())


def audit_tags() -> dict[str, str]:
    """Who ran it, where, from which commit and workbench version (computed once per process)."""
    return dict(_audit_tags())


def _prepare_local_store(uri: str) -> None:
    """sqlite:///mlruns/mlflow.db needs its folder to exist before MLflow opens it."""
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _store_lock(uri: str):
    import contextlib

    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()  # a tracking server serialises its own database
    from filelock import FileLock

    return FileLock(str(Path(uri.removeprefix("sqlite:///")).expanduser()) + ".lock")


class NullTracker:
    """Used when tracking is disabled: same calls, nothing logged."""

    parent_run_id: str | None = None

    def start_sweep(
        self, spec: SweepSpec, sweep_id: str, n_variants: int, data_info: dict[str, Any], resume_run_id: str | None = None
    ) -> None: ...

    def existing_run(self, variant_hash: str) -> tuple[str, str] | None:
        return None

    def discard_run(self, run_id: str) -> None: ...

    def log_variant(
        self, variant: VariantConfig, rows: Sequence[dict], metrics: dict[str, float], eval_frame: pd.DataFrame,
        status: str | None = None,
    ) -> str | None:
        return None

    def end_sweep(self, status: str, metrics: dict[str, float] | None = None) -> None: ...


class MlflowTracker:
    def __init__(self, cfg: TrackingConfig, experiment: str):
        import mlflow

        self.mlflow = mlflow
        self.cfg = cfg
        _prepare_local_store(cfg.tracking_uri)
        try:
            # Two sweeps starting at once on a new sqlite store would both run its schema migrations
            # (and both create the experiment): one at a time.
            with _store_lock(cfg.tracking_uri):
                mlflow.set_tracking_uri(cfg.tracking_uri)
                exp = mlflow.get_experiment_by_name(experiment)
                if exp is None:
                    location = cfg.artifact_location
                    if "://" not in location:
                        location = Path(location).resolve().as_uri()
                    mlflow.create_experiment(experiment, artifact_location=location)
                self.experiment = mlflow.set_experiment(experiment)
        except Exception as exc:  # MLflow raises many types; the user needs the URI and the cause
            raise TrackingError(
                f"cannot open MLflow experiment {experiment!r} at tracking URI {cfg.tracking_uri!r}: {exc}. "
                "Check the URI (e.g. sqlite:///mlruns/mlflow.db or http://host:5000) or pass --tracking-uri."
            ) from None
        self.parent_run_id: str | None = None
        self.sweep_id: str | None = None
        self.spec: SweepSpec | None = None

    # ------------------------------------------------------------ sweep

    def start_sweep(
        self, spec: SweepSpec, sweep_id: str, n_variants: int, data_info: dict[str, Any], resume_run_id: str | None = None
    ) -> None:
        mlflow = self.mlflow
        self.spec, self.sweep_id = spec, sweep_id
        self._children: dict[str, tuple[str, str]] = {}
        if resume_run_id is not None:
            try:
                mlflow.start_run(run_id=resume_run_id, nested=mlflow.active_run() is not None)
            except Exception:  # the parent run is gone (deleted, another store): start a fresh one
                resume_run_id = None
            else:
                self.parent_run_id = resume_run_id
                for run in mlflow.search_runs(
                    experiment_ids=[self.experiment.experiment_id],
                    filter_string=f"tags.`workbench.sweep_id` = '{sweep_id}' and tags.`workbench.kind` = 'variant'",
                    output_format="list",
                ):
                    self._children[run.data.tags["workbench.variant_hash"]] = (run.info.run_id, run.info.status)
                return
        run = mlflow.start_run(
            nested=mlflow.active_run() is not None,  # inside a user's own run, the sweep nests under it
            run_name=f"{spec.name}-{sweep_id}",
            tags={
                **audit_tags(),
                "workbench.sweep_id": sweep_id,
                "workbench.spec_hash": spec.hash,
                "workbench.kind": "sweep",
            },
        )
        self.parent_run_id = run.info.run_id
        mlflow.log_params({"sweep.name": spec.name, "sweep.variants": n_variants, **data_info})
        mlflow.log_text(to_yaml(spec), "sweep.yaml")

    def end_sweep(self, status: str, metrics: dict[str, float] | None = None) -> None:
        if self.parent_run_id is None:
            return
        if metrics:
            self.mlflow.log_metrics(metrics)
        self.mlflow.flush_trace_async_logging()
        self.mlflow.end_run(status=status)
        self.parent_run_id = None

    # ------------------------------------------------------------ one variant

    def existing_run(self, variant_hash: str) -> tuple[str, str] | None:
        """(run id, status) of this variant's child run in the sweep being resumed, if any."""
        return self._children.get(variant_hash)

    def discard_run(self, run_id: str) -> None:
        """Delete a partial child run (killed mid-variant) so the re-logged one is the only one."""
        self.mlflow.MlflowClient(self.cfg.tracking_uri).delete_run(run_id)

    def log_variant(
        self,
        variant: VariantConfig,
        rows: Sequence[dict],
        metrics: dict[str, float],
        eval_frame: pd.DataFrame,
        status: str | None = None,
    ) -> str:
        """One child run, logged in one go; `status` overrides FINISHED (KILLED for a cancelled variant).

        Safe to call from a logging thread: the parent is passed explicitly (MLflow's active-run stack
        is per thread) and params, metrics and tags go in one `log_batch` call.
        """
        from mlflow.entities import Metric, Param

        mlflow = self.mlflow
        assert self.spec is not None and self.sweep_id is not None
        if status is None and metrics.get("failed_cells", 0) > 0 and metrics.get("failed_cells") == metrics.get("questions"):
            status = "FAILED"
        if self.cfg.redact:
            from workbench.redact import redact_row

            rows = [redact_row(r) for r in rows]
            eval_frame = eval_frame.assign(question=[redact_row({"question": q})["question"] for q in eval_frame["question"]])
        mlflow.set_tracking_uri(self.cfg.tracking_uri)
        client = mlflow.MlflowClient(self.cfg.tracking_uri)
        with mlflow.start_run(
            experiment_id=self.experiment.experiment_id,
            parent_run_id=self.parent_run_id,
            run_name=f"{variant.short_hash} {variant.label()}"[:250],
            tags={
                **audit_tags(),
                "workbench.variant_hash": variant.hash,
                "workbench.sweep_id": self.sweep_id,
                "workbench.spec_hash": self.spec.hash,
                "workbench.kind": "variant",
                "mlflow.note.content": f"Variant `{variant.short_hash}`: {variant.label()}",
            },
        ) as run:
            now = int(time.time() * 1000)
            client.log_batch(
                run.info.run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                params=[Param(k, str(v)) for k, v in variant.flat_params().items()],
            )
            extra = list(dict.fromkeys(k for r in rows for k in r if k not in TABLE_COLUMNS and k not in _NOT_IN_TABLE))
            table = pd.DataFrame([{c: r.get(c) for c in (*TABLE_COLUMNS, *extra)} for r in rows])
            mlflow.log_table(table, artifact_file="eval_results.json")
            mlflow.log_text(to_yaml(variant), "variant.yaml")
            with warnings.catch_warnings():  # MLflow warns that a local path "can be interpreted in multiple ways"
                warnings.simplefilter("ignore", UserWarning)
                dataset = mlflow.data.from_pandas(
                    eval_frame, source=self.spec.data.eval.path, name=Path(self.spec.data.eval.path).name
                )
                mlflow.log_input(dataset, context="evaluation")
            self._log_traces(variant, rows[: self.cfg.max_traces_per_variant])
            run_id = run.info.run_id
        if status is not None:
            mlflow.MlflowClient().set_terminated(run_id, status=status)
        return run_id

    def _log_traces(self, variant: VariantConfig, rows: Sequence[dict]) -> None:
        """Rebuild each question's spans from measured timings (the core stays free of MLflow)."""
        from mlflow.entities import SpanType

        mlflow = self.mlflow
        for r in rows:
            t0 = int(r["started_at_ns"])
            t_ret = t0 + int((r.get("latency_retrieve_s") or 0) * 1e9)
            t_end = t_ret + int((r.get("latency_generate_s") or 0) * 1e9)
            root = mlflow.start_span_no_context(
                "rag",
                span_type=SpanType.CHAIN,
                inputs={"question": r["question"]},
                attributes={"workbench.variant_hash": variant.hash, "question_id": r["question_id"]},
                tags={"workbench.variant_hash": variant.hash, "workbench.sweep_id": self.sweep_id or ""},
                start_time_ns=t0,
            )
            ret = mlflow.start_span_no_context(
                "retrieve",
                span_type=SpanType.RETRIEVER,
                parent_span=root,
                inputs={"query": r["question"], "k": variant.retrieval.k, "kind": variant.retrieval.kind},
                start_time_ns=t0,
            )
            ret.end(
                outputs=[
                    # traces are for looking, the table has everything: cap what a deep retrieval stores
                    {"page_content": text[:TRACE_TEXT_CHARS], "metadata": {"doc_uri": doc, "chunk_id": cid}, "id": cid}
                    for text, doc, cid in list(
                        zip(r["contexts"], r["retrieved_chunk_doc_ids"], r["retrieved_chunk_ids"])
                    )[:TRACE_MAX_DOCS]
                ],
                end_time_ns=t_ret,
            )
            status = "ERROR" if r.get("error") else "OK"
            if "messages" not in r:  # retrieval only
                root.end(outputs={"retrieved_doc_ids": r.get("retrieved_doc_ids")}, status=status, end_time_ns=t_ret)
                continue
            gen = mlflow.start_span_no_context(
                "generate",
                span_type=SpanType.CHAT_MODEL,
                parent_span=root,
                inputs={"messages": r["messages"], "model": variant.model.model},
                attributes={
                    "usage.prompt_tokens": r.get("tokens_prompt"),
                    "usage.completion_tokens": r.get("tokens_completion"),
                },
                start_time_ns=t_ret,
            )
            gen.end(outputs={"answer": r.get("answer"), "error": r.get("error")}, status=status, end_time_ns=t_end)
            root.end(outputs={"answer": r.get("answer")}, status=status, end_time_ns=t_end)


def make_tracker(cfg: TrackingConfig, experiment: str) -> MlflowTracker | NullTracker:
    return MlflowTracker(cfg, experiment) if cfg.enabled else NullTracker()


def load_sweep(sweep_id: str, tracking_uri: str = "sqlite:///mlruns/mlflow.db"):
    """Rebuild a finished sweep's SweepResults from MLflow alone (no re-run): spec, variants, per-question rows.

    >>> results = load_sweep("20261127-025350-17646e")   # doctest: +SKIP
    """
    import json
    import tempfile

    import mlflow

    from workbench.config import SweepSpec, load_variant, parse_model
    from workbench.results import SweepResults

    _prepare_local_store(tracking_uri)
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
        import yaml

        spec = parse_model(SweepSpec, yaml.safe_load(Path(spec_path).read_text(encoding="utf-8")), f"sweep {sweep_id}")
        variants, rows, run_ids = [], [], {}
        for child in sorted(children, key=lambda r: r.info.start_time):
            d = Path(tmp) / child.info.run_id
            variant = load_variant(client.download_artifacts(child.info.run_id, "variant.yaml", str(d)))
            table = json.loads(Path(client.download_artifacts(child.info.run_id, "eval_results.json", str(d))).read_text())
            for values in table["data"]:
                rows.append({"variant_hash": variant.hash, "variant": variant.short_hash, **dict(zip(table["columns"], values))})
            variants.append(variant)
            run_ids[variant.hash] = child.info.run_id
    params = parent.data.params
    data_info = {k: params[k] for k in params if k.startswith("data.")}
    return SweepResults(
        spec=spec,
        sweep_id=sweep_id,
        variants=variants,
        rows=rows,
        run_ids=run_ids,
        parent_run_id=parent.info.run_id,
        data_info=data_info,
        wall_s=parent.data.metrics.get("wall_s"),
        status=parent.info.status,
    )

