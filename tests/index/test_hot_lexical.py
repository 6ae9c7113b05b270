"""Hot BM25: passages added since the main bm25s index was built, scored on the main index's scale."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag_app.config import ModelConfig
from rag_app.encoders import BiEncoder
from rag_app.index.lexical import DF_FILE, STATS_FILE, LexicalIndex, tokenize_docs
from rag_app.index.manager import LEXICAL_DIR
from rag_app.ingest.pipeline import Record
from rag_app.pipeline import PipelineConfig, RagPipeline

# Already lowercase; after English stopwords and stemming: "cats" -> "cat", "sings" -> "sing", ...
MAIN = ["the cat sat on the mat", "cats chase mice", "dogs chase cats and cats run", "a bird sings"]
MAIN_TERMS = [["cat", "sat", "mat"], ["cat", "chase", "mice"], ["dog", "chase", "cat", "cat", "run"], ["bird", "sing"]]
MAIN_VIDS = [11, 22, 33, 44]
HOT = {101: "zebras chase the cat", 102: "a zebra and a zebra", 103: "the and of"}
HOT_TERMS = {101: ["zebra", "chase", "cat"], 102: ["zebra", "zebra"], 103: []}


def _lucene(query: Sequence[str], doc: Sequence[str], df: Callable[[str], int], n: int, avgdl: float,
            k1: float = 1.5, b: float = 0.75) -> float:
    """The brief's formula, written out independently of the code under test."""
    score = 0.0
    for t in query:
        tf = doc.count(t)
        if tf and df(t):
            idf = math.log(1 + (n - df(t) + 0.5) / (df(t) + 0.5))
            score += idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl))
    return score


def _zipf_corpus(n_docs: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"word{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}" for i in range(400)]
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    return [" ".join(rng.choices(vocab, weights, k=rng.randint(5, 60))) for _ in range(n_docs)]


# ---- scoring -------------------------------------------------------------------------------
def test_statistics_are_the_corpus_counts() -> None:
    index = LexicalIndex.build(MAIN, MAIN_VIDS)
    stats = index.stats
    assert stats is not None
    assert stats.n_docs == 4
    assert stats.avgdl == pytest.approx(sum(map(len, MAIN_TERMS)) / 4)
    for term in {t for d in MAIN_TERMS for t in d}:
        assert stats.doc_freq(term) == sum(term in d for d in MAIN_TERMS), term
    assert stats.doc_freq("zebra") == 0


def test_hot_scores_follow_the_formula_with_main_statistics() -> None:
    index = LexicalIndex.build(MAIN, MAIN_VIDS)
    snap = index.with_hot(tokenize_docs(HOT))
    avgdl = sum(map(len, MAIN_TERMS)) / 4

    def df(term: str) -> int:
        # Main df; a term the main index never saw takes its df from the hot set alone.
        main = sum(term in d for d in MAIN_TERMS)
        return main or sum(term in d for d in HOT_TERMS.values())

    for query, terms in [("cats chasing", ["cat", "chase"]), ("zebra", ["zebra"]), ("zebra cat zebra", [
            "zebra", "cat", "zebra"])]:
        got = dict(snap.search(query, 10))
        for vid, doc in HOT_TERMS.items():
            expected = _lucene(terms, doc, df, n=4, avgdl=avgdl)
            if expected > 0:
                assert got[vid] == pytest.approx(expected, rel=1e-5), (query, vid)
            else:
                assert vid not in got
        # Main rows are bm25s' own scores, unchanged by the hot set.
        for vid, doc in zip(MAIN_VIDS, MAIN_TERMS, strict=True):
            expected = _lucene(terms, doc, df, n=4, avgdl=avgdl)
            assert got.get(vid, 0.0) == pytest.approx(expected, rel=1e-5, abs=1e-9), (query, vid)


