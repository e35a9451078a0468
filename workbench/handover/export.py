"""Hand-over to production: a winner as one YAML with provenance, and `load_pipeline` to run it.

The export holds the full variant config, where its corpus came from (with the digest the sweep
saw) and provenance: sweep id, MLflow run ids, dataset digests, metrics with CIs, package versions,
git commit, time. No secrets: endpoints carry only the *name* of their key's environment variable.

`load_pipeline(path)` refuses a file whose config no longer matches its hash, reloads the corpus
and checks its digest, reuses (or rebuilds) the Chroma collection and answers through the same
`RAGPipeline` the sweep used, with deterministic decoding — so it reproduces the sweep's answers.
"""

from __future__ import annotations

import importlib.metadata
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench._version import __version__
from workbench.spec import CorpusSource, VariantConfig, content_hash, dump_yaml, parse_model
from workbench.errors import ConfigError, DataError

FORMAT = "workbench.export/v1"
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


def package_versions() -> dict[str, str]:
    out = {"workbench": __version__}
    for name in KEY_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def export_hash(variant: dict, corpus: dict, corpus_digest: str) -> str:
    """What `load_pipeline` verifies: the variant, its corpus source and the corpus digest."""
    return content_hash({"variant": variant, "corpus": corpus, "corpus_digest": corpus_digest})


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
        if not isinstance(value, (int, float)) or value != value:  # skip NaN and non-numbers
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


def build_export(results, variant_key: str, *, prompt_version: dict | None = None, redact: bool = True) -> dict:
    """The export document for one variant of a finished (or MLflow-loaded) sweep."""
    from workbench.scoring.aggregate import aggregate

    variant = results.variant(variant_key)
    rows = [r for r in results.rows if r["variant_hash"] == variant.hash]
    metrics_row = {"questions": float(len(rows)), **aggregate(rows)}
    corpus = results.spec.data.corpus.model_dump(mode="json")
    corpus["path"] = str(Path(corpus["path"]).resolve())
    corpus_digest = results.data_info["data.corpus.digest"]
    variant_dump = variant.model_dump(mode="json")
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
        "export_hash": export_hash(variant_dump, corpus, corpus_digest),
        "variant_hash": variant.hash,
        "variant": variant_dump,
        "data": {
            "corpus": corpus,
            "corpus_digest": corpus_digest,
            "eval": results.spec.data.eval.model_dump(mode="json"),
            "eval_digest": results.data_info.get("data.eval.digest"),
        },
        "provenance": {
            "sweep_id": results.sweep_id,
            "experiment": results.spec.experiment_name,
            "tracking_uri": results.spec.tracking.tracking_uri,
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
    return doc


def _git_commit() -> str | None:
    from workbench.tracking.mlflow_tracker import git_commit

    return git_commit()


def prompt_registry_name(experiment: str, prompt_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"workbench-{experiment}-{prompt_name}").strip("-")


def register_prompt(results, variant: VariantConfig) -> dict:
    """Register the variant's template in the MLflow prompt registry; returns {name, version, uri}."""
    from workbench.tracking.export_log import register_prompt as register

    return register(
        results.spec.tracking.tracking_uri,
        prompt_registry_name(results.spec.experiment_name, variant.prompt.name),
        to_mlflow_template(variant.prompt.template),
        commit_message=f"exported from sweep {results.sweep_id}, variant {variant.short_hash}",
        tags={"workbench.variant_hash": variant.hash, "workbench.sweep_id": results.sweep_id},
    )


def export_variant(results, variant_key: str, path: str | Path, *, log_to_mlflow: bool = True, redact: bool = True) -> Path:
    """Write the export YAML; also register its prompt and log the file to the variant's MLflow run.

    >>> results.export(results.best("f1").winner, "winner.yaml")   # doctest: +SKIP
    """
    variant = results.variant(variant_key)
    run_id = results.run_ids.get(variant.hash)
    tracked = log_to_mlflow and results.spec.tracking.enabled and run_id is not None
    prompt_version = register_prompt(results, variant) if tracked else None
    doc = build_export(results, variant.hash, prompt_version=prompt_version, redact=redact)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(
        "# RAG workbench export: load with workbench.load_pipeline(path) or `workbench answer PATH QUESTION`.\n"
        + dump_yaml(doc),
        encoding="utf-8",
    )
    tmp.replace(path)  # never a half-written export
    if tracked:
        from workbench.tracking.export_log import log_export

        log_export(results.spec.tracking.tracking_uri, run_id, path)
    return path


# ------------------------------------------------------------------ production side


def read_export(path: str | Path) -> dict:
    """Parse and verify an export; a changed or tampered file is refused."""
    from workbench.spec import read_yaml

    doc = read_yaml(path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a workbench export (expected format: {FORMAT}); create one with `workbench export`")
    for key in ("variant", "variant_hash", "data", "export_hash"):
        if key not in doc:
            raise ConfigError(f"{path}: export is missing {key!r}; re-export it with `workbench export`")
    variant = parse_model(VariantConfig, doc["variant"], f"{path}: variant")
    if variant.hash != doc["variant_hash"]:
        raise ConfigError(
            f"{path}: the variant config does not match its hash (expected {doc['variant_hash'][:12]}, "
            f"got {variant.hash[:12]}): the file was changed after export. Re-export it, or make the change "
            "in a sweep and export the new winner."
        )
    data = doc["data"]
    expected = export_hash(doc["variant"], data.get("corpus"), data.get("corpus_digest"))
    if expected != doc["export_hash"]:
        raise ConfigError(
            f"{path}: export_hash does not match the file's variant and data sections: the file was changed "
            "after export. Re-export it with `workbench export`."
        )
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

    def answer(self, question: str):
        if not isinstance(question, str) or not question.strip():
            raise ValueError("question must be a non-empty string")
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
) -> Pipeline:
    """Rebuild the exported pipeline: verify, load the corpus, reuse or build the index, start the model.

    corpus_path: where the corpus lives now, if it moved since the export.
    base_url: serve the model from this OpenAI-compatible URL instead of the exported one (e.g. the same
      model behind your own gateway); the local model is started on 127.0.0.1 when needed.
    """
    from workbench.data.corpus import load_corpus
    from workbench.rag.assemble import build_index, build_pipeline, chat_model

    doc = read_export(path)
    variant = VariantConfig.model_validate(doc["variant"])
    source = CorpusSource.model_validate(doc["data"]["corpus"])
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
    index = build_index(corpus, variant, home)
    server = None
    url = base_url
    if url is None and variant.model.provider == "local":
        from workbench.rag.local_model import LocalModelServer

        server = LocalModelServer(log_dir=home / "logs").start()
        url = server.base_url
    try:
        model = chat_model(variant.model, url)
    except Exception:
        if server is not None:
            server.stop()
        raise
    return Pipeline(doc, build_pipeline(variant, index, model), server)
