"""RagPipeline: the one object the CLI and UI talk to; one method per stage.

Constructing it is cheap (models load on first use); it owns the store, the index manager,
the encoders and the retriever, and is safe to share between threads (one per process).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag_app.config import ChunkingConfig, GenerationConfig, IndexConfig, ModelConfig, RetrievalConfig, Settings
from rag_app.encoders import BiEncoder, Reranker
from rag_app.index.manager import IndexManager
from rag_app.ingest.pipeline import Ingestor, Progress, Record
from rag_app.models import resolve_model
from rag_app.retrieval.hybrid import HybridRetriever
from rag_app.store import Store
from rag_app.types import Document, IngestReport, SearchResult

logger = logging.getLogger(__name__)

TRAINED_RERANKER_DIR = Path("models") / "reranker"


def resolve_reranker(spec: str, data_dir: Path, model: ModelConfig) -> Reranker | None:
    """`auto` means the reranker this product trained for this data dir, if one was adopted."""
    spec = spec.strip()
    if spec.lower() in ("", "none", "off"):
        return None
    if spec.lower() == "auto":
        trained = data_dir / TRAINED_RERANKER_DIR
        if (trained / "config.json").exists():
            return Reranker(str(trained), max_length=model.max_seq_length, device=model.device)
        return None
    resolved = resolve_model(spec, "RAG_APP_RERANK_MODEL")
    return Reranker(resolved.location, max_length=model.max_seq_length, device=model.device)


@dataclass(frozen=True)
class PipelineConfig:
    data_dir: Path
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    models: ModelConfig = field(default_factory=ModelConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    max_file_bytes: int = 50 * 1024 * 1024
    hot_max: int = 5000

    @classmethod
    def from_settings(cls, settings: Settings, environ: dict[str, str] | None = None) -> PipelineConfig:
        return cls(
            data_dir=settings.data_dir, chunking=settings.chunking(), index=settings.index(),
            retrieval=settings.retrieval(), models=settings.models(),
            generation=settings.generation(dict(os.environ) if environ is None else environ),
            max_file_bytes=int(settings.max_file_mb * 1024 * 1024), hot_max=settings.hot_max,
        )


class RagPipeline:
    def __init__(self, config: PipelineConfig, encoder: BiEncoder | None = None,
                 reranker: Reranker | None = None) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(config.data_dir / "store.sqlite")
        self.encoder = encoder or BiEncoder(config.models)
        self.reranker = reranker if reranker is not None else resolve_reranker(
            config.models.rerank_model, config.data_dir, config.models)
        self.indexes = IndexManager(config.data_dir / "index", self.store, self.encoder, config.index,
                                    config.chunking, hot_max=config.hot_max)
        self.ingestor = Ingestor(self.store, self.indexes, self.encoder, config.chunking,
                                 max_file_bytes=config.max_file_bytes)
        self.retriever = HybridRetriever(self.store, self.indexes, self.encoder, config.retrieval, self.reranker)

    @classmethod
    def from_settings(cls, settings: Settings) -> RagPipeline:
        return cls(PipelineConfig.from_settings(settings))

    # ---- stages -------------------------------------------------------------------------
    def ingest(self, paths: Sequence[Path], progress: Progress | None = None,
               display_names: dict[Path, str] | None = None) -> IngestReport:
        return self.ingestor.ingest_paths(paths, progress, display_names)

    def ingest_records(self, records: Sequence[Record], progress: Progress | None = None) -> IngestReport:
        return self.ingestor.ingest_records(records, progress, total=len(records))

    def search(self, query: str, mode: str = "hybrid", k: int | None = None,
               retrieval: RetrievalConfig | None = None) -> SearchResult:
        return self.retriever.search(query, mode, k, retrieval)

    # ---- collection ---------------------------------------------------------------------
    def documents(self) -> list[Document]:
        return self.store.list_documents()

    def delete(self, key: str) -> list[Document]:
        """Delete the documents matching `key` (id prefix, name or path); search never sees them again
        because the next snapshot excludes their vectors and masks their BM25 rows."""
        matches = self.store.find_documents(key)
        for doc in matches:
            self.store.delete_document(doc.id)
        return matches

    def reindex(self, progress: Any = None) -> None:
        """Rebuild every index from the store (re-encoding with the configured model if it changed)."""
        self.indexes.refresh(full=True, progress=progress)

    def info(self) -> dict[str, Any]:
        manifest = self.indexes.manifest()
        snap = self.indexes.snapshot() if manifest and manifest.embed_model == self.encoder.name else None
        return {
            "data_dir": str(self.config.data_dir),
            "store": {**self.store.counts(), "bytes": self.store.db_size_bytes(),
                      "generation": self.store.generation},
            "index": None if manifest is None else {
                "version": manifest.version, "embed_model": manifest.embed_model,
                "embed_location": manifest.embed_location, "dim": manifest.dim,
                "index_type": manifest.index_type, "dense_count": manifest.dense_count,
                "bm25_count": manifest.bm25_count, "hot_count": int(len(snap.hot_vids)) if snap else None,
                "deleted_pending": len(snap.deleted) if snap else None, "chunking": manifest.chunking,
                "created_at": manifest.created_at, "packages": manifest.packages,
                "provenance": manifest.provenance, **self.indexes.sizes(),
            },
            "settings": {
                "embed_model": self.config.models.embed_model,
                "reranker": self.reranker.name if self.reranker else None,
                "chunking": {"chunk_words": self.config.chunking.chunk_words,
                             "overlap_words": self.config.chunking.overlap_words},
                "fusion": self.config.retrieval.fusion, "rrf_k": self.config.retrieval.rrf_k,
                "bm25_weight": self.config.retrieval.bm25_weight,
                "index_type": self.config.index.index_type,
            },
        }

    def close(self) -> None:
        self.store.close()