def test_a_hot_copy_scores_exactly_like_its_main_twin() -> None:
    """A hot passage with the same text as a main one must get the same bm25s score: any difference in
    tokenisation, df, N, avgdl, k1, b or the lucene formula breaks this (400 queries, 40 twins)."""
    corpus = _zipf_corpus(300, seed=1)
    index = LexicalIndex.build(corpus, list(range(300)))
    twins = {1000 + i: corpus[i] for i in range(0, 300, 7)[:40]}
    snap = index.with_hot(tokenize_docs(twins))
    rng = random.Random(2)
    compared = 0
    for _ in range(400):
        query = " ".join(rng.choice(corpus).split()[:3])
        got = dict(snap.search(query, 400))
        for hot_vid in twins:
            main_vid = hot_vid - 1000
            assert (hot_vid in got) == (main_vid in got)
            if hot_vid in got:
                assert got[hot_vid] == pytest.approx(got[main_vid], rel=1e-5)
                compared += 1
    assert compared > 500


def test_hot_scores_match_a_full_rebuild_when_statistics_barely_move() -> None:
    corpus = _zipf_corpus(2000, seed=3)
    full = LexicalIndex.build(corpus, list(range(2000)))
    split = LexicalIndex.build(corpus[:-5], list(range(1995))).with_hot(
        tokenize_docs({v: corpus[v] for v in range(1995, 2000)}))
    for v in range(1995, 2000):
        query = " ".join(corpus[v].split()[:4])
        want, got = dict(full.search(query, 2000)), dict(split.search(query, 2000))
        assert got[v] == pytest.approx(want[v], rel=0.02)


def test_search_merges_main_and_hot_best_first_within_k() -> None:
    index = LexicalIndex.build(MAIN, MAIN_VIDS)
    snap = index.with_hot(tokenize_docs(HOT))
    hits = snap.search("cats chase zebras", 10)
    vids = [v for v, _ in hits]
    assert {101, 102} <= set(vids) and {11, 22, 33} <= set(vids)
    assert 103 not in vids and 44 not in vids  # zero scores are not returned
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
    assert vids[0] == 101  # the only passage with all three terms
    assert snap.search("cats chase zebras", 2) == hits[:2]
    assert snap.search("cats chase zebras", 0) == []
    assert snap.search("the and", 5) == [] and snap.search("quantum", 5) == []


def test_deleted_main_rows_stay_masked_next_to_hot_passages() -> None:
    index = LexicalIndex.build(MAIN, MAIN_VIDS)
    snap = index.with_hot(tokenize_docs(HOT), deleted=np.array([33], dtype=np.int64))
    got = dict(snap.search("cats", 10))
    assert 33 not in got and {11, 22, 101} <= set(got)
    assert index.with_hot({}).search("cats", 10)[0][0] == 33  # the shared main index was not mutated
    assert set(snap.vids.tolist()) == {*MAIN_VIDS, *HOT}


def test_empty_main_scores_hot_passages_as_their_own_corpus() -> None:
    snap = LexicalIndex.build([], []).with_hot(tokenize_docs(dict(zip(MAIN_VIDS, MAIN, strict=True))))
    reference = LexicalIndex.build(MAIN, MAIN_VIDS)
    for query in ("cats", "chase mice", "bird cats dogs"):
        got, want = dict(snap.search(query, 10)), dict(reference.search(query, 10))
        assert got.keys() == want.keys()
        for vid, score in want.items():
            assert got[vid] == pytest.approx(score, rel=1e-5)


def test_statistics_survive_save_and_load(tmp_path: Path) -> None:
    index = LexicalIndex.build(MAIN, MAIN_VIDS)
    index.save(tmp_path / "bm25")
    loaded = LexicalIndex.load(tmp_path / "bm25")
    assert loaded.stats is not None and index.stats is not None
    assert (loaded.stats.n_docs, loaded.stats.avgdl) == (index.stats.n_docs, index.stats.avgdl)
    assert all(loaded.stats.doc_freq(t) == index.stats.doc_freq(t) for t in ("cat", "chase", "bird", "zebra"))
    assert loaded.with_hot(tokenize_docs(HOT)).search("zebra cats", 10) == \
        index.with_hot(tokenize_docs(HOT)).search("zebra cats", 10)


