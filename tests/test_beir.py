"""BEIR loader: tiny folders built in tmp_path, error messages, the query split, and SciFact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_app.beir import BeirDoc, iter_corpus, load_corpus, load_qrels, load_queries, split_queries

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_beir(
    root: Path,
    corpus: list[dict[str, object]],
    queries: list[dict[str, object]],
    qrels_text: str | None,
    split: str = "test",
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus), encoding="utf-8")
    (root / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in queries), encoding="utf-8")
    if qrels_text is not None:
        (root / "qrels").mkdir(exist_ok=True)
        (root / "qrels" / f"{split}.tsv").write_text(qrels_text, encoding="utf-8")
    return root


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_beir(
        tmp_path / "tiny",
        corpus=[
            {"_id": "d1", "title": "Alpha", "text": "first text", "metadata": {}},
            {"_id": 2, "text": "no title, integer id"},
            {"_id": "d3", "title": None, "text": "ünïcode ok"},
        ],
        queries=[
            {"_id": "q1", "text": "what is alpha?", "metadata": {}},
            {"_id": "q2", "text": "second"},
        ],
        qrels_text="query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\t2\t2\n\nq2\td3\t0\n",
    )


def test_load_corpus(tiny: Path) -> None:
    docs = load_corpus(tiny)
    assert docs == [
        BeirDoc("d1", "Alpha", "first text"),
        BeirDoc("2", "", "no title, integer id"),  # ids are always strings
        BeirDoc("d3", "", "ünïcode ok"),
    ]
    assert docs[0].id == docs[0]._id == "d1"
    with pytest.raises(AttributeError):
        docs[0].title = "x"  # type: ignore[misc]  # frozen
    assert list(iter_corpus(str(tiny))) == docs  # str paths accepted, streaming agrees


def test_load_queries(tiny: Path) -> None:
    assert load_queries(tiny) == {"q1": "what is alpha?", "q2": "second"}


def test_load_qrels(tiny: Path) -> None:
    # header skipped, blank line skipped, grade 0 kept (it is a judgement)
    assert load_qrels(tiny, "test") == {"q1": {"d1": 1, "2": 2}, "q2": {"d3": 0}}


def test_missing_files_are_named(tmp_path: Path, tiny: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"corpus\.jsonl"):
        load_corpus(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"queries\.jsonl"):
        load_queries(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"qrels.*dev\.tsv"):
        load_qrels(tiny, "dev")


@pytest.mark.parametrize(
    ("qrels_text", "message"),
    [
        ("q1\td1\t1\n", "header"),  # header missing
        ("", "empty file"),
        ("query-id\tcorpus-id\tscore\nq1\td1\n", r"test\.tsv:2: expected 3"),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\tyes\n", r"test\.tsv:3: relevance 'yes'"),
        ("query-id\tcorpus-id\tscore\n\td1\t1\n", "empty query"),
    ],
)
def test_malformed_qrels(tmp_path: Path, qrels_text: str, message: str) -> None:
    root = write_beir(tmp_path / "bad", [], [], qrels_text)
    with pytest.raises(ValueError, match=message):
        load_qrels(root, "test")


def test_malformed_jsonl(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    corpus = root / "corpus.jsonl"
    corpus.write_text('{"_id": "a", "text": "ok"}\n{not json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"corpus\.jsonl:2: invalid JSON"):
        load_corpus(root)
    corpus.write_text('{"_id": "a"}\n["list"]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"corpus\.jsonl:2: expected a JSON object"):
        load_corpus(root)
    (root / "queries.jsonl").write_text('{"text": "no id"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"queries\.jsonl:1: missing '_id'"):
        load_queries(root)


def test_split_queries_deterministic_and_disjoint() -> None:
    qrels = {f"q{i}": {"d": 1} for i in range(100)}
    train, held = split_queries(qrels)
    # round(100 * 0.2) = 20 held out, the rest train, no overlap, nothing lost
    assert len(held) == 20
    assert len(train) == 80
    assert train.isdisjoint(held)
    assert train | held == set(qrels)
    # independent of dict order; same seed -> same split; another seed -> another split
    reversed_qrels = dict(reversed(list(qrels.items())))
    assert split_queries(reversed_qrels) == (train, held)
    assert split_queries(qrels, seed=14)[1] != held
    # most held-out queries stay held out when queries are added
    more = {**qrels, **{f"new{i}": {"d": 1} for i in range(10)}}
    assert len(split_queries(more)[1] & held) >= 15


def test_split_queries_edges() -> None:
    qrels = {"a": {"d": 1}, "b": {"d": 1}, "c": {"d": 1}}
    assert split_queries(qrels, held_out_fraction=0.0) == ({"a", "b", "c"}, set())
    assert split_queries(qrels, held_out_fraction=1.0) == (set(), {"a", "b", "c"})
    assert len(split_queries(qrels, held_out_fraction=0.5)[1]) == 2  # 1.5 rounds half up
    assert split_queries({}) == (set(), set())
    with pytest.raises(ValueError, match="held_out_fraction"):
        split_queries(qrels, held_out_fraction=1.5)


@pytest.mark.data
@pytest.mark.skipif(
    not (SHARED_DATA / "scifact").is_dir(),
    reason=f"shared BEIR data not found at {SHARED_DATA / 'scifact'} (../shared/data beside the project)",
)
def test_scifact_real_folder() -> None:
    root = SHARED_DATA / "scifact"
    docs = load_corpus(root)
    assert len(docs) == 5183
    assert len({doc.id for doc in docs}) == 5183
    assert all(doc.text for doc in docs)
    queries = load_queries(root)
    assert len(queries) == 809
    qrels = load_qrels(root, "train")
    assert sum(len(judged) for judged in qrels.values()) == 919  # 920 lines minus the header
    doc_ids = {doc.id for doc in docs}
    assert all(query in queries for query in qrels)
    assert all(doc in doc_ids for judged in qrels.values() for doc in judged)
    train, held = split_queries(qrels)
    assert len(qrels) == 809
    assert len(held) == 162  # floor(809 * 0.2 + 0.5) = floor(162.3)
    assert train.isdisjoint(held)
