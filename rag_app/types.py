"""Typed, immutable results passed between stages (never loose dicts)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

RetrievalMode = str  # "bm25" | "dense" | "hybrid" | "rerank"
MODES: tuple[str, ...] = ("bm25", "dense", "hybrid", "rerank")


@dataclass(frozen=True)
class Document:
    """A stored source document; `text` is the full extracted text passage offsets index into."""

    id: str
    name: str
    source: str
    format: str
    content_hash: str
    n_pages: int
    n_passages: int
    added_at: str
    title: str = ""
    external_id: str = ""


@dataclass(frozen=True)
class Passage:
    """A chunk of a document. `text == document.text[char_start:char_end]` always holds.

    `id` is content-derived (stable across rebuilds); `vid` is the same hash as a 63-bit
    integer, used as the FAISS id so no mapping table is needed.
    """

    id: str
    vid: int
    doc_id: str
    ordinal: int
    text: str
    char_start: int
    char_end: int
    page_label: str = ""
    heading: str = ""
    doc_name: str = ""
    doc_title: str = ""

    def index_text(self) -> str:
        """Text given to BM25 and the bi-encoder: title and heading add context the body lacks."""
        parts: list[str] = []
        for extra in (self.doc_title, self.heading):
            if extra and extra not in parts and extra not in self.text[: len(extra) + 5]:
                parts.append(extra)
        parts.append(self.text)
        return "\n".join(parts)


@dataclass(frozen=True)
class Candidate:
    """A passage with every stage's score and 1-based rank; None where a stage did not see it."""

    passage: Passage
    bm25_score: float | None = None
    bm25_rank: int | None = None
    dense_score: float | None = None
    dense_rank: int | None = None
    fused_score: float | None = None
    fused_rank: int | None = None
    rerank_score: float | None = None
    rerank_rank: int | None = None

    def with_scores(self, **kwargs: Any) -> Candidate:
        return replace(self, **kwargs)

    @property
    def score(self) -> float:
        """The score of the last stage that saw this candidate."""
        for value in (self.rerank_score, self.fused_score, self.dense_score, self.bm25_score):
            if value is not None:
                return value
        return 0.0

    def scores_dict(self) -> dict[str, float | int | None]:
        return {
            "bm25_score": self.bm25_score,
            "bm25_rank": self.bm25_rank,
            "dense_score": self.dense_score,
            "dense_rank": self.dense_rank,
            "fused_score": self.fused_score,
            "fused_rank": self.fused_rank,
            "rerank_score": self.rerank_score,
            "rerank_rank": self.rerank_rank,
        }


@dataclass(frozen=True)
class Timings:
    """Milliseconds per stage, in the order the stages ran."""

    stages: tuple[tuple[str, float], ...] = ()

    def add(self, stage: str, ms: float) -> Timings:
        return Timings((*self.stages, (stage, ms)))

    def merge(self, other: Timings) -> Timings:
        return Timings(self.stages + other.stages)

    def as_dict(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for stage, ms in self.stages:
            out[stage] = out.get(stage, 0.0) + ms
        return out

    @property
    def total_ms(self) -> float:
        return sum(ms for _, ms in self.stages)


@dataclass(frozen=True)
class SearchResult:
    query: str
    mode: str
    candidates: tuple[Candidate, ...]
    timings: Timings = field(default_factory=Timings)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Citation:
    """A [n] marker in an answer resolved to the passage it names."""

    number: int
    passage: Passage
    sentence: str = ""
    support: float | None = None
    supported: bool = True


@dataclass(frozen=True)
class Answer:
    question: str
    rewritten_query: str
    text: str
    generator: str
    citations: tuple[Citation, ...]
    candidates: tuple[Candidate, ...]
    context: tuple[Candidate, ...]
    timings: Timings = field(default_factory=Timings)
    abstained: bool = False
    invalid_citations: tuple[int, ...] = ()
    unsupported_sentences: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rejection:
    path: str
    reason: str


@dataclass(frozen=True)
class IngestReport:
    documents_added: int = 0
    passages_added: int = 0
    documents_updated: int = 0
    duplicates: tuple[str, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    timings: Timings = field(default_factory=Timings)
