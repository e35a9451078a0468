"""Bad input through the real CLI: one clear error naming the file/field/value, exit code 2, no traceback,
nothing half-written (no sweep record, no MLflow run)."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import SQUAD, small_spec
from workbench.cli import app

runner = CliRunner()


def _write(tmp: Path, name: str, content: str | bytes) -> str:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _jsonl(rows) -> str:
    return "\n".join(json.dumps(r) for r in rows) + "\n"


GOOD_DOCS = [{"id": "a", "text": "Denver won the game."}, {"id": "b", "text": "Carolina lost the game."}]
GOOD_QS = [{"id": "q1", "question": "Who won?", "reference_answers": ["Denver"], "relevant_ids": ["a"]}]


def jsonl_spec(tmp: Path, docs=GOOD_DOCS, qs=GOOD_QS) -> dict:
    spec = small_spec(tmp)
    spec["data"] = {
        "corpus": {"format": "jsonl", "path": _write(tmp, "corpus.jsonl", _jsonl(docs))},
        "eval": {"format": "jsonl", "path": _write(tmp, "eval.jsonl", _jsonl(qs))},
    }
    return spec


def space(**axes):
    def mutate(spec, tmp):
        spec["space"].update(axes)
    return mutate


def data(section, **fields):
    def mutate(spec, tmp):
        spec["data"][section].update(fields)
    return mutate


def corpus_file(content, fmt="jsonl"):
    def mutate(spec, tmp):
        spec["data"]["corpus"] = {"format": fmt, "path": _write(tmp, "bad_corpus." + ("csv" if fmt == "csv" else "jsonl"), content)}
    return mutate


def eval_file(content, fmt="jsonl"):
    def mutate(spec, tmp):
        spec["data"]["eval"] = {"format": fmt, "path": _write(tmp, "bad_eval." + fmt, content)}
    return mutate


def folder_of(files: dict):
    def mutate(spec, tmp):
        for name, content in files.items():
            _write(tmp / "docs", name, content)
        spec["data"]["corpus"] = {"format": "folder", "path": str(tmp / "docs")}
    return mutate


def top(**fields):
    def mutate(spec, tmp):
        spec.update(fields)
    return mutate


CASES = {
    "unknown top-level key": (top(nmae="x"), "nmae: unknown key"),
    "unknown space key": (space(chunkings=[{}]), "space.chunkings"),
    "wrong type for size": (space(chunking=[{"size": "big"}]), "space.chunking.0.size"),
    "k = 0": (space(retrieval=[{"kind": "dense", "k": 0}]), "space.retrieval.0.k"),
    "k < 0": (space(retrieval=[{"kind": "bm25", "k": -3}]), "space.retrieval.0.k"),
    "overlap >= size": (space(chunking=[{"size": 100, "overlap": 100}]), "overlap (100) must be smaller than size (100)"),
    "template without {question}": (space(prompt=[{"name": "p", "template": "{context}"}]), "{question}"),
    "template without {context}": (space(prompt=[{"name": "p", "template": "{question}"}]), "{context}"),
    "template with unknown slot": (space(prompt=[{"name": "p", "template": "{context}{question}{foo}"}]), "{foo}"),
    "unknown model provider": (space(model=[{"provider": "anthropic"}]), "space.model.0.provider"),
    "unknown retrieval kind": (space(retrieval=[{"kind": "colbert"}]), "space.retrieval.0.kind"),
    "unknown chunking strategy": (space(chunking=[{"strategy": "semantic"}]), "space.chunking.0.strategy"),
    "temperature out of range": (space(model=[{"temperature": 9}]), "space.model.0.temperature"),
    "key pasted as api_key_env": (space(model=[{"provider": "openai", "model": "m", "api_key_env": "sk-123"}]), "NAME of an environment variable"),
    "empty axis": (space(retrieval=[]), "space.retrieval"),
    "unknown corpus format": (data("corpus", format="pdf"), "data.corpus.format"),
    "eval limit 0": (data("eval", limit=0), "data.eval.limit"),
    "retrieval cut-off 0": (top(retrieval_cutoffs=[0]), "retrieval_cutoffs"),
    "model axis with stage retrieve": (top(stage="retrieve"), "remove space.model"),
    "missing corpus file": (data("corpus", path="/nonexistent/corpus.jsonl"), "/nonexistent/corpus.jsonl"),
    "missing eval file": (data("eval", path="/nonexistent/eval.jsonl"), "/nonexistent/eval.jsonl"),
    "empty corpus file": (corpus_file(""), "bad_corpus.jsonl"),
    "empty eval file": (eval_file(""), "bad_eval.jsonl"),
    "non-UTF-8 corpus": (corpus_file(b'{"id": "a", "text": "caf\xe9"}\n'), "UTF-8"),
    "malformed JSON line": (corpus_file('{"id": "a", "text": "x"}\n{"id": "b", "text": \n'), "bad_corpus.jsonl:2"),
    "duplicate document ids": (corpus_file(_jsonl([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])), "'a'"),
    "document without text": (corpus_file(_jsonl([{"id": "a"}])), "text"),
    "duplicate question ids": (eval_file(_jsonl(GOOD_QS * 2)), "q1"),
    "relevant_ids not in corpus": (eval_file(_jsonl([{**GOOD_QS[0], "relevant_ids": ["zzz"]}])), "zzz"),
    "reference_answers not a list": (eval_file(_jsonl([{**GOOD_QS[0], "reference_answers": 5}])), "reference_answers"),
    "empty question": (eval_file(_jsonl([{**GOOD_QS[0], "question": "  "}])), "question"),
    "CSV without question column": (eval_file("id,answer\nq1,x\n", fmt="csv"), "question"),
    "corpus of 0-byte files": (folder_of({"a.txt": "", "b.md": ""}), "empty"),
    "folder with no .txt/.md": (folder_of({"a.pdf": "x"}), "docs"),
    "unreachable base_url": (space(model=[{"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}]), "127.0.0.1:9"),
    "missing API key variable": (space(model=[{"provider": "openai", "model": "gpt-4o-mini", "api_key_env": "WB_UNSET_KEY_VAR"}]), "WB_UNSET_KEY_VAR"),
    "bad tracking URI": (top(tracking={"tracking_uri": "nosuchscheme://x"}), "nosuchscheme://x"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gives_one_clear_error(name, tmp_path, monkeypatch):
    mutate, needle = CASES[name]
    monkeypatch.delenv("WB_UNSET_KEY_VAR", raising=False)
    monkeypatch.chdir(tmp_path)
    spec = jsonl_spec(tmp_path)
    mutate(spec, tmp_path)
    path = _write(tmp_path, "spec.yaml", yaml.safe_dump(spec))
    result = runner.invoke(app, ["run", path, "--no-progress"])
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert needle in result.output, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # handled, not a crash
    # nothing half-written: no sweep record and no MLflow store
    assert not (Path(spec["home"]) / "sweeps").exists()
    assert not Path(spec["tracking"]["tracking_uri"].removeprefix("sqlite:///")).exists()


def test_malformed_spec_yaml(tmp_path):
    path = _write(tmp_path, "bad.yaml", "name: x\nspace: [unclosed\n")
    result = runner.invoke(app, ["run", path])
    assert result.exit_code == 2 and "bad.yaml" in result.output and "malformed YAML" in result.output


def test_missing_spec_file(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "file not found" in result.output


@pytest.mark.slow  # a real sweep on the local model
def test_question_longer_than_the_context_window_fails_its_cell_not_the_sweep(tmp_path):
    """A too-long prompt is that cell's recorded failure (never a 0), the others are scored, exit code 1."""
    long_q = "Who won " + "the game and " * 3000 + "?"
    spec = jsonl_spec(tmp_path, qs=[*GOOD_QS, {"id": "q2", "question": long_q, "reference_answers": ["Denver"], "relevant_ids": ["a"]}])
    spec["space"]["retrieval"] = [{"kind": "bm25", "k": 1}]
    path = _write(tmp_path, "spec.yaml", yaml.safe_dump(spec))
    result = runner.invoke(app, ["run", path, "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "1 of 2 cells failed" in result.output and "context" in result.output
    cells = [json.loads(l) for l in next((Path(spec["home"]) / "sweeps").glob("*/cells.jsonl")).read_text().splitlines()]
    bad = next(c for c in cells if c["question_id"] == "q2")
    good = next(c for c in cells if c["question_id"] == "q1")
    assert bad["error"] and bad.get("f1") is None and bad.get("exact_match") is None
    assert good["error"] is None and good["f1"] is not None
