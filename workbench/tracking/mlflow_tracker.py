"""MLflow adapter: one parent run per sweep, one child run per variant, traces per question.

Everything about MLflow lives here; the sweep hands over plain rows and metric dicts. A variant is
logged in steps by the sweep's logging process (`workbench.tracking.process`): its run (params, YAML, dataset) when it starts, a trace
per question as the first N finish, metrics and the per-question table when it ends. The steps overlap
the sweep, so what is left after the last answer is one metrics batch and one table.
"""

from __future__ import annotations

import functools
import getpass
import os
import platform
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from workbench._version import __version__
from workbench.spec import SweepSpec, TrackingConfig, VariantConfig, to_yaml
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


def _sqlite_path(uri: str) -> Path | None:
    """The file of a local sqlite store (sqlite:///mlruns/mlflow.db), None for any other URI."""
    return Path(uri.removeprefix("sqlite:///")).expanduser() if uri.startswith("sqlite:///") else None


def _prepare_local_store(uri: str) -> None:
    """sqlite:///mlruns/mlflow.db needs its folder to exist before MLflow opens it."""
    if (path := _sqlite_path(uri)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def _create_sqlite_store_atomically(uri: str) -> None:
    """A new sqlite store is migrated under a temporary name and renamed into place when complete.

    MLflow's schema migrations are many separate statements: a process killed halfway left a store that
    no later run could open ("table ... already exists"). Call with the store lock held.
    """
    path = _sqlite_path(uri)
    if path is None or path.exists():
        return
    import mlflow

    partial = path.with_name(f"{path.name}.creating-{os.getpid()}")
    for leftover in path.parent.glob(f"{path.name}.creating-*"):  # from a process killed while creating it
        leftover.unlink(missing_ok=True)
    mlflow.MlflowClient(f"sqlite:///{partial}").search_experiments(max_results=1)  # creates and migrates it
    os.replace(partial, path)


def _check_sqlite_store(uri: str) -> None:
    """The cheap checks of a local sqlite store that can run before anything is written."""
    path = _sqlite_path(uri)
    problem = None
    if path.is_dir():
        problem = "it is a directory"
    elif path.exists():
        with path.open("rb") as fh:
            if fh.read(16) not in (b"SQLite format 3\x00", b""):
                problem = "it is not an SQLite database"
    else:
        parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
        if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK):
            problem = f"its folder cannot be created under {parent}"
    if problem:
        raise TrackingError(
            f"cannot use MLflow tracking URI {uri!r}: {problem}. Point tracking.tracking_uri (or --tracking-uri) "
            "at a new or existing sqlite file, e.g. sqlite:///mlruns/mlflow.db, or at a server (http://host:5000)."
        )


def _store_lock(uri: str):
    import contextlib

    if (path := _sqlite_path(uri)) is None:
        return contextlib.nullcontext()  # a tracking server serialises its own database
    from filelock import FileLock

    return FileLock(f"{path}.lock")


