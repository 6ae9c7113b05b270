"""RagPipeline: the one object the CLI and UI talk to; one method per stage.

Constructing it is cheap (models load on first use); it owns the store, the index manager,
the encoders and the retriever, and is safe to share between threads (one per process).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_app.config import (
    DEFAULT_EMBED_MODEL,
    ChunkingConfig,
    GenerationConfig,
    IndexConfig,
    ModelConfig,
    RetrievalConfig,
    Settings,
)
from rag_app.encoders import BiEncoder, Reranker
from rag_app.index.manager import IndexManager
from rag_app.inference import default_cache_dir
from rag_app.ingest.pipeline import Ingestor, Progress, Record
from rag_app.models import resolve_model
from rag_app.retrieval.hybrid import HybridRetriever
from rag_app.store import Store
from rag_app.types import Answer, Document, IngestReport, SearchResult, Timings

if TYPE_CHECKING:
    from rag_app.generation.answer import Generator
    from rag_app.generation.llm import ChatModel
    from rag_app.rewrite import QueryRewriter

logger = logging.getLogger(__name__)

TRAINED_RERANKER_DIR = Path("models") / "reranker"
EMBEDDER_DIR = Path("models") / "embedder"
ACTIVE_EMBEDDER_FILE = EMBEDDER_DIR / "ACTIVE"


def active_embed_model(spec: str, data_dir: Path) -> str:
    """`auto` means the bi-encoder adopted for this data dir (`rag-app adopt`), else the packaged one."""
    if spec.strip().lower() != "auto":
        return spec
    pointer = data_dir / ACTIVE_EMBEDDER_FILE
    if pointer.is_file():
        name = pointer.read_text().strip()
        if name and (data_dir / EMBEDDER_DIR / name).is_dir():
            return str((data_dir / EMBEDDER_DIR / name).resolve())
        logger.warning("%s names a missing model %r; using the packaged default", pointer, name)
    return DEFAULT_EMBED_MODEL


def resolve_reranker(spec: str, data_dir: Path, model: ModelConfig) -> Reranker | None:
    """`auto` means the reranker this product trained for this data dir, if one was adopted.
    It runs on the configured backend; its ONNX exports share the bi-encoder's cache folder."""
    spec = spec.strip()
    if spec.lower() in ("", "none", "off"):
        return None
    cache_dir = Path(model.onnx_cache_dir) if model.onnx_cache_dir else default_cache_dir(data_dir)
    backend = model.reranker_backend
    if spec.lower() == "auto":
        trained = data_dir / TRAINED_RERANKER_DIR
        if (trained / "config.json").exists():
            return Reranker(str(trained), max_length=model.rerank_max_length, device=model.device,
                            backend=backend, cache_dir=cache_dir)
        return None
    resolved = resolve_model(spec, "RAG_APP_RERANK_MODEL")
    return Reranker(resolved.location, max_length=model.rerank_max_length, device=model.device,
                    allow_hub=model.allow_hub, backend=backend, cache_dir=cache_dir)


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
    cache_size: int = 256

    @classmethod
    def from_settings(cls, settings: Settings, environ: dict[str, str] | None = None) -> PipelineConfig:
        """ONNX exports go under the user's data dir even when a copy of this config points elsewhere
        (`rag-app eval` uses its own data dir but should reuse the exports)."""
        from dataclasses import replace

        models = replace(settings.models(), onnx_cache_dir=str(default_cache_dir(settings.data_dir)))
        return cls(
            data_dir=settings.data_dir, chunking=settings.chunking(), index=settings.index(),
            retrieval=settings.retrieval(), models=models,
            generation=settings.generation(dict(os.environ) if environ is None else environ),
            max_file_bytes=int(settings.max_file_mb * 1024 * 1024), hot_max=settings.hot_max,
        )


