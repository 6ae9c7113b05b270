"""Index snapshots derived from the store, and the versioned rebuilds that keep them current.

A snapshot is immutable: the dense main index from the current version, a small exact "hot"
set for passages added since that index was built, the ids deleted since (excluded), and BM25.
Readers hold a snapshot; a refresh builds a new one and swaps the reference, so a query never
sees a half-updated index.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rag_app.config import ChunkingConfig, IndexConfig
from rag_app.encoders import BiEncoder
from rag_app.index.dense import DenseIndex, exact_search
from rag_app.index.lexical import LexicalIndex
from rag_app.index.manifest import IndexMismatchError, Manifest
from rag_app.index.versions import IndexVersions
from rag_app.store import Store, now_iso

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]
Progress = Callable[[str, int, int], None]

DENSE_FILE = "dense.faiss"
LEXICAL_DIR = "bm25"


@dataclass(frozen=True)
class CheckReport:
    ok: bool
    problems: tuple[str, ...]
    repaired: bool
    counts: dict[str, int]


@dataclass(frozen=True)
class IndexSnapshot:
    manifest: Manifest
    dense: DenseIndex
    hot_vids: IdArray
    hot_matrix: FloatArray
    deleted: frozenset[int]
    lexical: LexicalIndex
    store_generation: int

    @property
    def n_passages(self) -> int:
        return self.dense.size - len(self.deleted) + len(self.hot_vids)

    def dense_search(self, queries: FloatArray, k: int) -> list[list[tuple[int, float]]]:
        """Main index (minus deletions) merged with the exact hot set, best first."""
        m_scores, m_ids = self.dense.search(queries, k, self.deleted)
        h_scores, h_ids = exact_search(self.hot_matrix, self.hot_vids, queries, k)
        out = []
        for row in range(len(queries)):
            pairs = [(int(i), float(s)) for i, s in zip(m_ids[row], m_scores[row], strict=True) if i >= 0]
            pairs += [(int(i), float(s)) for i, s in zip(h_ids[row], h_scores[row], strict=True)]
            pairs.sort(key=lambda p: -p[1])
            out.append(pairs[:k])
        return out

    def exact_dense_search(self, store: Store, queries: FloatArray, k: int) -> list[list[tuple[int, float]]]:
        """Brute force over every live vector: the reference for ANN recall."""
        vids = store.all_vids()
        matrix, _missing = store.get_embeddings(self.manifest.embed_model, list(vids), self.manifest.dim)
        scores, ids = exact_search(matrix, vids, queries, k)
        return [[(int(i), float(s)) for i, s in zip(ids[r], scores[r], strict=True)] for r in range(len(queries))]

    def bm25_search(self, query: str, k: int) -> list[tuple[int, float]]:
        return self.lexical.search(query, k)


class IndexManager:
    """Builds, refreshes and opens index versions under `root` for one store and encoder."""

    def __init__(
        self,
        root: Path,
        store: Store,
        encoder: BiEncoder,
        index_config: IndexConfig,
        chunking: ChunkingConfig,
        hot_max: int = 5000,
    ) -> None:
        self.versions = IndexVersions(root)
        self.store = store
        self.encoder = encoder
        self.index_config = index_config
        self.chunking = chunking
        self.hot_max = hot_max
        self._snapshot: IndexSnapshot | None = None
        self._lock = threading.RLock()

    # ---- reading ------------------------------------------------------------------------
    def snapshot(self) -> IndexSnapshot | None:
        """The live snapshot, loaded on first use and refreshed when the store moved on.

        While another thread is building a new version, readers keep the previous snapshot
        instead of waiting (its passages that were deleted meanwhile are simply not found).
        """
        snap = self._snapshot
        if snap is not None and snap.store_generation == self.store.generation:
            return snap
        if snap is not None and not self._lock.acquire(blocking=False):
            return snap
        if snap is None:
            self._lock.acquire()
        try:
            snap = self._snapshot
            if snap is not None and snap.store_generation == self.store.generation:
                return snap
            self._snapshot = self._open()
            return self._snapshot
        finally:
            self._lock.release()

    def manifest(self) -> Manifest | None:
        current = self.versions.current()
        return Manifest.load(current) if current else None

    def _open(self) -> IndexSnapshot | None:
        current = self.versions.current()
        if current is None:
            if self.store.counts()["passages"]:
                return self.refresh()
            return None
        manifest = Manifest.load(current)
        manifest.check_model(self.encoder.name)
        previous = self._snapshot
        if previous is not None and previous.manifest.version == manifest.version:
            dense, lexical = previous.dense, previous.lexical
        else:
            dense = DenseIndex.load(current / DENSE_FILE, manifest.index_type, manifest.dim, self.index_config)
            lexical = LexicalIndex.load(current / LEXICAL_DIR)
        generation = self.store.generation
        # Sorted-array set algebra: this runs after every ingest and delete (100k passages: milliseconds).
        live = self.store.all_vids()
        dense_ids = dense.ids()
        if len(np.setdiff1d(live, lexical.vids)):
            # BM25 is behind the store (a crash between store commit and publish): rebuild now.
            logger.info("BM25 index is behind the store; rebuilding it")
            return self.refresh()
        lexical.set_deleted(np.setdiff1d(lexical.vids, live))
        hot = np.setdiff1d(live, dense_ids)
        hot_matrix, missing = self.store.get_embeddings(manifest.embed_model, hot.tolist(), manifest.dim)
        if missing:
            logger.info("%d passages have no cached embedding; refreshing", len(missing))
            return self.refresh()
        return IndexSnapshot(
            manifest=manifest, dense=dense, hot_vids=hot, hot_matrix=hot_matrix,
            deleted=frozenset(np.setdiff1d(dense_ids, live).tolist()), lexical=lexical,
            store_generation=generation,
        )

    # ---- writing ------------------------------------------------------------------------
    def ensure_embeddings(self, progress: Progress | None = None) -> int:
        """Encode every stored passage that has no cached vector for the current model."""
        model = self.encoder.name
        dim = self.encoder.dimension
        vids = self.store.all_vids()
        _, missing = self.store.get_embeddings(model, list(vids), dim)
        if not missing:
            return 0
        wanted = [int(vids[i]) for i in missing]
        passages = self.store.passages_by_vid(wanted)
        done = 0
        for start in range(0, len(wanted), 512):
            chunk = [passages[v] for v in wanted[start : start + 512] if v in passages]
            vectors = self.encoder.encode_passages([p.index_text() for p in chunk])
            self.store.put_embeddings(model, [p.vid for p in chunk], vectors)
            done += len(chunk)
            if progress:
                progress("encode", done, len(wanted))
        return len(wanted)

    def refresh(self, full: bool = False, progress: Progress | None = None,
                provenance: dict[str, object] | None = None) -> IndexSnapshot:
        """Publish a new version matching the store. The dense index is rebuilt only when asked,
        when the model changed, or when the hot set outgrew `hot_max`; BM25 is always rebuilt."""
        with self._lock:
            self.ensure_embeddings(progress)
            generation = self.store.generation
            model = self.encoder.name
            dim = self.encoder.dimension
            current = self.versions.current()
            old = Manifest.load(current) if current else None
            vids = self.store.all_vids()
            rebuild_dense = full or old is None or old.embed_model != model or old.dim != dim
            if not rebuild_dense and current is not None and old is not None:
                snap = self._snapshot
                loaded = (snap.dense if snap is not None and snap.manifest.version == old.version
                          else DenseIndex.load(current / DENSE_FILE, old.index_type, dim, self.index_config))
                dense_ids = set(loaded.ids().tolist())
                live = set(vids.tolist())
                if len(live - dense_ids) > self.hot_max or len(dense_ids - live) > self.hot_max:
                    rebuild_dense = True
            target = self.versions.new_dir()
            try:
                if rebuild_dense:
                    matrix, _ = self.store.get_embeddings(model, list(vids), dim)
                    if progress:
                        progress("dense index", 0, len(vids))
                    dense = DenseIndex.build(matrix, vids, self.index_config, dim)
                    dense.save(target / DENSE_FILE)
                    kind = dense.kind
                    dense_count = dense.size
                else:
                    assert current is not None and old is not None
                    os.link(current / DENSE_FILE, target / DENSE_FILE)
                    kind = old.index_type
                    dense_count = old.dense_count
                if progress:
                    progress("bm25 index", 0, len(vids))
                passages = list(self.store.iter_passages())
                lexical = LexicalIndex.build([p.index_text() for p in passages], [p.vid for p in passages])
                lexical.save(target / LEXICAL_DIR)
                manifest = Manifest(
                    version=target.name, embed_model=model,
                    embed_location=self.encoder.resolved().location, dim=dim, index_type=kind,
                    chunking=asdict(self.chunking), dense_count=dense_count, bm25_count=lexical.size,
                    store_generation=generation, created_at=now_iso(),
                    provenance=dict(provenance or (old.provenance if old and old.embed_model == model else {})),
                )
                manifest.save(target)
                self.versions.publish(target)
            except BaseException:
                import shutil

                shutil.rmtree(target, ignore_errors=True)
                raise
            self._snapshot = None
            snap = self._open_after_publish()
            return snap

    def _open_after_publish(self) -> IndexSnapshot:
        snap = self._open()
        if snap is None:  # pragma: no cover - a version was just published
            raise IndexMismatchError("index vanished right after publishing")
        self._snapshot = snap
        return snap

    def check(self, repair: bool = False) -> CheckReport:
        """Verify that store and indexes agree; with `repair`, rebuild everything from the store."""
        problems: list[str] = []
        conn_ok = self.store.integrity_ok()
        if not conn_ok:
            problems.append("SQLite integrity check failed (restore store.sqlite from a backup)")
        bad_offsets = self.store.bad_offsets()
        if bad_offsets:
            problems.append(f"{len(bad_offsets)} passages do not match their document text: {bad_offsets[:5]}")
        current = self.versions.current()
        live = set(self.store.all_vids().tolist())
        counts = {"store_passages": len(live)}
        if current is None:
            if live:
                problems.append("no index version published, but the store has passages")
        else:
            try:
                manifest = Manifest.load(current)
                manifest.check_model(self.encoder.name)
                dense = DenseIndex.load(current / DENSE_FILE, manifest.index_type, manifest.dim, self.index_config)
                lexical = LexicalIndex.load(current / LEXICAL_DIR)
                dense_ids = set(dense.ids().tolist())
                bm25_ids = set(lexical.vids.tolist())
                hot = live - dense_ids
                _, missing = self.store.get_embeddings(manifest.embed_model, sorted(hot), manifest.dim)
                counts.update(dense=len(dense_ids), hot=len(hot), deleted_pending=len(dense_ids - live),
                              bm25=len(bm25_ids))
                if missing:
                    problems.append(f"{len(missing)} new passages have no embedding for {manifest.embed_model}")
                if live - bm25_ids:
                    problems.append(f"{len(live - bm25_ids)} passages are missing from the BM25 index")
                if len(dense_ids) != dense.size:
                    problems.append("the dense index holds duplicate ids")
            except Exception as exc:  # noqa: BLE001 - any unreadable part is a problem to report
                problems.append(f"index {current.name} is unusable: {exc}")
        repaired = False
        if repair and problems and conn_ok and not bad_offsets:
            self.refresh(full=True)
            repaired = True
        return CheckReport(ok=not problems, problems=tuple(problems), repaired=repaired, counts=counts)

    def sizes(self) -> dict[str, int]:
        current = self.versions.current()
        if current is None:
            return {}
        dense = current / DENSE_FILE
        bm25 = sum(f.stat().st_size for f in (current / LEXICAL_DIR).rglob("*") if f.is_file())
        return {"dense_bytes": dense.stat().st_size if dense.exists() else 0, "bm25_bytes": bm25}
