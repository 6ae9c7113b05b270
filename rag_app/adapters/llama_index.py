"""Our hybrid retriever as a llama-index `BaseRetriever`, so llama-index query engines, postprocessors
and agents can use it while every per-stage score and rank stays visible on the returned nodes.

    retriever = RagAppRetriever(pipeline, mode="hybrid", k=5)
    engine = RetrieverQueryEngine.from_args(retriever, llm=my_llm)   # pass the LLM explicitly

Node ids are passage ids; `score` is the final stage's score (rerank, else fused, else the single
retriever's); metadata carries the document, page, character offsets and all stage scores/ranks.
Only the document, title and page reach the LLM's context text; nothing is embedded again.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from rag_app.config import RetrievalConfig
from rag_app.types import MODES, Candidate, SearchResult

if TYPE_CHECKING:
    from rag_app.pipeline import RagPipeline

LLM_VISIBLE_KEYS = ("document", "title", "page")


def candidate_metadata(candidate: Candidate, rank: int, mode: str) -> dict[str, Any]:
    p = candidate.passage
    return {
        "document": p.doc_name, "doc_id": p.doc_id, "title": p.doc_title, "page": p.page_label or None,
        "heading": p.heading or None, "char_start": p.char_start, "char_end": p.char_end,
        "passage_ordinal": p.ordinal, "mode": mode, "rank": rank, **candidate.scores_dict(),
    }


def candidate_node(candidate: Candidate, rank: int, mode: str) -> NodeWithScore:
    """One retrieved passage as a scored llama-index node."""
    p = candidate.passage
    metadata = candidate_metadata(candidate, rank, mode)
    hidden = [key for key in metadata if key not in LLM_VISIBLE_KEYS]
    node = TextNode(
        id_=p.id, text=p.text, metadata=metadata, start_char_idx=p.char_start, end_char_idx=p.char_end,
        excluded_llm_metadata_keys=hidden, excluded_embed_metadata_keys=list(metadata),
    )
    return NodeWithScore(node=node, score=candidate.score)


class RagAppRetriever(BaseRetriever):
    """Wraps `RagPipeline.search(query, mode, k)`; `last_result` keeps the latest full SearchResult
    (timings, notes such as "no reranker installed") for the calling thread."""

    def __init__(self, pipeline: RagPipeline, mode: str = "hybrid", k: int | None = None,
                 *, retrieval: RetrievalConfig | None = None, callback_manager: CallbackManager | None = None,
                 verbose: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; choose one of {', '.join(MODES)}")
        if k is not None and k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        super().__init__(callback_manager=callback_manager, verbose=verbose)
        self.pipeline = pipeline
        self.mode = mode
        self.k = k
        self.retrieval = retrieval
        self._local = threading.local()

    @property
    def last_result(self) -> SearchResult | None:
        result: SearchResult | None = getattr(self._local, "result", None)
        return result

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        result = self.pipeline.search(query_bundle.query_str, mode=self.mode, k=self.k, retrieval=self.retrieval)
        self._local.result = result
        return [candidate_node(c, rank, result.mode) for rank, c in enumerate(result.candidates, 1)]
