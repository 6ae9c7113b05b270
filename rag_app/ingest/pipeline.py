"""Ingest files (or BEIR records) into the store and refresh the indexes.

Each document is committed atomically with its passages and embeddings; encoding is batched
across small documents so thousands of abstracts do not pay per-document overhead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag_app.config import ChunkingConfig
from rag_app.encoders import BiEncoder
from rag_app.index.manager import IndexManager
from rag_app.ingest.chunking import chunk_document
from rag_app.ingest.loaders import SUPPORTED, LoadedDocument, LoadedPage, RejectedFile, load_file
from rag_app.store import NewDocument, PageSpan, Store, content_hash, now_iso, passage_ids
from rag_app.types import Document, IngestReport, Passage, Rejection, Timings

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int, str], None]
PAGE_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Record:
    """A document that arrives as text rather than a file (BEIR corpus rows, API callers)."""

    external_id: str
    title: str
    text: str


@dataclass
class _Prepared:
    new: NewDocument
    replaces: list[str]


def expand_paths(paths: Sequence[Path]) -> tuple[list[Path], list[Rejection]]:
    """Files under the given paths (folders recursively, hidden files skipped), sorted."""
    files: list[Path] = []
    rejected: list[Rejection] = []
    for path in paths:
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts):
                    if f.suffix.lower() in SUPPORTED:
                        files.append(f)
                    else:
                        rejected.append(Rejection(str(f), f"unsupported file type {f.suffix or '(none)'!r}"))
        elif path.is_file():
            files.append(path)
        else:
            rejected.append(Rejection(str(path), "no such file or folder"))
    return files, rejected


def assemble(doc_id: str, loaded: LoadedDocument, chunking: ChunkingConfig, title: str = "",
             name: str = "") -> tuple[str, tuple[PageSpan, ...], tuple[Passage, ...]]:
    """Join pages into one document text and cut it into passages with exact offsets."""
    parts: list[str] = []
    spans: list[PageSpan] = []
    pos = 0
    for page in loaded.pages:
        if parts:
            parts.append(PAGE_SEPARATOR)
            pos += len(PAGE_SEPARATOR)
        spans.append(PageSpan(page.label, pos, pos + len(page.text)))
        parts.append(page.text)
        pos += len(page.text)
    text = "".join(parts)
    chunks = chunk_document(text, [(s.char_start, s.char_end) for s in spans], loaded.headings, chunking)
    passages = []
    seen: set[str] = set()
    for ordinal, chunk in enumerate(chunks):
        body = text[chunk.start : chunk.end]
        pid, vid = passage_ids(doc_id, chunk.start, chunk.end, body)
        if pid in seen:
            continue
        seen.add(pid)
        passages.append(Passage(
            id=pid, vid=vid, doc_id=doc_id, ordinal=ordinal, text=body, char_start=chunk.start,
            char_end=chunk.end, page_label=spans[chunk.page_index].label, heading=chunk.heading,
            doc_name=name, doc_title=title or loaded.title,
        ))
    return text, tuple(spans), tuple(passages)


class Ingestor:
    def __init__(self, store: Store, manager: IndexManager, encoder: BiEncoder, chunking: ChunkingConfig,
                 max_file_bytes: int = 50 * 1024 * 1024, encode_batch_passages: int = 256) -> None:
        self.store = store
        self.manager = manager
        self.encoder = encoder
        self.chunking = chunking
        self.max_file_bytes = max_file_bytes
        self.encode_batch_passages = encode_batch_passages

    # ---- files --------------------------------------------------------------------------
    def ingest_paths(self, paths: Sequence[Path], progress: Progress | None = None,
                     display_names: dict[Path, str] | None = None,
                     sources: dict[Path, str] | None = None) -> IngestReport:
        """`sources` gives a file a stable identity other than its path (an upload's temporary
        file is `upload:<name>`), so a new version of it replaces the old one."""
        files, rejected = expand_paths(paths)
        names = display_names or {}
        origin = sources or {}
        duplicates: list[str] = []
        updated = 0

        def prepared() -> Iterator[_Prepared]:
            nonlocal updated
            seen: set[str] = set()
            for i, path in enumerate(files):
                if progress:
                    progress("read", i, len(files), path.name)
                try:
                    item = self._prepare_file(path, names.get(path, path.name), origin.get(path))
                except RejectedFile as exc:
                    rejected.append(Rejection(str(names.get(path, path)), str(exc)))
                    continue
                if item is None or item.new.document.content_hash in seen:
                    duplicates.append(str(names.get(path, path)))
                    continue
                seen.add(item.new.document.content_hash)
                if item.replaces:
                    updated += 1
                yield item

        report = self._commit(prepared(), progress)
        return IngestReport(
            documents_added=report.documents_added - updated, passages_added=report.passages_added,
            documents_updated=updated, duplicates=tuple(duplicates), rejected=tuple(rejected),
            timings=report.timings,
        )

    def _prepare_file(self, path: Path, name: str, source: str | None = None) -> _Prepared | None:
        try:
            size = path.stat().st_size
            if size > self.max_file_bytes:
                mib = 1024 * 1024
                raise RejectedFile(
                    f"file is {size / mib:.1f} MB, over the limit of {self.max_file_bytes / mib:.0f} MB "
                    "(RAG_APP_MAX_FILE_MB)"
                )
            data = path.read_bytes()
        except OSError as exc:
            raise RejectedFile(f"cannot read file ({exc.strerror or exc})") from exc
        digest = content_hash(data)
        if self.store.has_hash(digest):
            return None
        loaded = load_file(path, data)
        source = source or str(path.resolve())
        doc_id = digest[:16]
        text, pages, passages = assemble(doc_id, loaded, self.chunking, name=name)
        if not passages:
            raise RejectedFile("no passages could be made from its text")
        document = Document(id=doc_id, name=name, source=source, format=loaded.format, content_hash=digest,
                            n_pages=len(pages), n_passages=len(passages), added_at=now_iso(), title=loaded.title)
        return _Prepared(NewDocument(document, text, pages, passages), self.store.documents_by_source(source))

    # ---- records ------------------------------------------------------------------------
    def ingest_records(self, records: Iterable[Record], progress: Progress | None = None,
                       total: int | None = None) -> IngestReport:
        duplicates: list[str] = []
        updated = 0

        def prepared() -> Iterator[_Prepared]:
            """A record whose external id is already stored with other content replaces it (like a file
            re-ingested from the same path)."""
            nonlocal updated
            seen: set[str] = set()
            for i, rec in enumerate(records):
                if progress and i % 200 == 0:
                    progress("read", i, total or 0, rec.external_id)
                digest = content_hash(f"{rec.external_id}\n{rec.title}\n{rec.text}".encode())
                if digest in seen or self.store.has_hash(digest):
                    duplicates.append(rec.external_id)
                    continue
                seen.add(digest)
                doc_id = digest[:16]
                loaded = LoadedDocument("record", (LoadedPage("", rec.text.strip()),), title=rec.title)
                text, pages, passages = assemble(doc_id, loaded, self.chunking, title=rec.title,
                                                 name=rec.external_id)
                if not passages:
                    continue
                source = f"record:{rec.external_id}"
                document = Document(id=doc_id, name=rec.external_id, source=source,
                                    format="record", content_hash=digest, n_pages=1, n_passages=len(passages),
                                    added_at=now_iso(), title=rec.title, external_id=rec.external_id)
                replaces = self.store.documents_by_source(source)
                updated += bool(replaces)
                yield _Prepared(NewDocument(document, text, pages, passages), replaces)

        report = self._commit(prepared(), progress)
        return IngestReport(report.documents_added - updated, report.passages_added, updated, tuple(duplicates), (),
                            report.timings)

    # ---- shared -------------------------------------------------------------------------
    def _commit(self, items: Iterator[_Prepared], progress: Progress | None) -> IngestReport:
        """Encode in batches across documents, commit each document atomically, then refresh."""
        timings = Timings()
        docs = 0
        n_passages = 0
        batch: list[_Prepared] = []
        encode_ms = 0.0
        store_ms = 0.0
        t_prepare = time.perf_counter()

        def flush() -> None:
            nonlocal docs, n_passages, encode_ms, store_ms
            if not batch:
                return
            texts = [p.index_text() for item in batch for p in item.new.passages]
            t0 = time.perf_counter()
            vectors = self.encoder.encode_passages(texts)
            t1 = time.perf_counter()
            offset = 0
            for item in batch:
                n = len(item.new.passages)
                self.store.add_document(item.new, (self.encoder.name, vectors[offset : offset + n]),
                                        replace_doc_ids=item.replaces)
                offset += n
                docs += 1
                n_passages += n
            store_ms += (time.perf_counter() - t1) * 1000
            encode_ms += (t1 - t0) * 1000
            if progress:
                progress("encode", n_passages, 0, f"{docs} documents")
            batch.clear()

        pending = 0
        for item in items:
            batch.append(item)
            pending += len(item.new.passages)
            if pending >= self.encode_batch_passages:
                flush()
                pending = 0
        flush()
        total_ms = (time.perf_counter() - t_prepare) * 1000
        timings = timings.add("read+chunk", total_ms - encode_ms - store_ms).add("encode", encode_ms)
        timings = timings.add("store", store_ms)
        t0 = time.perf_counter()
        if (docs or self.manager.versions.current() is None) and self.store.counts()["passages"]:
            self.manager.refresh(progress=(lambda s, d, t: progress(s, d, t, "")) if progress else None)
        timings = timings.add("index", (time.perf_counter() - t0) * 1000)
        return IngestReport(documents_added=docs, passages_added=n_passages, timings=timings)
