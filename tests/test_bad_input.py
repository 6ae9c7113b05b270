"""Every kind of bad input, through the real upload path (`ingest_uploads` → `RagPipeline.ingest`): a clear
per-file reason naming the file, the good files of the same batch still added, and the bad file alone changes
nothing (store generation, documents, published index version)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from rag_app.encoders import BiEncoder
from rag_app.pipeline import PipelineConfig, RagPipeline
from rag_app.ui import components as ui

GOOD = (b"# Lighthouse keeping\n\nA keeper trimmed the wick every evening and logged the weather at dawn. "
        b"Fog signals sounded every thirty seconds whenever visibility fell below two miles.\n")


SEED = b"# Canal locks\n\nBarges rise through the flight of locks while the keeper works the paddles by hand.\n"


@dataclass
class Upload:
    name: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def getvalue(self) -> bytes:
        return self.data


def _pdf(encrypt: bool = False, pages: int = 1) -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    if encrypt:
        writer.encrypt("secret")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def _docx_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", "<w:document>" + " " * 300_000_000 + "</w:document>")
    return buf.getvalue()


def _truncated_docx() -> bytes:
    import docx

    buf = io.BytesIO()
    document = docx.Document()
    document.add_paragraph("A paragraph that will be cut off.")
    document.save(buf)
    return buf.getvalue()[:400]


# name, bytes (built lazily: the bomb is large), a fragment the reason must contain
CASES: list[tuple[str, Callable[[], bytes], str]] = [
    ("empty.txt", lambda: b"", "empty file"),
    ("nopages.pdf", lambda: _pdf(pages=0), "no pages"),
    ("locked.pdf", lambda: _pdf(encrypt=True), "encrypted"),
    ("truncated.pdf", lambda: _pdf()[:60], "PDF"),
    ("truncated.docx", _truncated_docx, "DOCX"),
    ("binary.txt", lambda: bytes(range(256)) * 40, "binary"),
    ("latin1.txt", lambda: "café crème brûlée, déjà vu".encode("latin-1"), "UTF-8"),
    ("huge.txt", lambda: b"word " * 120_000, "over the limit"),
    ("bomb.docx", _docx_bomb, "zip bomb"),
    ("scan.exe", lambda: b"MZ\x90\x00" + b"\x00" * 64, "unsupported file type"),
]


@pytest.fixture
def pipeline(tmp_path: Path, encoder: BiEncoder) -> Iterator[RagPipeline]:
    config = replace(PipelineConfig(data_dir=tmp_path / "data"), max_file_bytes=512 * 1024)
    pipe = RagPipeline(config, encoder=encoder, use_embedded_llm=False)
    pipe.ingest_records([])  # nothing: the empty store has no index yet
    first = ui.ingest_uploads(pipe, [Upload("seed.md", SEED)])
    assert first.added == 1 and not first.rejected and not first.error
    yield pipe
    pipe.close()


def _state(pipe: RagPipeline) -> tuple[int, list[str], str | None]:
    current = pipe.indexes.versions.current()
    return pipe.store.generation, sorted(d.id for d in pipe.documents()), current.name if current else None


@pytest.mark.parametrize(("name", "make", "reason"), CASES, ids=[c[0] for c in CASES])
def test_bad_file_alone_changes_nothing(pipeline: RagPipeline, name: str, make: Callable[[], bytes],
                                        reason: str) -> None:
    before = _state(pipeline)
    summary = ui.ingest_uploads(pipeline, [Upload(name, make())])
    assert not summary.error and summary.added == 0
    assert [r.path for r in summary.rejected] == [name]
    assert reason.lower() in summary.rejected[0].reason.lower(), summary.rejected[0].reason
    assert _state(pipeline) == before


@pytest.mark.parametrize(("name", "make", "reason"), CASES[:4], ids=[c[0] for c in CASES[:4]])
def test_bad_file_does_not_stop_the_batch(pipeline: RagPipeline, name: str, make: Callable[[], bytes],
                                          reason: str) -> None:
    summary = ui.ingest_uploads(pipeline, [Upload(name, make()), Upload("lighthouse.md", GOOD)])
    assert summary.added == 1 and [r.path for r in summary.rejected] == [name]
    hits = pipeline.search("fog signals visibility", mode="bm25", k=3).candidates
    assert hits and hits[0].passage.doc_name == "lighthouse.md"


def test_path_traversal_name_stays_inside_and_is_shown_as_given(pipeline: RagPipeline, tmp_path: Path) -> None:
    outside = tmp_path / "etc" / "passwd.md"
    summary = ui.ingest_uploads(pipeline, [Upload("../../etc/passwd.md", GOOD)])
    assert summary.added == 1 and not summary.rejected
    assert not outside.exists()
    doc = next(d for d in pipeline.documents() if d.name.endswith("passwd.md"))
    assert doc.source == "upload:../../etc/passwd.md" and "/" not in Path(doc.source).name


def test_same_name_different_content_in_one_batch_keeps_both(pipeline: RagPipeline) -> None:
    summary = ui.ingest_uploads(pipeline, [Upload("notes.md", GOOD), Upload("sub/notes.md", GOOD.replace(
        b"Fog signals", b"Horn blasts"))])
    assert summary.added == 2 and not summary.rejected
    texts = {d.name: pipeline.store.passages_of(d.id)[0].text for d in pipeline.documents() if "notes" in d.name}
    assert len(texts) == 2 and any("Horn blasts" in t for t in texts.values())
