"""Fusion: hand-computed RRF / min-max / z-score values and the tie-break rules."""

from __future__ import annotations

import math
import random

import pytest

from rag_app.retrieval.fusion import (
    fuse,
    minmax_normalise,
    reciprocal_rank_fusion,
    weighted_fusion,
    zscore_normalise,
)


def as_dict(pairs: list[tuple[str, float]]) -> dict[str, float]:
    return dict(pairs)


# --- reciprocal rank fusion ---------------------------------------------------------------------


def test_rrf_hand_computed() -> None:
    # k = 60, ranks from 1:
    #   a: 1/61                 = 0.0163934426
    #   b: 1/62 (r1) + 1/61 (r2) = 0.0325224749
    #   c: 1/63 (r1) + 1/62 (r2) = 0.0320020481
    #   d: 1/63 (r2)            = 0.0158730159
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "d"]], k=60)
    assert [item for item, _ in fused] == ["b", "c", "a", "d"]
    scores = as_dict(fused)
    assert scores["a"] == pytest.approx(0.01639344262295082, abs=1e-12)
    assert scores["b"] == pytest.approx(0.03252247488101534, abs=1e-12)
    assert scores["c"] == pytest.approx(0.03200204813108039, abs=1e-12)
    assert scores["d"] == pytest.approx(0.015873015873015872, abs=1e-12)


def test_rrf_ranks_start_at_one() -> None:
    # With k = 0 the top item scores 1/(0+1) = 1 and the second 1/2; 0-based ranks would
    # divide by zero for the first item.
    assert reciprocal_rank_fusion([["x", "y"]], k=0) == [("x", 1.0), ("y", 0.5)]


def test_rrf_weights() -> None:
    # k = 0, weights (3, 1): a = 3/1 + 1/2 = 3.5, b = 3/2 + 1/1 = 2.5
    fused = reciprocal_rank_fusion([["a", "b"], ["b", "a"]], k=0, weights=[3.0, 1.0])
    assert fused == [("a", 3.5), ("b", 2.5)]


def test_rrf_ties_best_rank_then_first_appearance() -> None:
    # k = 0. Scores:
    #   a, d, g = 1 (each rank 1 once)            -> tie, best rank 1, first seen a, d, g
    #   b, e = 1/2 (rank 2), q = 1/2 (rank 2)     -> tie, best rank 2, first seen b, e, q
    #   z = 1/4 + 1/4 = 1/2 (rank 4 twice)        -> same score, best rank 4: after b, e, q
    #                                                although z is seen before e and q
    #   c, f = 1/3
    rankings = [["a", "b", "c", "z"], ["d", "e", "f", "z"], ["g", "q"]]
    fused = reciprocal_rank_fusion(rankings, k=0)
    assert [item for item, _ in fused] == ["a", "d", "g", "b", "e", "q", "z", "c", "f"]
    assert as_dict(fused)["z"] == as_dict(fused)["q"] == 0.5


def test_rrf_symmetric_tie_uses_first_appearance() -> None:
    # a = b = 1/61 + 1/62, both best rank 1; a is read first.
    fused = reciprocal_rank_fusion([["a", "b"], ["b", "a"]])
    assert [item for item, _ in fused] == ["a", "b"]
    assert fused[0][1] == fused[1][1]
    fused_rev = reciprocal_rank_fusion([["b", "a"], ["a", "b"]])
    assert [item for item, _ in fused_rev] == ["b", "a"]


def test_rrf_duplicate_in_one_ranking_counts_once() -> None:
    # k = 0: a counted at rank 1 only (1.0), b at rank 3 (1/3).
    fused = reciprocal_rank_fusion([["a", "a", "b"]], k=0)
    assert fused == [("a", 1.0), ("b", pytest.approx(1 / 3))]


def test_rrf_validation_and_empty() -> None:
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []
    with pytest.raises(ValueError, match="weights"):
        reciprocal_rank_fusion([["a"], ["b"]], weights=[1.0])
    with pytest.raises(ValueError, match="k must be"):
        reciprocal_rank_fusion([["a"]], k=-1)


def test_rrf_random_invariants() -> None:
    rng = random.Random(7)
    pool = [f"d{i}" for i in range(40)]
    for _ in range(50):
        rankings = [rng.sample(pool, rng.randint(0, 25)) for _ in range(rng.randint(1, 4))]
        fused = reciprocal_rank_fusion(rankings, k=rng.randint(0, 80))
        ids = [item for item, _ in fused]
        assert len(ids) == len(set(ids))
        assert set(ids) == {item for ranking in rankings for item in ranking}
        scores = [score for _, score in fused]
        assert scores == sorted(scores, reverse=True)
        # Deterministic: same input, same output.
        assert reciprocal_rank_fusion(rankings, k=10) == reciprocal_rank_fusion(rankings, k=10)


