"""Loading corpora and eval sets: the real SQuAD article, small fixtures per format, one test per bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.data import corpus as corpus_mod
from workbench.spec import CorpusSource, EvalSource
from workbench.data.corpus import Corpus, Document, load_corpus
from workbench.data.evalset import EvalItem, EvalSet, load_eval
from workbench.errors import DataError

SQUAD = Path(__file__).resolve().parents[1] / "experiments/data/squad-super-bowl-50/dev-v1.1-super-bowl-50.json"


def squad_corpus(path: Path = SQUAD) -> Corpus:
    return load_corpus(CorpusSource(format="squad", path=str(path)))


def squad_eval(path: Path = SQUAD, **kw) -> EvalSet:
    return load_eval(EvalSource(format="squad", path=str(path), **kw))


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, rows: list) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


# ---------------------------------------------------------------- SQuAD (real data)


def test_squad_corpus_has_one_document_per_paragraph_with_title_and_index_ids():
    raw = json.loads(SQUAD.read_text(encoding="utf-8"))["data"][0]
    corpus = squad_corpus()
    assert len(corpus) == 54
    assert [d.id for d in corpus.documents] == [f"Super_Bowl_50/{i}" for i in range(54)]
    assert all(d.title == "Super_Bowl_50" for d in corpus.documents)
    assert [d.text for d in corpus.documents] == [p["context"] for p in raw["paragraphs"]]
    assert corpus.ids == frozenset(f"Super_Bowl_50/{i}" for i in range(54))
    assert corpus.get("Super_Bowl_50/3").text == raw["paragraphs"][3]["context"]
    assert corpus.get("nope") is None
    assert corpus.source == f"squad:{SQUAD}"


def test_squad_eval_items_have_deduplicated_answers_and_their_paragraph_as_relevant():
    corpus = squad_corpus()
    evalset = load_eval(EvalSource(format="squad", path=str(SQUAD)), corpus)
    assert len(evalset) == 810
    first = evalset.items[0]
    assert first.id == "56be4db0acb8001400a502ec"
    assert first.question == "Which NFL team represented the AFC at Super Bowl 50?"
    assert first.reference_answers == ("Denver Broncos",)  # three identical answers in the file
    assert first.relevant_ids == ("Super_Bowl_50/0",)
    assert first.relevance == {"Super_Bowl_50/0": 1}
    # answers keep their first-seen order and every answer is a span of the relevant paragraph
    raw_qas = [qa for p in json.loads(SQUAD.read_text())["data"][0]["paragraphs"] for qa in p["qas"]]
    for item, qa in zip(evalset.items, raw_qas, strict=True):
        assert item.reference_answers == tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
        assert all(a in corpus.get(item.relevant_ids[0]).text for a in item.reference_answers)
    assert evalset.has_relevance and evalset.has_references
    assert len({i.id for i in evalset.items}) == 810


def test_limit_takes_the_first_questions_in_file_order():
    full = squad_eval()
    first10 = squad_eval(limit=10)
    assert first10.items == full.items[:10]
    assert first10.digest != full.digest
    assert "limit=10" in first10.source


def test_digests_ignore_formatting_and_corpus_digest_ignores_questions(tmp_path):
    raw = json.loads(SQUAD.read_text(encoding="utf-8"))
    reformatted = write(tmp_path / "pretty.json", json.dumps(raw, indent=4, ensure_ascii=True))
    assert squad_corpus(reformatted).digest == squad_corpus().digest
    assert squad_eval(reformatted).digest == squad_eval().digest
    assert len(squad_corpus().digest) == 64 and squad_corpus().digest == squad_corpus().digest

    raw["data"][0]["paragraphs"][0]["qas"][0]["question"] = "Who won Super Bowl 50?"
    changed_q = write(tmp_path / "changed_q.json", json.dumps(raw))
    assert squad_corpus(changed_q).digest == squad_corpus().digest
    assert squad_eval(changed_q).digest != squad_eval().digest

    raw["data"][0]["paragraphs"][1]["context"] += " Extra."
    changed_doc = write(tmp_path / "changed_doc.json", json.dumps(raw))
    assert squad_corpus(changed_doc).digest != squad_corpus().digest


def test_relative_paths_resolve_from_the_working_directory(tmp_path, monkeypatch):
    jsonl(tmp_path / "sub" / "c.jsonl", [{"id": "a", "text": "alpha"}])
    monkeypatch.chdir(tmp_path)
    corpus = load_corpus(CorpusSource(format="jsonl", path="sub/c.jsonl"))
    assert [d.id for d in corpus.documents] == ["a"]


# ---------------------------------------------------------------- other formats (fixtures)


def test_jsonl_corpus_keeps_title_and_puts_other_keys_in_metadata(tmp_path):
    path = jsonl(
        tmp_path / "c.jsonl",
        [
            {"id": "a", "text": "Alpha text.", "title": "Alpha", "year": 2020, "tags": ["x"]},
            {"id": 7, "text": "Seven."},
        ],
    )
    write(path, path.read_text() + "\n")  # a trailing blank line is fine
    corpus = load_corpus(CorpusSource(format="jsonl", path=str(path)))
    a, seven = corpus.documents
    assert (a.id, a.text, a.title, dict(a.metadata)) == ("a", "Alpha text.", "Alpha", {"year": 2020, "tags": ["x"]})
    assert (seven.id, seven.title, dict(seven.metadata)) == ("7", None, {})
    # metadata takes no part in equality
    assert a == Document("a", "Alpha text.", "Alpha") and hash(a) == hash(Document("a", "Alpha text.", "Alpha"))


def test_folder_corpus_reads_txt_and_md_recursively_sorted_by_posix_path(tmp_path):
    root = tmp_path / "docs"
    write(root / "b.txt", "Bee.")
    write(root / "a" / "z.md", "# Zed\n\nZed text.")
    write(root / "a" / "deeper" / "y.TXT", "Why.")
    write(root / "a" / "notes.rst", "ignored")
    write(root / "data.json", "{}")
    write(root / "blank.md", "  \n\n ")  # skipped: only whitespace
    corpus = load_corpus(CorpusSource(format="folder", path=str(root)))
    assert [d.id for d in corpus.documents] == ["a/deeper/y.TXT", "a/z.md", "b.txt"]
    assert corpus.get("a/z.md").text == "# Zed\n\nZed text."
    assert all(d.title is None for d in corpus.documents)
    assert corpus.source == f"folder:{root}"


def test_jsonl_eval_reads_lists_and_optional_relevant_ids(tmp_path):
    path = jsonl(
        tmp_path / "e.jsonl",
        [
            {"id": "q1", "question": "Who?", "reference_answers": ["Ann", "Bob", "Ann"], "relevant_ids": ["d1"]},
            {"id": "q2", "question": "What?", "reference_answers": []},
        ],
    )
    evalset = load_eval(EvalSource(format="jsonl", path=str(path)))
    q1, q2 = evalset.items
    assert q1 == EvalItem("q1", "Who?", ("Ann", "Bob"), ("d1",))
    assert q1.relevance == {"d1": 1}
    assert (q2.reference_answers, q2.relevant_ids, q2.relevance) == ((), (), {})
    assert evalset.has_relevance and evalset.has_references


def test_csv_eval_accepts_json_lists_and_pipe_separated_values(tmp_path):
    path = write(
        tmp_path / "e.csv",
        "\ufeffid,question,reference_answers,relevant_ids\n"
        'q1,"Who, exactly?","[""Ann"", ""Bob | Jr.""]",d1|d2\n'
        "q2,What?,red | green,\n"
        'q3,Where?,,"[""d3""]"\n',
    )
    items = load_eval(EvalSource(format="csv", path=str(path))).items
    assert [i.id for i in items] == ["q1", "q2", "q3"]
    assert items[0].question == "Who, exactly?"
    assert items[0].reference_answers == ("Ann", "Bob | Jr.")
    assert items[0].relevant_ids == ("d1", "d2")
    assert items[1].reference_answers == ("red", "green") and items[1].relevant_ids == ()
    assert items[2].reference_answers == () and items[2].relevant_ids == ("d3",)


def test_csv_eval_without_relevant_ids_column_has_no_relevance(tmp_path):
    path = write(tmp_path / "e.csv", "id,question,reference_answers\nq1,Who?,Ann\n")
    evalset = load_eval(EvalSource(format="csv", path=str(path)))
    assert not evalset.has_relevance and evalset.has_references


def make_beir(root: Path) -> Path:
    jsonl(
        root / "corpus.jsonl",
        [
            {"_id": "d1", "title": "Aspirin", "text": "Aspirin reduces fever.", "metadata": {}},
            {"_id": "d2", "title": "", "text": "No title here."},
            {"_id": "d3", "title": "Ibuprofen", "text": "Ibuprofen is an NSAID."},
        ],
    )
    jsonl(
        root / "queries.jsonl",
        [
            {"_id": "q0", "text": "not judged"},
            {"_id": "q1", "text": "fever drugs"},
            {"_id": "q2", "text": "untitled"},
            {"_id": "q3", "text": "only train"},
        ],
    )
    write(root / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td3\t1\nq1\td2\t0\nq2\td2\t1\n")
    write(root / "qrels" / "train.tsv", "query-id\tcorpus-id\tscore\nq3\td3\t1\n")
    return root


def test_beir_corpus_joins_title_and_text_with_one_space(tmp_path):
    corpus = load_corpus(CorpusSource(format="beir", path=str(make_beir(tmp_path / "beir"))))
    d1, d2, d3 = corpus.documents
    assert [d.id for d in corpus.documents] == ["d1", "d2", "d3"]
    assert d1.text == "Aspirin Aspirin reduces fever." and d1.title == "Aspirin"
    assert d2.text == "No title here." and d2.title is None
    assert d3.text == "Ibuprofen Ibuprofen is an NSAID."


def test_beir_eval_keeps_graded_relevance_and_only_judged_queries(tmp_path):
    root = make_beir(tmp_path / "beir")
    corpus = load_corpus(CorpusSource(format="beir", path=str(root)))
    evalset = load_eval(EvalSource(format="beir", path=str(root)), corpus)
    assert [i.id for i in evalset.items] == ["q1", "q2"]
    q1 = evalset.items[0]
    assert q1.question == "fever drugs"
    assert q1.relevance == {"d1": 2, "d3": 1, "d2": 0}
    assert q1.relevant_ids == ("d1", "d3")
    assert q1.reference_answers == ()
    assert evalset.has_relevance and not evalset.has_references
    train = load_eval(EvalSource(format="beir", path=str(root), split="train"))
    assert [i.id for i in train.items] == ["q3"] and "split=train" in train.source
    assert [i.id for i in load_eval(EvalSource(format="beir", path=str(root), limit=1)).items] == ["q1"]


# ---------------------------------------------------------------- every bad input: one DataError


def corpus_of(fmt: str, path: Path):
    return lambda: load_corpus(CorpusSource(format=fmt, path=str(path)))


def eval_of(fmt: str, path: Path, corpus: Corpus | None = None, **kw):
    return lambda: load_eval(EvalSource(format=fmt, path=str(path), **kw), corpus)


def tiny_corpus(*ids: str) -> Corpus:
    docs = tuple(Document(i, f"text of {i}") for i in ids)
    return Corpus(docs, corpus_mod.corpus_digest(docs), "test")


def case_missing_file(t):
    return corpus_of("jsonl", t / "nope.jsonl"), ["nope.jsonl", "not found"]


def case_missing_folder(t):
    return corpus_of("folder", t / "nodir"), ["nodir", "folder not found"]


def case_missing_beir_split(t):
    return eval_of("beir", make_beir(t / "b"), split="dev"), ["dev.tsv", "available splits: test, train"]


def case_empty_jsonl_corpus(t):
    return corpus_of("jsonl", write(t / "c.jsonl", "\n\n")), ["c.jsonl", "empty"]


def case_folder_without_text_files(t):
    write(t / "d" / "x.pdf", "%PDF")
    return corpus_of("folder", t / "d"), ["d", "no .txt or .md files"]


def case_folder_of_only_empty_files(t):
    write(t / "d" / "a.txt", "")
    write(t / "d" / "sub" / "b.md", " \n\t\n")
    return corpus_of("folder", t / "d"), ["all 2", "empty (0 bytes or only whitespace)"]


def case_jsonl_corpus_of_only_empty_texts(t):
    return corpus_of("jsonl", jsonl(t / "c.jsonl", [{"id": "a", "text": "  "}])), ["c.jsonl", "all 1", "empty"]


def case_empty_eval_csv(t):
    return eval_of("csv", write(t / "e.csv", "id,question,reference_answers\n")), ["e.csv", "no questions"]


def case_beir_no_judged_queries(t):
    root = make_beir(t / "b")
    write(root / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nqX\td1\t1\n")
    return eval_of("beir", root), ["queries.jsonl", "no query appears", "test.tsv"]


def case_non_utf8_folder_file(t):
    write(t / "d" / "ok.txt", "fine")
    write(t / "d" / "latin.txt", "caf\xe9".encode("latin-1"))
    return corpus_of("folder", t / "d"), ["latin.txt", "not UTF-8", "save the file as UTF-8"]


def case_non_utf8_csv(t):
    return eval_of("csv", write(t / "e.csv", "id,question,reference_answers\nq1,Caf\xe9?,x\n".encode("cp1252"))), [
        "e.csv",
        "save the file as UTF-8",
    ]


def case_malformed_json_line(t):
    path = write(t / "c.jsonl", '{"id": "a", "text": "x"}\n{"id": "b", "text": \n')
    return corpus_of("jsonl", path), ["c.jsonl:2", "malformed JSON"]


def case_malformed_squad_json(t):
    path = write(t / "s.json", '{"data": [\n  {"title": "x",,}]}')
    return corpus_of("squad", path), ["s.json", "line 2", "malformed JSON"]


def case_not_a_squad_file(t):
    return corpus_of("squad", write(t / "s.json", "[1, 2]")), ["s.json", "'data' list"]


def case_missing_text_field(t):
    path = jsonl(t / "c.jsonl", [{"id": "a", "text": "x"}, {"id": "b", "body": "y"}])
    return corpus_of("jsonl", path), ["c.jsonl:2", "missing required field 'text'", "'body'"]


def case_missing_squad_question(t):
    paragraph = {"context": "c", "qas": [{"id": "1"}]}
    path = write(t / "s.json", json.dumps({"data": [{"title": "T", "paragraphs": [paragraph]}]}))
    return eval_of("squad", path), ["s.json", "data[0].paragraphs[0].qas[0]", "'question'"]


def case_missing_csv_column(t):
    return eval_of("csv", write(t / "e.csv", "id,query,reference_answers\nq1,a,b\n")), [
        "e.csv",
        "missing required column(s) 'question'",
        "'query'",
    ]


def case_reference_answers_not_a_list(t):
    path = jsonl(t / "e.jsonl", [{"id": "q1", "question": "Who?", "reference_answers": "Ann"}])
    return eval_of("jsonl", path), ["e.jsonl:1", "'reference_answers'", "list", "'Ann'"]


def case_text_not_a_string(t):
    path = jsonl(t / "c.jsonl", [{"id": "a", "text": 42}])
    return corpus_of("jsonl", path), ["c.jsonl:1", "'text' must be a string, got an integer (42)"]


def case_bad_json_list_cell(t):
    path = write(t / "e.csv", 'id,question,reference_answers\nq1,Who?,"[""Ann"", ]"\n')
    return eval_of("csv", path), ["e.csv, line 2", "'reference_answers'", "not valid JSON"]


def case_bad_qrels_score(t):
    root = make_beir(t / "b")
    write(root / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\thigh\n")
    return eval_of("beir", root), ["test.tsv:2", "'high'", "whole number"]


def case_duplicate_document_ids(t):
    path = jsonl(t / "c.jsonl", [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"id": "a", "text": "z"}])
    return corpus_of("jsonl", path), ["c.jsonl:3", "duplicate document id 'a'", "c.jsonl:1"]


def case_duplicate_squad_titles(t):
    article = {"title": "T", "paragraphs": [{"context": "c", "qas": []}]}
    return corpus_of("squad", write(t / "s.json", json.dumps({"data": [article, article]}))), [
        "s.json",
        "duplicate document id 'T/0'",
    ]


def case_duplicate_question_ids(t):
    path = write(t / "e.csv", "id,question,reference_answers\nq1,A?,a\nq2,B?,b\nq1,C?,c\n")
    return eval_of("csv", path), ["e.csv, line 4", "duplicate question id 'q1'", "line 2"]


def case_relevant_ids_not_in_corpus(t):
    rows = [
        {"id": f"q{i}", "question": "?", "reference_answers": [], "relevant_ids": ["d1", f"x{i}"]} for i in range(7)
    ]
    return eval_of("jsonl", jsonl(t / "e.jsonl", rows), tiny_corpus("d1", "d2")), [
        "e.jsonl",
        "7 relevant id(s) are not documents",
        "'x0' (question 'q0')",
        "'x4'",
        "and 2 more",
    ]


def case_huge_folder_document(t):
    path = t / "d" / "huge.txt"
    path.parent.mkdir(parents=True)
    with path.open("wb") as f:
        f.truncate(corpus_mod.MAX_DOCUMENT_BYTES + 1)  # sparse file: cheap to create
    return corpus_of("folder", t / "d"), ["huge.txt", "20 MB limit", "split it"]


def case_empty_question(t):
    path = jsonl(t / "e.jsonl", [{"id": "q1", "question": "Who?", "reference_answers": []},
                                 {"id": "q2", "question": "   ", "reference_answers": []}])
    return eval_of("jsonl", path), ["e.jsonl:2", "question (field 'question') is empty"]


def case_empty_id(t):
    path = write(t / "e.csv", "id,question,reference_answers\n,Who?,a\n")
    return eval_of("csv", path), ["e.csv, line 2", "'id'", "empty"]


ERROR_CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_")]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda f: f.__name__.removeprefix("case_"))
def test_bad_input_raises_one_data_error_naming_the_problem(case, tmp_path):
    call, expected = case(tmp_path)
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    # no raw json/csv/UnicodeDecodeError traceback chained to it
    err = info.value
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


def test_huge_jsonl_document_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_mod, "MAX_DOCUMENT_BYTES", 1000)
    path = jsonl(tmp_path / "c.jsonl", [{"id": "small", "text": "x"}, {"id": "big", "text": "é" * 600}])
    with pytest.raises(DataError, match=r"c\.jsonl:2: document 'big' is .* MB, above the .* limit.*split it"):
        load_corpus(CorpusSource(format="jsonl", path=str(path)))


def test_relevant_ids_in_corpus_pass_and_are_checked_only_with_a_corpus(tmp_path):
    path = jsonl(tmp_path / "e.jsonl", [{"id": "q", "question": "?", "reference_answers": [], "relevant_ids": ["zz"]}])
    assert len(load_eval(EvalSource(format="jsonl", path=str(path)))) == 1  # no corpus: no check
    assert len(load_eval(EvalSource(format="jsonl", path=str(path)), tiny_corpus("zz"))) == 1
