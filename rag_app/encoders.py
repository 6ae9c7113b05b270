"""Bi-encoder (separate query/passage paths, DPR-style) and cross-encoder reranker.

Both load lazily on first use (`warm_up`) so constructing a pipeline is cheap and import never
touches a model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from rag_app.config import ModelConfig
from rag_app.models import (
    ModelNotFoundError,
    ResolvedModel,
    ensure_offline_default,
    load_failure_message,
    resolve_model,
)

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder, SentenceTransformer

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


def _dimension(model: SentenceTransformer) -> int:
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
        self._resolved: ResolvedModel | None = None
        self._query_model: SentenceTransformer | None = None
        self._passage_model: SentenceTransformer | None = None
        self._lock = threading.Lock()
        self.query_prefix, self.passage_prefix = _prefixes(config.embed_model)

    @property
    def name(self) -> str:
        return self.config.embed_model

    def resolved(self) -> ResolvedModel:
        if self._resolved is None:
            self._resolved = resolve_model(self.config.embed_model, self.setting)
        return self._resolved

    def _load(self, location: str) -> SentenceTransformer:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(location, device=self.config.device)
        model.max_seq_length = min(self.config.max_seq_length, model.max_seq_length or 512)
        return model

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
                raise ModelNotFoundError(load_failure_message(resolved, self.setting, exc)) from exc
            logger.info("loaded bi-encoder %s from %s", self.name, resolved.location)

    @property
    def dimension(self) -> int:
        self.warm_up()
        assert self._query_model is not None
        dim = _dimension(self._query_model)
        if not dim:
            raise ModelNotFoundError(f"{self.setting}: the model does not report an embedding dimension")
        return int(dim)

    @property
    def query_model(self) -> SentenceTransformer:
        self.warm_up()
        assert self._query_model is not None
        return self._query_model

    @property
    def passage_model(self) -> SentenceTransformer:
        self.warm_up()
        assert self._passage_model is not None
        return self._passage_model

    def encode_queries(self, queries: Sequence[str]) -> FloatArray:
        texts = [self.query_prefix + q for q in queries]
        return self._encode(self.query_model, texts, None)

    def encode_passages(
        self, passages: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> FloatArray:
        texts = [self.passage_prefix + p for p in passages]
        return self._encode(self.passage_model, texts, progress)

    def _encode(
        self, model: SentenceTransformer, texts: list[str], progress: Callable[[int], None] | None
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


class Reranker:
    """Cross-encoder reranker. Only a real cross-encoder checkpoint is accepted: a bi-encoder
    loaded as a CrossEncoder gets a random head and meaningless scores."""

    def __init__(self, location: str, setting: str = "RAG_APP_RERANK_MODEL", max_length: int = 256,
                 batch_size: int = 32, device: str = "cpu", allow_hub: bool = False) -> None:
        self.location = location
        self.setting = setting
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.allow_hub = allow_hub
        self._model: CrossEncoder | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.location

    def warm_up(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            ensure_offline_default(self.allow_hub)
            from sentence_transformers import CrossEncoder

            try:
                self._model = CrossEncoder(self.location, device=self.device, max_length=self.max_length)
            except Exception as exc:
                raise ModelNotFoundError(
                    f"{self.setting}={self.location!r}: could not load a cross-encoder ({exc})"
                ) from exc

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        self.warm_up()
        assert self._model is not None
        scores: Any = self._model.predict(
            [(query, p) for p in passages], batch_size=self.batch_size, show_progress_bar=False
        )
        return [float(s) for s in np.asarray(scores).reshape(-1)]