def test_a_folder_without_statistics_cannot_take_hot_passages(tmp_path: Path) -> None:
    LexicalIndex.build(MAIN, MAIN_VIDS).save(tmp_path / "bm25")
    (tmp_path / "bm25" / STATS_FILE).unlink()
    (tmp_path / "bm25" / DF_FILE).unlink()
    legacy = LexicalIndex.load(tmp_path / "bm25")
    assert legacy.stats is None and legacy.search("cats", 10)
    with pytest.raises(ValueError, match="statistics"):
        legacy.with_hot(tokenize_docs(HOT))


# ---- index versions ------------------------------------------------------------------------
class HashEncoder(BiEncoder):
    """A seeded random unit vector per text: no model to load."""

    def __init__(self) -> None:
        super().__init__(ModelConfig(embed_model="hash-encoder"))

    def warm_up(self) -> None:
        return None

    @property
    def dimension(self) -> int:
        return 16

    def resolved(self) -> Any:
        from rag_app.models import ResolvedModel

        return ResolvedModel("hash-encoder", "hash-encoder", "path")

    def encode_queries(self, queries: Sequence[str]) -> Any:
        out = []
        for q in queries:
            seed = int.from_bytes(hashlib.blake2b(q.encode(), digest_size=8).digest(), "little")
            v = np.random.default_rng(seed).standard_normal(16).astype(np.float32)
            out.append(v / np.linalg.norm(v))
        return np.stack(out) if out else np.zeros((0, 16), np.float32)

    def encode_passages(self, passages: Sequence[str], progress: Callable[[int], None] | None = None) -> Any:
        return self.encode_queries(passages)


def _records(prefix: str, n: int, seed: int) -> list[Record]:
    return [Record(f"{prefix}-{i}", f"{prefix} {i}", text) for i, text in enumerate(_zipf_corpus(n, seed))]


def _bm25_inodes(pipeline: RagPipeline) -> dict[str, int]:
    folder = pipeline.indexes.versions.current() / LEXICAL_DIR  # type: ignore[operator]
    return {str(f.relative_to(folder)): f.stat().st_ino for f in folder.rglob("*") if f.is_file()}


def _pipeline(tmp_path: Path, hot_max: int = 50) -> RagPipeline:
    return RagPipeline(PipelineConfig(data_dir=tmp_path / "data", hot_max=hot_max), encoder=HashEncoder(),
                       use_embedded_llm=False)