class MlflowTracker:
    """Sync MLflow calls for one sweep. A sweep makes one here only to check its tracking URI before
    anything is written (cheap for a local sqlite store, whose opening may run schema migrations); the
    logging itself runs in `workbench.tracking.process`, which opens the store with `defer_open=False`."""

    def __init__(self, cfg: TrackingConfig, experiment: str, defer_open: bool = True):
        self.cfg = cfg
        self.experiment_name = experiment
        self.experiment: Any = None
        self.parent_run_id: str | None = None
        self.sweep_id: str | None = None
        self.spec: SweepSpec | None = None
        self._dataset: Any = None
        self.children: dict[str, tuple[str, str]] = {}  # variant hash -> (run id, status), when resuming
        if defer_open and cfg.tracking_uri.startswith("sqlite:///"):
            _check_sqlite_store(cfg.tracking_uri)
        else:
            self.open()

    def open(self) -> None:
        if self.experiment is not None:
            return
        import mlflow

        self.mlflow = mlflow
        cfg = self.cfg
        _prepare_local_store(cfg.tracking_uri)
        try:
            # Two sweeps starting at once on a new sqlite store would both run its schema migrations
            # (and both create the experiment): one at a time.
            with _store_lock(cfg.tracking_uri):
                _create_sqlite_store_atomically(cfg.tracking_uri)
                mlflow.set_tracking_uri(cfg.tracking_uri)
                exp = mlflow.get_experiment_by_name(self.experiment_name)
                if exp is None:
                    location = cfg.artifact_location
                    if "://" not in location:
                        location = Path(location).resolve().as_uri()
                    mlflow.create_experiment(self.experiment_name, artifact_location=location)
                self.experiment = mlflow.set_experiment(self.experiment_name)
        except Exception as exc:  # MLflow raises many types; the user needs the URI and the cause
            raise TrackingError(
                f"cannot open MLflow experiment {self.experiment_name!r} at tracking URI {cfg.tracking_uri!r}: {exc}. "
                "Check the URI (e.g. sqlite:///mlruns/mlflow.db or http://host:5000) or pass --tracking-uri."
            ) from None
        self.client = mlflow.MlflowClient(cfg.tracking_uri)

    # ------------------------------------------------------------ sweep

    def start_sweep(
        self, spec: SweepSpec, sweep_id: str, n_variants: int, data_info: dict[str, Any],
        resume_run_id: str | None = None, outer_run_id: str | None = None,
    ) -> None:
        """Start (or, resuming, reopen) the parent run; it runs in the logging process, hence `outer_run_id`."""
        self.open()
        mlflow = self.mlflow
        self.spec, self.sweep_id = spec, sweep_id
        if resume_run_id is None:  # its id may never have reached the sweep record (killed mid-call)
            resume_run_id = self._find_run(sweep_id, "sweep")
        if resume_run_id is not None:
            try:
                mlflow.start_run(run_id=resume_run_id)
            except Exception:  # the parent run is gone (deleted, another store): start a fresh one
                resume_run_id = None
            else:
                self.parent_run_id = resume_run_id
                for run in self._search(sweep_id, "variant"):
                    self.children[run.data.tags["workbench.variant_hash"]] = (run.info.run_id, run.info.status)
                self._log_sweep_info(spec, n_variants, data_info)  # in case the first attempt died before it
                return
        run = mlflow.start_run(
            parent_run_id=outer_run_id,  # inside a user's own run, the sweep nests under it
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

    def end_sweep(self, status: str, metrics: dict[str, float] | None = None) -> None:
        if self.parent_run_id is None:
            return
        if metrics:
            self.mlflow.log_metrics(metrics)
        self.mlflow.flush_trace_async_logging()
        self.mlflow.end_run(status=status)
        self.parent_run_id = None

    # ------------------------------------------------------------ one variant

    def runs_intact(self, sweep_id: str, parent_run_id: str | None, run_ids: Sequence[str]) -> bool:
        """Are a finished sweep's parent and child runs all still there (not deleted) and FINISHED?"""
        if not parent_run_id:
            return False
        self.open()
        finished = {r.info.run_id for r in self._search(sweep_id) if r.info.status == "FINISHED"}
        return {parent_run_id, *run_ids} <= finished

    def discard_run(self, run_id: str) -> None:
        """Delete a partial child run (killed mid-variant) and its traces, so the re-logged one is the only one."""
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

                eval_frame = eval_frame.assign(question=[redact_row({"question": q})["question"] for q in eval_frame["question"]])
            with warnings.catch_warnings():  # MLflow warns that a local path "can be interpreted in multiple ways"
                warnings.simplefilter("ignore", UserWarning)
                dataset = self.mlflow.data.from_pandas(
                    eval_frame, source=self.spec.data.eval.path, name=Path(self.spec.data.eval.path).name
                )
                self._dataset = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "evaluation")])
        return self._dataset

    def start_variant(self, variant: VariantConfig, eval_frame: pd.DataFrame) -> str:
        """Create the variant's child run (RUNNING) with its params, YAML and dataset; returns its id.

        Uses the client with explicit run ids only (no active-run stack), so it is safe on a logging thread.
        """
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
        return run_id

    def finish_variant(
        self, run_id: str, rows: Sequence[dict], metrics: dict[str, float], status: str | None = None
    ) -> None:
        """Metrics and the per-question table in one go, then the run's final status (default FINISHED;
        FAILED when every cell failed; the sweep passes KILLED for a cancelled variant)."""
        from mlflow.entities import Metric

        if status is None and metrics.get("failed_cells", 0) > 0 and metrics.get("failed_cells") == metrics.get("questions"):
            status = "FAILED"
        if self.cfg.redact:
            from workbench.redact import redact_row

            rows = [redact_row(r) for r in rows]
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
        extra = list(dict.fromkeys(k for r in rows for k in r if k not in TABLE_COLUMNS and k not in _NOT_IN_TABLE))
        table = pd.DataFrame([{c: r.get(c) for c in (*TABLE_COLUMNS, *extra)} for r in rows])
        self.client.log_table(run_id, table, artifact_file="eval_results.json")
        self.client.set_terminated(run_id, status=status or "FINISHED")

    def log_trace(self, variant: VariantConfig, run_id: str, r: dict) -> None:
        """One question's trace, rebuilt from its measured timings (the core stays free of MLflow) and
        linked to the variant's run."""
        from mlflow.entities import SpanType

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


def make_tracker(cfg: TrackingConfig, experiment: str) -> MlflowTracker | None:
    """Check the tracking URI (a bad one fails here, before anything is written); None when tracking is off."""
    return MlflowTracker(cfg, experiment) if cfg.enabled else None


def read_sweep(sweep_id: str, tracking_uri: str) -> dict[str, Any]:
    """A logged sweep read back from MLflow alone: the fields of a SweepResults (spec, variants, rows, …)."""
    import json
    import tempfile

    import mlflow

    from workbench.spec import SweepSpec, load_variant, parse_model

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
    )

