"""Hostile specs, exports and CLI arguments: one clear error that names the thing and the fix, never a
traceback, a hang, a silent change or a half-written state (issue 13: specs, YAML, CLI and exports).

The fast tables run on real files through the real CLI (typer's CliRunner); the last section runs one real
sweep (`workbench run` in a subprocess, the model a real HTTP fake endpoint) into a real sqlite MLflow store
and exports from it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import math
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from workbench.cli import app
from workbench.errors import ConfigError, TrackingError
from workbench.handover.export import read_export
from workbench.handover.seal import FORMAT_V1, export_hash_v1, seal
from workbench.spec import VariantConfig, load_spec, parse_yaml

runner = CliRunner()

DOCS = [{"id": "a", "text": "Denver won the game."}, {"id": "b", "text": "Carolina lost the game."}]
QS = [{"id": "q1", "question": "Who won?", "reference_answers": ["Denver"], "relevant_ids": ["a"]}]
BOMB = (  # 9 ** 9 = 387 million strings from 0.5 KB (such a file once took 33 s and > 2.4 GB to MemoryError)
    "a: &a [x,x,x,x,x,x,x,x,x]\n"
    + "".join(f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))
)


def write_data(folder: Path) -> None:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    (folder / "data" / "eval.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QS))


SPEC = """\
name: hostile
data:
  corpus: {format: jsonl, path: data/corpus.jsonl}
  eval: {format: jsonl, path: data/eval.jsonl}
space:
  retrieval: [{kind: bm25, k: 2}]
  model: [{provider: openai, model: latency-endpoint, base_url: "http://127.0.0.1:9/v1"}]
"""


def run_cli(args: list[str], cwd: Path, monkeypatch) -> tuple[int, str]:
    monkeypatch.chdir(cwd)
    started = time.perf_counter()
    result = runner.invoke(app, args)
    assert time.perf_counter() - started < 20, "refusing bad input must not hang"
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


# ---------------------------------------------------------------- specs: `workbench run SPEC`

SPEC_CASES = {
    # name: (how the spec text changes, what the one error must say)
    "alias bomb under data.corpus": (
        lambda s: BOMB + s.replace("corpus: {format: jsonl, path: data/corpus.jsonl}", "corpus: {format: jsonl, path: *i}"),
        ["expands to more than 100,000 values", "remove the repeated aliases"],
    ),
    "recursive alias": (lambda s: s + "home: &h [*h]\n", ["alias refers to itself", "line"]),
    "larger than 1 MiB": (lambda s: s + "#" + "x" * (1 << 20) + "\n", ["larger than 1 MiB"]),
    "nested 10,000 deep": (lambda s: s + "home: " + "[" * 10_000 + "]" * 10_000 + "\n", ["nested"]),
    "duplicate key drops the first list": (
        lambda s: s.replace("  model:", "  retrieval: [{kind: bm25, k: 3}]\n  model:"),
        ["duplicate key 'retrieval' (first given at line 6)", "line 7"],
    ),
    "duplicate top-level section": (lambda s: s + "name: again\n", ["duplicate key 'name' (first given at line 1)"]),
    ".inf in a float field": (
        lambda s: s.replace("base_url:", "price_input_per_mtok: .inf, price_output_per_mtok: 1, base_url:"),
        ["space.model.0.price_input_per_mtok", "inf is not a finite number"],
    ),
    ".nan in a float field": (lambda s: s + "execution: {timeout_s: .nan}\n", ["execution.timeout_s", "nan is not a finite number"]),
    "-.inf in a float field": (lambda s: s + "execution: {requests_per_minute: -.inf}\n", ["execution.requests_per_minute"]),
    "a date where a string belongs": (lambda s: s.replace("name: hostile", "name: 2026-11-29"), ["name: a YAML date", "quote it"]),
    "a non-string key": (lambda s: s + "1: one\n", ["key 1", "quote it"]),
    "nested format spec in a template": (
        lambda s: s + "  prompt: [{template: 'Q: {question:{context}} {context}'}]\n",
        ["space.prompt.0.template", "{question:{context}}", "plain {question}"],
    ),
    "strftime format spec": (
        lambda s: s + "  prompt: [{template: '{context:%Y} {question}'}]\n", ["{context:%Y}", "plain {context}"]
    ),
    "30 MB padding format spec": (
        lambda s: s + "  prompt: [{template: '{context} {question:>30000000}'}]\n", ["{question:>30000000}"]
    ),
    "conversion in a template": (lambda s: s + "  prompt: [{template: '{context} {question!r}'}]\n", ["{question!r}"]),
}


@pytest.mark.parametrize("case", SPEC_CASES, ids=list(SPEC_CASES))
def test_hostile_spec_is_refused_by_run_with_one_clear_error(case, tmp_path, monkeypatch):
    change, expected = SPEC_CASES[case]
    write_data(tmp_path)
    (tmp_path / "spec.yaml").write_text(change(SPEC))
    code, out = run_cli(["run", "spec.yaml", "--no-progress"], tmp_path, monkeypatch)
    assert code == 2, out
    assert out.startswith("error: spec.yaml"), out
    for text in expected:
        assert text in out, out
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / ".workbench").exists()  # nothing half-written


def test_the_unchanged_spec_is_valid(tmp_path, monkeypatch):
    """The table's base spec passes validation: each case fails for its own reason only."""
    write_data(tmp_path)
    (tmp_path / "spec.yaml").write_text(SPEC)
    monkeypatch.chdir(tmp_path)
    assert load_spec("spec.yaml").variants()[0].retrieval.kind == "bm25"


