"""BEIR format: loaders on a tiny graded fixture, a retrieval-only sweep checked against pytrec_eval,
and the CI-sized SciFact benchmark run end to end."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import pytrec_eval

from workbench.spec import CorpusSource, EvalSource, load_spec
from workbench.data.corpus import load_corpus
from workbench.data.evalset import load_eval
from workbench.errors import DataError
from workbench.tracking.naming import metric_name, round_sig

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "fixtures" / "beir_mini"
BENCH = ROOT / "experiments" / "benchmarks" / "beir_scifact.py"
SCIFACT = ROOT / "experiments" / "data" / "beir-scifact-reduced"  # shipped, see its ATTRIBUTION.md
CUTOFFS = [3, 10]
QUERIES, OTHERS = 30, 20  # CI-sized benchmark run: the first 30 test claims, their 32 abstracts + 20 others
K = 10


# ---------------------------------------------------------------- loaders


def test_corpus_joins_title_and_text_the_beir_way():
    corpus = load_corpus(CorpusSource(format="beir", path=str(MINI)))
    assert len(corpus) == 12
    assert [d.id for d in corpus][:3] == ["d1", "d2", "d3"]
    d1 = corpus.get("d1")
    assert d1.title == "Photosynthesis in plants"
    assert d1.text == (
        "Photosynthesis in plants Chlorophyll in the leaves absorbs sunlight and converts carbon dioxide "
        "and water into glucose and oxygen."
    )
    d2 = corpus.get("d2")  # no title field
    assert d2.title is None and d2.text.startswith("Plants need light")
    d3 = corpus.get("d3")  # empty title: the text alone, no leading space
    assert d3.title is None and d3.text.startswith("The mitochondria")
    assert corpus.source == f"beir:{MINI}"


def test_eval_reads_graded_qrels_and_drops_queries_without_judgements():
    corpus = load_corpus(CorpusSource(format="beir", path=str(MINI)))
    evalset = load_eval(EvalSource(format="beir", path=str(MINI)), corpus)  # split defaults to test
    assert [i.id for i in evalset] == ["q1", "q2", "q3", "q4", "q5"]  # q6, q7: no test qrels, dropped
    q1 = evalset.items[0]
    assert q1.question == "How do leaves turn sunlight into sugar with chlorophyll?"
    assert q1.reference_answers == ()
    assert dict(q1.relevance) == {"d1": 2, "d2": 1, "d5": 0}
    assert q1.relevant_ids == ("d1", "d2")  # grade 0 is judged, not relevant
    assert dict(evalset.items[3].relevance) == {"d7": 2, "d8": 0}
    assert evalset.has_relevance and not evalset.has_references
    assert evalset.source.endswith("split=test")


def test_eval_other_split_and_unknown_split():
    corpus = load_corpus(CorpusSource(format="beir", path=str(MINI)))
    dev = load_eval(EvalSource(format="beir", path=str(MINI), split="dev"), corpus)
    assert [i.id for i in dev] == ["q1", "q7"]  # file order of queries.jsonl
    assert dict(dev.items[0].relevance) == {"d2": 2}  # grades belong to the split
    assert dev.digest != load_eval(EvalSource(format="beir", path=str(MINI)), corpus).digest
    with pytest.raises(DataError, match=r"available splits: dev, test"):
        load_eval(EvalSource(format="beir", path=str(MINI), split="train"))


def test_relevant_document_missing_from_corpus_is_an_error(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text('{"_id": "a", "title": "", "text": "alpha"}\n', encoding="utf-8")
    (tmp_path / "queries.jsonl").write_text('{"_id": "1", "text": "alpha?"}\n', encoding="utf-8")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\tzzz\t1\n", encoding="utf-8")
    corpus = load_corpus(CorpusSource(format="beir", path=str(tmp_path)))
    with pytest.raises(DataError, match="zzz"):
        load_eval(EvalSource(format="beir", path=str(tmp_path)), corpus)


def test_example_spec_is_a_valid_retrieval_only_sweep():
    spec = load_spec(ROOT / "experiments" / "scifact_retrieval.yaml")
    assert spec.stage == "retrieve" and spec.retrieval_cutoffs == [10, 100]
    variants = spec.variants()
    assert {v.retrieval.kind for v in variants} == {"bm25", "dense", "hybrid"}
    assert all(v.retrieval_only and v.chunking.strategy == "none" and v.retrieval.k == 100 for v in variants)


# ---------------------------------------------------------------- a retrieval-only sweep on the fixture


def _no_model(*args, **kwargs):
    raise AssertionError("a retrieval-only sweep must not call a model or start the local server")


@pytest.fixture(scope="module")
def mini_sweep(tmp_path_factory):
    from workbench.rag.local_model import LocalModelServer
    from workbench.rag.chat import ChatModel
    from workbench.runner.sweep import run_sweep

    tmp = tmp_path_factory.mktemp("beir_sweep")
    spec = {
        "name": "t-beir",
        "experiment": "t-beir",
        "stage": "retrieve",
        "data": {
            "corpus": {"format": "beir", "path": str(MINI)},
            "eval": {"format": "beir", "path": str(MINI), "split": "test"},
        },
        "space": {
            "chunking": [{"strategy": "none"}],
            "retrieval": [
                {"kind": "bm25", "k": K},
                {"kind": "dense", "k": K},
                {"kind": "hybrid", "k": K, "candidates": K},
            ],
        },
        "retrieval_cutoffs": CUTOFFS,
        "tracking": {
            "tracking_uri": f"sqlite:///{tmp}/mlruns/mlflow.db",
            "artifact_location": str(tmp / "mlruns" / "artifacts"),
        },
        "home": str(tmp / "home"),
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ChatModel, "generate", _no_model)
        mp.setattr(ChatModel, "agenerate", _no_model, raising=False)
        mp.setattr(ChatModel, "check", _no_model)
        mp.setattr(LocalModelServer, "start", _no_model)
        results = run_sweep(spec, progress=False)
    return spec, results


def _pytrec(qrels, run, measures):
    return pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)


def _run_of(group, cut: int | None = None):
    """pytrec_eval run from the logged rankings: strictly decreasing scores by rank keep our order."""
    run = {}
    for r in group.itertuples():
        ranking = list(r.retrieved_doc_ids)[:cut]
        assert len(set(ranking)) == len(ranking)
        run[r.question_id] = {d: float(len(ranking) - i) for i, d in enumerate(ranking)}
    return run


@pytest.mark.slow
def test_sweep_is_retrieval_only_with_zero_model_calls(mini_sweep):
    _, results = mini_sweep
    assert results.status == "FINISHED"
    assert results.stats["model_calls"] == 0
    assert len(results.variants) == 3 and all(v.model is None and v.prompt is None for v in results.variants)
    q = results.questions()
    assert len(q) == 3 * 5
    assert "answer" not in q.columns or q["answer"].isna().all()
    lengths = q.groupby("variant")["retrieved_doc_ids"].apply(lambda s: set(s.map(len)))
    assert lengths[_short(results, "dense")] == {K} and lengths[_short(results, "hybrid")] == {K}
    assert max(lengths[_short(results, "bm25")]) <= K  # BM25 returns only documents sharing a term
    frame = results.to_frame()
    for name in ("ndcg_at_3", "ndcg_at_10", "recall_at_10", "mrr_at_3", "hit_at_10", "ndcg_at_k", "mrr"):
        assert name in frame.columns
    assert (frame["llm_judge"] == "n/a (retrieval only)").all()


def _short(results, kind: str) -> str:
    return next(v.short_hash for v in results.variants if v.retrieval.kind == kind)


@pytest.mark.slow
def test_metrics_at_cutoffs_equal_pytrec_eval_per_question(mini_sweep):
    _, results = mini_sweep
    qrels_all = {i.id: dict(i.relevance) for i in load_eval(EvalSource(format="beir", path=str(MINI)))}
    q = results.questions()
    compared = 0
    for variant, group in q.groupby("variant"):
        qrels = {qid: qrels_all[qid] for qid in group["question_id"]}
        run = _run_of(group)
        measures = {"ndcg_cut.3", "ndcg_cut.10", "recall.3", "recall.10", "recip_rank"}
        ev = _pytrec(qrels, run, measures)
        ev3 = _pytrec(qrels, _run_of(group, 3), {"recip_rank"})
        for r in group.itertuples():
            e = ev[r.question_id]
            pairs = [
                (r.ndcg_at_3, e["ndcg_cut_3"]),
                (r.ndcg_at_10, e["ndcg_cut_10"]),
                (r.ndcg_at_k, e["ndcg_cut_10"]),
                (r.recall_at_3, e["recall_3"]),
                (r.recall_at_10, e["recall_10"]),
                (r.recall_at_k, e["recall_10"]),
                (r.mrr, e["recip_rank"]),
                (r.mrr_at_3, ev3.get(r.question_id, {}).get("recip_rank", 0.0)),
                (r.hit_at_3, 1.0 if e["recall_3"] > 0 else 0.0),
            ]
            for ours, ref in pairs:
                assert abs(ours - ref) <= 1e-9, (variant, r.question_id, ours, ref)
                compared += 1
    assert compared == 3 * 5 * 9


@pytest.mark.slow
def test_graded_relevance_is_honoured(mini_sweep):
    """nDCG uses the grades (2 > 1), not just relevant/irrelevant: it differs from binary nDCG somewhere."""
    _, results = mini_sweep
    evalset = load_eval(EvalSource(format="beir", path=str(MINI)))
    graded = {i.id: dict(i.relevance) for i in evalset}
    binary = {qid: {d: int(g > 0) for d, g in rel.items()} for qid, rel in graded.items()}
    q = results.questions()
    differs = 0
    for _, group in q.groupby("variant"):
        run = _run_of(group)
        ev_graded = _pytrec({k: graded[k] for k in run}, run, {"ndcg_cut.10"})
        ev_binary = _pytrec({k: binary[k] for k in run}, run, {"ndcg_cut.10"})
        for r in group.itertuples():
            assert r.ndcg_at_10 == pytest.approx(ev_graded[r.question_id]["ndcg_cut_10"], abs=1e-12)
            differs += abs(ev_graded[r.question_id]["ndcg_cut_10"] - ev_binary[r.question_id]["ndcg_cut_10"]) > 1e-6
    assert differs > 0
    # grade-0 judgements are not relevant: q4's d8 never counts
    for r in q[q["question_id"] == "q4"].itertuples():
        assert r.recall_at_10 in (0.0, 1.0)  # one relevant document (d7)


@pytest.mark.slow
def test_mlflow_child_runs_hold_the_frame_metrics(mini_sweep):
    import mlflow

    spec, results = mini_sweep
    client = mlflow.MlflowClient(spec["tracking"]["tracking_uri"])
    frame = results.to_frame()
    for v in results.variants:
        run = client.get_run(results.run_ids[v.hash])
        assert run.data.tags["mlflow.parentRunId"] == results.parent_run_id
        assert run.data.params["retrieval.kind"] == v.retrieval.kind
        for name in ("ndcg_at_10", "recall_at_10", "mrr_at_3"):
            assert run.data.metrics[metric_name(name)] == round_sig(frame.loc[v.short_hash, name])  # ndcg_at_10/mean


# ---------------------------------------------------------------- the benchmark script


def _load_bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("beir_scifact", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reduce_keeps_judged_docs_plus_n_others(tmp_path):
    bench = _load_bench()
    info = bench.reduce_beir(MINI, tmp_path / "r", 2)
    corpus = load_corpus(CorpusSource(format="beir", path=str(tmp_path / "r")))
    judged = {"d1", "d2", "d5", "d3", "d4", "d6", "d7", "d8", "d9", "d10"}
    assert set(corpus.ids) == judged | {"d11", "d12"} and info["docs"] == 12
    info = bench.reduce_beir(MINI, tmp_path / "r0", 0)
    assert set(load_corpus(CorpusSource(format="beir", path=str(tmp_path / "r0"))).ids) == judged
    evalset = load_eval(EvalSource(format="beir", path=str(tmp_path / "r0")))
    assert [i.id for i in evalset] == ["q1", "q2", "q3", "q4", "q5"] and info["queries"] == 5


def test_full_data_options_fail_with_one_message_naming_option_and_source(tmp_path):
    bench = _load_bench()
    with pytest.raises(SystemExit, match=r"--squad needs --squad-dev FILE .*rajpurkar.github.io"):
        bench.main(["--squad"])
    with pytest.raises(SystemExit, match=r"--squad-dev FILE .*not found: .*nope.json"):
        bench.main(["--squad", "--squad-dev", str(tmp_path / "nope.json")])
    with pytest.raises(SystemExit, match=r"--scifact .*: not a BEIR folder .*scifact.zip"):
        bench.main(["--scifact", str(tmp_path)])


EXPECTED = [
    *(f"scifact_{k}_ndcg10" for k in ("bm25", "dense", "hybrid")),
    *(f"scifact_{k}_recall100" for k in ("bm25", "dense", "hybrid")),
    *(f"scifact_mrr10_{k}" for k in ("bm25", "dense", "hybrid")),
    "scifact_wall_s",
    "scifact_peak_rss_mb",
    "scifact_bm25_gap_vs_anserini",
    "scifact_dense_gap_vs_published",
    "pytrec_eval_max_abs_diff",
]


def test_shipped_scifact_is_the_documented_reduction(tmp_path):
    """The shipped folder is what its README says: all 300 test queries, their 283 judged abstracts
    + 250 others; reducing it to the first 20 queries keeps only the abstracts those judge."""
    corpus = load_corpus(CorpusSource(format="beir", path=str(SCIFACT)))
    evalset = load_eval(EvalSource(format="beir", path=str(SCIFACT)), corpus)
    assert len(corpus) == 533 and len(evalset) == 300
    assert sum(len(i.relevant_ids) for i in evalset) == 339
    assert sum(f.stat().st_size for f in SCIFACT.rglob("*")) < 1_000_000
    info = _load_bench().reduce_beir(SCIFACT, tmp_path / "r", 0, max_queries=20)
    small = load_eval(EvalSource(format="beir", path=str(tmp_path / "r")))
    assert [i.id for i in small] == [i.id for i in evalset][:20]
    judged = {d for i in small for d in i.relevance}
    assert set(load_corpus(CorpusSource(format="beir", path=str(tmp_path / "r"))).ids) == judged
    assert info == {"docs": len(judged), "queries": 20, "judged_docs": len(judged)}


@pytest.mark.slow
def test_reduced_scifact_benchmark_runs(tmp_path):
    # The shipped reduced folder cut to the first QUERIES test claims, the abstracts they judge and
    # OTHERS more (52 in all): the whole pipeline (embed, BM25/dense/hybrid, score, MLflow, pytrec_eval
    # check) at CI cost; embedding the corpus is most of it.
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--docs", str(OTHERS), "--limit", str(QUERIES)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^([a-z0-9_]+): (-?[0-9.]+(?:e-?\d+)?)", line)
        if m:
            figures[m.group(1)] = float(m.group(2))
    missing = [n for n in EXPECTED if n not in figures]
    assert not missing, f"missing figures {missing} in:\n{proc.stdout}"
    assert figures["pytrec_eval_max_abs_diff"] <= 1e-9
    assert "52 documents, 30 queries" in proc.stdout
    # Ranges on 52 abstracts (measured 0.94-0.97 nDCG@10, 0.93-0.96 MRR@10): a claim has ~1 relevant
    # abstract, so a random top 10 of 52 scores nDCG@10 about 0.1 and a broken ranker fails > 0.6. On the
    # full corpus the same rankers score 0.65-0.68 (RESULTS_beir.md); fewer distractors only help here.
    # k = 100 exceeds the corpus: dense and hybrid return every abstract (recall 1.0), BM25 only those
    # sharing a term with the claim (measured 0.97).
    for kind in ("bm25", "dense", "hybrid"):
        assert 0.6 < figures[f"scifact_{kind}_ndcg10"] <= 1.0
        assert 0.6 < figures[f"scifact_mrr10_{kind}"] <= 1.0
    assert figures["scifact_dense_recall100"] == figures["scifact_hybrid_recall100"] == 1.0
    assert 0.6 < figures["scifact_bm25_recall100"] <= 1.0
    assert "INVARIANT BROKEN" not in proc.stdout
