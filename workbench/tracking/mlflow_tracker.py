"""The Tracker protocol on MLflow: one parent run per sweep, one child run per variant, traces per question.

A variant is logged in steps, normally in the helper process (`workbench.tracking.process`): its run (params,
YAML, dataset) when it starts, a trace per question as they finish (scores and expectations: `assessments.py`;
stored in batches: `trace_batch.py`), the last traces, metrics and the table when it ends. The steps overlap
the sweep, so what is left after the last answer is one metrics batch and one table. What the UI shows
(names, colours, metric sections, rounding, units) is decided in `naming.py`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import pandas as pd

from workbench.spec import SweepSpec, TrackingConfig, VariantConfig, to_yaml
from workbench.scoring.catalogue import names as catalogue_names
from workbench.tracking import assessments
from workbench.tracking.provenance import audit_tags, git_commit, run_source, set_tags  # noqa: F401 (git_commit: export's)
from workbench.tracking.naming import PARENT_COLOUR, mlflow_metrics, mlflow_params, run_colour, sweep_run_name, variant_run_name
from workbench.tracking.protocol import (LOGGING, RERUN_HINT, Immediate, LoggedRun, SweepStart, called_at, end_status,
                                         immediate, tracking_failure)
from workbench.tracking.trace_batch import TraceBatch, is_database_uri
from workbench.tracking.store import (check_artifact_location, check_sqlite_store, create_sqlite_store_atomically,
                                      prepare_local_store, store_lock)
from workbench.errors import TrackingError

# The eval_results table's columns, derived from the Cell declaration and the metric catalogue: what
# was asked and answered, the answer and retrieval scores, measurements, the error; a row's other keys
# (cut-offs, judged scores, metrics registered later) follow. `_NOT_IN_TABLE`: not per-question results
# (or too bulky for the table).
from workbench.scoring.cell import NOT_IN_TABLE as _NOT_IN_TABLE, table_columns  # noqa: E402

TABLE_COLUMNS = table_columns()

TRACE_MAX_DOCS, TRACE_TEXT_CHARS = 20, 1000


def check_tracking_uri(cfg: TrackingConfig, experiment: str) -> None:
    """A bad tracking URI fails here, before anything is written. A local sqlite store only gets cheap file
    checks (opening it may run schema migrations); any other URI is opened (its experiment created)."""
    if cfg.tracking_uri.startswith("sqlite:///"):
        check_sqlite_store(cfg.tracking_uri)
        check_artifact_location(cfg.tracking_uri, experiment, cfg.artifact_location)
    else:
        MlflowTracker(cfg, experiment).open()


class MlflowTracker(Immediate):
    """The Tracker protocol on MLflow, in the calling thread (completed futures); the sweep runs it in the
    helper process (`workbench.tracking.process.ProcessTracker`). The store is opened by the first call.

    outer_run_id: the user's own active run in the sweep's process, under which the parent run nests. The
    parent run is this process's active MLflow run, so in-process there must be no other active run.
    """

    batch_traces = True  # False: each trace by MLflow's exporter (experiments/benchmarks/trace_assessments.py)

    def __init__(self, cfg: TrackingConfig, experiment: str | None, outer_run_id: str | None = None,
                 source: dict[str, str] | None = None):
        self.cfg = cfg
        self.source = source or run_source()  # the user's script or notebook (see `run_source`)
        self.experiment_name = experiment
        self.outer_run_id = outer_run_id
        self.experiment: Any = None
        self.parent_run_id: str | None = None
        self.sweep_id: str | None = None
        self.spec: SweepSpec | None = None
        self._dataset: Any = None
        self.run_ids: dict[str, str] = {}  # variant hash -> its run, once started
        self.trace_ids: dict[tuple[str, str], str] = {}  # (variant hash, question id) -> its trace
        self._started_ms: int | None = None  # the parent run's start, when this session created it
        self._batch: TraceBatch | None = None  # traces not yet stored (a database store)

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
    def start_sweep(self, spec: SweepSpec, sweep_id: str, n_variants: int, data_info: dict[str, Any],
                    resume_run_id: str | None = None) -> SweepStart:
        """Start (or, resuming, reopen) the parent run, the active run of this process until `finish_sweep`."""
        self._open_for_sweep()
        mlflow = self.mlflow
        self.spec, self.sweep_id, self._dataset, self.run_ids, self.trace_ids = spec, sweep_id, None, {}, {}
        self._started_ms = None
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
        started = called_at()
        tags = {**audit_tags(), **self.source, "mlflow.runColor": PARENT_COLOUR,
                "workbench.sweep_id": sweep_id, "workbench.spec_hash": spec.hash, "workbench.kind": "sweep"}
        if self.outer_run_id:  # inside a user's own run, the sweep nests under it
            tags["mlflow.parentRunId"] = self.outer_run_id
        self._started_ms = int(started * 1000)  # when the sweep called, not when this helper got to it
        run = self.client.create_run(
            self.experiment.experiment_id, start_time=self._started_ms, tags=tags,
            run_name=sweep_run_name(spec, n_variants, data_info.get("data.eval.questions"), started),
        )
        mlflow.start_run(run_id=run.info.run_id)  # the active run of this process until finish_sweep
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
    def finish_sweep(self, status: str, metrics: dict[str, float] | None = None, tags: dict | None = None) -> None:
        if self.parent_run_id is None:
            return
        if metrics:
            self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()})  # wall_s is read back: unrounded
        set_tags(self.client, self.parent_run_id, tags or {})  # workbench.stopped_by (None: removed, a resumed sweep)
        self._flush_traces()
        self.mlflow.flush_trace_async_logging()
        self.mlflow.end_run(status=status)
        # Its duration is the sweep's wall time (which began before the run could), when this session
        # started it; a resumed sweep's run ends when the sweep did.
        end = int(called_at() * 1000)
        if self._started_ms is not None and metrics and "wall_s" in metrics:
            end = self._started_ms + int(float(metrics["wall_s"]) * 1000)
        self.client.set_terminated(self.parent_run_id, status=status, end_time=end)
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
        self._flush_traces()  # so the search below finds them all
        traces = self.client.search_traces(
            locations=[self.experiment.experiment_id], run_id=run_id, max_results=500, include_spans=False
        )
        if traces:
            self.client.delete_traces(self.experiment.experiment_id, trace_ids=[t.info.trace_id for t in traces])
        self.client.delete_run(run_id)

    def _dataset_input(self, eval_rows: Sequence[dict] | pd.DataFrame):
        """The eval set (a sweep sends rows) as an MLflow dataset input, built once (it hashes the whole frame)."""
        if self._dataset is None:
            import pandas as pd
            from mlflow.entities import DatasetInput, InputTag

            eval_frame = pd.DataFrame(eval_rows)
            assert self.spec is not None
            if self.cfg.redact:
                from workbench.redact import redact_row

                eval_frame = pd.DataFrame([redact_row(r) for r in eval_frame.to_dict("records")], columns=eval_frame.columns)
            with warnings.catch_warnings():  # MLflow warns that a local path "can be interpreted in multiple ways"
                warnings.simplefilter("ignore", UserWarning)
                dataset = self.mlflow.data.from_pandas(eval_frame, source=self.spec.data.eval.path,
                                                       name=Path(self.spec.data.eval.path).name)
                self._dataset = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "evaluation")])
        return self._dataset

    @immediate
    def start_variant(self, variant: VariantConfig, eval_rows: Sequence[dict] | pd.DataFrame) -> str:
        """Uses the client with explicit run ids only (no active-run stack), so it is safe on any thread."""
        from mlflow.entities import Param

        assert self.spec is not None and self.sweep_id is not None
        order = [v.hash for v in self.spec.variants()]
        run = self.client.create_run(
            self.experiment.experiment_id,
            start_time=int(called_at() * 1000),
            run_name=variant_run_name(variant),
            tags={
                **audit_tags(),
                **self.source,
                "mlflow.runType": "genai_evaluate",  # what mlflow.genai.evaluate marks its runs with
                "mlflow.runColor": run_colour(order.index(variant.hash) if variant.hash in order else len(self.run_ids)),
                "mlflow.parentRunId": self.parent_run_id,
                "workbench.variant_hash": variant.hash,
                "workbench.sweep_id": self.sweep_id,
                "workbench.spec_hash": self.spec.hash,
                "workbench.kind": "variant",
                "mlflow.note.content": f"Variant `{variant.short_hash}`: {variant.label()}",
            },
        )
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in mlflow_params(variant).items()])
        self.client.log_text(run_id, to_yaml(variant), "variant.yaml")
        self.client.log_inputs(run_id, datasets=[self._dataset_input(eval_rows)])
        self.run_ids[variant.hash] = run_id
        return run_id

    @immediate
    def finish_variant(self, variant_hash: str, rows: Sequence[dict[str, Any]], metrics: dict[str, float],
                       status: str | None = None, tags: dict[str, str] | None = None) -> str:
        import pandas as pd
        from mlflow.entities import Metric, RunTag

        run_id = self.run_ids[variant_hash]
        if self.cfg.redact:
            from workbench.redact import redact_row

            rows = [redact_row(r) for r in rows]
        now = int(called_at() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in mlflow_metrics(metrics).items()],
                              tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])
        self._flush_traces()  # the variant's last traces, before its late scores are added to them
        self._log_late_scores(variant_hash, run_id, rows)
        extra = list(dict.fromkeys(k for r in rows for k in r if k not in TABLE_COLUMNS and k not in _NOT_IN_TABLE))
        table = pd.DataFrame([{c: r.get(c) for c in (*TABLE_COLUMNS, *extra)} for r in rows])
        self.client.log_table(run_id, table, artifact_file="eval_results.json")
        self.client.set_terminated(run_id, status=end_status(metrics, status), end_time=now)
        return run_id

    def _log_late_scores(self, variant_hash: str, run_id: str, rows: Sequence[dict[str, Any]]) -> None:
        """Judged scores arrive after their cell's trace was written: added to it now, one call each
        (only sweeps with a judge have any)."""
        judged = catalogue_names("judged")
        late = [(r, names) for r in rows if (variant_hash, r["question_id"]) in self.trace_ids
                and (names := [n for n in judged if n in r or assessments.error_of(n) in r])]
        if not late:
            return
        self.mlflow.flush_trace_async_logging()  # the traces must be stored before they are added to
        for row, names in late:
            trace_id = self.trace_ids[(variant_hash, row["question_id"])]
            for feedback in assessments.feedbacks(row, run_id, names):
                self.mlflow.log_assessment(trace_id, feedback)

    @immediate
    def log_cell(self, variant: VariantConfig, row: dict[str, Any]) -> None:
        """One question's trace, rebuilt from its measured timings (the core stays free of MLflow), linked
        to the variant's run, its scores and expectations attached before it is stored (`assessments`)."""
        from mlflow.entities import SpanType

        run_id = self.run_ids[variant.hash]
        r = row
        if self.cfg.redact:
            from workbench.redact import redact_row

            r = redact_row(r)
        start = self._span_starter()
        t0 = int(r["started_at_ns"])
        t_ret = t0 + int((r.get("latency_retrieve_s") or 0) * 1e9)
        t_end = t_ret + int((r.get("latency_generate_s") or 0) * 1e9)
        root = start(
            "rag",
            SpanType.CHAIN,
            inputs={"question": r["question"]},
            attributes={"workbench.variant_hash": variant.hash, "question_id": r["question_id"]},
            tags={"workbench.variant_hash": variant.hash, "workbench.sweep_id": self.sweep_id or "",
                  "workbench.question_id": str(r["question_id"])},  # labels find the trace by it
            metadata={"mlflow.sourceRun": run_id},
            experiment_id=self.experiment.experiment_id,
            start_time_ns=t0,
        )
        ret = start(
            "retrieve",
            SpanType.RETRIEVER,
            parent=root,
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
        self.trace_ids[(variant.hash, r["question_id"])] = root.trace_id
        scores = [*assessments.feedbacks(r, run_id), *assessments.expectations(r)]
        assessments.attach(root.trace_id, root.span_id, scores)
        if "messages" not in r:  # retrieval only
            root.end(outputs={"retrieved_doc_ids": r.get("retrieved_doc_ids")}, status=status, end_time_ns=t_ret)
        else:
            gen = start(
                "generate",
                SpanType.CHAT_MODEL,
                parent=root,
                inputs={"messages": r["messages"], "model": variant.model.model},
                attributes={
                    "usage.prompt_tokens": r.get("tokens_prompt"),
                    "usage.completion_tokens": r.get("tokens_completion"),
                },
                start_time_ns=t_ret,
            )
            gen.end(outputs={"answer": r.get("answer"), "error": r.get("error")}, status=status, end_time_ns=t_end)
            root.end(outputs={"answer": r.get("answer")}, status=status, end_time_ns=t_end)
        self._batch is not None and self._batch.flush_if_due()  # while cells stream in: in batches (`TraceBatch.due`)

    def idle(self) -> bool:
        """Store every trace held: the helper has had no job for a moment (the sweep waits on its model)."""
        return self._batch is not None and self._batch.flush()

    def _span_starter(self):
        """How a cell's spans are started: on the batch's tracer (a database store: the spans of many traces
        go in one `log_spans`), or by MLflow's own exporter, a trace at a time (a tracking server may not
        take spans: its exporter knows the way round)."""
        if not self.batch_traces:
            return self._exporter_span
        if self._batch is None and is_database_uri(self.cfg.tracking_uri):
            self._batch = TraceBatch(self.cfg.tracking_uri)
        return self._batch.start_span if self._batch is not None else self._exporter_span

    def _exporter_span(self, name: str, span_type: str, *, parent=None, **kwargs):
        return self.mlflow.start_span_no_context(name, span_type=span_type, parent_span=parent, **kwargs)

    def _flush_traces(self) -> None:
        """Store the traces still held (before anything reads or adds to them)."""
        if self._batch is not None:
            self._batch.flush()
