"""Hand-over to production: a winner as one YAML with provenance, and `load_pipeline` to run it.

The export holds the full variant config, where its corpus came from (with the digest the sweep
saw) and provenance: sweep id, MLflow run ids, dataset digests, metrics with CIs, package versions,
git commit, time. No secrets: endpoints carry only the *name* of their key's environment variable.

Paths in an export are absolute (resolved where the sweep ran); a relative one is read relative to the export
file. `load_pipeline(path)` refuses a file changed after export (`seal.py`), reloads the corpus
and checks its digest, reuses (or rebuilds) the Chroma collection and answers through the same
`RAGPipeline` the sweep used, with deterministic decoding — so it reproduces the sweep's answers.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench._version import __version__
from workbench.errors import ConfigError, DataError, WorkbenchError
from workbench.handover.seal import FORMAT, FORMAT_V1, seal, verify
from workbench.spec import CorpusSource, VariantConfig, dump_yaml, parse_model, parse_yaml, read_yaml
from workbench.spec_routing import RoutedModel, chat_configs
from workbench.spec_scale import VectorStoreConfig

KEY_PACKAGES = (
    "mlflow",
    "chromadb",
    "openai",
    "ragas",
    "llama_cpp_python",
    "langchain-text-splitters",
    "bm25s",
    "onnxruntime",
    "pydantic",
)
EXAMPLES = 5
HEADER = "# RAG workbench export: load with workbench.load_pipeline(path) or `workbench answer PATH QUESTION`.\n"


def package_versions() -> dict[str, str]:
    out = {"workbench": __version__}
    for name in KEY_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def to_mlflow_template(template: str) -> str:
    """Our `{name}` slots → MLflow's `{{name}}`; our escaped `{{`/`}}` become literal braces."""
    import string

    out = []
    for literal, field, _, _ in string.Formatter().parse(template):
        out.append(literal)
        if field is not None:
            out.append("{{" + field + "}}")
    return "".join(out)


def _metric_block(row: dict[str, Any]) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for key, value in row.items():
        if not isinstance(value, (int, float)) or not math.isfinite(value):  # NaN/inf: not measured, not JSON
            continue
        if key.endswith(("_ci_low", "_ci_high", "_n")):
            continue
        if f"{key}_ci_low" in row:
            metrics[key] = {
                "mean": float(value),
                "ci_low": float(row[f"{key}_ci_low"]),
                "ci_high": float(row[f"{key}_ci_high"]),
                "n": int(row[f"{key}_n"]),
            }
        elif key.startswith(("latency_", "tokens_", "cost_", "questions", "failed_cells")):
            metrics[key] = float(value)
    return metrics


def store_uri(results) -> str:
    """The MLflow store the sweep was logged to: the one `load_sweep` read it from, else the spec's."""
    return getattr(results, "tracking_uri", None) or results.spec.tracking.tracking_uri


def sweep_folder(results) -> Path:
    """The folder the sweep ran in, which the spec's relative paths are relative to.

    A sweep loaded from another folder (`workbench export --tracking-uri sqlite:////proj/mlruns/mlflow.db`)
    ran where its relative store path (`sqlite:///mlruns/mlflow.db`) ends in the store it was read from: /proj.
    Otherwise (run in this process, a tracking server) it is the working directory.
    """
    from workbench.tracking.store import sqlite_path

    logged, used = sqlite_path(results.spec.tracking.tracking_uri), sqlite_path(store_uri(results))
    if logged is not None and used is not None and not logged.is_absolute() and ".." not in logged.parts:
        rel, full = Path(os.path.normpath(logged)).parts, used.resolve().parts
        if full[-len(rel):] == rel:
            return Path(*full[: -len(rel)])
    return Path.cwd()


def _absolute(path: str, folder: Path) -> str:
    return str((folder / Path(path).expanduser()).resolve())


