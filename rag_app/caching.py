"""Query-time cache of query embeddings: an LRU keyed by (model, prefix, text).

Search results are already cached per store generation (`RagPipeline.search`); this cache sits one
level lower, so the same question asked in another mode, with another `k`, other fusion settings or
after an ingest (new generation) does not pay for encoding again. Vectors depend only on the model
and the exact text it sees, so entries never go stale: a different model (or a retrained one at a new
path, or another backend) is a different key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
Key = tuple[str, str, str]


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    size: int
    max_size: int

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class QueryEmbeddingCache:
    """Thread-safe LRU of normalised query vectors; `max_size=0` disables it.

    Stored vectors are read-only copies, so a caller cannot corrupt a cached entry in place.
    """

    def __init__(self, max_size: int = 1024) -> None:
        if max_size < 0:
            raise ValueError(f"max_size must be >= 0, got {max_size}")
        self.max_size = max_size
        self._data: OrderedDict[Key, FloatArray] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, model: str, prefix: str, text: str) -> FloatArray | None:
        key = (model, prefix, text)
        with self._lock:
            vec = self._data.get(key)
            if vec is None:
                self._misses += 1
                return None
            self._data.move_to_end(key)
            self._hits += 1
            return vec

    def put(self, model: str, prefix: str, text: str, vector: FloatArray) -> None:
        if self.max_size == 0:
            return
        vec = np.array(vector, dtype=np.float32, copy=True).reshape(-1)
        vec.flags.writeable = False
        with self._lock:
            self._data[(model, prefix, text)] = vec
            self._data.move_to_end((model, prefix, text))
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)

    def encode(self, model: str, prefix: str, texts: Sequence[str],
               compute: Callable[[list[str]], FloatArray]) -> FloatArray:
        """Vectors for `texts` (rows in order): cached ones reused, the others computed in one call
        to `compute` (which receives the texts without the prefix) and cached."""
        rows: list[FloatArray | None] = [self.get(model, prefix, t) for t in texts]
        todo = sorted({t for t, r in zip(texts, rows, strict=True) if r is None})
        if todo:
            computed = np.asarray(compute(todo), dtype=np.float32)
            if computed.shape[0] != len(todo):
                raise ValueError(f"compute returned {computed.shape[0]} vectors for {len(todo)} texts")
            fresh = dict(zip(todo, computed, strict=True))
            for text, vec in fresh.items():
                self.put(model, prefix, text, vec)
            rows = [r if r is not None else fresh[t] for t, r in zip(texts, rows, strict=True)]
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([np.asarray(r, dtype=np.float32) for r in rows])

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._hits = self._misses = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._data), self.max_size)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)
