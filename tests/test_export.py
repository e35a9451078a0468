"""Hand-over: export a variant, load it in 'production', get the sweep's answers; tampering is refused."""

import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from workbench.errors import ConfigError, DataError, TrackingError
from workbench.handover.export import load_pipeline, read_export, to_mlflow_template
from workbench.redact import redact_text
from workbench.analysis.load import load_sweep


@pytest.fixture(scope="module")
def exported(swept, tmp_path_factory):
    tmp, spec, results = swept
    variant = results.variants[0]
    path = results.export(variant.short_hash, tmp_path_factory.mktemp("export") / "winner.yaml")
    return results, variant, path


def test_export_yaml_has_config_and_provenance_and_no_secrets(exported):
    results, variant, path = exported
    doc = yaml.safe_load(path.read_text())
    assert doc["variant_hash"] == variant.hash
    assert doc["variant"]["retrieval"]["kind"] == variant.retrieval.kind
    prov = doc["provenance"]
    assert prov["sweep_id"] == results.sweep_id
    assert prov["mlflow_run_id"] == results.run_ids[variant.hash]
    assert prov["spec_hash"] == results.spec.hash
    assert doc["data"]["corpus_digest"] == results.data_info["data.corpus.digest"]
    assert doc["data"]["eval_digest"] == results.data_info["data.eval.digest"]
    f1 = prov["metrics"]["f1"]
    assert f1["ci_low"] <= f1["mean"] <= f1["ci_high"] and f1["n"] == 3
    assert {"workbench", "mlflow", "chromadb", "openai"} <= set(prov["versions"])
    assert prov["exported_at"] and prov["git_commit"] is None or len(prov["git_commit"]) == 40
    assert len(doc["examples"]) == 3
    assert "api_key" not in path.read_text().replace("api_key_env", "")


def test_export_is_logged_to_the_variant_run_and_prompt_registered(exported):
    results, variant, path = exported
    client = mlflow.MlflowClient(results.spec.tracking.tracking_uri)
    run_id = results.run_ids[variant.hash]
    # other tests may export the same shared sweep's variant too (the CLI's --best picks by latency on ties)
    assert "export/winner.yaml" in [a.path for a in client.list_artifacts(run_id, "export")]
    assert client.get_run(run_id).data.tags["workbench.exported"] == "true"
    reg = yaml.safe_load(path.read_text())["provenance"]["prompt_registry"]
    mlflow.set_tracking_uri(results.spec.tracking.tracking_uri)
    prompt = mlflow.genai.load_prompt(reg["uri"])
    assert int(prompt.version) == reg["version"]
    assert "{{context}}" in prompt.template and "{{question}}" in prompt.template
    assert prompt.format(context="CTX", question="Q?") == variant.prompt.template.format(context="CTX", question="Q?")


def test_loaded_pipeline_reproduces_the_sweep_answers(exported):
    results, variant, path = exported
    logged = [r for r in results.rows if r["variant_hash"] == variant.hash]
    with load_pipeline(path, home=results.spec.home) as pipe:
        assert pipe.variant.hash == variant.hash
        for row in logged:
            got = pipe.answer(row["question"])
            assert got.answer == row["answer"], row["question"]
            assert [c.chunk_id for c in got.contexts] == row["retrieved_chunk_ids"]
            assert got.doc_ids == row["retrieved_chunk_doc_ids"]
            assert got.prompt_tokens == row["tokens_prompt"]
            assert got.latency["total_s"] > 0


def test_tampered_export_is_refused(exported, tmp_path):
    _, _, path = exported
    doc = yaml.safe_load(path.read_text())
    doc["variant"]["retrieval"]["k"] = 7
    bad = tmp_path / "tampered.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="does not match its hash"):
        read_export(bad)
    doc = yaml.safe_load(path.read_text())
    doc["data"]["corpus_digest"] = "0" * 64
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="export_hash does not match"):
        read_export(bad)
    bad.write_text("format: something-else\n")
    with pytest.raises(ConfigError, match="not a workbench export"):
        read_export(bad)


def test_changed_corpus_is_refused(exported, tmp_path):
    _, _, path = exported
    import json

    src = json.loads(Path(yaml.safe_load(path.read_text())["data"]["corpus"]["path"]).read_text())
    src["data"][0]["paragraphs"][0]["context"] += " Edited."
    moved = tmp_path / "edited.json"
    moved.write_text(json.dumps(src))
    with pytest.raises(DataError, match="corpus differs"):
        load_pipeline(path, corpus_path=moved)


def test_load_sweep_from_mlflow_matches_the_run(swept):
    _, spec, results = swept
    loaded = load_sweep(results.sweep_id, spec["tracking"]["tracking_uri"])
    assert {v.hash for v in loaded.variants} == {v.hash for v in results.variants}
    assert loaded.spec == results.spec
    assert loaded.data_info["data.corpus.digest"] == results.data_info["data.corpus.digest"]
    a = results.questions().set_index(["variant", "question_id"]).sort_index()
    b = loaded.questions().set_index(["variant", "question_id"]).sort_index()
    assert a["answer"].tolist() == b["answer"].tolist()
    assert a["f1"].tolist() == pytest.approx(b["f1"].tolist())
    assert loaded.to_frame()["f1"].to_dict() == pytest.approx(results.to_frame()["f1"].to_dict())
    with pytest.raises(TrackingError, match="no sweep"):
        load_sweep("no-such-sweep", spec["tracking"]["tracking_uri"])


def test_cli_export_and_answer(swept, tmp_path):
    _, spec, results = swept
    out = tmp_path / "cli.yaml"
    variant = results.variants[-1]
    cmd = [sys.executable, "-m", "workbench.cli"]
    r = subprocess.run(
        cmd + ["export", "--sweep-id", results.sweep_id, "--variant", variant.short_hash, "--out", str(out),
               "--tracking-uri", spec["tracking"]["tracking_uri"]],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert out.is_file() and variant.short_hash in r.stdout
    row = next(x for x in results.rows if x["variant_hash"] == variant.hash)
    r = subprocess.run(cmd + ["answer", str(out), row["question"]], capture_output=True, text=True, timeout=300,
                       cwd=Path(spec["home"]).parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == row["answer"]
    r = subprocess.run(cmd + ["export", "--sweep-id", results.sweep_id, "--out", str(out),
                              "--tracking-uri", spec["tracking"]["tracking_uri"]], capture_output=True, text=True)
    assert r.returncode == 2 and "exactly one of --variant" in r.stderr and "Traceback" not in r.stderr


def test_prompt_template_conversion_keeps_literal_braces():
    assert to_mlflow_template("{context} / {question}") == "{{context}} / {{question}}"
    assert to_mlflow_template('JSON {{"a": 1}} {context} {question}') == 'JSON {"a": 1} {{context}} {{question}}'


@pytest.mark.parametrize(
    "text, expected",
    [
        ("write to jane.doe@example.com today", "write to [EMAIL] today"),
        ("card 4111 1111 1111 1111 ok", "card [CARD] ok"),
        ("card 4111 1111 1111 1112 is not Luhn-valid", "card 4111 1111 1111 1112 is not Luhn-valid"),
        ("call +1 415-555-0132 now", "call [PHONE] now"),
        ("call (020) 7946 0958", "call [PHONE]"),
        ("Super Bowl 50 was on 2016-02-07, score 24-10, 71,088 fans", "Super Bowl 50 was on 2016-02-07, score 24-10, 71,088 fans"),
    ],
)
def test_redaction(text, expected):
    assert redact_text(text) == expected
