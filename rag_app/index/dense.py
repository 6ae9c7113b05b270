"""FAISS inner-product index, ID-mapped to passage vids: Flat (exact), HNSW or IVF-PQ.

HNSW cannot remove vectors, so deleted ids are excluded at search time (`exclude`) until the
next rebuild; the set of deleted ids is derived from the store, never kept here.

IVF-PQ is the low-memory option: its 48-byte codes alone lose too much (recall@10 0.30 at 1M synthetic
vectors), so it is wrapped in `IndexRefineFlat`, which re-scores `k_factor x k` PQ candidates with the
exact vectors, and a saved IVF-PQ index is opened with those exact vectors memory-mapped
(`IO_FLAG_MMAP_IFC`): they stay in the file and the page cache, only the pages a query touches are read,
and the kernel can drop them under memory pressure. A published index is never modified after loading
(versions are immutable; updates go to the hot set), which is what makes the read-only mapping safe.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

from rag_app.config import IndexConfig

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]


@contextmanager
def single_query_threads(n_queries: int) -> Iterator[None]:
    """One OpenMP thread for a one-query search, restored after.

    On 2 cores, splitting a single query across faiss's OpenMP threads costs more than it saves: a Flat
    search over 100k vectors takes 8.6 ms on one thread and 21 ms on two, HNSW 0.7 vs 1.0 ms
    (benchmarks/scale.py). Batches (evaluation, ANN recall) keep all threads. omp_set_num_threads sets the
    calling thread's ICV only, so concurrent sessions and background builds are not affected.
    """
    if n_queries != 1:
        yield
        return
    before = faiss.omp_get_max_threads()
    if before == 1:
        yield
        return
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def choose_kind(config: IndexConfig, n_vectors: int) -> str:
    """`auto` keeps exact search until the corpus is large enough for ANN to pay off."""
    if config.index_type != "auto":
        return config.index_type
    return "flat" if n_vectors < config.ann_threshold else "hnsw"


def _pq_m(dim: int, wanted: int) -> int:
    for m in range(min(wanted, dim), 0, -1):
        if dim % m == 0:
            return m
    return 1


class DenseIndex:
    def __init__(self, index: faiss.Index, kind: str, dim: int, config: IndexConfig) -> None:
        self.index = index
        self.kind = kind
        self.dim = dim
        self.config = config

    @classmethod
    def build(
        cls, vectors: FloatArray, ids: IdArray, config: IndexConfig, dim: int, kind: str | None = None
    ) -> DenseIndex:
        kind = kind or choose_kind(config, len(ids))
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        base: faiss.Index
        if kind == "flat":
            base = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            base = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = config.hnsw_ef_construction
            base.hnsw.efSearch = config.hnsw_ef_search
        elif kind == "ivfpq":
            n = len(ids)
            nlist = config.ivf_nlist or max(1, min(4096, int(4 * np.sqrt(max(n, 1)))))
            nlist = max(1, min(nlist, n // 39 if n >= 39 else 1))
            quantizer = faiss.IndexFlatIP(dim)
            base = faiss.IndexIVFPQ(quantizer, dim, nlist, _pq_m(dim, config.pq_m), 8, faiss.METRIC_INNER_PRODUCT)
            if n < 256:
                raise ValueError(
                    f"RAG_APP_INDEX_TYPE=ivfpq needs at least 256 passages to train (have {n}); use flat or auto"
                )
            base.train(vectors)
            base.nprobe = config.ivf_nprobe
            base = faiss.IndexRefineFlat(base)
            base.k_factor = float(config.ivf_refine)
        else:
            raise ValueError(f"RAG_APP_INDEX_TYPE={kind!r} is not one of auto, flat, hnsw, ivfpq")
        index = faiss.IndexIDMap2(base)
        if len(ids):
            index.add_with_ids(vectors, ids)
        return cls(index, kind, dim, config)

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> IdArray:
        return np.asarray(faiss.vector_to_array(self.index.id_map), dtype=np.int64)  # type: ignore[attr-defined]

    def add(self, vectors: FloatArray, ids: IdArray) -> None:
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: Iterable[int]) -> None:
        """Real removal (Flat); HNSW and refined IVF-PQ cannot remove, callers exclude or rebuild instead."""
        wanted = np.fromiter((int(i) for i in ids), dtype=np.int64)
        if not len(wanted):
            return
        if self.kind in ("hnsw", "ivfpq"):
            raise NotImplementedError(f"{self.kind} cannot remove vectors; exclude them at search time or rebuild")
        self.index.remove_ids(faiss.IDSelectorBatch(wanted))

    def search(
        self, queries: FloatArray, k: int, exclude: frozenset[int] | set[int] = frozenset()
    ) -> tuple[FloatArray, IdArray]:
        """Top-k (scores, ids) per query, skipping `exclude`; missing slots have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if self.index.ntotal == 0 or k <= 0:
            return (np.zeros((len(queries), 0), dtype=np.float32), np.zeros((len(queries), 0), dtype=np.int64))
        fetch = min(k + len(exclude), int(self.index.ntotal))
        with single_query_threads(len(queries)):
            scores, ids = self.index.search(queries, fetch)
        if not exclude:
            return scores[:, :k], ids[:, :k]
        out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_i = np.full((len(queries), k), -1, dtype=np.int64)
        for row in range(len(queries)):
            keep = [j for j, i in enumerate(ids[row]) if i >= 0 and int(i) not in exclude][:k]
            out_s[row, : len(keep)] = scores[row, keep]
            out_i[row, : len(keep)] = ids[row, keep]
        return out_s, out_i

    def reconstruct(self, ids: IdArray) -> FloatArray:
        return np.stack([self.index.reconstruct(int(i)) for i in ids]).astype(np.float32)

    def save(self, path: Path) -> None:
        """Write to a temporary name, then rename: a crash never leaves a half-written index."""
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self.index, str(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, kind: str, dim: int, config: IndexConfig) -> DenseIndex:
        # IVF-PQ's exact vectors (the refine stage) stay on disk; see the module docstring.
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if kind == "ivfpq" else 0)
        inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
        if kind == "hnsw" and hasattr(inner, "hnsw"):
            inner.hnsw.efSearch = config.hnsw_ef_search
        if kind == "ivfpq":
            if isinstance(inner, faiss.IndexRefine):
                inner.k_factor = float(config.ivf_refine)
                inner = faiss.downcast_index(inner.base_index)
            if hasattr(inner, "nprobe"):
                inner.nprobe = config.ivf_nprobe
        return cls(index, kind, dim, config)


def exact_search(matrix: FloatArray, ids: IdArray, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
    """Brute-force inner product: the reference for ANN recall and the search over the hot set."""
    if len(ids) == 0 or k <= 0:
        return np.zeros((len(queries), 0), dtype=np.float32), np.zeros((len(queries), 0), dtype=np.int64)
    sims = queries @ matrix.T
    k = min(k, len(ids))
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    rows = np.arange(len(queries))[:, None]
    order = np.argsort(-sims[rows, top], axis=1, kind="stable")
    top = top[rows, order]
    return sims[rows, top].astype(np.float32), ids[top]