@pytest.mark.parametrize("field, value", [("temperature", math.inf), ("price_input_per_mtok", math.inf),
                                          ("price_output_per_mtok", math.nan)])
def test_non_finite_floats_from_python_name_the_field(field, value):
    model = {"provider": "openai", "model": "m", "price_input_per_mtok": 1.0, "price_output_per_mtok": 1.0, field: value}
    spec = {"name": "x", "data": {"corpus": {"format": "jsonl", "path": "c"}, "eval": {"format": "jsonl", "path": "e"}},
            "space": {"model": [model]}}
    with pytest.raises(ConfigError, match=rf"space\.model\.0\.{field}: Input should be a finite number"):
        load_spec(spec)


def test_merge_keys_may_still_be_overridden():
    """`<<: *base` then a key of its own is YAML's way to reuse a section, not a duplicate key."""
    data = parse_yaml("base: &b {k: 2, kind: bm25}\nr:\n  <<: *b\n  k: 5\n", "t.yaml")
    assert data["r"] == {"k": 5, "kind": "bm25"}


# ---------------------------------------------------------------- export files: `workbench answer PATH QUESTION`


def sealed_export(folder: Path) -> dict:
    """A v2 export as `workbench export` writes it, built from a real variant and the real corpus file."""
    write_data(folder)
    variant = VariantConfig.model_validate(
        {"retrieval": {"kind": "bm25", "k": 2}, "model": {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}}
    )
    return seal({
        "format": "workbench.export/v2",
        "variant_hash": variant.hash,
        "variant": variant.model_dump(mode="json"),
        "data": {"corpus": {"format": "jsonl", "path": str(folder / "data" / "corpus.jsonl")}, "corpus_digest": "d" * 64,
                 "eval": {"format": "jsonl", "path": str(folder / "data" / "eval.jsonl"), "limit": None, "split": "test"},
                 "eval_digest": "e" * 64},
        "provenance": {"sweep_id": "20261129-210000-abcdef", "metrics": {"f1": {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 3}},
                       "tracking_uri": f"sqlite:///{folder}/mlruns/mlflow.db", "prompt_registry": None},
        "examples": [{"question_id": "q1", "question": "Who won?", "answer": "Denver"}],
    })


def edit(path: str, value):
    def change(doc: dict) -> str:
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[last] = value
        return yaml.safe_dump(doc, sort_keys=False)
    return change


