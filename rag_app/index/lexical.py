"""BM25 over passages with bm25s (English stemmer and stopwords), mapped to passage vids."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)


def _bm25s() -> Any:
    """Import bm25s lazily; it sets its own logger to DEBUG on import, which we undo."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s

IdArray = npt.NDArray[np.int64]


def _stemmer() -> Any:
    try:
        import Stemmer

        return Stemmer.Stemmer("english")
    except ImportError:  # pragma: no cover - PyStemmer is a declared dependency
        logger.warning("PyStemmer missing: BM25 runs without stemming (pip install PyStemmer)")
        return None


class LexicalIndex:
    """bm25s has no add/delete: it is rebuilt on change; deleted rows are masked until then."""

    def __init__(self, retriever: object | None, vids: IdArray, params: dict[str, object]) -> None:
        self._retriever = retriever
        self.vids = np.asarray(vids, dtype=np.int64)
        self.params = params
        self._stem = _stemmer()
        self._mask: npt.NDArray[np.float32] | None = None

    @classmethod
    def build(cls, texts: Sequence[str], vids: Sequence[int], k1: float = 1.5, b: float = 0.75,
              method: str = "lucene") -> LexicalIndex:
        bm25s = _bm25s()
        params: dict[str, object] = {"k1": k1, "b": b, "method": method, "stemmer": "english", "stopwords": "en"}
        if not texts:
            return cls(None, np.zeros(0, dtype=np.int64), params)
        stem = _stemmer()
        tokens = bm25s.tokenize(list(texts), stopwords="en", stemmer=stem, show_progress=False)
        retriever = bm25s.BM25(k1=k1, b=b, method=method)
        retriever.index(tokens, show_progress=False)
        return cls(retriever, np.asarray(vids, dtype=np.int64), params)

    @property
    def size(self) -> int:
        return len(self.vids)

    def set_deleted(self, deleted: Collection[int] | npt.NDArray[np.int64]) -> None:
        """Soft-delete rows (bm25s `weight_mask`) so deletes are instant between rebuilds."""
        gone = np.fromiter((int(v) for v in deleted), dtype=np.int64) if not isinstance(deleted, np.ndarray) \
            else deleted
        if not len(gone):
            self._mask = None
            return
        self._mask = np.where(np.isin(self.vids, gone), 0.0, 1.0).astype(np.float32)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """(vid, score) best first; zero-score hits (no query term matched) are dropped."""
        bm25s = _bm25s()
        if self._retriever is None or k <= 0:
            return []
        tokens = bm25s.tokenize([query], stopwords="en", stemmer=self._stem, show_progress=False, return_ids=False)
        if not tokens or not tokens[0]:
            return []
        k = min(k, self.size)
        kwargs: dict[str, object] = {"k": k, "show_progress": False, "n_threads": 1}
        if self._mask is not None:
            kwargs["weight_mask"] = self._mask
        docs, scores = self._retriever.retrieve(tokens, **kwargs)  # type: ignore[attr-defined]
        out = []
        for row, score in zip(docs[0], scores[0], strict=True):
            if score > 0:
                out.append((int(self.vids[int(row)]), float(score)))
        return out

    def save(self, directory: Path) -> None:
        tmp = directory.with_name(directory.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        if self._retriever is not None:
            self._retriever.save(str(tmp / "bm25"))  # type: ignore[attr-defined]
        np.save(tmp / "vids.npy", self.vids)
        (tmp / "params.json").write_text(json.dumps(self.params))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        bm25s = _bm25s()
        vids = np.load(directory / "vids.npy")
        params = json.loads((directory / "params.json").read_text())
        retriever = bm25s.BM25.load(str(directory / "bm25")) if (directory / "bm25").exists() else None
        return cls(retriever, vids, params)