def build_export(results, variant_key: str, *, prompt_version: dict | None = None, redact: bool = True) -> dict:
    """The export document for one variant of a finished (or MLflow-loaded) sweep, sealed (`seal`).

    Paths are written absolute, resolved against the folder the sweep ran in (`sweep_folder`).
    """
    from workbench.scoring.aggregate import aggregate

    variant = results.variant(variant_key)
    rows = [r for r in results.rows if r["variant_hash"] == variant.hash]
    metrics_row = {"questions": float(len(rows)), **aggregate(rows)}
    folder = sweep_folder(results)
    corpus = results.spec.data.corpus.model_dump(mode="json")
    corpus["path"] = _absolute(corpus["path"], folder)
    if not Path(corpus["path"]).exists():
        raise DataError(
            f"the sweep's corpus {results.spec.data.corpus.path!r} is not at {corpus['path']} (resolved against "
            f"{folder}); export from the folder the sweep ran in, or give --tracking-uri as the sweep's store path"
        )
    evalset = results.spec.data.eval.model_dump(mode="json")
    evalset["path"] = _absolute(evalset["path"], folder)
    uri = store_uri(results)
    if (store := _sqlite_path(uri)) is not None:
        uri = f"sqlite:///{store.resolve()}"  # the same store from any folder
    examples = [
        {"question_id": r["question_id"], "question": r["question"], "answer": r.get("answer")}
        for r in rows
        if not r.get("error")
    ][:EXAMPLES]
    if redact:
        from workbench.redact import redact_row

        examples = [redact_row(e) for e in examples]
    doc = {
        "format": FORMAT,
        "variant_hash": variant.hash,
        "variant": variant.model_dump(mode="json"),
        "data": {
            "corpus": corpus,
            "corpus_digest": results.data_info["data.corpus.digest"],
            "eval": evalset,
            "eval_digest": results.data_info.get("data.eval.digest"),
        },
        "provenance": {
            "sweep_id": results.sweep_id,
            "experiment": results.spec.experiment_name,
            "tracking_uri": uri,
            "mlflow_run_id": results.run_ids.get(variant.hash),
            "mlflow_parent_run_id": results.parent_run_id,
            "spec_hash": results.spec.hash,
            "metrics": _metric_block(metrics_row),
            "versions": package_versions(),
            "git_commit": _git_commit(),
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "prompt_registry": prompt_version,
        },
        "examples": examples,
    }
    if results.spec.vector_store.kind != "embedded":  # where its dense indexes live (host and port: no secret)
        doc["vector_store"] = results.spec.vector_store.model_dump(mode="json")
    return seal(doc)


def _sqlite_path(uri: str) -> Path | None:
    from workbench.tracking.store import sqlite_path

    return sqlite_path(uri)


def _git_commit() -> str | None:
    from workbench.tracking.mlflow_tracker import git_commit

    return git_commit()


def prompt_registry_name(experiment: str, prompt_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"workbench-{experiment}-{prompt_name}").strip("-")


def register_prompt(results, variant: VariantConfig) -> dict:
    """The variant's template in the MLflow prompt registry (its latest version if identical); {name, version, uri}."""
    from workbench.tracking.export_log import register_prompt as register

    return register(
        store_uri(results),
        prompt_registry_name(results.spec.experiment_name, variant.prompt.name),
        to_mlflow_template(variant.prompt.template),
        commit_message=f"exported from sweep {results.sweep_id}, variant {variant.short_hash}",
        tags={"workbench.variant_hash": variant.hash, "workbench.sweep_id": results.sweep_id},
    )


def check_out_path(path: Path) -> None:
    """Refuse an output path that cannot take a file, before anything is registered or written."""
    if path.is_dir():
        raise ConfigError(f"export path {path} is a directory; give a file name, e.g. {path / 'winner.yaml'}")
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
    if folder is None or not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"export path {path}: cannot write in {folder or path.parent}; choose a writable folder")