def test_small_ingest_links_the_main_bm25_and_scores_new_passages_hot(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    pipeline.ingest_records(_records("base", 30, seed=4))
    before = _bm25_inodes(pipeline)
    pipeline.ingest_records([Record("new", "New", "xylophone quartets rehearse xylophone pieces weekly")])
    assert _bm25_inodes(pipeline) == before  # hard links: the main BM25 index was not rebuilt
    snap = pipeline.indexes.snapshot()
    assert snap is not None and snap.lexical.hot.size == 1 and len(snap.hot_vids) == 1
    assert set(snap.lexical.hot.vids.tolist()) == set(snap.hot_vids.tolist())
    hits = pipeline.search("xylophone", mode="bm25", k=3).candidates
    assert len(hits) == 1 and hits[0].passage.doc_name == "new"
    info = pipeline.info()["index"]
    assert info["bm25_hot_count"] == 1 and info["bm25_count"] == snap.lexical.main.size
    assert pipeline.check().ok, pipeline.check().problems
    assert pipeline.check().counts["bm25_hot"] == 1

    pipeline.compact()
    assert _bm25_inodes(pipeline) != before
    snap = pipeline.indexes.snapshot()
    assert snap is not None and snap.lexical.hot.size == 0
    assert pipeline.search("xylophone", mode="bm25", k=3).candidates[0].passage.doc_name == "new"
    pipeline.close()


def test_deleted_hot_and_main_passages_are_not_found(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    pipeline.ingest_records([Record("old", "Old", "marzipan bakery recipes with marzipan")])
    pipeline.ingest_records([Record("hot", "Hot", "marzipan sculptures for a marzipan festival")])
    assert {c.passage.doc_name for c in pipeline.search("marzipan", mode="bm25", k=5).candidates} == {"old", "hot"}
    pipeline.delete("hot")
    assert [c.passage.doc_name for c in pipeline.search("marzipan", mode="bm25", k=5).candidates] == ["old"]
    pipeline.delete("old")
    assert not pipeline.search("marzipan", mode="bm25", k=5).candidates
    pipeline.close()


def test_outgrowing_hot_max_rebuilds_the_main_bm25(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, hot_max=3)
    pipeline.ingest_records(_records("base", 5, seed=5))
    before = _bm25_inodes(pipeline)
    pipeline.ingest_records(_records("more", 4, seed=6))  # more than 3 new passages
    assert set(_bm25_inodes(pipeline).values()).isdisjoint(before.values())
    snap = pipeline.indexes.snapshot()
    assert snap is not None and snap.lexical.hot.size == 0 and len(snap.hot_vids) == 0
    pipeline.close()


def test_check_tells_hot_passages_from_a_broken_bm25_folder(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    pipeline.ingest_records(_records("base", 10, seed=7))
    pipeline.ingest_records(_records("hot", 2, seed=8))
    assert pipeline.check().ok
    folder = pipeline.indexes.versions.current() / LEXICAL_DIR  # type: ignore[operator]
    # Statistics gone: the hot passages can no longer be scored, so they are missing.
    (folder / STATS_FILE).rename(folder / "stats.bak")
    report = pipeline.check()
    assert not report.ok and any("missing from the BM25 index" in p for p in report.problems)
    (folder / "stats.bak").rename(folder / STATS_FILE)
    # Rows that do not match the bm25s index: unusable.
    np.save(folder / "vids.npy", np.load(folder / "vids.npy")[:-1])
    report = pipeline.check()
    assert not report.ok and any("unusable" in p for p in report.problems)
    assert pipeline.check(repair=True).repaired and pipeline.check().ok
    pipeline.close()


def test_a_bm25_folder_without_statistics_is_rebuilt_on_the_next_ingest(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    pipeline.ingest_records(_records("base", 10, seed=9))
    folder = pipeline.indexes.versions.current() / LEXICAL_DIR  # type: ignore[operator]
    (folder / STATS_FILE).unlink()  # as written before hot BM25 existed
    (folder / DF_FILE).unlink()
    reopened = _pipeline(tmp_path)
    reopened.ingest_records([Record("new", "New", "xylophone quartets rehearse weekly")])
    snap = reopened.indexes.snapshot()
    assert snap is not None and snap.lexical.main.stats is not None and snap.lexical.hot.size == 0
    assert reopened.search("xylophone", mode="bm25", k=1).candidates[0].passage.doc_name == "new"
    assert reopened.check().ok
    reopened.close()
    pipeline.close()


def test_a_main_delete_keeps_the_hot_set_and_an_ingest_keeps_hot_tokens(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    pipeline.ingest_records(_records("base", 10, seed=10))
    pipeline.ingest_records([Record("hot1", "Hot", "xylophone quartets rehearse weekly")])
    first = pipeline.indexes.snapshot()
    pipeline.delete("base-3")
    second = pipeline.indexes.snapshot()
    assert first is not None and second is not None and second is not first
    assert second.lexical.hot is first.lexical.hot  # same passages, same main index: not rebuilt
    pipeline.ingest_records([Record("hot2", "Hot", "marimba duets rehearse daily")])
    third = pipeline.indexes.snapshot()
    assert third is not None and third.lexical.hot.size == 2
    (vid,) = first.lexical.hot.docs
    assert third.lexical.hot.docs[vid] is first.lexical.hot.docs[vid]  # tokenised once
    hits = pipeline.search("rehearse", mode="bm25", k=5).candidates
    assert {c.passage.doc_name for c in hits} == {"hot1", "hot2"}
    pipeline.close()


def test_a_new_term_in_more_hot_passages_than_main_documents_still_scores_positive() -> None:
    snap = LexicalIndex.build(["a bird sings"], [1]).with_hot(
        tokenize_docs({10 + i: f"zebra number {i}" for i in range(5)}))
    hits = snap.search("zebra", 10)
    assert len(hits) == 5 and all(s > 0 for _, s in hits)
