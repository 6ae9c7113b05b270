"""Every real file in ../shared/data/docs yields passages or a clear rejection; bad input is refused."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from rag_app.ingest.loaders import RejectedFile, load_file


@pytest.mark.data
def test_every_shared_doc_loads(shared_data: Path) -> None:
    docs = sorted((shared_data / "docs").iterdir())
    assert len(docs) >= 8
    for path in docs:
        loaded = load_file(path, path.read_bytes())
        text = "\n".join(p.text for p in loaded.pages)
        assert len(text.split()) > 5, path.name


@pytest.mark.data
def test_pdf_has_page_labels_and_html_is_visible_text(shared_data: Path) -> None:
    pdf = shared_data / "docs" / "pdflatex-outline.pdf"
    loaded = load_file(pdf, pdf.read_bytes())
    assert [p.label for p in loaded.pages] == ["1", "2", "3", "4"]
    html = shared_data / "docs" / "sec_10k_galaxy_gaming_1p.html"
    text = load_file(html, html.read_bytes()).pages[0].text
    assert "<" not in text and "DFIN" not in text
    assert "Galaxy Gaming" in text


@pytest.mark.data
def test_docx_tables_are_kept_as_text(shared_data: Path) -> None:
    path = shared_data / "docs" / "docx-tables.docx"
    text = load_file(path, path.read_bytes()).pages[0].text
    assert "Header Col 1" in text and "Lorem ipsum" in text


def test_html_drops_scripts_styles_and_hidden(tmp_path: Path) -> None:
    markup = (b"<html><head><title>T</title><style>p{color:red}</style></head><body><h1>Head</h1>"
              b"<script>var secret = 1;</script><p>Visible words.</p><div style='display: none'>hidden</div>"
              b"<p hidden>also hidden</p></body></html>")
    loaded = load_file(tmp_path / "x.html", markup)
    text = loaded.pages[0].text
    assert "Visible words." in text and "Head" in text
    assert "secret" not in text and "hidden" not in text and "color" not in text
    assert loaded.title == "T" and loaded.headings == ("Head",)


def _docx_bytes(ratio_bomb: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("word/document.xml", "<w:document/>" + (" " * 300_000_000 if ratio_bomb else ""))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.txt", b"", "empty file"),
        ("binary.txt", b"\x00\x01\x02\x03" * 100, "binary"),
        ("latin1.txt", "café crème".encode("latin-1"), "UTF-8"),
        ("truncated.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog", "PDF"),
        ("corrupt.docx", b"PK\x03\x04 this is not really a zip", "DOCX"),
        ("program.exe", b"MZ\x90\x00", "unsupported file type"),
        ("blank.md", b"   \n\n  ", "no extractable text"),
    ],
)
def test_bad_input_is_rejected_with_reason(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(RejectedFile, match=reason):
        load_file(path, data)


def test_zip_bomb_docx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.docx"
    path.write_bytes(_docx_bytes(ratio_bomb=True))
    with pytest.raises(RejectedFile, match="zip bomb"):
        load_file(path, path.read_bytes())


def test_encrypted_pdf_is_refused(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt("secret")
    path = tmp_path / "locked.pdf"
    with open(path, "wb") as fh:
        writer.write(fh)
    with pytest.raises(RejectedFile, match="encrypted"):
        load_file(path, path.read_bytes())


def test_zero_page_pdf_is_refused(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    path = tmp_path / "empty.pdf"
    with open(path, "wb") as fh:
        PdfWriter().write(fh)
    with pytest.raises(RejectedFile, match="no pages"):
        load_file(path, path.read_bytes())
