"""The Tracker protocol on MLflow: one parent run per sweep, one child run per variant, traces per question.

The sweep hands over plain rows and metric dicts. A variant is logged in steps, normally in the
helper process (`workbench.tracking.process`): its run (params, YAML, dataset) when it starts, a trace
per question as the first N finish, metrics and the per-question table when it ends. The steps overlap
the sweep, so what is left after the last answer is one metrics batch and one table.
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

from workbench._version import __version__
from workbench.spec import SweepSpec, TrackingConfig, VariantConfig, to_yaml
from workbench.tracking.protocol import (
    LOGGING, RERUN_HINT, Immediate, LoggedRun, SweepStart, end_status, immediate, tracking_failure,
)
from workbench.tracking.store import check_sqlite_store, create_sqlite_store_atomically, prepare_local_store, store_lock
from workbench.errors import TrackingError

# The eval_results table's columns, derived from the Cell declaration and the metric catalogue: what
# was asked and answered, the answer and retrieval scores, measurements, the error; a row's other keys
# (cut-offs, judged scores, metrics registered later) follow. `_NOT_IN_TABLE`: not per-question results
# (or too bulky for the table).
from workbench.scoring.cell import NOT_IN_TABLE as _NOT_IN_TABLE, table_columns  # noqa: E402

TABLE_COLUMNS = table_columns()


TRACE_MAX_DOCS, TRACE_TEXT_CHARS = 20, 1000


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


def check_tracking_uri(cfg: TrackingConfig, experiment: str) -> None:
    """A bad tracking URI fails here, before anything is written. A local sqlite store only gets cheap file
    checks (opening it may run schema migrations); any other URI is opened (its experiment created)."""
    if cfg.tracking_uri.startswith("sqlite:///"):
        check_sqlite_store(cfg.tracking_uri)
    else:
        MlflowTracker(cfg, experiment).open()


class MlflowTracker(Immediate):
    """The Tracker protocol on MLflow, in the calling thread (completed futures); the sweep runs it in the
    helper process (`workbench.tracking.process.ProcessTracker`). The store is opened by the first call.

    outer_run_id: the user's own active run in the sweep's process, under which the parent run nests. The
    parent run is this process's active MLflow run, so in-process there must be no other active run.
    """

    def __init__(self, cfg: TrackingConfig, experiment: str | None, outer_run_id: str | None = None):
        self.cfg = cfg
        self.experiment_name = experiment
        self.outer_run_id = outer_run_id
        self.experiment: Any = None
        self.parent_run_id: str | None = None
        self.sweep_id: str | None = None
        self.spec: SweepSpec | None = None
        self._dataset: Any = None
        self.run_ids: dict[str, str] = {}  # variant hash -> its run, once started

    def open(self) -> None:
        if self.experiment is not None:
            return
        import mlflow

        self.mlflow = mlflow
        cfg = self.cfg
        prepare_local_store(cfg.tracking_uri)
        try:
            with store_lock(cfg.tracking_uri):
                create_sqlite_store_atomically(cfg.tracking_uri)
                mlflow.set_tracking_uri(cfg.tracking_uri)
                exp = mlflow.get_experiment_by_name(self.experiment_name)
                if exp is None:
                    location = cfg.artifact_location
                    if "://" not in location:
                        location = Path(location).resolve().as_uri()
                    mlflow.create_experiment(self.experiment_name, artifact_location=location)
                self.experiment = mlflow.set_experiment(self.experiment_name)
        except TrackingError:
            raise  # the store lock's own message names the lock file and its holder
        except Exception as exc:  # MLflow raises many types; the user needs the URI and the cause
            raise TrackingError(
                f"cannot open MLflow experiment {self.experiment_name!r} at tracking URI {cfg.tracking_uri!r}: {exc}. "
                "Check the URI (e.g. sqlite:///mlruns/mlflow.db or http://host:5000) or pass --tracking-uri."
            ) from None
        self.client = mlflow.MlflowClient(cfg.tracking_uri)

    def _open_for_sweep(self) -> None:
        """Open the store for a sweep already under way: its answers are saved whatever happens here."""
        try:
            self.open()
        except TrackingError as exc:
            raise TrackingError(f"{exc} {RERUN_HINT}") from None

    def failure(self, operation: str, exc: Exception) -> TrackingError:
        return tracking_failure(operation, exc, "MLflow logging" if operation in LOGGING else "MLflow", self.cfg.tracking_uri)

    # ------------------------------------------------------------ sweep

    @immediate
    def start_sweep(
        self, spec: SweepSpec, sweep_id: str, n_variants: int, data_info: dict[str, Any], resume_run_id: str | None = None
    ) -> SweepStart:
        """Start (or, resuming, reopen) the parent run, the active run of this process until `finish_sweep`."""
        self._open_for_sweep()
        mlflow = self.mlflow
        self.spec, self.sweep_id, self._dataset, self.run_ids = spec, sweep_id, None, {}
        if resume_run_id is None:  # its id may never have reached the sweep record (killed mid-call)
            resume_run_id = self._find_run(sweep_id, "sweep")
        if resume_run_id is not None:
            try:
                mlflow.start_run(run_id=resume_run_id)
            except Exception:  # the parent run is gone (deleted, another store): start a fresh one
                resume_run_id = None
            else:
                self.parent_run_id = resume_run_id
                children = {
                    run.data.tags["workbench.variant_hash"]: LoggedRun(run.info.run_id, run.info.status)
                    for run in self._search(sweep_id, "variant")
                }
                self._log_sweep_info(spec, n_variants, data_info)  # in case the first attempt died before it
                return SweepStart(resume_run_id, children)
        run = mlflow.start_run(
            parent_run_id=self.outer_run_id,  # inside a user's own run, the sweep nests under it
            run_name=f"{spec.name}-{sweep_id}",
            tags={
                **audit_tags(),
                "workbench.sweep_id": sweep_id,
                "workbench.spec_hash": spec.hash,
                "workbench.kind": "sweep",
            },
        )
        self.parent_run_id = run.info.run_id
        self._log_sweep_info(spec, n_variants, data_info)
        return SweepStart(self.parent_run_id, {})

    def _log_sweep_info(self, spec: SweepSpec, n_variants: int, data_info: dict[str, Any]) -> None:
        self.mlflow.log_params({"sweep.name": spec.name, "sweep.variants": n_variants, **data_info})
        self.mlflow.log_text(to_yaml(spec), "sweep.yaml")

    def _search(self, sweep_id: str, kind: str | None = None) -> list:
        """This sweep's runs: its parent ("sweep"), its variants ("variant"), or all of them."""
        where = f"tags.`workbench.sweep_id` = '{sweep_id}'"
        if kind is not None:
            where += f" and tags.`workbench.kind` = '{kind}'"
        return self.mlflow.search_runs(
            experiment_ids=[self.experiment.experiment_id], filter_string=where, output_format="list"
        )

    def _find_run(self, sweep_id: str, kind: str) -> str | None:
        runs = self._search(sweep_id, kind)
        return runs[0].info.run_id if runs else None

    @immediate
    def finish_sweep(self, status: str, metrics: dict[str, float] | None = None) -> None:
        if self.parent_run_id is None:
            return
        if metrics:
            self.mlflow.log_metrics(metrics)
        self.mlflow.flush_trace_async_logging()
        self.mlflow.end_run(status=status)
        self.parent_run_id = None

    @immediate
    def runs_intact(self, sweep_id: str, parent_run_id: str | None, run_ids: Sequence[str]) -> bool:
        if not parent_run_id:
            return False
        self._open_for_sweep()
        finished = {r.info.run_id for r in self._search(sweep_id) if r.info.status == "FINISHED"}
        if not {parent_run_id, *run_ids} <= finished:
            return False
        # The store keeps the runs when their artifact folder (mlruns/artifacts) is deleted: a sweep whose
        # tables are gone is not intact, it is run again.
        return all(self._has_artifacts(run_id, ("eval_results.json", "variant.yaml")) for run_id in run_ids)

    def _has_artifacts(self, run_id: str, names: tuple[str, ...]) -> bool:
        try:
            present = {f.path for f in self.client.list_artifacts(run_id)}
        except Exception:  # an artifact store that cannot be listed cannot give the tables back either
            return False
        return set(names) <= present

    @immediate
    def read_sweep(self, sweep_id: str) -> dict[str, Any]:
        from workbench.tracking.readback import read_sweep

        return read_sweep(sweep_id, self.cfg.tracking_uri)

    # ------------------------------------------------------------ one variant

    @immediate
    def discard_run(self, run_id: str) -> None:
        traces = self.client.search_traces(
            locations=[self.experiment.experiment_id], run_id=run_id, max_results=500, include_spans=False
        )
        if traces:
            self.client.delete_traces(self.experiment.experiment_id, trace_ids=[t.info.trace_id for t in traces])
        self.client.delete_run(run_id)

    def _dataset_input(self, eval_frame: pd.DataFrame):
        """The eval set as an MLflow dataset input, built once per sweep (it hashes the whole frame)."""
        if self._dataset is None:
            from mlflow.entities import DatasetInput, InputTag

            assert self.spec is not None
            if self.cfg.redact:
                from workbench.redact import redact_row

                eval_frame = pd.DataFrame([redact_row(r) for r in eval_frame.to_dict("records")], columns=eval_frame.columns)
            with warnings.catch_warnings():  # MLflow warns that a local path "can be interpreted in multiple ways"
                warnings.simplefilter("ignore", UserWarning)
                dataset = self.mlflow.data.from_pandas(
                    eval_frame, source=self.spec.data.eval.path, name=Path(self.spec.data.eval.path).name
                )
                self._dataset = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "evaluation")])
        return self._dataset

    @immediate
    def start_variant(self, variant: VariantConfig, eval_frame: pd.DataFrame) -> str:
        """Uses the client with explicit run ids only (no active-run stack), so it is safe on any thread."""
        from mlflow.entities import Param

        assert self.spec is not None and self.sweep_id is not None
        run = self.client.create_run(
            self.experiment.experiment_id,
            run_name=f"{variant.short_hash} {variant.label()}"[:250],
            tags={
                **audit_tags(),
                "mlflow.parentRunId": self.parent_run_id,
                "workbench.variant_hash": variant.hash,
                "workbench.sweep_id": self.sweep_id,
                "workbench.spec_hash": self.spec.hash,
                "workbench.kind": "variant",
                "mlflow.note.content": f"Variant `{variant.short_hash}`: {variant.label()}",
            },
        )
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in variant.flat_params().items()])
        self.client.log_text(run_id, to_yaml(variant), "variant.yaml")
        self.client.log_inputs(run_id, datasets=[self._dataset_input(eval_frame)])
        self.run_ids[variant.hash] = run_id
        return run_id

    @immediate
    def finish_variant(
        self, variant_hash: str, rows: Sequence[dict[str, Any]], metrics: dict[str, float], status: str | None = None
    ) -> str:
        from mlflow.entities import Metric

        run_id = self.run_ids[variant_hash]
        if self.cfg.redact:
            from workbench.redact import redact_row

            rows = [redact_row(r) for r in rows]
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
        extra = list(dict.fromkeys(k for r in rows for k in r if k not in TABLE_COLUMNS and k not in _NOT_IN_TABLE))
        table = pd.DataFrame([{c: r.get(c) for c in (*TABLE_COLUMNS, *extra)} for r in rows])
        self.client.log_table(run_id, table, artifact_file="eval_results.json")
        self.client.set_terminated(run_id, status=end_status(metrics, status))
        return run_id

    @immediate
    def log_cell(self, variant: VariantConfig, row: dict[str, Any]) -> None:
        """One question's trace, rebuilt from its measured timings (the core stays free of MLflow) and
        linked to the variant's run."""
        from mlflow.entities import SpanType

        run_id = self.run_ids[variant.hash]
        r = row
        if self.cfg.redact:
            from workbench.redact import redact_row

            r = redact_row(r)
        mlflow = self.mlflow
        t0 = int(r["started_at_ns"])
        t_ret = t0 + int((r.get("latency_retrieve_s") or 0) * 1e9)
        t_end = t_ret + int((r.get("latency_generate_s") or 0) * 1e9)
        root = mlflow.start_span_no_context(
            "rag",
            span_type=SpanType.CHAIN,
            inputs={"question": r["question"]},
            attributes={"workbench.variant_hash": variant.hash, "question_id": r["question_id"]},
            tags={"workbench.variant_hash": variant.hash, "workbench.sweep_id": self.sweep_id or ""},
            metadata={"mlflow.sourceRun": run_id},
            experiment_id=self.experiment.experiment_id,
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
            return
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