def write_atomically(path: Path, text: str) -> None:
    """All of `text` at `path` or nothing: a full disk or a lost folder leaves no partial file or temp file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WorkbenchError(
            f"cannot write export {path}: {exc.strerror or exc}; nothing was written. Free some space or choose "
            "another path (--out), then export again."
        ) from None


def export_variant(results, variant_key: str, path: str | Path, *, log_to_mlflow: bool = True, redact: bool = True) -> Path:
    """Write the export YAML; also register its prompt and log the file to the variant's MLflow run.

    Everything that can be checked is checked before the prompt is registered or a byte is written.

    >>> results.export(results.best("f1").winner, "winner.yaml")   # doctest: +SKIP
    """
    variant = results.variant(variant_key)
    path = Path(path)
    check_out_path(path)
    run_id = results.run_ids.get(variant.hash)
    tracked = log_to_mlflow and results.spec.tracking.enabled and run_id is not None
    doc = build_export(results, variant.hash, redact=redact)  # fails here, before anything is registered
    if tracked:
        from workbench.tracking.store import require_existing_store

        require_existing_store(store_uri(results))
        if variant.prompt is not None:
            doc["provenance"]["prompt_registry"] = register_prompt(results, variant)
            doc = seal(doc)
    text = HEADER + dump_yaml(doc)
    if parse_yaml(text, str(path)) != doc:  # what load_pipeline will read back, checked before it is written
        raise WorkbenchError(f"export {path}: the document does not read back as written; please report this")
    write_atomically(path, text)
    if tracked:
        from workbench.tracking.export_log import log_export

        log_export(store_uri(results), run_id, path)
    return path


# ------------------------------------------------------------------ production side


def read_export(path: str | Path) -> dict:
    """Parse, validate and verify an export (`seal.verify`); a changed file is refused naming what changed."""
    doc = read_yaml(path)
    if not isinstance(doc, dict) or doc.get("format") not in (FORMAT, FORMAT_V1):
        raise ConfigError(f"{path}: not a workbench export (expected format: {FORMAT}); create one with `workbench export`")
    for key in ("variant", "variant_hash", "data", "export_hash"):
        if key not in doc:
            raise ConfigError(f"{path}: export is missing {key!r}; re-export it with `workbench export`")
    data = doc["data"]
    if not isinstance(data, dict) or not isinstance(data.get("corpus_digest"), str):
        raise ConfigError(f"{path}: export field data.corpus_digest is missing; re-export it with `workbench export`")
    # validated before anything is hashed or loaded
    variant = parse_model(VariantConfig, doc["variant"], f"{path}: variant")
    parse_model(CorpusSource, data.get("corpus"), f"{path}: data.corpus")
    if "vector_store" in doc:
        parse_model(VectorStoreConfig, doc["vector_store"], f"{path}: vector_store")
    verify(doc, path, variant)
    return doc


class Pipeline:
    """A production RAG pipeline rebuilt from an export.

    >>> pipe = load_pipeline("winner.yaml")                       # doctest: +SKIP
    >>> result = pipe.answer("Who won Super Bowl 50?")            # doctest: +SKIP
    >>> result.answer, result.doc_ids, result.latency              # doctest: +SKIP
    """

    def __init__(self, doc: dict, rag, server=None):
        self.export = doc
        self.variant: VariantConfig = rag.variant
        self._rag = rag
        self._server = server

    @property
    def rag(self):
        """The `RAGPipeline` itself (the service calls its steps one by one)."""
        return self._rag

    def answer(self, question: str):
        if not isinstance(question, str) or not question.strip():
            raise ConfigError(f"question: {question!r} is empty; ask a question in words")
        return self._rag.answer(question)

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_pipeline(
    path: str | Path,
    *,
    corpus_path: str | Path | None = None,
    home: str | Path = ".workbench",
    base_url: str | None = None,
    allow_corpus_change: bool = False,
    execution=None,
    vector_store: VectorStoreConfig | None = None,
) -> Pipeline:
    """Rebuild the exported pipeline: verify, load the corpus, reuse or build the index, start the model.

    corpus_path: where the corpus lives now, if it moved since the export.
    base_url: serve the model from this OpenAI-compatible URL instead of the exported one (e.g. the same
      model behind your own gateway); the local model is started on 127.0.0.1 when needed. A routed variant
      (router, cascade, cache) calls each named model at its exported endpoint, its local ones at this URL.
    execution: an `ExecutionConfig` for the model client's timeout, retries and connection pool (the service).
    vector_store: the Chroma to read the index from instead of the exported one (a sweep against a Chroma server
      exports its host and port, and loads against that server; default: the embedded store under `home`).
    """
    from workbench.data.corpus import load_corpus
    from workbench.rag.assemble import build_index, build_pipeline, chat_model

    doc = read_export(path)
    variant = VariantConfig.model_validate(doc["variant"])
    source = CorpusSource.model_validate(doc["data"]["corpus"])
    if not Path(source.path).is_absolute():  # exports are written absolute; a relative one is the export's
        source = source.model_copy(update={"path": str(Path(path).resolve().parent / source.path)})
    if corpus_path is not None:
        source = source.model_copy(update={"path": str(corpus_path)})
    corpus = load_corpus(source)
    if corpus.digest != doc["data"]["corpus_digest"] and not allow_corpus_change:
        raise DataError(
            f"{source.path}: the corpus differs from the one the export was measured on (digest "
            f"{corpus.digest[:12]} vs {doc['data']['corpus_digest'][:12]}); its answers and metrics would not hold. "
            "Point corpus_path at the original corpus, or pass allow_corpus_change=True to accept the difference."
        )
    home = Path(home)
    from workbench.rag.retrieval import needs_vectors

    from workbench.rag.vector_store import open_vector_store

    if vector_store is None:
        vector_store = VectorStoreConfig.model_validate(doc.get("vector_store") or {})
    dense = needs_vectors(variant.retrieval)  # BM25 alone never embeds, nor needs the server
    client = open_vector_store(vector_store, home) if dense else None
    index = build_index(corpus, variant, home, client=client, dense=dense)
    server = None
    url = base_url
    if url is None and any(m.provider == "local" for m in chat_configs(variant.model)):
        from workbench.rag.local_model import LocalModelServer

        server = LocalModelServer(log_dir=home / "logs").start()
        url = server.base_url
    try:
        if isinstance(variant.model, RoutedModel):  # each named model at its own endpoint; `url` for local ones
            from workbench.rag.routed_pipeline import RoutedPipeline
            from workbench.rag.routing import RoutedChat

            def make(cfg, logprobs: bool = False):
                return chat_model(cfg, url if cfg.provider == "local" else None, execution, logprobs=logprobs)

            return Pipeline(doc, RoutedPipeline(variant, index, RoutedChat.open(variant.model, make)), server)
        model = chat_model(variant.model, url, execution)
    except Exception:
        if server is not None:
            server.stop()
        raise
    return Pipeline(doc, build_pipeline(variant, index, model), server)
