"""Retrieval quality against published numbers: BEIR SciFact (and SQuAD v1.1 dev at scale), through `run_sweep`.

    python experiments/benchmarks/beir_scifact.py                          # the shipped reduced SciFact (533 docs)
    python experiments/benchmarks/beir_scifact.py --docs 20 --limit 30     # CI-sized: 30 queries, their docs + 20
    python experiments/benchmarks/beir_scifact.py --scifact DIR            # full SciFact test split (300 q, 5,183 docs)
    python experiments/benchmarks/beir_scifact.py --squad --squad-dev FILE # SQuAD v1.1 dev: 2 chunkings x BM25/dense

The default data is experiments/data/beir-scifact-reduced (every test-judged abstract + 250 others, see
its README.md); the published numbers hold for the full corpus only (BEIR's scifact.zip, DIR above).

Everything goes through the workbench's own `run_sweep` with `stage: retrieve` (zero model calls),
chunking `none` (one chunk per abstract, title + text joined the BEIR way), k = 100 and
`retrieval_cutoffs: [10, 100]`; MLflow tracking goes to a temporary sqlite store (or --tracking-uri)
and the workbench home to a temporary folder (or --home), so a run starts cold unless told otherwise.

Prints one `name: value` line per figure; lines starting with `#` are context. Exits 1 when an
INVARIANT is broken: the workbench's per-question nDCG@10 / recall@100 / MRR must equal pytrec_eval's
on the same rankings (max abs diff <= 1e-9), MLflow's child runs must hold the frame's ndcg_at_10, and
a retrieval-only sweep must make no model call. The gaps to the published numbers are reported, never
an exit status (`--docs` changes the corpus, so its numbers are not comparable to the published ones).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

SCIFACT = ROOT / "experiments" / "data" / "beir-scifact-reduced"
SCIFACT_DOCS = 5183  # the full corpus: only there are the published numbers comparable
SCIFACT_SOURCE = ("BEIR SciFact: https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip "
                  "(unzip it: a folder with corpus.jsonl, queries.jsonl, qrels/test.tsv)")
SQUAD_SOURCE = ("SQuAD v1.1 dev-v1.1.json: https://rajpurkar.github.io/SQuAD-explorer/ "
                "(https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json)")

# Published nDCG@10 on the SciFact test split (see experiments/data/beir-scifact-reduced/ATTRIBUTION.md).
ANSERINI_BM25 = 0.6789  # Anserini flat BM25 index (castorini/anserini regression docs)
BEIR_BM25 = 0.665  # BEIR paper, Table 2
MINILM_PUBLISHED = 0.645  # all-MiniLM-L6-v2, MTEB paper results
BM25_TOLERANCE = 0.015
DENSE_TOLERANCE = 0.03
PYTREC_TOLERANCE = 1e-9

K = 100
CUTOFFS = [10, 100]
KINDS = {
    "bm25": {"kind": "bm25", "k": K},
    "dense": {"kind": "dense", "k": K},
    "hybrid": {"kind": "hybrid", "k": K, "rrf_k": 60, "candidates": K},
}

BROKEN: list[str] = []


def out(name: str, value, context: str = "") -> None:
    if isinstance(value, float):
        text = f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
        if value != 0 and abs(value) < 1e-3:
            text = f"{value:.3g}"
    else:
        text = str(value)
    print(f"{name}: {text}" + (f"  ({context})" if context else ""), flush=True)


def note(text: str) -> None:
    print(f"# {text}", flush=True)


def invariant(ok: bool, what: str) -> None:
    if not ok:
        BROKEN.append(what)
        note(f"INVARIANT BROKEN: {what}")


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss as a fallback)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_note() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    return (
        f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load[0]:.2f} at start"
    )


# ---------------------------------------------------------------- BEIR files (read independently of the workbench)


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        cells = line.strip().split("\t")
        if not line.strip() or (n == 0 and cells[0] == "query-id"):
            continue
        qid, doc, score = cells
        qrels.setdefault(qid, {})[doc] = int(score)
    return qrels


def reduce_beir(src: Path, dst: Path, n_others: int, split: str = "test",
                max_queries: int | None = None) -> dict[str, int]:
    """A smaller BEIR folder: every document the split's qrels judge, plus the first `n_others` other
    documents (file order); the queries whose judged documents are all kept (here: all of the split's).
    With `max_queries`, only the first N queries (qrels order) and the documents they judge count: the
    corpus shrinks with them (embedding the corpus is what a small run pays for)."""
    qrels = read_qrels(src / "qrels" / f"{split}.tsv")
    if max_queries is not None:
        qrels = dict(list(qrels.items())[:max_queries])
    judged = {d for grades in qrels.values() for d in grades}
    kept_docs: set[str] = set()
    others = 0
    lines = []
    with (src / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            doc_id = str(json.loads(line)["_id"])
            if doc_id in judged or others < n_others:
                others += doc_id not in judged
                kept_docs.add(doc_id)
                lines.append(line if line.endswith("\n") else line + "\n")
    keep_q = {q for q, grades in qrels.items() if all(d in kept_docs for d in grades)}
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "qrels").mkdir(exist_ok=True)
    (dst / "corpus.jsonl").write_text("".join(lines), encoding="utf-8")
    queries = []
    with (src / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip() and str(json.loads(line)["_id"]) in keep_q:
                queries.append(line if line.endswith("\n") else line + "\n")
    (dst / "queries.jsonl").write_text("".join(queries), encoding="utf-8")
    rows = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{g}" for q, grades in qrels.items() if q in keep_q
                                             for d, g in grades.items()]
    (dst / "qrels" / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return {"docs": len(lines), "queries": len(queries), "judged_docs": len(judged)}


# ---------------------------------------------------------------- specs


def tracking(tmp: Path, uri: str | None, max_traces: int | None = None) -> dict:
    return {
        "tracking_uri": uri or f"sqlite:///{tmp}/mlruns/mlflow.db",
        "artifact_location": str(tmp / "mlruns" / "artifacts"),
        "max_traces_per_variant": max_traces,
    }


def scifact_spec(data: Path, tmp: Path, home: Path, uri: str | None, max_traces: int | None = None) -> dict:
    return {
        "name": "beir-scifact",
        "experiment": "beir-scifact",
        "stage": "retrieve",
        "data": {
            "corpus": {"format": "beir", "path": str(data)},
            "eval": {"format": "beir", "path": str(data), "split": "test"},
        },
        "space": {
            "chunking": [{"strategy": "none"}],
            "embedding": [{"provider": "local"}],
            "retrieval": list(KINDS.values()),
        },
        "retrieval_cutoffs": CUTOFFS,
        "tracking": tracking(tmp, uri, max_traces),
        "home": str(home),
    }


SQUAD_CHUNKINGS = {
    "rec500": {"strategy": "recursive", "size": 500, "overlap": 50},
    "tok128": {"strategy": "token", "size": 128, "overlap": 16},
}


def squad_spec(path: Path, tmp: Path, home: Path, uri: str | None) -> dict:
    return {
        "name": "squad-dev-retrieval",
        "experiment": "squad-dev-retrieval",
        "stage": "retrieve",
        "data": {"corpus": {"format": "squad", "path": str(path)}, "eval": {"format": "squad", "path": str(path)}},
        "space": {
            "chunking": list(SQUAD_CHUNKINGS.values()),
            "embedding": [{"provider": "local"}],
            "retrieval": [{"kind": "bm25", "k": 10}, {"kind": "dense", "k": 10}],
        },
        "retrieval_cutoffs": [1, 10],
        "tracking": tracking(tmp, uri),
        "home": str(home),
    }


# ---------------------------------------------------------------- checks


def pytrec_max_abs_diff(results, qrels: dict[str, dict[str, int]], cutoffs: list[int]) -> tuple[float, int]:
    """Recompute nDCG/recall at the cut-offs and recip_rank with pytrec_eval from each logged ranking
    (strictly decreasing scores by rank, so pytrec_eval's sort keeps our order) and return the max
    absolute difference from the workbench's per-question values, and the number of values compared."""
    import pytrec_eval

    q = results.questions()
    lo, hi = min(cutoffs), max(cutoffs)
    measures = {f"ndcg_cut.{lo}", f"recall.{hi}", "recip_rank"}
    worst, compared = 0.0, 0
    for variant, group in q.groupby("variant", sort=False):
        run, run_top = {}, {}
        for r in group.itertuples():
            ranking = list(r.retrieved_doc_ids)
            invariant(len(set(ranking)) == len(ranking), f"{variant} {r.question_id}: repeated doc id in the ranking")
            run[r.question_id] = {d: float(len(ranking) - i) for i, d in enumerate(ranking)}
            run_top[r.question_id] = {d: float(len(ranking) - i) for i, d in enumerate(ranking[:lo])}
        sub = {qid: qrels[qid] for qid in run}
        ev = pytrec_eval.RelevanceEvaluator(sub, measures).evaluate(run)
        ev_top = pytrec_eval.RelevanceEvaluator(sub, {"recip_rank"}).evaluate(run_top)
        for r in group.itertuples():
            # pytrec_eval leaves out a query with an empty run: all its measures are 0 then.
            e = ev.get(r.question_id, {})
            et = ev_top.get(r.question_id, {})
            pairs = [
                (getattr(r, f"ndcg_at_{lo}"), e.get(f"ndcg_cut_{lo}", 0.0)),
                (getattr(r, f"recall_at_{hi}"), e.get(f"recall_{hi}", 0.0)),
                (r.mrr, e.get("recip_rank", 0.0)),
                (getattr(r, f"mrr_at_{lo}"), et.get("recip_rank", 0.0)),
            ]
            for ours, ref in pairs:
                if ours is None or (isinstance(ours, float) and math.isnan(ours)):
                    invariant(False, f"{variant} {r.question_id}: a metric is missing")
                    continue
                worst = max(worst, abs(float(ours) - float(ref)))
                compared += 1
    return worst, compared


def mlflow_matches_frame(results, uri: str, metric: str) -> float:
    """Max abs difference between each MLflow child run's logged `metric` and the results frame."""
    import mlflow

    from workbench.tracking.naming import metric_name, round_sig

    client = mlflow.MlflowClient(uri)
    frame = results.to_frame()
    worst = 0.0
    for v in results.variants:
        run_id = results.run_ids.get(v.hash)
        invariant(run_id is not None, f"variant {v.short_hash} has no MLflow run")
        if run_id is None:
            continue
        run = client.get_run(run_id)
        invariant(run.data.tags.get("mlflow.parentRunId") == results.parent_run_id,
                  f"run {run_id} is not a child of the sweep run")
        logged = run.data.metrics.get(metric_name(metric))  # e.g. ndcg_at_10/mean
        invariant(logged is not None, f"run {run_id} has no metric {metric}")
        if logged is not None:
            # MLflow shows 4 significant digits (workbench.tracking.naming): compare with the frame's rounded
            worst = max(worst, abs(logged - round_sig(float(frame.loc[v.short_hash, metric]))))
    return worst


def common_checks(results, qrels, cutoffs, uri: str, prefix: str) -> None:
    invariant(results.status == "FINISHED", f"sweep status {results.status}")
    invariant(results.stats.get("model_calls", 0) == 0, f"model calls in a retrieval-only sweep: {results.stats}")
    diff, n = pytrec_max_abs_diff(results, qrels, cutoffs)
    out("pytrec_eval_max_abs_diff", f"{diff:.3g}", f"{n} per-question values (nDCG@{min(cutoffs)}, recall@{max(cutoffs)}, recip_rank, recip_rank@{min(cutoffs)}), {prefix}")
    invariant(diff <= PYTREC_TOLERANCE, f"workbench metrics differ from pytrec_eval by {diff:.3g}")
    mdiff = mlflow_matches_frame(results, uri, f"ndcg_at_{min(cutoffs)}")
    out(f"{prefix}_mlflow_ndcg_max_abs_diff", f"{mdiff:.3g}", "child runs' logged metric vs results frame")
    invariant(mdiff <= 1e-12, f"MLflow child runs' ndcg_at_{min(cutoffs)} differ from the frame by {mdiff:.3g}")


# ---------------------------------------------------------------- runs


def run_scifact(args, tmp: Path) -> None:
    data = Path(args.data)
    if not all((data / f).is_file() for f in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")):
        raise SystemExit(f"--scifact {data}: not a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv). "
                         f"Get {SCIFACT_SOURCE}, or leave --scifact out for the shipped reduced copy.")
    from workbench.runner.sweep import run_sweep

    if args.docs is not None or args.limit is not None:
        reduced = tmp / "beir-reduced"
        info = reduce_beir(data, reduced, sys.maxsize if args.docs is None else args.docs, max_queries=args.limit)
        note(f"--docs {args.docs} --limit {args.limit}: reduced corpus {info['docs']} docs ({info['judged_docs']} "
             f"judged + others), {info['queries']} queries, written to {reduced}; checks the pipeline, "
             "not the published numbers")
        data = reduced
    home = Path(args.home) if args.home else tmp / "home"
    spec = scifact_spec(data, tmp, home, args.tracking_uri, args.max_traces)
    note(machine_note())
    t0 = time.perf_counter()
    results = run_sweep(spec, progress=args.progress)
    wall = time.perf_counter() - t0
    frame = results.to_frame()
    kind_of = {v.short_hash: v.retrieval.kind for v in results.variants}
    figures = {kind_of[h]: row for h, row in frame.iterrows()}
    q = results.questions()
    note(f"{results.data_info['data.corpus.documents']} documents, {results.data_info['data.eval.questions']} "
         f"queries; index builds {results.stats.get('index_builds')}, model calls {results.stats.get('model_calls')}")
    for kind in KINDS:
        out(f"scifact_{kind}_ndcg10", float(figures[kind]["ndcg_at_10"]))
    for kind in KINDS:
        out(f"scifact_{kind}_recall100", float(figures[kind]["recall_at_100"]))
    for kind in KINDS:
        out(f"scifact_mrr10_{kind}", float(figures[kind]["mrr_at_10"]))
    for kind in KINDS:
        h = next(s for s, k in kind_of.items() if k == kind)
        out(f"scifact_{kind}_search_s", float(q.loc[q["variant"] == h, "latency_retrieve_s"].sum()),
            "one batched search of every query (index build not included)")
    out("scifact_wall_s", wall, "run_sweep end to end: load, embed corpus, index, search, score, MLflow")
    out("scifact_peak_rss_mb", peak_rss_mb())
    bm25_gap = float(figures["bm25"]["ndcg_at_10"]) - ANSERINI_BM25
    dense_gap = float(figures["dense"]["ndcg_at_10"]) - MINILM_PUBLISHED
    full = results.data_info["data.corpus.documents"] == SCIFACT_DOCS and args.limit is None
    scope = "full test split" if full else "reduced corpus: not comparable"
    out("scifact_bm25_gap_vs_anserini", bm25_gap,
        f"ours - {ANSERINI_BM25}; target |gap| <= {BM25_TOLERANCE}: "
        f"{'met' if abs(bm25_gap) <= BM25_TOLERANCE else 'MISSED'}; {scope}")
    out("scifact_bm25_gap_vs_beir", float(figures["bm25"]["ndcg_at_10"]) - BEIR_BM25, f"ours - {BEIR_BM25}; {scope}")
    out("scifact_dense_gap_vs_published", dense_gap,
        f"ours - {MINILM_PUBLISHED} (fp32 all-MiniLM-L6-v2; ours is int8); target |gap| <= {DENSE_TOLERANCE}: "
        f"{'met' if abs(dense_gap) <= DENSE_TOLERANCE else 'MISSED'}; {scope}")
    qrels = read_qrels(data / "qrels" / "test.tsv")
    common_checks(results, qrels, CUTOFFS, spec["tracking"]["tracking_uri"], "scifact")


def run_squad(args, tmp: Path) -> None:
    if args.squad_data is None or not Path(args.squad_data).is_file():
        raise SystemExit(f"--squad needs --squad-dev FILE (the full SQuAD v1.1 dev set, 10,570 questions; "
                         f"{'not found: ' + args.squad_data if args.squad_data else 'none given'}). "
                         f"Get {SQUAD_SOURCE}.")
    from workbench.runner.sweep import run_sweep

    path = Path(args.squad_data)
    home = Path(args.home) if args.home else tmp / "home"
    spec = squad_spec(path, tmp, home, args.tracking_uri)
    note(machine_note())
    t0 = time.perf_counter()
    results = run_sweep(spec, progress=args.progress)
    wall = time.perf_counter() - t0
    frame = results.to_frame()
    q = results.questions()
    note(f"{results.data_info['data.corpus.documents']} paragraphs, {results.data_info['data.eval.questions']} "
         f"questions; index builds {results.stats.get('index_builds')}, model calls {results.stats.get('model_calls')}")
    names = {json.dumps(c, sort_keys=True): n for n, c in SQUAD_CHUNKINGS.items()}
    for v in results.variants:
        chunk = names[json.dumps(v.chunking.model_dump(mode="json"), sort_keys=True)]
        row = frame.loc[v.short_hash]
        tag = f"squad_{chunk}_{v.retrieval.kind}"
        out(f"{tag}_hit10", float(row["hit_at_10"]))
        out(f"{tag}_hit1", float(row["hit_at_1"]))
        out(f"{tag}_mrr10", float(row["mrr_at_10"]))
        out(f"{tag}_search_s", float(q.loc[q["variant"] == v.short_hash, "latency_retrieve_s"].sum()))
    out("squad_wall_s", wall, "run_sweep end to end")
    out("squad_peak_rss_mb", peak_rss_mb())
    # SQuAD: one gold paragraph per question, grade 1.
    qrels = {r.question_id: {d: 1 for d in r.relevant_ids} for r in q.drop_duplicates("question_id").itertuples()}
    common_checks(results, qrels, [1, 10], spec["tracking"]["tracking_uri"], "squad")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scifact", "--data", dest="data", default=str(SCIFACT),
                        help="BEIR SciFact folder (default: the shipped reduced copy; full data: " + SCIFACT_SOURCE + ")")
    parser.add_argument("--docs", type=int, default=None, help="CI size: qrels' docs + the first N others")
    parser.add_argument("--limit", type=int, default=None,
                        help="CI size: the first N test queries only, and only the documents they judge (+ --docs)")
    parser.add_argument("--max-traces", type=int, default=None,
                        help="MLflow traces per variant (default: every question; each holds k = 100 abstracts)")
    parser.add_argument("--squad", action="store_true", help="run the SQuAD v1.1 dev retrieval sweep instead")
    parser.add_argument("--squad-dev", "--squad-data", dest="squad_data", default=None,
                        help="SQuAD v1.1 dev-v1.1.json for --squad (" + SQUAD_SOURCE + ")")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: a temporary sqlite file)")
    parser.add_argument("--home", default=None, help="workbench home (default: a temporary folder, cold caches)")
    parser.add_argument("--progress", action="store_true", help="show the sweep's progress bar")
    args = parser.parse_args(argv)
    if args.docs is not None and args.docs < 0:
        parser.error("--docs must be >= 0")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    with tempfile.TemporaryDirectory(prefix="wb-beir-") as tmp:
        if args.squad:
            run_squad(args, Path(tmp))
        else:
            run_scifact(args, Path(tmp))
    if BROKEN:
        note(f"{len(BROKEN)} invariant(s) broken")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