EXPORT_CASES = {
    "edited f1": (edit("provenance.metrics.f1.mean", 0.99), ["was modified after export: field provenance.metrics"]),
    "edited sweep id": (edit("provenance.sweep_id", "20261129-210000-ffffff"), ["field provenance.sweep_id"]),
    "edited example": (edit("examples.0.answer", "Carolina"), ["field examples"]),
    "edited eval digest": (edit("data.eval_digest", "0" * 64), ["field data.eval_digest"]),
    "edited variant": (edit("variant.retrieval.k", 7), ["does not match its hash"]),
    "inf in a metric": (edit("provenance.metrics.f1.mean", math.inf), ["provenance.metrics.f1.mean: inf is not a finite number"]),
    "alias bomb under data.corpus": (
        lambda doc: BOMB + yaml.safe_dump(doc, sort_keys=False).replace("  corpus:\n", "  corpus: *i\n  was:\n", 1),
        ["expands to more than 100,000 values"],
    ),
    "duplicate key": (lambda doc: yaml.safe_dump(doc, sort_keys=False) + "examples: []\n", ["duplicate key 'examples'"]),
    "bad corpus section": (edit("data.corpus.format", "pickle"), ["data.corpus: 1 problem", "format"]),
    "not an export": (lambda doc: "format: something-else\n", ["not a workbench export"]),
}


@pytest.mark.parametrize("case", EXPORT_CASES, ids=list(EXPORT_CASES))
def test_hostile_export_is_refused_by_answer_with_one_clear_error(case, tmp_path, monkeypatch):
    change, expected = EXPORT_CASES[case]
    (tmp_path / "winner.yaml").write_text(change(sealed_export(tmp_path)))
    code, out = run_cli(["answer", "winner.yaml", "Who won?"], tmp_path, monkeypatch)
    assert code == 2, out
    assert out.startswith("error: ") and "winner.yaml" in out, out
    for text in expected:
        assert text in out, out
    assert not (tmp_path / ".workbench").exists()  # refused before any index was built


def test_the_unedited_export_verifies_and_a_v1_export_still_loads_with_a_warning(tmp_path):
    doc = sealed_export(tmp_path)
    (tmp_path / "v2.yaml").write_text(yaml.safe_dump(doc))
    assert read_export(tmp_path / "v2.yaml")["provenance"]["metrics"]["f1"]["mean"] == 0.5
    v1 = {k: v for k, v in doc.items() if k != "field_hashes"} | {"format": FORMAT_V1}
    v1["export_hash"] = export_hash_v1(v1["variant"], v1["data"]["corpus"], v1["data"]["corpus_digest"])
    (tmp_path / "v1.yaml").write_text(yaml.safe_dump(v1))
    with pytest.warns(UserWarning, match="v1 export: its hash does not cover its provenance"):
        assert read_export(tmp_path / "v1.yaml")["variant_hash"] == doc["variant_hash"]
    v1["data"]["corpus_digest"] = "0" * 64
    (tmp_path / "v1.yaml").write_text(yaml.safe_dump(v1))
    with pytest.raises(ConfigError, match="export_hash does not match"):
        read_export(tmp_path / "v1.yaml")


def test_a_relative_corpus_path_in_an_export_is_read_relative_to_the_export_file(tmp_path, monkeypatch):
    """Exports are written with absolute paths; a relative one (an export moved with its corpus) is the export's."""
    from workbench.data.corpus import load_corpus
    from workbench.handover.export import load_pipeline
    from workbench.spec import CorpusSource

    doc = sealed_export(tmp_path / "shipped")
    doc["data"]["corpus"]["path"] = "data/corpus.jsonl"
    corpus = CorpusSource(format="jsonl", path=str(tmp_path / "shipped" / "data" / "corpus.jsonl"))
    doc["data"]["corpus_digest"] = load_corpus(corpus).digest
    (tmp_path / "shipped" / "winner.yaml").write_text(yaml.safe_dump(seal(doc)))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with load_pipeline("../shipped/winner.yaml", home=tmp_path / "home") as pipe:
        hits, _ = pipe._rag.retrieve("Who won the game, Denver?")
    assert hits[0].chunk.doc_id == "a"


@pytest.mark.parametrize("question", ["", "   ", "\n\t"])
def test_answer_refuses_a_blank_question_before_loading_anything(question, tmp_path, monkeypatch):
    (tmp_path / "winner.yaml").write_text(yaml.safe_dump(sealed_export(tmp_path)))
    code, out = run_cli(["answer", "winner.yaml", question], tmp_path, monkeypatch)
    assert code == 2 and "QUESTION" in out and "is empty" in out, out
    assert not (tmp_path / ".workbench").exists()


# ---------------------------------------------------------------- sweep ids and stores: `workbench export`

