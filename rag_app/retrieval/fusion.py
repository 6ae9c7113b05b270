"""Combine the BM25 and dense rankings into one list (pure functions, no I/O).

Two families are offered because they fail differently: rank-based RRF ignores score scales
entirely (robust), while score-based fusion keeps how *much* better one hit is than the next but
depends on normalising two incomparable score distributions. The default is min-max at 0.5: on
SciFact train it ties the best setting found (z-score) and, unlike z-score, gives a side's lone
hit (BM25's exact match on an ID or code) full weight instead of the "average" value 0.

Every function returns ``[(id, fused_score), ...]`` sorted best-first with a deterministic
order for ties, so the same inputs always give the same ranking (tests and cached
evaluations depend on it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Literal, TypeVar

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

FUSION_METHODS: tuple[str, ...] = ("rrf", "minmax", "zscore")


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[K]],
    k: int = 60,
    weights: Sequence[float] | None = None,
) -> list[tuple[K, float]]:
    """Reciprocal rank fusion (Cormack et al., 2009): ``score(d) = sum_i w_i / (k + rank_i(d))``.

    Ranks are counted **from 1** (the best item of a ranking has rank 1), so with ``k = 60`` the
    top hit contributes ``w / 61``. A ranking that does not contain ``d`` contributes nothing.
    If an id occurs more than once in one ranking only its best (first) rank counts, so a
    buggy retriever cannot double-vote.

    Ties in the fused score are broken by the best single rank the id achieved in any ranking
    (lower first), then by first appearance when reading the rankings in order, each
    best-first. ``weights`` defaults to 1.0 for every ranking.
    """
    if k < 0:
        raise ValueError(f"rrf k must be >= 0, got {k}")
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"got {len(weights)} weights for {len(rankings)} rankings")

    scores: dict[K, float] = {}
    best_rank: dict[K, int] = {}
    first_seen: dict[K, int] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        seen_here: set[K] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen_here:
                continue
            seen_here.add(item)
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
            if item not in first_seen:
                first_seen[item] = len(first_seen)
                best_rank[item] = rank
            elif rank < best_rank[item]:
                best_rank[item] = rank

    order = sorted(scores, key=lambda item: (-scores[item], best_rank[item], first_seen[item]))
    return [(item, scores[item]) for item in order]


def minmax_normalise(scores: Mapping[K, float]) -> dict[K, float]:
    """Rescale to [0, 1] so sides with different score ranges can be summed.

    A constant input (including a single candidate) maps to 1.0: every candidate is "the best"
    that side found, and a 0/0 must not turn into NaN.
    """
    if not scores:
        return {}
    low = min(scores.values())
    high = max(scores.values())
    span = high - low
    if span == 0.0 or not math.isfinite(span):
        return {key: 1.0 for key in scores}
    return {key: (value - low) / span for key, value in scores.items()}


def zscore_normalise(scores: Mapping[K, float]) -> dict[K, float]:
    """Standardise to mean 0, (population) standard deviation 1.

    Less sensitive than min-max to a single outlier score. A constant input maps to 0.0
    (every candidate is exactly average) rather than dividing by zero; so a side with a single
    hit adds nothing to it under z-score fusion (min-max maps it to 1.0).
    """
    if not scores:
        return {}
    values = list(scores.values())
    mean = math.fsum(values) / len(values)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
    if std == 0.0 or not math.isfinite(std):
        return {key: 0.0 for key in scores}
    return {key: (value - mean) / std for key, value in scores.items()}


def weighted_fusion(
    score_maps: Sequence[Mapping[K, float]],
    weights: Sequence[float],
    method: Literal["minmax", "zscore"],
) -> list[tuple[K, float]]:
    """Normalise each side over the candidates it returned, then sum the weighted values.

    A candidate missing from a side gets that side's **minimum normalised value** (0.0 for
    min-max, the lowest z for z-score): the side did not retrieve it, so the most we can
    assume is that it ranks no better than that side's worst hit. Using 0.0 for z-score
    would instead award an unseen document an *average* score, above that side's own
    below-average hits. A side whose hits all score the same (a lone exact BM25 match on an
    ID is the common case) has no spread to normalise: its hits get 1.0 and the candidates it
    missed 0.0, so it still votes for what it found. An empty side contributes nothing.

    Ties are broken by first appearance (sides in order, each in its mapping's order).
    """
    if len(weights) != len(score_maps):
        raise ValueError(f"got {len(weights)} weights for {len(score_maps)} score maps")
    if method == "minmax":
        normalise = minmax_normalise
    elif method == "zscore":
        normalise = zscore_normalise
    else:
        raise ValueError(f"unknown normalisation {method!r}; expected 'minmax' or 'zscore'")

    normalised = [_hits_above_misses(normalise(side)) for side in score_maps]
    first_seen: dict[K, int] = {}
    for side in score_maps:
        for key in side:
            first_seen.setdefault(key, len(first_seen))

    # An empty or constant side has floor 0.0 (its hits were mapped to 1.0 above).
    floors = [min(side.values()) if len(set(side.values())) > 1 else 0.0 for side in normalised]
    fused: dict[K, float] = {}
    for key in first_seen:
        total = 0.0
        for side, weight, floor in zip(normalised, weights, floors, strict=True):
            if side:
                total += weight * side.get(key, floor)
        fused[key] = total

    order = sorted(first_seen, key=lambda key: (-fused[key], first_seen[key]))
    return [(key, fused[key]) for key in order]


def fuse(
    method: str,
    bm25: Sequence[tuple[K, float]],
    dense: Sequence[tuple[K, float]],
    *,
    rrf_k: int,
    bm25_weight: float,
) -> list[tuple[K, float]]:
    """Fuse BM25 and dense hits as configured by ``RAG_APP_FUSION`` / ``RAG_APP_BM25_WEIGHT``.

    Both inputs are ``(id, score)`` lists best-first as the retrievers return them (scores
    higher-is-better). RRF uses only the list order; min-max/z-score use only the scores.

    For RRF the side weights are ``2 * bm25_weight`` and ``2 * (1 - bm25_weight)`` so that
    ``bm25_weight = 0.5`` reproduces plain, unweighted RRF exactly (scores comparable with
    the literature); for the score methods they are ``bm25_weight`` and ``1 - bm25_weight``.
    """
    if not 0.0 <= bm25_weight <= 1.0:
        raise ValueError(f"RAG_APP_BM25_WEIGHT must be in [0, 1], got {bm25_weight}")
    if method == "rrf":
        return reciprocal_rank_fusion(
            [[item for item, _ in bm25], [item for item, _ in dense]],
            k=rrf_k,
            weights=[2.0 * bm25_weight, 2.0 * (1.0 - bm25_weight)],
        )
    if method in ("minmax", "zscore"):
        norm: Literal["minmax", "zscore"] = "minmax" if method == "minmax" else "zscore"
        return weighted_fusion(
            [_to_map(bm25), _to_map(dense)],
            [bm25_weight, 1.0 - bm25_weight],
            norm,
        )
    raise ValueError(
        f"unknown fusion method {method!r} (setting RAG_APP_FUSION); expected one of {', '.join(FUSION_METHODS)}"
    )


def interpolate(
    rerank: Mapping[K, float],
    fused: Mapping[K, float],
    rerank_weight: float,
) -> list[tuple[K, float]]:
    """``w * minmax(rerank) + (1 - w) * minmax(fused)`` over the reranked candidates, best first.

    A cross-encoder trained on a few hundred of the user's questions is a noisy judge on its own (on
    SciFact it reorders worse than the fused list) but adds what the first stage missed when its vote
    is blended with the fused score. ``w = 1`` is plain reranking. Only ids present in ``rerank`` are
    returned; ties keep ``rerank``'s order.
    """
    if not 0.0 <= rerank_weight <= 1.0:
        raise ValueError(f"RAG_APP_RERANK_WEIGHT must be in [0, 1], got {rerank_weight}")
    ce = minmax_normalise(rerank)
    first = minmax_normalise({key: fused.get(key, min(fused.values(), default=0.0)) for key in rerank})
    order = {key: i for i, key in enumerate(rerank)}
    scored = {key: rerank_weight * ce[key] + (1.0 - rerank_weight) * first[key] for key in rerank}
    return sorted(scored.items(), key=lambda item: (-item[1], order[item[0]]))


def _hits_above_misses(side: dict[K, float]) -> dict[K, float]:
    """A constant side (0/0 spread) maps its hits to 1.0; see `weighted_fusion`."""
    if side and len(set(side.values())) == 1:
        return dict.fromkeys(side, 1.0)
    return side


def _to_map(hits: Sequence[tuple[K, float]]) -> dict[K, float]:
    """Keep the first (best-ranked) score when a retriever repeats an id."""
    out: dict[K, float] = {}
    for item, score in hits:
        out.setdefault(item, float(score))
    return out
