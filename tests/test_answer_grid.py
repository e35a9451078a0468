"""The answer grid and the variants table as pure data, and their HTML (no widgets, no browser)."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from workbench.analysis.answer_grid import answer_grid
from workbench.analysis.leaderboard import default_columns, leaderboard
from workbench.analysis.stats import StatsError
from workbench.ui.answer_grid_view import grid_html
from workbench.ui.styled_table import BEST_BG, leaderboard_html


def questions() -> pd.DataFrame:
    """3 variants × 4 questions: q0 all pass, q1 all fail, q2 splits them, q3 one variant errors."""
    f1 = {"q0": [1.0, 0.8, 0.9], "q1": [0.0, 0.1, 0.2], "q2": [1.0, 0.0, 0.6], "q3": [1.0, None, 0.9]}
    rows = []
    for qid, values in f1.items():
        for v, value in zip(["va", "vb", "vc"], values):
            error = "HTTP 500 from the model" if value is None else None
            rows.append({"variant": v, "variant_hash": v * 8, "question_id": qid, "question": f"Question {qid}?",
                         "answer": None if error else f"{v} answers {qid}", "reference_answers": [f"gold {qid}"],
                         "error": error, "f1": value})
    return pd.DataFrame(rows)


LABELS = {"va": "rec500 · MiniLM · dense@3", "vb": "rec500 · MiniLM · bm25@3", "vc": "tok128 · MiniLM · dense@3"}


def test_grid_cells_carry_answer_score_and_verdict():
    grid = answer_grid(questions(), "f1", labels=LABELS)
    assert grid.variants == ("va", "vb", "vc")
    assert grid.labels == ("rec500 · dense@3", "rec500 · bm25@3", "tok128 · dense@3")
    assert [r.question_id for r in grid.rows] == ["q0", "q1", "q2", "q3"] and grid.total == 4
    q2 = grid.rows[2]
    assert [c.answer for c in q2.cells] == ["va answers q2", "vb answers q2", "vc answers q2"]
    assert [c.score for c in q2.cells] == [1.0, 0.0, 0.6] and [c.passed for c in q2.cells] == [True, False, True]
    assert q2.references == ("gold q2",) and q2.question == "Question q2?"
    failed = grid.rows[3].cells[1]
    assert failed.error == "HTTP 500 from the model" and failed.score is None and failed.passed is False
    assert grid.score_range == (0.0, 1.0) and grid.better == "max"


def test_grid_filters_failures_and_disagreements():
    all_ = answer_grid(questions(), "f1")
    assert (all_.failing, all_.dividing) == (3, 2)
    failures = answer_grid(questions(), "f1", show="failures")
    assert [r.question_id for r in failures.rows] == ["q1", "q2", "q3"]  # any variant fails (an error fails)
    split = answer_grid(questions(), "f1", show="disagreements")
    assert [r.question_id for r in split.rows] == ["q2", "q3"]  # some pass, some fail; q1 fails everywhere
    strict = answer_grid(questions(), "f1", show="disagreements", pass_at=0.85)
    assert [r.question_id for r in strict.rows] == ["q0", "q2", "q3"]  # 0.8 no longer passes


def test_grid_errors_name_the_argument():
    with pytest.raises(StatsError, match=r"show='wrong'; choose one of: all, failures, disagreements"):
        answer_grid(questions(), "f1", show="wrong")
    with pytest.raises(StatsError, match="unknown metric 'bleu'"):
        answer_grid(questions(), "bleu")
    with pytest.raises(StatsError, match="pass_at must be a number"):
        answer_grid(questions(), "f1", pass_at="high")


def test_grid_html_colours_each_answer_by_its_score_and_escapes_it():
    qs = questions()
    qs.loc[0, "answer"] = "<script>alert(1)</script>"
    page = grid_html(answer_grid(qs, "f1", labels=LABELS))
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count('class="wb-cell"') == 12 and page.count("<tr data-question=") == 4
    backgrounds = re.findall(r'class="wb-cell" title="[^"]*" style="background:([^;]+);', page)
    assert backgrounds[0] != backgrounds[3]  # f1 1.0 (q0, va) vs 0.0 (q1, va): green vs red
    red, green = backgrounds[3], backgrounds[0]
    assert int(red.split("(")[1].split(",")[0]) > int(green.split("(")[1].split(",")[0])  # more red in the red one
    assert 'title="rec500 · MiniLM · dense@3"' in page and ">rec500 · dense@3</th>" in page  # full label on hover
    assert "error: HTTP 500 from the model" in page
    assert "4 of 4 questions shown" in page and "3 with a failure" in page


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"label": ["recursive500/50 · all-MiniLM-L6-v2 · dense@3 · concise · SmolLM2-135M-Instruct", "b", "c"],
         "f1": [0.4, 0.6, 0.6], "exact_match": [0.3, 0.1, None], "latency_total_p95_s": [1.0, 3.0, 2.0],
         "retrieval.kind": ["dense", "bm25", "hybrid"]},
        index=pd.Index(["v1", "v2", "v3"], name="variant"),
    )


def test_leaderboard_sorts_best_first_and_marks_the_best_per_column_in_its_direction():
    assert default_columns(frame()) == ["exact_match", "f1", "latency_total_p95_s"]  # catalogue order, then measures
    board = leaderboard(frame(), sort_by="f1")
    assert board.frame.index.tolist() == ["v2", "v3", "v1"]  # higher f1 first, ties keep order
    assert board.best == {"exact_match": ("v1",), "f1": ("v2", "v3"), "latency_total_p95_s": ("v1",)}
    assert leaderboard(frame(), sort_by="latency_total_p95_s").frame.index.tolist() == ["v1", "v3", "v2"]  # lower first
    with pytest.raises(StatsError, match=r"sort_by='cost' is not a column of the table; choose one of: exact_match"):
        leaderboard(frame(), sort_by="cost")


def test_leaderboard_html_is_padded_with_full_labels_and_marked_best():
    page = leaderboard_html(leaderboard(frame(), sort_by="latency_total_p95_s"))
    assert "padding: 5px 12px" in page
    assert "recursive500/50 · all-MiniLM-L6-v2 · dense@3 · concise · SmolLM2-135M-Instruct" in page  # not truncated
    assert "f1 ↑" in page and "latency_total_p95_s ↓ ▼" in page  # direction, and the sort column
    best_css = re.search(r"([^}]*)\{\s*background: " + BEST_BG, page).group(1)
    cells = dict(re.findall(r'<td id="([^"]+)" class="data [^"]*" >([^<]*)</td>', page))
    marked = sorted(cells[i.strip().lstrip("#")] for i in best_css.split(","))
    assert marked == ["0.3", "0.6", "0.6", "1"]  # exact_match v1, f1 v2 and v3, latency v1
    assert ">–</td>" in page and "0.300000" not in page  # a missing value says so; numbers are short
