"""The recipe for a new metric: ONE declaration, and a real sweep shows it everywhere.

A toy answer metric (the answer's length in words, lower is better) is declared once, registered for
this test only, and a small real sweep (the local SmolLM2 model, 3 SQuAD questions, 2 variants) must
then show it in `results.to_frame()`, `results.compare()`, `best()` (in its direction), the MLflow
runs' metrics, the `eval_results` table and the UI's metric choices, with nothing else edited.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import N_QUESTIONS, small_spec
from workbench.scoring import catalogue
from workbench.scoring.catalogue import Metric
from workbench.tracking.naming import round_sig

ANSWER_WORDS = Metric(
    "answer_words", "answer", "the answer's length in words", better="lower",
    fn=lambda answer, references: float(len(answer.split())),
)


@pytest.mark.slow
def test_one_declaration_puts_a_metric_in_frame_compare_mlflow_table_and_ui(tmp_path):
    import mlflow

    from workbench.runner.sweep import run_sweep
    from workbench.ui import Workbench

    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 1}, {"kind": "bm25", "k": 3}])
    uri = spec["tracking"]["tracking_uri"]
    with catalogue.registered(ANSWER_WORDS):
        results = run_sweep(spec, progress=False)
        q = results.questions()
        words = {(r["variant"], r["question_id"]): float(len(r["answer"].split())) for r in results.rows}
        assert len(words) == 2 * N_QUESTIONS and q["answer_words"].notna().all()
        assert dict(zip(zip(q["variant"], q["question_id"]), q["answer_words"])) == words

        frame = results.to_frame()
        for v in frame.index:
            mean = sum(w for (var, _), w in words.items() if var == v) / N_QUESTIONS
            assert frame.loc[v, "answer_words"] == pytest.approx(mean)
            assert frame.loc[v, "answer_words_n"] == N_QUESTIONS
            assert frame.loc[v, "answer_words_ci_low"] <= mean <= frame.loc[v, "answer_words_ci_high"]

        cmp = results.compare("answer_words")
        assert list(cmp["n"]) == [N_QUESTIONS, N_QUESTIONS]
        assert list(cmp["mean"]) == sorted(cmp["mean"])  # best first: lower is better for this metric
        # ranked in its direction: the fewest words first (the winner may then be a cheaper or faster
        # variant when the difference is not significant)
        assert results.best("answer_words").candidates[0] == frame["answer_words"].idxmin()

        client = mlflow.MlflowClient(uri)
        for v in results.variants:
            run = client.get_run(results.run_ids[v.hash])
            assert run.data.metrics["answer_words/mean"] == round_sig(frame.loc[v.short_hash, "answer_words"])
            assert run.data.metrics["answer_words/n"] == N_QUESTIONS
            table = json.loads(Path(client.download_artifacts(run.info.run_id, "eval_results.json", str(tmp_path)))
                               .read_text())
            column = table["columns"].index("answer_words")
            ids = table["columns"].index("question_id")
            assert {(v.short_hash, r[ids]): r[column] for r in table["data"]} == {
                k: w for k, w in words.items() if k[0] == v.short_hash}

        # The UI, filled from MLflow alone (load), offers it as a quality metric and a decision objective.
        wb = Workbench(spec, tracking_uri=uri)
        wb.load(results.sweep_id)
        assert "answer_words" in wb.results_tab.quality.options
        wb.results_tab.quality.value = "answer_words"
        assert wb.results_tab.heatmap.figure.data[0].colorbar.title.text == "answer_words"
        assert "answer_words" in wb.export_tab.objective.options
        wb.export_tab.objective.value = "answer_words"
        assert wb.export_tab.maximize.value is False  # its declared direction
        decision = wb.export_tab.decide()
        assert decision is not None and decision.candidates[0] == frame["answer_words"].idxmin()

    assert not catalogue.is_metric("answer_words")  # registered for this test only
    assert "answer_words" not in results.to_frame().columns  # and aggregates no longer see it
