from __future__ import annotations

import math
from pathlib import Path

import pytest

from rag_app.index.lexical import LexicalIndex

# Toy corpus, already lowercase; the English stemmer maps "cats" -> "cat", stopwords drop "the", "on".
DOCS = ["the cat sat on the mat", "cats chase mice", "dogs chase cats and cats run", "a bird sings"]
VIDS = [11, 22, 33, 44]


def _lucene_bm25(query_terms: list[str], docs_terms: list[list[str]], k1: float = 1.5, b: float = 0.75) -> list[float]:
    n = len(docs_terms)
    avgdl = sum(len(d) for d in docs_terms) / n
    scores = []
    for d in docs_terms:
        s = 0.0
        for t in query_terms:
            df = sum(1 for x in docs_terms if t in x)
            if df == 0:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = d.count(t)
            # Lucene (since 8.0) drops BM25's constant (k1 + 1) numerator factor; bm25s follows it.
            s += idf * tf / (tf + k1 * (1 - b + b * len(d) / avgdl))
        scores.append(s)
    return scores


def test_bm25_matches_hand_computed_lucene_scores() -> None:
    index = LexicalIndex.build(DOCS, VIDS)
    # After stopwords ("the", "on", "and", "a") and stemming: the terms bm25s indexes.
    docs_terms = [["cat", "sat", "mat"], ["cat", "chase", "mice"], ["dog", "chase", "cat", "cat", "run"],
                  ["bird", "sing"]]
    expected = _lucene_bm25(["cat"], docs_terms)
    got = dict(index.search("cats", 10))
    assert set(got) == {11, 22, 33}
    for vid, exp in zip(VIDS, expected, strict=True):
        if exp > 0:
            assert got[vid] == pytest.approx(exp, rel=1e-4)
    assert max(got, key=lambda v: got[v]) == 33  # two occurrences win


def test_unknown_words_return_nothing() -> None:
    index = LexicalIndex.build(DOCS, VIDS)
    assert index.search("zebra quantum", 5) == []
    assert index.search("the and", 5) == []


def test_deleted_rows_are_masked(tmp_path: Path) -> None:
    index = LexicalIndex.build(DOCS, VIDS)
    assert 33 not in dict(index.with_hot({}, {33}).search("cats", 10))
    index.save(tmp_path / "bm25")
    loaded = LexicalIndex.load(tmp_path / "bm25")
    assert dict(loaded.search("cats", 10)).keys() == {11, 22, 33}


def test_k_larger_than_corpus_is_fine() -> None:
    index = LexicalIndex.build(DOCS, VIDS)
    assert len(index.search("chase", 100)) == 2