SWEEP_ID_CASES = ["x' or '1'='1", "20261129-210000-abcdef' OR tags.a = 'b", "", "../../etc", "20261129-210000-ABCDEF"]


@pytest.mark.parametrize("sweep_id", SWEEP_ID_CASES)
def test_export_refuses_a_sweep_id_that_is_not_one_before_any_filter(sweep_id, tmp_path, monkeypatch):
    code, out = run_cli(["export", "--sweep-id", sweep_id, "--variant", "abc", "--out", "w.yaml",
                         "--tracking-uri", f"sqlite:///{tmp_path}/nowhere/mlflow.db"], tmp_path, monkeypatch)
    assert code == 2 and f"no sweep {sweep_id!r}: a sweep id looks like 20261127-025350-17646e;" in out, out
    assert list(tmp_path.iterdir()) == []


def test_new_sweep_ids_match_the_checked_format(tmp_path):
    from workbench.runner.resume import new_sweep_id
    from workbench.spec import check_sweep_id

    spec = load_spec({"name": "x", "data": {"corpus": {"format": "jsonl", "path": "c"}, "eval": {"format": "jsonl", "path": "e"}}})
    first = new_sweep_id(spec, tmp_path)
    (tmp_path / "sweeps" / first).mkdir(parents=True)
    assert check_sweep_id(first) == first and check_sweep_id(new_sweep_id(spec, tmp_path)).endswith("-2")


@pytest.mark.parametrize("uri", ["sqlite:///mlrun/mlflow.db", "sqlite:///mlruns/mlflow.sqlite", "file:./mlrun"])
def test_reading_commands_refuse_a_store_that_does_not_exist(uri, tmp_path, monkeypatch):
    (tmp_path / "mlruns").mkdir()
    (tmp_path / "mlruns" / "mlflow.db").write_bytes(b"")  # the store the user meant
    code, out = run_cli(["export", "--sweep-id", "20261129-210000-abcdef", "--variant", "abc", "--out", "w.yaml",
                         "--tracking-uri", uri], tmp_path, monkeypatch)
    assert code == 2 and "no MLflow store at" in out and "reading never creates one" in out, out
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["mlflow.db", "mlruns"]  # nothing created
    from workbench.analysis.load import load_sweep

    with pytest.raises(TrackingError, match="no MLflow store at"):
        load_sweep("20261129-210000-abcdef", uri)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["mlflow.db", "mlruns"]


def test_export_refuses_an_out_path_that_is_a_directory_before_reading_the_sweep(tmp_path, monkeypatch):
    (tmp_path / "exports").mkdir()
    code, out = run_cli(["export", "--sweep-id", "20261129-210000-abcdef", "--variant", "abc", "--out", "exports",
                         "--tracking-uri", f"sqlite:///{tmp_path}/nowhere.db"], tmp_path, monkeypatch)
    assert code == 2 and "export path exports is a directory" in out and "exports/winner.yaml" in out, out
    assert [p.name for p in tmp_path.iterdir()] == ["exports"] and list((tmp_path / "exports").iterdir()) == []


# ---------------------------------------------------------------- one real sweep: export from it

CLI = [sys.executable, "-m", "workbench.cli"]


