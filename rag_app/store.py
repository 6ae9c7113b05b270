"""SQLite (WAL) store: documents, pages, passages and cached embeddings; the source of truth.

Indexes are derived data and can always be rebuilt from here. Every change bumps a
`generation` counter so an index can tell whether it is behind the store.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rag_app.types import Document, Passage

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    format TEXT NOT NULL,
    content_hash TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL DEFAULT '',
    external_id TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL,
    n_pages INTEGER NOT NULL,
    added_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_source ON documents(source);
CREATE INDEX IF NOT EXISTS documents_external ON documents(external_id);
CREATE TABLE IF NOT EXISTS pages (
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    label TEXT NOT NULL,
    char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL,
    PRIMARY KEY (doc_id, ordinal)
);
CREATE TABLE IF NOT EXISTS passages (
    vid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL,
    page_label TEXT NOT NULL DEFAULT '',
    heading TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS passages_doc ON passages(doc_id);
CREATE TABLE IF NOT EXISTS embeddings (
    model TEXT NOT NULL,
    vid INTEGER NOT NULL REFERENCES passages(vid) ON DELETE CASCADE,
    vec BLOB NOT NULL,
    PRIMARY KEY (model, vid)
);
-- Deleting a passage cascades here by vid alone: without this index every deleted passage scanned the
-- whole table (a 6-passage document took ~750 ms to delete at 100k passages).
CREATE INDEX IF NOT EXISTS embeddings_vid ON embeddings(vid);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def passage_ids(doc_id: str, char_start: int, char_end: int, text: str) -> tuple[str, int]:
    """Content-derived id and its 63-bit integer form (the FAISS id)."""
    digest = hashlib.sha256(f"{doc_id}:{char_start}:{char_end}:{text}".encode()).hexdigest()[:16]
    return digest, int(digest, 16) >> 1


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class PageSpan:
    label: str
    char_start: int
    char_end: int


@dataclass(frozen=True)
class NewDocument:
    """Everything needed to insert a document in one transaction."""

    document: Document
    text: str
    pages: tuple[PageSpan, ...]
    passages: tuple[Passage, ...]


class Store:
    """Owns all persistence of documents and passages. One connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        with self._conn() as conn:
            conn.executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that bumps the generation; all or nothing."""
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES('generation', '1') "
                    "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # ---- writes -------------------------------------------------------------------------
    def add_document(
        self,
        new: NewDocument,
        embeddings: tuple[str, npt.NDArray[np.float32]] | None = None,
        replace_doc_ids: Sequence[str] = (),
    ) -> None:
        """Insert a document, its pages, passages and (optionally) their embeddings atomically.

        `replace_doc_ids` are deleted in the same transaction (an updated file replaces its old
        version without a window where neither or both exist).
        """
        doc = new.document
        with self.transaction() as conn:
            for old in replace_doc_ids:
                conn.execute("DELETE FROM documents WHERE id = ?", (old,))
            conn.execute(
                "INSERT INTO documents(id, name, source, format, content_hash, title, external_id, text,"
                " n_pages, added_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (doc.id, doc.name, doc.source, doc.format, doc.content_hash, doc.title, doc.external_id,
                 new.text, doc.n_pages, doc.added_at),
            )
            conn.executemany(
                "INSERT INTO pages(doc_id, ordinal, label, char_start, char_end) VALUES (?,?,?,?,?)",
                [(doc.id, i, p.label, p.char_start, p.char_end) for i, p in enumerate(new.pages)],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO passages(vid, id, doc_id, ordinal, text, char_start, char_end,"
                " page_label, heading) VALUES (?,?,?,?,?,?,?,?,?)",
                [(p.vid, p.id, doc.id, p.ordinal, p.text, p.char_start, p.char_end, p.page_label, p.heading)
                 for p in new.passages],
            )
            if embeddings is not None:
                model, vectors = embeddings
                conn.executemany(
                    "INSERT OR REPLACE INTO embeddings(model, vid, vec) VALUES (?,?,?)",
                    [(model, p.vid, np.asarray(v, dtype=np.float32).tobytes())
                     for p, v in zip(new.passages, vectors, strict=True)],
                )

    def delete_document(self, doc_id: str) -> list[int]:
        """Delete a document with its passages and embeddings; returns the removed passage vids."""
        with self.transaction() as conn:
            vids = [int(r[0]) for r in conn.execute("SELECT vid FROM passages WHERE doc_id = ?", (doc_id,))]
            conn.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
        return vids

    def put_embeddings(self, model: str, vids: Sequence[int], vectors: npt.NDArray[np.float32]) -> None:
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR REPLACE INTO embeddings(model, vid, vec) VALUES (?,?,?)",
                    [(model, int(v), np.asarray(x, dtype=np.float32).tobytes())
                     for v, x in zip(vids, vectors, strict=True)],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # ---- reads --------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        row = self._conn().execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def _doc(self, row: sqlite3.Row, n_passages: int) -> Document:
        return Document(
            id=row["id"], name=row["name"], source=row["source"], format=row["format"],
            content_hash=row["content_hash"], n_pages=row["n_pages"], n_passages=n_passages,
            added_at=row["added_at"], title=row["title"], external_id=row["external_id"],
        )

    def list_documents(self) -> list[Document]:
        rows = self._conn().execute(
            "SELECT d.id, d.name, d.source, d.format, d.content_hash, d.title, d.external_id, d.n_pages,"
            " d.added_at, (SELECT COUNT(*) FROM passages p WHERE p.doc_id = d.id) AS n"
            " FROM documents d ORDER BY d.added_at, d.name"
        ).fetchall()
        return [self._doc(r, int(r["n"])) for r in rows]

    def find_documents(self, key: str) -> list[Document]:
        """Documents whose id (or id prefix), name, source or external id equals `key`."""
        return [
            d for d in self.list_documents()
            if key in (d.name, d.source, d.external_id) or (len(key) >= 6 and d.id.startswith(key))
        ]

    def document_by_hash(self, digest: str) -> Document | None:
        return next((d for d in self.list_documents() if d.content_hash == digest), None) if digest else None

    def has_hash(self, digest: str) -> bool:
        row = self._conn().execute("SELECT 1 FROM documents WHERE content_hash = ?", (digest,)).fetchone()
        return row is not None

    def documents_by_source(self, source: str) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT id FROM documents WHERE source = ?", (source,))]

    def document_text(self, doc_id: str) -> str:
        row = self._conn().execute("SELECT text FROM documents WHERE id = ?", (doc_id,)).fetchone()
        if row is None:
            raise KeyError(doc_id)
        return str(row[0])

    def counts(self) -> dict[str, int]:
        conn = self._conn()
        return {
            "documents": int(conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]),
            "passages": int(conn.execute("SELECT COUNT(*) FROM passages").fetchone()[0]),
            "pages": int(conn.execute("SELECT COUNT(*) FROM pages").fetchone()[0]),
        }

    _PASSAGE_SQL = (
        "SELECT p.vid, p.id, p.doc_id, p.ordinal, p.text, p.char_start, p.char_end, p.page_label,"
        " p.heading, d.name AS doc_name, d.title AS doc_title FROM passages p JOIN documents d ON d.id = p.doc_id"
    )

    @staticmethod
    def _passage(row: sqlite3.Row) -> Passage:
        return Passage(
            id=row["id"], vid=int(row["vid"]), doc_id=row["doc_id"], ordinal=int(row["ordinal"]),
            text=row["text"], char_start=int(row["char_start"]), char_end=int(row["char_end"]),
            page_label=row["page_label"], heading=row["heading"], doc_name=row["doc_name"],
            doc_title=row["doc_title"],
        )

    def passages_by_vid(self, vids: Iterable[int]) -> dict[int, Passage]:
        wanted = [int(v) for v in vids]
        out: dict[int, Passage] = {}
        conn = self._conn()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(f"{self._PASSAGE_SQL} WHERE p.vid IN ({marks})", chunk):
                out[int(row["vid"])] = self._passage(row)
        return out

    def passages_of(self, doc_id: str) -> list[Passage]:
        rows = self._conn().execute(f"{self._PASSAGE_SQL} WHERE p.doc_id = ? ORDER BY p.ordinal", (doc_id,))
        return [self._passage(r) for r in rows]

    def iter_passages(self, batch: int = 2000) -> Iterator[Passage]:
        """All passages in a stable order (by vid)."""
        last = -1
        conn = self._conn()
        while True:
            rows = conn.execute(
                f"{self._PASSAGE_SQL} WHERE p.vid > ? ORDER BY p.vid LIMIT ?", (last, batch)
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield self._passage(row)
            last = int(rows[-1]["vid"])

    def all_vids(self) -> npt.NDArray[np.int64]:
        cursor = self._conn().execute("SELECT vid FROM passages ORDER BY vid")
        return np.fromiter((r[0] for r in cursor), dtype=np.int64)

    def get_embeddings(self, model: str, vids: Sequence[int], dim: int) -> tuple[npt.NDArray[np.float32], list[int]]:
        """Cached vectors for `vids` (rows of zeros where missing) and the positions missing."""
        out = np.zeros((len(vids), dim), dtype=np.float32)
        pos = {int(v): i for i, v in enumerate(vids)}
        found: set[int] = set()
        conn = self._conn()
        keys = list(pos)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for vid, blob in conn.execute(
                f"SELECT vid, vec FROM embeddings WHERE model = ? AND vid IN ({marks})", [model, *chunk]
            ):
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape[0] == dim:
                    out[pos[int(vid)]] = vec
                    found.add(int(vid))
        missing = [i for v, i in pos.items() if v not in found]
        return out, missing

    def integrity_ok(self) -> bool:
        row = self._conn().execute("PRAGMA quick_check").fetchone()
        return row is not None and row[0] == "ok"

    def bad_offsets(self, limit: int = 100) -> list[str]:
        """Passage ids whose text is not the document slice they claim (should never happen)."""
        bad: list[str] = []
        conn = self._conn()
        for (doc_id,) in conn.execute("SELECT id FROM documents").fetchall():
            text = self.document_text(doc_id)
            for pid, ptext, start, end in conn.execute(
                "SELECT id, text, char_start, char_end FROM passages WHERE doc_id = ?", (doc_id,)
            ):
                if text[start:end] != ptext:
                    bad.append(pid)
                    if len(bad) >= limit:
                        return bad
        return bad

    def db_size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
