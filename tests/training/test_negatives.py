"""Hard-negative selection: never a positive, never excluded, never a near-duplicate of a positive."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rag_app.training.negatives import Bm25Ranker, NegativeConfig, jaccard, mine_negatives, select_negatives, tokens

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

ids = st.sampled_from([f"d{i}" for i in range(30)])


@given(ranked=st.lists(ids, max_size=40), positives=st.sets(ids, max_size=5), exclude=st.sets(ids, max_size=5),
       k=st.integers(0, 8), skip=st.integers(0, 3), seed=st.one_of(st.none(), st.integers(0, 5)))
def test_selected_negatives_are_never_positive_or_excluded(ranked: list[str], positives: set[str],
                                                           exclude: set[str], k: int, skip: int,
                                                           seed: int | None) -> None:
    rng = random.Random(seed) if seed is not None else None
    negs = select_negatives(ranked, positives, k, exclude=exclude, skip_top=skip, rng=rng)
    assert len(negs) <= k
    assert not set(negs) & positives
    assert not set(negs) & exclude
    assert len(set(negs)) == len(negs)
    assert set(negs) <= set(ranked[skip:])
    order = [r for r in dict.fromkeys(ranked[skip:]) if r in negs]
    assert negs == order  # rank order kept


def test_top_ranked_first_and_near_duplicates_skipped() -> None:
    texts = {
        "pos": "the quick brown fox jumps over the lazy dog",
        "copy": "The quick brown fox jumps over the lazy dog!",
        "near": "the quick brown fox jumps over the lazy dog again",
        "other": "a completely different passage about cooking pasta",
        "third": "stock markets fell sharply on monday",
    }
    assert jaccard(tokens(texts["pos"]), tokens(texts["copy"])) == 1.0
    ranked = ["copy", "pos", "near", "other", "third"]
    assert select_negatives(ranked, {"pos"}, 2, texts=texts) == ["other", "third"]
    assert select_negatives(ranked, {"pos"}, 2, texts=texts, max_jaccard=0.95) == ["near", "other"]
    assert select_negatives(ranked, {"pos"}, 5) == ["copy", "near", "other", "third"]


def test_config_validates() -> None:
    with pytest.raises(ValueError, match="negative source"):
        NegativeConfig(source="random")


def _corpus() -> dict[str, str]:
    topics = ["solar panels convert sunlight into electricity", "wind turbines generate power from wind",
              "nuclear reactors split atoms to produce heat", "hydroelectric dams use flowing water",
              "coal plants burn fossil fuel", "batteries store electrical energy chemically"]
    texts = {f"d{i}": f"{t}. Passage number {i} about energy." for i, t in enumerate(topics)}
    texts["dup"] = texts["d0"].upper()
    return texts


def test_mine_with_bm25_never_returns_positives() -> None:
    texts = _corpus()
    ranker = Bm25Ranker(texts)
    queries = [("a", "how do solar panels make electricity energy", {"d0"}), ("b", "wind turbines and energy", {"d1"})]
    mined = mine_negatives(queries, texts, NegativeConfig(k=3), bm25=ranker, exclude={"d5"})
    for key, _, positives in queries:
        assert mined[key] and len(mined[key]) <= 3
        assert not set(mined[key]) & positives
        assert "d5" not in mined[key]
    assert "dup" not in mined["a"]  # a copy of the positive is not a negative


def test_both_needs_dense_and_fuses() -> None:
    texts = _corpus()
    ranker = Bm25Ranker(texts)
    with pytest.raises(ValueError, match="dense"):
        mine_negatives([("a", "solar", {"d0"})], texts, NegativeConfig(k=1, source="both"), bm25=ranker)

    def dense(queries: list[str], depth: int) -> list[list[str]]:
        return [["d4", "d0", "d3"] for _ in queries]

    mined = mine_negatives([("a", "solar panels", {"d0"})], texts, NegativeConfig(k=2, source="both"),
                           bm25=ranker, dense=dense)
    assert mined["a"][0] == "d4" and "d0" not in mined["a"]


@pytest.mark.data
def test_scifact_bm25_negatives_exclude_every_positive() -> None:
    from rag_app.training.pairs import from_beir, split_heldout

    if not (SHARED_DATA / "scifact").is_dir():
        pytest.skip(f"needs ../shared/data/scifact (looked in {SHARED_DATA})")
    data = from_beir(SHARED_DATA / "scifact")
    split = split_heldout(data)
    texts = {pid: p.full_text() for pid, p in data.corpus.items()}
    ranker = Bm25Ranker(texts, exclude=split.excluded)
    train = list(split.train.qrels.items())[:80]
    queries = [(q, data.queries[q], {p for p, g in judged.items() if g >= 1}) for q, judged in train]
    mined = mine_negatives(queries, texts, NegativeConfig(k=5), bm25=ranker, exclude=split.excluded)
    assert sum(len(v) for v in mined.values()) >= 5 * len(queries) - 5
    for key, _, positives in queries:
        assert not set(mined[key]) & positives
        assert not set(mined[key]) & split.excluded
