"""Bi-encoder (separate query/passage paths, DPR-style) and cross-encoder reranker.

Both load lazily on first use (`warm_up`) so constructing a pipeline is cheap and import never
touches a model (nor torch or onnxruntime). Either runs on PyTorch or ONNX Runtime (fp32 or int8),
see `rag_app.inference`; the bi-encoder keeps an LRU of query vectors so repeated questions skip
encoding.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from rag_app.caching import CacheStats, QueryEmbeddingCache
from rag_app.config import ModelConfig
from rag_app.inference import BackendUnavailableError, effective_backend, vector_model_name
from rag_app.models import (
    ModelNotFoundError,
    ResolvedModel,
    ensure_offline_default,
    load_failure_message,
    resolve_model,
)

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder, SentenceTransformer

    from rag_app.inference import OnnxCrossEncoder, OnnxSentenceTransformer

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]


def _prefixes(model_name: str) -> tuple[str, str]:
    """Model families trained with asymmetric inputs expect their prefixes; others get none."""
    name = model_name.lower()
    if "e5" in name:
        return "query: ", "passage: "
    if "bge" in name and "en" in name:
        return "Represent this sentence for searching relevant passages: ", ""
    if "nomic" in name:
        return "search_query: ", "search_document: "
    return "", ""


def _dimension(model: SentenceTransformer | OnnxSentenceTransformer) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter() or 0)


class BiEncoder:
    """Encodes queries and passages into normalised vectors for inner-product search.

    A DPR-style asymmetric model is a folder with `query/` and `passage/` sub-models (written by
    training); a plain sentence-transformers folder is used for both sides.
    """

    def __init__(self, config: ModelConfig, setting: str = "RAG_APP_EMBED_MODEL") -> None:
        self.config = config
        self.setting = setting
        self.backend = effective_backend(config.backend, config.device)
        self._resolved: ResolvedModel | None = None
        self._query_model: SentenceTransformer | OnnxSentenceTransformer | None = None
        self._passage_model: SentenceTransformer | OnnxSentenceTransformer | None = None
        self._lock = threading.Lock()
        self.query_prefix, self.passage_prefix = _prefixes(config.embed_model)
        # Owned by this instance (not global): its entries are only valid for the model loaded here.
        self._query_cache = QueryEmbeddingCache(config.query_cache_size) if config.query_cache_size else None
        self._cache_model = ""

    @property
    def name(self) -> str:
        """The name of the vector space (store cache key, index manifest): the model spec, plus
        `@onnx-int8` for int8 vectors, which differ enough from torch/fp32 ones to reorder hits."""
        return vector_model_name(self.config.embed_model, self.backend)

    def resolved(self) -> ResolvedModel:
        if self._resolved is None:
            self._resolved = resolve_model(self.config.embed_model, self.setting)
        return self._resolved

    def _load(self, location: str) -> SentenceTransformer | OnnxSentenceTransformer:
        from rag_app.inference import load_sentence_transformer

        cache_dir = Path(self.config.onnx_cache_dir) if self.config.onnx_cache_dir else None
        # The configured backend, not the effective one: the loader warns when ONNX cannot serve the device.
        try:
            return load_sentence_transformer(location, self.config.backend, self.config.device, cache_dir,
                                             self.config.max_seq_length)
        except Exception as exc:
            if self.backend != "onnx":
                raise
            # fp32 ONNX and torch vectors share a name (same vector space), so torch can stand in.
            logger.warning("%s cannot run on ONNX Runtime (%s); using torch, which gives the same vectors",
                           location, exc)
            self.backend = "torch"
            return load_sentence_transformer(location, "torch", self.config.device, cache_dir,
                                             self.config.max_seq_length)

    def warm_up(self) -> None:
        with self._lock:
            if self._query_model is not None:
                return
            ensure_offline_default(self.config.allow_hub)
            resolved = self.resolved()
            from pathlib import Path

            root = Path(resolved.location)
            try:
                if (root / "query").is_dir() and (root / "passage").is_dir():
                    self._query_model = self._load(str(root / "query"))
                    self._passage_model = self._load(str(root / "passage"))
                else:
                    model = self._load(resolved.location)
                    self._query_model = model
                    self._passage_model = model
            except ModelNotFoundError:
                raise
            except Exception as exc:
                message = load_failure_message(resolved, self.setting, exc)
                if self.backend != "torch" or isinstance(exc, BackendUnavailableError):
                    message += f" (RAG_APP_BACKEND={self.backend}; RAG_APP_BACKEND=torch needs no ONNX export)"
                raise ModelNotFoundError(message) from exc
            self._cache_model = f"{self.name}|{resolved.location}|{self.backend}"
            logger.info("loaded bi-encoder %s from %s on %s", self.name, resolved.location, self.backend)

    @property
    def dimension(self) -> int:
        self.warm_up()
        assert self._query_model is not None
        dim = _dimension(self._query_model)
        if not dim:
            raise ModelNotFoundError(f"{self.setting}: the model does not report an embedding dimension")
        return int(dim)

    @property
    def query_model(self) -> SentenceTransformer | OnnxSentenceTransformer:
        self.warm_up()
        assert self._query_model is not None
        return self._query_model

    @property
    def passage_model(self) -> SentenceTransformer | OnnxSentenceTransformer:
        self.warm_up()
        assert self._passage_model is not None
        return self._passage_model

    def encode_queries(self, queries: Sequence[str]) -> FloatArray:
        """Query vectors; repeated queries come from the LRU (a question asked again, in another mode,
        with another k, or after an ingest), only the new ones are encoded, in one batch."""
        model = self.query_model
        if not queries or self._query_cache is None:
            return self._encode(model, [self.query_prefix + q for q in queries], None)

        def compute(texts: list[str]) -> FloatArray:
            return self._encode(model, [self.query_prefix + t for t in texts], None)

        return self._query_cache.encode(self._cache_model, self.query_prefix, list(queries), compute)

    def clear_query_cache(self) -> None:
        """Forget cached query vectors (latency measurements must pay for encoding every query)."""
        if self._query_cache is not None:
            self._query_cache.clear()

    def query_cache_stats(self) -> CacheStats | None:
        """Hits, misses and size of the query-vector LRU; None when it is disabled."""
        return self._query_cache.stats() if self._query_cache is not None else None

    def encode_passages(
        self, passages: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> FloatArray:
        texts = [self.passage_prefix + p for p in passages]
        return self._encode(self.passage_model, texts, progress)

    def _encode(
        self, model: SentenceTransformer | OnnxSentenceTransformer, texts: list[str],
        progress: Callable[[int], None] | None,
    ) -> FloatArray:
        dim = _dimension(model)
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        bs = self.config.encode_batch_size
        # Sorting by length keeps padding small within a batch (a large win on CPU).
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for start in range(0, len(texts), bs):
            idx = order[start : start + bs]
            batch = [texts[i] for i in idx]
            emb = model.encode(
                batch, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            out[idx] = np.asarray(emb, dtype=np.float32)
            if progress is not None:
                progress(len(batch))
        return out


#: written by `rag-app train reranker` beside the model: {"rerank_weight": w, ...}
RERANKER_META = "rag_app_reranker.json"


class Reranker:
    """Cross-encoder reranker. Only a real cross-encoder checkpoint is accepted: a bi-encoder
    loaded as a CrossEncoder gets a random head and meaningless scores.

    `backend` as for the bi-encoder; ONNX exports go to `cache_dir` (None: the user cache). Rerank
    scores are not persisted, so an int8 reranker needs no reindex."""

    def __init__(self, location: str, setting: str = "RAG_APP_RERANK_MODEL", max_length: int = 256,
                 batch_size: int = 32, device: str = "cpu", allow_hub: bool = False, backend: str = "torch",
                 cache_dir: Path | None = None) -> None:
        self.location = location
        self.setting = setting
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.allow_hub = allow_hub
        self.requested_backend = backend
        self.backend = effective_backend(backend, device)
        self.cache_dir = cache_dir
        self._model: CrossEncoder | OnnxCrossEncoder | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.location

    @property
    def weight(self) -> float:
        """How much of the rerank order this model's scores decide (the rest is the fused score): what
        `rag-app train reranker` recorded in the model folder (RERANKER_META), else 1.0 (plain reranking)."""
        try:
            meta = json.loads((Path(self.location) / RERANKER_META).read_text())
            value = float(meta["rerank_weight"])
        except (OSError, ValueError, KeyError, TypeError):
            return 1.0
        return value if 0.0 <= value <= 1.0 else 1.0

    def warm_up(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            ensure_offline_default(self.allow_hub)
            try:
                self._model = self._load()
            except Exception as exc:
                on = f" on RAG_APP_BACKEND={self.backend}" if self.backend != "torch" else ""
                raise ModelNotFoundError(
                    f"{self.setting}={self.location!r}: could not load a cross-encoder{on} ({exc})"
                ) from exc
            logger.info("loaded cross-encoder %s on %s", self.location, self.backend)

    def _load(self) -> CrossEncoder | OnnxCrossEncoder:
        from rag_app.inference import load_cross_encoder

        try:
            return load_cross_encoder(self.location, self.requested_backend, self.device, self.cache_dir,
                                      self.max_length)
        except Exception as exc:
            if self.backend == "torch":
                raise
            # Rerank scores are never stored, so torch can always stand in for an ONNX export that failed.
            logger.warning("%s cannot run on ONNX Runtime (%s); using torch", self.location, exc)
            self.backend = "torch"
            return load_cross_encoder(self.location, "torch", self.device, self.cache_dir, self.max_length)

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        self.warm_up()
        assert self._model is not None
        scores: Any = self._model.predict(
            [(query, p) for p in passages], batch_size=self.batch_size, show_progress_bar=False
        )
        return [float(s) for s in np.asarray(scores).reshape(-1)]