# --- normalisation ------------------------------------------------------------------------------


def test_minmax_normalise() -> None:
    # (x - 2) / (6 - 2)
    assert minmax_normalise({"a": 2.0, "b": 4.0, "c": 6.0}) == {"a": 0.0, "b": 0.5, "c": 1.0}
    assert minmax_normalise({"a": 3.0, "b": 3.0}) == {"a": 1.0, "b": 1.0}
    assert minmax_normalise({"a": -7.0}) == {"a": 1.0}
    assert minmax_normalise({}) == {}


def test_zscore_normalise() -> None:
    # mean 2, population variance (1 + 0 + 1) / 3 = 2/3, std 0.8164965809;
    # z = (x - 2) / 0.8164965809 -> -1.2247448714, 0, +1.2247448714
    z = zscore_normalise({"a": 1.0, "b": 2.0, "c": 3.0})
    assert z["a"] == pytest.approx(-1.224744871391589, abs=1e-12)
    assert z["b"] == pytest.approx(0.0, abs=1e-12)
    assert z["c"] == pytest.approx(1.224744871391589, abs=1e-12)
    assert zscore_normalise({"a": 5.0, "b": 5.0}) == {"a": 0.0, "b": 0.0}
    assert zscore_normalise({}) == {}


# --- weighted (score) fusion --------------------------------------------------------------------


def test_weighted_fusion_minmax_missing_gets_zero() -> None:
    # bm25 {a:10, b:5, c:0} -> {a:1, b:0.5, c:0};  dense {b:0.9, d:0.5} -> {b:1, d:0}
    # weights (0.3, 0.7), missing = 0:
    #   a = 0.3*1   + 0.7*0 = 0.30
    #   b = 0.3*0.5 + 0.7*1 = 0.85
    #   c = 0.3*0   + 0.7*0 = 0.00   } tie: c appears before d
    #   d = 0.3*0   + 0.7*0 = 0.00   }
    fused = weighted_fusion([{"a": 10.0, "b": 5.0, "c": 0.0}, {"b": 0.9, "d": 0.5}], [0.3, 0.7], "minmax")
    assert [item for item, _ in fused] == ["b", "a", "c", "d"]
    scores = as_dict(fused)
    assert scores["b"] == pytest.approx(0.85)
    assert scores["a"] == pytest.approx(0.30)
    assert scores["c"] == 0.0
    assert scores["d"] == 0.0


def test_weighted_fusion_zscore_missing_gets_side_minimum() -> None:
    # bm25 {a:3, b:2, c:1} -> z {a:+1.2247, b:0, c:-1.2247}   (min -1.2247)
    # dense {d:2, a:0}     -> mean 1, std 1 -> z {d:+1, a:-1} (min -1)
    # weights (0.5, 0.5):
    #   a = 0.5*1.2247  + 0.5*(-1)          =  0.1123724357
    #   b = 0.5*0       + 0.5*(-1)  [miss]  = -0.5
    #   c = 0.5*-1.2247 + 0.5*(-1)  [miss]  = -1.1123724357
    #   d = 0.5*-1.2247 [miss] + 0.5*1      = -0.1123724357
    # (had a missing side counted as z = 0, b would score 0 and outrank a.)
    fused = weighted_fusion([{"a": 3.0, "b": 2.0, "c": 1.0}, {"d": 2.0, "a": 0.0}], [0.5, 0.5], "zscore")
    assert [item for item, _ in fused] == ["a", "d", "b", "c"]
    scores = as_dict(fused)
    assert scores["a"] == pytest.approx(0.11237243569579447, abs=1e-12)
    assert scores["d"] == pytest.approx(-0.11237243569579447, abs=1e-12)
    assert scores["b"] == pytest.approx(-0.5, abs=1e-12)
    assert scores["c"] == pytest.approx(-1.1123724356957945, abs=1e-12)


def test_weighted_fusion_empty_side_contributes_nothing() -> None:
    fused = weighted_fusion([{}, {"x": 1.0, "y": 0.0}], [0.5, 0.5], "minmax")
    assert fused == [("x", 0.5), ("y", 0.0)]
    with pytest.raises(ValueError, match="weights"):
        weighted_fusion([{"x": 1.0}], [0.5, 0.5], "minmax")


# --- dispatcher ---------------------------------------------------------------------------------


BM25 = [("a", 9.0), ("b", 8.0)]
DENSE = [("b", 0.9), ("c", 0.8)]


def test_fuse_rrf_half_weight_is_plain_rrf() -> None:
    plain = reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=60)
    assert fuse("rrf", BM25, DENSE, rrf_k=60, bm25_weight=0.5) == plain


