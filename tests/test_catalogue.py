"""The metric catalogue, the Cell and aggregate(): fast, no model, no MLflow.

The catalogue declares each metric once; these tests check what is derived from it (per-cell scoring,
aggregates, the table columns, directions, the judge's metric check) and that a Cell converts to and
from the flat row losslessly and byte for byte as the runner wrote rows before the Cell existed.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench.analysis.stats import NON_SCORE_COLUMNS, best, score_columns
from workbench.errors import ConfigError
from workbench.scoring import catalogue
from workbench.scoring.aggregate import aggregate, direction, quality_metrics
from workbench.scoring.catalogue import Metric
from workbench.scoring.cell import ABSENT, NOT_IN_TABLE, Cell, table_columns
from workbench.scoring.score import score_cell
from workbench.spec import JudgeConfig, load_spec

WORDS = Metric("answer_words", "answer", "answer length in words", better="lower",
               fn=lambda answer, references: float(len(answer.split())))
# MLflow's eval_results columns before they were derived (commit f90035c).
OLD_TABLE_COLUMNS = (
    "question_id", "question", "answer", "reference_answers", "relevant_ids", "retrieved_doc_ids",
    "retrieved_chunk_ids", "contexts", "exact_match", "f1", "rouge_l", "string_similarity", "hit_at_k",
    "recall_at_k", "mrr", "ndcg_at_k", "latency_retrieve_s", "latency_generate_s", "latency_total_s",
    "tokens_prompt", "tokens_completion", "cost_usd", "error",
)


# ---------------------------------------------------------------- rows as the runner wrote them before the Cell


def old_runner_row(generated: str | None = "Denver Broncos", failed: str | None = None) -> dict:
    """A row built the way `_SweepRun.answer` and `_score_cell`/`_judge_cell` built it at f90035c."""
    row = {
        "variant_hash": "f" * 64, "variant": "f" * 12, "question_id": "q1", "question": "Who won?",
        "reference_answers": ["Denver Broncos", "Broncos"], "relevant_ids": ["d1"],
        "retrieved_chunk_ids": ["d1#0", "d2#0", "d1#1"], "retrieved_chunk_doc_ids": ["d1", "d2", "d1"],
        "contexts": ["The Broncos won.", "Panthers lost.", "In Santa Clara."], "started_at_ns": 1_700_000_000_000_000_000,
        "latency_retrieve_s": 0.01, "latency_total_s": 0.01, "error": None,
    }
    if generated is not None:
        row["messages"] = [{"role": "user", "content": "Context: … Question: Who won?"}]
        if failed:
            row.update({"answer": None, "error": failed, "latency_total_s": None})
        else:
            row.update({"answer": generated, "cached": False, "latency_generate_s": 0.5, "latency_total_s": 0.51,
                        "tokens_prompt": 120, "tokens_completion": 4, "cost_usd": 0.0})
    row["retrieved_doc_ids"] = ["d1", "d2"]
    row.update({"hit_at_k": 1.0, "recall_at_k": 1.0, "mrr": 1.0, "ndcg_at_k": 1.0})
    row.update({"hit_at_10": 1.0, "recall_at_10": 1.0, "mrr_at_10": 1.0, "ndcg_at_10": 1.0})
    if generated is not None and not failed:
        row.update({"exact_match": 1.0, "f1": 1.0, "rouge_l": 1.0, "string_similarity": 1.0})
        row.update({"faithfulness": 0.5, "faithfulness_error": None,
                    "answer_relevancy": None, "answer_relevancy_error": "answer_relevancy: could not parse"})
    return row


@pytest.mark.parametrize("kind", ["answered", "failed", "retrieval only"])
def test_a_row_written_before_the_cell_round_trips_byte_for_byte(kind):
    row = {"answered": old_runner_row(), "failed": old_runner_row(failed="HTTP 500"),
           "retrieval only": old_runner_row(generated=None)}[kind]
    cell = Cell.from_row(row)
    assert json.dumps(cell.to_row(), default=str) == json.dumps(row, default=str)
    assert Cell.from_row(cell.to_row()) == cell
    if kind == "retrieval only":
        assert cell.answer is ABSENT and "answer" not in cell.to_row()  # absent, not None
    if kind == "failed":
        assert cell.answer is None and not cell.ok and "cached" not in cell.to_row()


def test_the_cell_reads_judged_scores_their_errors_and_unknown_keys():
    row = old_runner_row() | {"a_metric_no_longer_registered": 0.3}
    cell = Cell.from_row(row)
    assert cell.value("faithfulness") == 0.5 and cell.errors["answer_relevancy"].startswith("answer_relevancy")
    assert cell.value("ndcg_at_10") == 1.0
    assert cell.extra == {"a_metric_no_longer_registered": 0.3}
    assert cell.to_row() == row


def test_a_row_read_back_from_mlflow_round_trips():
    row = {"variant_hash": "f" * 64, "variant": "f" * 12, **{c: None for c in OLD_TABLE_COLUMNS},
           "question_id": "q1", "question": "Who won?", "retrieved_chunk_doc_ids": ["d1"], "cached": None}
    assert Cell.from_row(row).to_row() == row


def test_a_row_without_identity_is_refused_by_name():
    with pytest.raises(ValueError, match="question_id"):
        Cell.from_row({"variant_hash": "x", "variant": "x", "question": "?"})


def test_table_columns_are_derived_and_keep_the_old_order():
    columns = table_columns()
    assert [c for c in columns if c in OLD_TABLE_COLUMNS] == list(OLD_TABLE_COLUMNS)
    # cached, retrieved_chunk_doc_ids were extras before; latency_sweep_id: which sweep timed the cell;
    # repeat: which answer to the question (spec `repeats`; absent from a row without repeats)
    # routed variants (issue 16): which model answered, its decision and signal, the response cache's outcome
    routing = {"routed_to", "escalated", "route_signal", "cache_hit", "cache_wrong_hit", "cache_saved_usd", "cache_saved_s"}
    assert set(columns) - set(OLD_TABLE_COLUMNS) == {"cached", "retrieved_chunk_doc_ids", "latency_sweep_id", "repeat"} | routing
    assert NOT_IN_TABLE == {"variant_hash", "variant", "messages", "started_at_ns", "latency_measured_at",
                            "latency_in_flight", "latency_concurrency_limit", "route_calls"}
    assert not set(columns) & NOT_IN_TABLE


def test_stats_non_score_columns_come_from_the_cell():
    assert {"variant_hash", "question_id", "answer", "error", "started_at_ns", "cached"} <= NON_SCORE_COLUMNS
    assert "latency_total_s" not in NON_SCORE_COLUMNS and "f1" not in NON_SCORE_COLUMNS
    q = pd.DataFrame([old_runner_row()]).assign(variant="a")
    cols = score_columns(q)
    assert "f1" in cols and "latency_total_s" in cols and "faithfulness" in cols
    assert "started_at_ns" not in cols and "answer_relevancy_error" not in cols and "faithfulness_error" not in cols


# ---------------------------------------------------------------- the catalogue


def test_each_builtin_metric_is_declared_once_with_what_it_needs_and_its_direction():
    assert catalogue.names("retrieval") == ["hit_at_k", "recall_at_k", "mrr", "ndcg_at_k"]
    assert catalogue.names("answer") == ["exact_match", "f1", "rouge_l", "string_similarity"]
    assert catalogue.names("judged") == ["faithfulness", "answer_relevancy", "context_precision", "context_recall",
                                         "factual_correctness"]
    for m in catalogue.all_metrics():
        assert m.description and m.better == "higher"
    assert catalogue.get("context_recall").needs == {"judge", "contexts", "reference_answers"}
    assert catalogue.get("answer_relevancy").needs == {"judge"}
    assert catalogue.get("mrr_at_5").better == "higher" and not catalogue.is_metric("latency_total_s")


def test_a_retrieval_metric_at_a_cutoff_is_its_family_at_that_depth():
    ranking, gains = ["x", "y", "d1"], {"d1": 1.0}
    assert catalogue.get("mrr_at_2").fn(ranking, gains) == 0.0  # beyond the cut-off
    assert catalogue.get("mrr").fn(ranking, gains, 2) == pytest.approx(1 / 3)  # mrr has no cut-off
    assert catalogue.get("hit_at_3").fn(ranking, gains) == 1.0
    with pytest.raises(KeyError, match="unknown metric 'f2'"):
        catalogue.get("f2")


def test_registered_adds_a_metric_for_the_block_only():
    assert not catalogue.is_metric("answer_words")
    with catalogue.registered(WORDS):
        assert catalogue.names("answer")[-1] == "answer_words"
        assert "answer_words" in quality_metrics([])
        assert direction("answer_words") == "min" and direction("answer_words_ci_high") == "min"
        with pytest.raises(ValueError, match="already in the catalogue"):
            catalogue.register(WORDS)
    assert not catalogue.is_metric("answer_words")
    with pytest.raises(RuntimeError), catalogue.registered(WORDS):
        raise RuntimeError("a failing test")
    assert not catalogue.is_metric("answer_words")  # not leaked by a failure either


@pytest.mark.parametrize("bad, why", [
    (dict(name="latency_total_s"), "shadow a cell field"),
    (dict(name="Words"), "lower_snake_case"),
    (dict(needs=frozenset({"gold"})), "unknown input"),
    (dict(better="shorter"), "'higher' or 'lower'"),
    (dict(kind="judged"), "judge binding"),
])
def test_a_bad_declaration_says_what_is_wrong(bad, why):
    fields = dict(name="answer_words", kind="answer", description="d", fn=WORDS.fn) | bad
    with pytest.raises(ValueError, match=why):
        catalogue.register(Metric(**fields))
    assert not catalogue.is_metric(fields["name"]) or fields["name"] == "latency_total_s"


def test_unknown_judge_metric_is_a_config_error_naming_the_field_and_the_known_ones(tmp_path):
    spec = load_spec({"name": "j", "data": {"corpus": {"format": "jsonl", "path": "c.jsonl"},
                                            "eval": {"format": "jsonl", "path": "e.jsonl"}},
                      "judge": {"metrics": ["faithfulness", "faithfullness"]}})
    with pytest.raises(ConfigError, match=r"judge\.metrics: .*'faithfullness'.*known: faithfulness, answer_relevancy"):
        catalogue.check_judge(spec)
    catalogue.check_judge(spec.model_copy(update={"judge": None}))  # no judge: nothing to check
    from workbench.scoring.judge import Judge

    with pytest.raises(ConfigError, match="judge.metrics"):
        Judge(JudgeConfig(metrics=["nope"]), base_url="http://127.0.0.1:9/v1")


def test_run_sweep_checks_the_judge_metrics_before_any_work(tmp_path):
    from conftest import small_spec
    from workbench.runner.sweep import run_sweep

    spec = small_spec(tmp_path) | {"judge": {"metrics": ["faithfulness", "no_such_metric"]}}
    with pytest.raises(ConfigError, match="judge.metrics: unknown LLM-judged metric 'no_such_metric'"):
        run_sweep(spec, progress=False)
    assert not (tmp_path / "home").exists() and not (tmp_path / "mlruns").exists()


# ---------------------------------------------------------------- per-cell scoring


def answered(answer: str = "Denver Broncos", refs: list | None = None, error: str | None = None) -> Cell:
    return Cell(variant_hash="v" * 64, variant="v" * 12, question_id="q1", question="Who won?",
                reference_answers=["Denver Broncos"] if refs is None else refs, relevant_ids=["d1"],
                retrieved_chunk_ids=["d2#0", "d1#0"], retrieved_chunk_doc_ids=["d2", "d1"], contexts=["a", "b"],
                latency_retrieve_s=0.1, latency_total_s=0.6, error=error, messages=[], answer=answer)


def test_score_cell_leaves_out_what_it_cannot_compute():
    full = score_cell(answered(), {"d1": 1}, k=2, cutoffs=[1])
    assert full.retrieved_doc_ids == ["d2", "d1"]
    assert full.scores["mrr"] == 0.5 and full.scores["hit_at_1"] == 0.0 and full.scores["f1"] == 1.0
    no_refs = score_cell(answered(refs=[]), {}, k=2)
    assert no_refs.scores == {}  # no relevance, no references: absent, never 0
    failed = score_cell(answered(answer=None, error="HTTP 500"), {"d1": 1}, k=2)
    assert "f1" not in failed.scores and failed.scores["hit_at_k"] == 1.0
    with catalogue.registered(WORDS):  # needs nothing: scored without references too
        assert score_cell(answered("the Denver Broncos", refs=[]), {}, k=2).scores == {"answer_words": 3.0}


# ---------------------------------------------------------------- aggregate


def rows(*f1s, **extra) -> list[dict]:
    return [{"question_id": f"q{i}", "f1": v, "error": None, "latency_total_s": 1.0 + i, "cost_usd": 0.001,
             "tokens_prompt": 10, "tokens_completion": 2, **extra} for i, v in enumerate(f1s)]


def test_aggregate_means_with_n_and_ci_and_never_a_zero_for_missing_inputs():
    out = aggregate(rows(1.0, 0.0, None, 1.0))
    assert out["f1"] == pytest.approx(2 / 3) and out["f1_n"] == 3
    assert 0.0 <= out["f1_ci_low"] <= out["f1"] <= out["f1_ci_high"] <= 1.0
    assert "exact_match" not in out and "hit_at_k" not in out  # no cell had them: left out, not 0
    assert out["questions"] == 4 and out["failed_cells"] == 0
    assert out["latency_total_p50_s"] == pytest.approx(2.5) and out["cost_usd_per_1k"] == pytest.approx(1.0)
    assert out["tokens_prompt"] == 40 and out["tokens_completion_mean"] == 2


def test_failed_cells_and_unknown_prices_are_left_out():
    data = rows(1.0, 1.0) + [{"question_id": "q9", "f1": 0.0, "error": "HTTP 500", "cost_usd": None}]
    out = aggregate(data)
    assert out["f1"] == 1.0 and out["f1_n"] == 2 and out["failed_cells"] == 1
    unpriced = rows(1.0) + rows(0.5, cost_usd=None)[:1]
    assert aggregate(unpriced[:1])["cost_usd"] == pytest.approx(0.001)
    assert "cost_usd" not in aggregate(unpriced) and "cost_usd_per_1k" not in aggregate(unpriced)  # not a free model


def test_judged_failures_are_counted_and_excluded():
    data = rows(1.0, 1.0, 1.0)
    data[0].update(faithfulness=0.8, faithfulness_error=None)
    data[1].update(faithfulness=None, faithfulness_error="faithfulness: could not parse the judge's answer")
    data[2].update(faithfulness=0.4, faithfulness_error=None)
    out = aggregate(data)
    assert out["faithfulness"] == pytest.approx(0.6) and out["faithfulness_n"] == 2
    assert out["faithfulness_failed"] == 1
    assert "context_recall" not in out and "context_recall_failed" not in out


def test_a_registered_metric_is_aggregated_and_best_follows_its_direction():
    with catalogue.registered(WORDS):
        data = [{**r, "variant": v, "answer_words": w} for v, ws in (("a", [2.0, 3.0]), ("b", [6.0, 7.0]))
                for r, w in zip(rows(0.5, 0.5), ws)]
        frame = pd.DataFrame([{"variant": v, **aggregate([r for r in data if r["variant"] == v])} for v in "ab"])
        frame = frame.set_index("variant")
        assert frame.loc["a", "answer_words"] == 2.5 and frame.loc["a", "answer_words_n"] == 2
        assert best(frame, pd.DataFrame(data), "answer_words").winner == "a"  # lower is better, not assumed higher
    assert direction("latency_total_p95_s") == "min" and direction("cost_usd_per_1k") == "min"
    assert direction("f1") == "max" and direction("failed_cells") == "min" and direction("faithfulness_failed") == "min"
