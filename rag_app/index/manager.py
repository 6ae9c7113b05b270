"""Index snapshots derived from the store, and the versioned rebuilds that keep them current.

A snapshot is immutable: the dense main index from the current version, a small exact "hot"
set for passages added since that index was built, the ids deleted since (excluded), and the same
main + hot structure for BM25 (hot passages scored with the main index's statistics). Both main
indexes are rebuilt together, so an ingest that fits in the hot set rebuilds neither.
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
from rag_app.index.lexical import LexicalIndex, LexicalSnapshot, tokenize_docs
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
    lexical: LexicalSnapshot
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
        """Main BM25 (minus deletions) merged with the hot lexical set, best first."""
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

    def _open(self, previous: IndexSnapshot | None = None, dense: DenseIndex | None = None,
              lexical: LexicalIndex | None = None) -> IndexSnapshot | None:
        """Snapshot of the current version. `previous` lends its hot-passage tokens; `dense` and
        `lexical` are main indexes already in memory whose files this version hard-linked."""
        current = self.versions.current()
        if current is None:
            if self.store.counts()["passages"]:
                return self.refresh()
            return None
        manifest = Manifest.load(current)
        manifest.check_model(self.encoder.name)
        if previous is None:
            previous = self._snapshot
        if previous is not None and previous.manifest.version == manifest.version:
            dense, lexical = previous.dense, previous.lexical.main
        if dense is None:
            dense = DenseIndex.load(current / DENSE_FILE, manifest.index_type, manifest.dim, self.index_config)
        if lexical is None:
            lexical = LexicalIndex.load(current / LEXICAL_DIR)
        generation = self.store.generation
        # Sorted-array set algebra: this runs after every ingest and delete (100k passages: milliseconds).
        live = self.store.all_vids()
        dense_ids = dense.ids()
        # Passages the main BM25 index lacks are its hot set (added since it was built, or committed
        # by a run that crashed before publishing): scored exactly, on the main index's scale.
        hot_lexical = np.setdiff1d(live, lexical.vids)
        if len(hot_lexical) and lexical.stats is None:
            # A BM25 folder without corpus statistics (written before hot BM25 existed) cannot score
            # hot passages on its scale: rebuild it (refresh does, when the statistics are missing).
            logger.info("BM25 index has no statistics for %d new passages; rebuilding it", len(hot_lexical))
            return self.refresh()
        hot = np.setdiff1d(live, dense_ids)
        hot_matrix, missing = self.store.get_embeddings(manifest.embed_model, hot.tolist(), manifest.dim)
        if missing:
            logger.info("%d passages have no cached embedding; refreshing", len(missing))
            return self.refresh()
        # Hot passages are immutable per vid (the id hashes the text), so their tokens carry over.
        known = previous.lexical.hot.docs if previous is not None else {}
        hot_docs = {v: known[v] for v in hot_lexical.tolist() if v in known}
        todo = [v for v in hot_lexical.tolist() if v not in hot_docs]
        if todo:
            # A passage deleted since `all_vids` is simply absent here: it is not searchable anyway.
            texts = {vid: p.index_text() for vid, p in self.store.passages_by_vid(todo).items()}
            hot_docs.update(tokenize_docs(texts))
        lexical_snap = lexical.with_hot(hot_docs, np.setdiff1d(lexical.vids, live),
                                        previous.lexical if previous is not None else None)
        return IndexSnapshot(
            manifest=manifest, dense=dense, hot_vids=hot, hot_matrix=hot_matrix,
            deleted=frozenset(np.setdiff1d(dense_ids, live).tolist()), lexical=lexical_snap,
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
        """Publish a new version matching the store. The main dense and BM25 indexes are rebuilt
        only when asked, when the model changed, or when the hot set (or the deletions) outgrew
        `hot_max`; otherwise the new version hard-links the previous files and new passages are hot."""
        with self._lock:
            self.ensure_embeddings(progress)
            generation = self.store.generation
            model = self.encoder.name
            dim = self.encoder.dimension
            current = self.versions.current()
            old = Manifest.load(current) if current else None
            vids = self.store.all_vids()
            rebuild_dense = full or old is None or old.embed_model != model or old.dim != dim
            snap = self._snapshot
            loaded: DenseIndex | None = None
            if not rebuild_dense and current is not None and old is not None:
                loaded = (snap.dense if snap is not None and snap.manifest.version == old.version
                          else DenseIndex.load(current / DENSE_FILE, old.index_type, dim, self.index_config))
                if self._outgrew(vids, loaded.ids()):
                    rebuild_dense = True
            old_lexical = None if rebuild_dense or current is None or old is None else \
                self._reusable_lexical(current, old, vids)
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
                if old_lexical is None:
                    if progress:
                        progress("bm25 index", 0, len(vids))
                    # Over the same passages as the dense main index, so both have the same hot set.
                    wanted = set(vids.tolist())
                    passages = [p for p in self.store.iter_passages() if p.vid in wanted]
                    lexical = LexicalIndex.build([p.index_text() for p in passages], [p.vid for p in passages])
                    lexical.save(target / LEXICAL_DIR)
                else:
                    assert current is not None
                    LexicalIndex.link(current / LEXICAL_DIR, target / LEXICAL_DIR)
                    lexical = old_lexical
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
            # Linked files are the very indexes already in memory: hand them over instead of reloading.
            return self._open_after_publish(
                previous=snap, dense=None if rebuild_dense else loaded, lexical=old_lexical)

    def _outgrew(self, live: IdArray, main_ids: IdArray) -> bool:
        """Whether a main index is too far from the store: more new or deleted passages than `hot_max`."""
        return bool(len(np.setdiff1d(live, main_ids)) > self.hot_max
                    or len(np.setdiff1d(main_ids, live)) > self.hot_max)

    def _reusable_lexical(self, current: Path, old: Manifest, live: IdArray) -> LexicalIndex | None:
        """The current main BM25 index if the next version can link it; None means rebuild it (its
        folder is unreadable, has no statistics to score hot passages with, or is too far behind)."""
        snap = self._snapshot
        if snap is not None and snap.manifest.version == old.version:
            lexical = snap.lexical.main
        else:
            try:
                lexical = LexicalIndex.load(current / LEXICAL_DIR)
            except Exception as exc:  # noqa: BLE001 - a broken folder is rebuilt, not propagated
                logger.warning("BM25 index in %s is unreadable (%s); rebuilding it", current.name, exc)
                return None
        if lexical.stats is None or self._outgrew(live, lexical.vids):
            return None
        return lexical

    def _open_after_publish(self, previous: IndexSnapshot | None = None, dense: DenseIndex | None = None,
                            lexical: LexicalIndex | None = None) -> IndexSnapshot:
        snap = self._open(previous, dense, lexical)
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
                lexical = LexicalIndex.load(current / LEXICAL_DIR)  # raises if its parts disagree
                dense_ids = set(dense.ids().tolist())
                bm25_ids = set(lexical.vids.tolist())
                hot = live - dense_ids
                bm25_hot = live - bm25_ids
                _, missing = self.store.get_embeddings(manifest.embed_model, sorted(hot), manifest.dim)
                counts.update(dense=len(dense_ids), hot=len(hot), deleted_pending=len(dense_ids - live),
                              bm25=len(bm25_ids), bm25_hot=len(bm25_hot))
                if missing:
                    problems.append(f"{len(missing)} new passages have no embedding for {manifest.embed_model}")
                # Passages the main BM25 index lacks are its hot set, scored with its statistics;
                # they are only missing if those statistics are not there.
                if bm25_hot and lexical.stats is None:
                    problems.append(f"{len(bm25_hot)} passages are missing from the BM25 index "
                                    "(it has no statistics to score them as hot passages)")
                # Both main indexes are built over the same passages (BM25 alone may be newer), so a
                # live passage of the dense main index that BM25 lacks means a damaged BM25 folder.
                if (dense_ids & live) - bm25_ids:
                    problems.append(f"{len((dense_ids & live) - bm25_ids)} passages of the dense index are "
                                    "missing from the BM25 index")
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