class RagPipeline:
    def __init__(self, config: PipelineConfig, encoder: BiEncoder | None = None,
                 reranker: Reranker | None = None, chat_model: ChatModel | None = None,
                 use_embedded_llm: bool = True) -> None:
        """`chat_model` overrides the configured one (tests, custom clients); `use_embedded_llm=False`
        skips starting the packaged llama.cpp server when no endpoint is configured."""
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        embed = active_embed_model(config.models.embed_model, config.data_dir)
        if embed != config.models.embed_model or not config.models.onnx_cache_dir:
            from dataclasses import replace as _replace

            cache_dir = config.models.onnx_cache_dir or str(default_cache_dir(config.data_dir))
            config = _replace(config, models=_replace(config.models, embed_model=embed, onnx_cache_dir=cache_dir))
            self.config = config
        self.store = Store(config.data_dir / "store.sqlite")
        self.encoder = encoder or BiEncoder(config.models)
        self.reranker = reranker if reranker is not None else resolve_reranker(
            config.models.rerank_model, config.data_dir, config.models)
        self.indexes = IndexManager(config.data_dir / "index", self.store, self.encoder, config.index,
                                    config.chunking, hot_max=config.hot_max)
        self.ingestor = Ingestor(self.store, self.indexes, self.encoder, config.chunking,
                                 max_file_bytes=config.max_file_bytes)
        self.retriever = HybridRetriever(self.store, self.indexes, self.encoder, config.retrieval, self.reranker)
        self._chat_model = chat_model
        self._use_embedded = use_embedded_llm
        self._resources = contextlib.ExitStack()
        self._generator: Generator | None = None
        self._rewriter: QueryRewriter | None = None
        self._gen_lock = threading.Lock()
        self._cache: OrderedDict[tuple[Any, ...], SearchResult] = OrderedDict()
        self._cache_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> RagPipeline:
        return cls(PipelineConfig.from_settings(settings))

    # ---- stages -------------------------------------------------------------------------
    def ingest(self, paths: Sequence[Path], progress: Progress | None = None,
               display_names: dict[Path, str] | None = None, sources: dict[Path, str] | None = None) -> IngestReport:
        return self.ingestor.ingest_paths(paths, progress, display_names, sources)

    def ingest_records(self, records: Sequence[Record], progress: Progress | None = None) -> IngestReport:
        return self.ingestor.ingest_records(records, progress, total=len(records))

    def search(self, query: str, mode: str = "hybrid", k: int | None = None,
               retrieval: RetrievalConfig | None = None) -> SearchResult:
        """Retrieval with a per-process result cache, keyed by the store generation so any
        ingest or delete invalidates it."""
        cfg = retrieval or self.config.retrieval
        key = (query, mode, k, cfg, self.store.generation)
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return SearchResult(hit.query, hit.mode, hit.candidates, Timings((("cache", 0.0),)),
                                    (*hit.notes, "served from the query cache"))
        result = self.retriever.search(query, mode, k, cfg)
        with self._cache_lock:
            self._cache[key] = result
            while len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)
        return result

    # ---- generation ---------------------------------------------------------------------
    def _ensure_generation(self) -> tuple[Generator, QueryRewriter]:
        """The chat model (configured endpoint, else the embedded llama.cpp server, else none →
        extractive) is opened once per pipeline, on the first question."""
        from rag_app.generation.answer import Generator, open_chat_model
        from rag_app.rewrite import QueryRewriter

        with self._gen_lock:
            if self._generator is None or self._rewriter is None:
                chat = self._chat_model
                if chat is None:
                    chat = open_chat_model(self.config.generation, self._resources, embedded=self._use_embedded)
                self._generator = Generator.from_config(self.config.generation, chat)
                # A tiny embedded model condenses poorly; only a configured endpoint rewrites by LLM.
                rewrite_model = chat if (self._chat_model is not None or self.config.generation.base_url) else None
                self._rewriter = QueryRewriter(rewrite_model)
            return self._generator, self._rewriter

    @property
    def generator_name(self) -> str:
        return self._ensure_generation()[0].name

    def default_mode(self) -> str:
        return "rerank" if self.reranker is not None else "hybrid"

    def stream(self, question: str, history: Sequence[tuple[str, str]] = (), mode: str | None = None,
               k: int | None = None, retrieval: RetrievalConfig | None = None) -> Iterator[str | Answer]:
        """Rewrite, retrieve, generate: yields answer text chunks, then one final `Answer`."""
        if not question or not question.strip():
            raise ValueError("the question is empty")
        generator, rewriter = self._ensure_generation()
        t0 = time.perf_counter()
        rewrite = rewriter.rewrite(question, history)
        timings = Timings().add("rewrite", (time.perf_counter() - t0) * 1000)
        cfg = retrieval or self.config.retrieval
        n_context = k or self.config.generation.context_passages
        result = self.search(rewrite.rewritten, mode or self.default_mode(), max(cfg.top_k, n_context), cfg)
        timings = timings.merge(result.timings)
        context = result.candidates[:n_context]
        for item in generator.stream(question, rewrite.rewritten, context, result.candidates, timings):
            if isinstance(item, Answer) and result.notes:
                from dataclasses import replace

                yield replace(item, notes=(*item.notes, *result.notes))
            else:
                yield item

    def ask(self, question: str, history: Sequence[tuple[str, str]] = (), mode: str | None = None,
            k: int | None = None, retrieval: RetrievalConfig | None = None) -> Answer:
        for item in self.stream(question, history, mode, k, retrieval):
            if isinstance(item, Answer):
                return item
        raise RuntimeError("the answer stream ended without an Answer")  # pragma: no cover

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

    def delete_document(self, doc_id: str) -> bool:
        """Delete exactly one document by id (the UI's delete button)."""
        if doc_id not in {d.id for d in self.documents()}:
            return False
        self.store.delete_document(doc_id)
        return True

    def reindex(self, progress: Any = None) -> None:
        """Rebuild every index from the store (re-encoding with the configured model if it changed)."""
        self.indexes.refresh(full=True, progress=progress)

    def check(self, repair: bool = False) -> Any:
        """Store/index consistency; `repair` rebuilds the indexes from the store."""
        return self.indexes.check(repair)

    def compact(self, progress: Any = None) -> None:
        """Fold the hot set into the main dense index and drop deleted vectors."""
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
                "bm25_count": manifest.bm25_count, "hot_count": len(snap.hot_vids) if snap else None,
                "bm25_hot_count": snap.lexical.hot.size if snap else None,
                "deleted_pending": len(snap.deleted) if snap else None, "chunking": manifest.chunking,
                "created_at": manifest.created_at, "packages": manifest.packages,
                "provenance": manifest.provenance, **self.indexes.sizes(),
            },
            "settings": {
                "embed_model": self.config.models.embed_model,
                "backend": self.encoder.backend,
                "reranker": self.reranker.name if self.reranker else None,
                "reranker_backend": self.reranker.backend if self.reranker else None,
                "reranker_max_length": self.reranker.max_length if self.reranker else None,
                "query_cache": None if (stats := self.encoder.query_cache_stats()) is None else {
                    "size": stats.size, "max_size": stats.max_size, "hits": stats.hits, "misses": stats.misses},
                "chunking": {"chunk_words": self.config.chunking.chunk_words,
                             "overlap_words": self.config.chunking.overlap_words},
                "fusion": self.config.retrieval.fusion, "rrf_k": self.config.retrieval.rrf_k,
                "bm25_weight": self.config.retrieval.bm25_weight,
                "index_type": self.config.index.index_type,
            },
        }

    def close(self) -> None:
        """Stops the embedded LLM server if this pipeline started one."""
        self._resources.close()
        self.store.close()