def test_fuse_rrf_weighted() -> None:
    # bm25_weight 0.3 -> side weights 0.6 and 1.4, k = 60:
    #   a = 0.6/61             = 0.0098360656
    #   b = 0.6/62 + 1.4/61    = 0.0326282390
    #   c = 1.4/62             = 0.0225806452
    fused = fuse("rrf", BM25, DENSE, rrf_k=60, bm25_weight=0.3)
    assert [item for item, _ in fused] == ["b", "c", "a"]
    scores = as_dict(fused)
    assert scores["a"] == pytest.approx(0.009836065573770491, abs=1e-12)
    assert scores["b"] == pytest.approx(0.03262823902696986, abs=1e-12)
    assert scores["c"] == pytest.approx(0.02258064516129032, abs=1e-12)


def test_fuse_score_methods_match_weighted_fusion() -> None:
    for method in ("minmax", "zscore"):
        expected = weighted_fusion([dict(BM25), dict(DENSE)], [0.3, 0.7], method)
        assert fuse(method, BM25, DENSE, rrf_k=60, bm25_weight=0.3) == expected
    # minmax by hand: bm25 {a:1, b:0}, dense {b:1, c:0}; a = 0.3, b = 0.7, c = 0
    assert fuse("minmax", BM25, DENSE, rrf_k=60, bm25_weight=0.3) == [
        ("b", pytest.approx(0.7)),
        ("a", pytest.approx(0.3)),
        ("c", 0.0),
    ]


def test_fuse_bm25_weight_extremes() -> None:
    # weight 1.0: dense side weight 0, so c (dense only) scores 0 and sorts last.
    fused = fuse("rrf", BM25, DENSE, rrf_k=60, bm25_weight=1.0)
    assert fused[-1] == ("c", 0.0)
    assert math.isclose(as_dict(fused)["a"], 2 / 61)


def test_fuse_errors() -> None:
    with pytest.raises(ValueError, match="RAG_APP_FUSION"):
        fuse("borda", BM25, DENSE, rrf_k=60, bm25_weight=0.5)
    with pytest.raises(ValueError, match="RAG_APP_BM25_WEIGHT"):
        fuse("rrf", BM25, DENSE, rrf_k=60, bm25_weight=1.5)


def test_fuse_empty_inputs() -> None:
    for method in ("rrf", "minmax", "zscore"):
        assert fuse(method, [], [], rrf_k=60, bm25_weight=0.5) == []


@pytest.mark.parametrize("method", ["minmax", "zscore"])
def test_a_lone_hit_still_outvotes_what_its_side_missed(method: str) -> None:
    # BM25 found only "sku" (an exact ID match): no spread to normalise, yet it must count.
    # The constant side maps to {sku: 1.0}, the others get 0.0 from it; dense minmax/z decides the rest.
    bm25 = [("sku", 7.3)]
    dense = [("reset", 0.48), ("cleaning", 0.28), ("sku", 0.19), ("battery", 0.12)]
    ranked = [item for item, _ in fuse(method, bm25, dense, rrf_k=60, bm25_weight=0.5)]
    assert set(ranked[:2]) == {"sku", "reset"}  # without the fix "cleaning" displaced "sku"
    if method == "minmax":
        scores = as_dict(fuse(method, bm25, dense, rrf_k=60, bm25_weight=0.5))
        assert scores["sku"] == pytest.approx(0.5 + 0.5 * (0.19 - 0.12) / (0.48 - 0.12))
        assert scores["reset"] == pytest.approx(0.5)


def test_interpolate_blends_normalised_scores_by_hand() -> None:
    from rag_app.retrieval.fusion import interpolate

    rerank = {"a": 2.0, "b": 4.0, "c": 0.0}  # minmax: a 0.5, b 1.0, c 0.0
    fused = {"a": 0.9, "b": 0.1, "c": 0.5}  # minmax: a 1.0, b 0.0, c 0.5
    # w = 0.5: a 0.75, b 0.5, c 0.25;  w = 1: b, a, c (the cross-encoder alone);  w = 0: a, c, b
    assert interpolate(rerank, fused, 0.5) == [("a", pytest.approx(0.75)), ("b", pytest.approx(0.5)),
                                               ("c", pytest.approx(0.25))]
    assert [k for k, _ in interpolate(rerank, fused, 1.0)] == ["b", "a", "c"]
    assert [k for k, _ in interpolate(rerank, fused, 0.0)] == ["a", "c", "b"]
    with pytest.raises(ValueError, match="RAG_APP_RERANK_WEIGHT"):
        interpolate(rerank, fused, 1.5)