def cli(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, cwd=cwd, capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    """`workbench run spec.yaml` in /…/proj with the spec's relative paths and default store, as a user would;
    the model is a real HTTP endpoint. Yields (proj, sweep id, variant hash, the run's stdout)."""
    from workbench.testing.fake_endpoint import LatencyEndpoint

    proj = tmp_path_factory.mktemp("proj")
    write_data(proj)
    with LatencyEndpoint(latency=0.01) as ep:
        (proj / "spec.yaml").write_text(SPEC.replace("http://127.0.0.1:9/v1", ep.base_url))
        r = cli(["run", "spec.yaml", "--no-progress"], proj)
        assert r.returncode == 0, r.stderr
        sweep_id = re.search(r"^sweep (\S+):", r.stdout, re.M).group(1)
        from workbench.analysis.load import load_sweep

        results = load_sweep(sweep_id, f"sqlite:///{proj}/mlruns/mlflow.db")
        yield proj, sweep_id, results, r.stdout


def prompt_versions(proj: Path) -> list[int]:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{proj}/mlruns/mlflow.db")
    return sorted(int(v.version) for v in client.search_prompt_versions("workbench-hostile-default"))


@pytest.mark.slow  # a real sweep, MLflow store and CLI subprocesses
def test_run_says_once_that_it_created_a_new_store_and_never_again(proj):
    folder, _, _, first = proj
    assert first.count("created a new MLflow store") == 1 and str(folder / "mlruns" / "mlflow.db") in first
    again = cli(["run", "spec.yaml", "--no-progress"], folder)  # the finished sweep returned as is
    assert again.returncode == 0 and "created a new MLflow store" not in again.stdout, again.stdout + again.stderr


@pytest.mark.slow  # a real sweep, MLflow store and CLI subprocesses
def test_export_from_another_folder_uses_the_sweeps_store_and_paths(proj, tmp_path):
    folder, sweep_id, results, _ = proj
    store = f"sqlite:///{folder}/mlruns/mlflow.db"
    variant = results.variants[0]
    r = cli(["export", "--sweep-id", sweep_id, "--variant", variant.short_hash, "--out", "winner.yaml",
             "--tracking-uri", store], tmp_path)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["winner.yaml"]  # no stray store, no temp file
    doc = read_export(tmp_path / "winner.yaml")
    assert doc["data"]["corpus"]["path"] == str(folder / "data" / "corpus.jsonl")
    assert doc["data"]["eval"]["path"] == str(folder / "data" / "eval.jsonl")
    assert doc["provenance"]["tracking_uri"] == store and doc["provenance"]["sweep_id"] == sweep_id
    import mlflow

    mlflow.set_tracking_uri(store)
    assert mlflow.genai.load_prompt(doc["provenance"]["prompt_registry"]["uri"]).template.endswith("Answer:")
    # a hand edit of the measured f1 is refused, naming the field
    text = (tmp_path / "winner.yaml").read_text()
    f1 = doc["provenance"]["metrics"]["f1"]["mean"]
    (tmp_path / "edited.yaml").write_text(text.replace(f"mean: {f1}", "mean: 0.999", 1))
    with pytest.raises(ConfigError, match="edited.yaml was modified after export: field provenance.metrics"):
        read_export(tmp_path / "edited.yaml")


@pytest.mark.slow  # a real sweep, MLflow store and CLI subprocesses
def test_exporting_again_reuses_the_identical_prompt_version(proj, tmp_path):
    folder, _, results, _ = proj
    first = results.export(results.variants[0].hash, tmp_path / "a.yaml")
    before = prompt_versions(folder)
    second = results.export(results.variants[0].hash, tmp_path / "b.yaml")
    registry = [yaml.safe_load(p.read_text())["provenance"]["prompt_registry"] for p in (first, second)]
    assert registry[0] == registry[1] and prompt_versions(folder) == before == [registry[0]["version"]]


@pytest.mark.slow  # a real sweep, MLflow store and CLI subprocesses
def test_out_directory_registers_and_writes_nothing(proj, tmp_path):
    folder, sweep_id, results, _ = proj
    (tmp_path / "exports").mkdir()
    versions = prompt_versions(folder)
    with pytest.raises(ConfigError, match="is a directory; give a file name"):
        results.export(results.variants[0].hash, tmp_path / "exports")
    assert list((tmp_path / "exports").iterdir()) == [] and prompt_versions(folder) == versions


DISK_FULL = """
import resource, signal, sys
from workbench.cli import app
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as a full disk fails
resource.setrlimit(resource.RLIMIT_FSIZE, (2048, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
app(sys.argv[1:])
"""


@pytest.mark.slow  # a real sweep, MLflow store and CLI subprocesses
def test_a_full_disk_while_writing_the_export_leaves_nothing_and_says_so(proj, tmp_path):
    folder, sweep_id, results, _ = proj
    results.export(results.variants[0].hash, tmp_path / "first.yaml")  # the prompt is registered: no write below
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-c", DISK_FULL, "export", "--sweep-id", sweep_id, "--variant",
                        results.variants[0].short_hash, "--out", str(out / "winner.yaml"), "--tracking-uri",
                        f"sqlite:///{folder}/mlruns/mlflow.db"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"error: cannot write export {out / 'winner.yaml'}: File too large; nothing was written" in r.stderr
    assert list(out.iterdir()) == []  # neither the export nor a 0-byte temp file
