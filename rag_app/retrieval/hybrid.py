"""Hybrid retrieval: BM25 and dense candidates, fused, optionally cross-encoder reranked.

Every candidate keeps each stage's score and rank, and every stage is timed, so the UI and the
evaluation harness can show exactly why a passage was returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from rag_app.config import RetrievalConfig
from rag_app.encoders import BiEncoder, Reranker
from rag_app.index.manager import IndexManager
from rag_app.retrieval.fusion import fuse, interpolate
from rag_app.store import Store
from rag_app.types import MODES, Candidate, Passage, SearchResult, Timings

logger = logging.getLogger(__name__)

NO_RERANKER = (
    "no cross-encoder reranker is installed, so results are in fused order. Train one on your data with "
    "`rag-app train reranker ...`, or set RAG_APP_RERANK_MODEL to a cross-encoder folder or hub name "
    "(e.g. cross-encoder/ms-marco-MiniLM-L-6-v2 with internet access)."
)


class HybridRetriever:
    def __init__(self, store: Store, manager: IndexManager, encoder: BiEncoder, config: RetrievalConfig,
                 reranker: Reranker | None = None) -> None:
        self.store = store
        self.manager = manager
        self.encoder = encoder
        self.config = config
        self.reranker = reranker

    def search(self, query: str, mode: str = "hybrid", k: int | None = None,
               config: RetrievalConfig | None = None) -> SearchResult:
        cfg = config or self.config
        k = k or cfg.top_k
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; choose one of {', '.join(MODES)}")
        snap = self.manager.snapshot()
        if snap is None or snap.n_passages == 0:
            return SearchResult(query, mode, (), Timings(), ("the index is empty: ingest documents first",))
        timings = Timings()
        notes: list[str] = []
        bm25: list[tuple[int, float]] = []
        dense: list[tuple[int, float]] = []
        if mode in ("bm25", "hybrid", "rerank"):
            t0 = time.perf_counter()
            bm25 = snap.bm25_search(query, cfg.bm25_candidates if mode != "bm25" else max(k, cfg.bm25_candidates))
            timings = timings.add("bm25", (time.perf_counter() - t0) * 1000)
        if mode in ("dense", "hybrid", "rerank"):
            self.encoder.warm_up()  # a first query's model load is not encode time
            t0 = time.perf_counter()
            qvec = self.encoder.encode_queries([query])
            t1 = time.perf_counter()
            dense = snap.dense_search(qvec, max(k, cfg.dense_candidates))[0]
            timings = timings.add("encode", (t1 - t0) * 1000).add("dense", (time.perf_counter() - t1) * 1000)
        candidates, fusion_ms = self._combine(mode, bm25, dense, cfg)
        if mode in ("hybrid", "rerank"):
            timings = timings.add("fusion", fusion_ms)
        if mode == "rerank":
            if self.reranker is None:
                notes.append(NO_RERANKER)
            else:
                t0 = time.perf_counter()
                candidates, note = self._rerank(query, candidates, cfg, self.reranker)
                timings = timings.add("rerank", (time.perf_counter() - t0) * 1000)
                if note:
                    notes.append(note)
        t0 = time.perf_counter()
        chosen = candidates[:k]
        passages = self._passages([c.vid for c in chosen])
        result = tuple(
            Candidate(passage=passages[c.vid], bm25_score=c.bm25_score, bm25_rank=c.bm25_rank,
                      dense_score=c.dense_score, dense_rank=c.dense_rank, fused_score=c.fused_score,
                      fused_rank=c.fused_rank, rerank_score=c.rerank_score, rerank_rank=c.rerank_rank)
            for c in chosen if c.vid in passages
        )
        timings = timings.add("fetch", (time.perf_counter() - t0) * 1000)
        return SearchResult(query, mode, result, timings, tuple(notes))

    def _rerank(self, query: str, candidates: list[_Scored], cfg: RetrievalConfig,
                reranker: Reranker) -> tuple[list[_Scored], str]:
        """The fused head reordered by the cross-encoder, or by its blend with the fused score when the
        rerank weight is below 1; `rerank_score` is always the cross-encoder's own score."""
        top = candidates[: cfg.rerank_top_n]
        passages = self._passages([c.vid for c in top])
        top = [c for c in top if c.vid in passages]
        scores = reranker.score(query, [passages[c.vid].index_text() for c in top])
        weight = cfg.rerank_weight if cfg.rerank_weight is not None else reranker.weight
        ce = {c.vid: float(s) for c, s in zip(top, scores, strict=True)}
        by_vid = {c.vid: c for c in top}
        if weight >= 1.0:
            order = sorted(ce, key=lambda vid: -ce[vid])
            note = ""
        else:
            fused = {c.vid: c.fused_score if c.fused_score is not None else 0.0 for c in top}
            order = [vid for vid, _ in interpolate(ce, fused, weight)]
            note = (f"rerank order: {weight:g} x cross-encoder + {1 - weight:g} x fused score (each min-max "
                    f"normalised over the top {len(top)})")
        head = [replace(by_vid[vid], rerank_score=ce[vid], rerank_rank=r) for r, vid in enumerate(order, 1)]
        return head + candidates[cfg.rerank_top_n :], note

    def _passages(self, vids: Sequence[int]) -> dict[int, Passage]:
        return self.store.passages_by_vid(vids)

    @staticmethod
    def _combine(mode: str, bm25: list[tuple[int, float]], dense: list[tuple[int, float]],
                 cfg: RetrievalConfig) -> tuple[list[_Scored], float]:
        bm25_rank = {vid: (r, s) for r, (vid, s) in enumerate(bm25, 1)}
        dense_rank = {vid: (r, s) for r, (vid, s) in enumerate(dense, 1)}

        def scored(vid: int, fused: float | None = None, fused_rank: int | None = None) -> _Scored:
            b = bm25_rank.get(vid)
            d = dense_rank.get(vid)
            return _Scored(vid, b[1] if b else None, b[0] if b else None, d[1] if d else None,
                           d[0] if d else None, fused, fused_rank)

        if mode == "bm25":
            return [scored(v) for v, _ in bm25], 0.0
        if mode == "dense":
            return [scored(v) for v, _ in dense], 0.0
        t0 = time.perf_counter()
        fused = fuse(cfg.fusion, bm25, dense, rrf_k=cfg.rrf_k, bm25_weight=cfg.bm25_weight)
        out = [scored(int(v), float(s), r) for r, (v, s) in enumerate(fused, 1)]
        return out, (time.perf_counter() - t0) * 1000


@dataclass(frozen=True, slots=True)
class _Scored:
    """A candidate before its passage is fetched (only the top k ever are)."""

    vid: int
    bm25_score: float | None
    bm25_rank: int | None
    dense_score: float | None
    dense_rank: int | None
    fused_score: float | None
    fused_rank: int | None
    rerank_score: float | None = None
    rerank_rank: int | None = None
