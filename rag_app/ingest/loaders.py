"""File loaders on llama-index readers (PDF per page with page labels, DOCX) plus strict text decoding.

Every loader returns cleaned text per page and the positions of headings; every failure is a
`RejectedFile` with a reason a user can act on, so one bad file never stops a batch.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SUPPORTED = {".pdf": "pdf", ".docx": "docx", ".html": "html", ".htm": "html", ".md": "markdown",
             ".markdown": "markdown", ".txt": "text", ".text": "text"}
MAX_DOCX_UNCOMPRESSED = 200 * 1024 * 1024
MAX_COMPRESSION_RATIO = 200


class RejectedFile(Exception):
    """A file that cannot be ingested; `str(exc)` is the reason shown to the user."""


@dataclass(frozen=True)
class LoadedPage:
    label: str
    text: str


@dataclass(frozen=True)
class LoadedDocument:
    format: str
    pages: tuple[LoadedPage, ...]
    title: str = ""
    headings: tuple[str, ...] = field(default_factory=tuple)


_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]+")
_MANY_NEWLINES = re.compile(r"\n\s*\n\s*\n+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(text: str) -> str:
    """Normalise whitespace so passages are compact; offsets refer to this cleaned text."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub(" ", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()


def file_format(path: Path) -> str:
    fmt = SUPPORTED.get(path.suffix.lower())
    if fmt is None:
        raise RejectedFile(
            f"unsupported file type {path.suffix or '(none)'!r}; supported: {', '.join(sorted(SUPPORTED))}"
        )
    return fmt


def decode_text(data: bytes) -> str:
    """Strict UTF-8 (BOM allowed); binary content and invalid UTF-8 are rejected, not garbled."""
    if b"\x00" in data[:8192]:
        raise RejectedFile("looks like binary data (NUL bytes), not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RejectedFile(f"not valid UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8") from exc
    sample = text[:8192]
    if sample and sum(1 for c in sample if _CONTROL.match(c)) / len(sample) > 0.05:
        raise RejectedFile("looks like binary data (many control characters), not text")
    return text


def load_file(path: Path, data: bytes) -> LoadedDocument:
    fmt = file_format(path)
    if not data:
        raise RejectedFile("empty file")
    if fmt == "pdf":
        doc = _load_pdf(path)
    elif fmt == "docx":
        doc = _load_docx(path)
    elif fmt == "html":
        doc = _load_html(decode_text(data))
    elif fmt == "markdown":
        doc = _load_markdown(decode_text(data))
    else:
        doc = LoadedDocument("text", (LoadedPage("", clean_text(decode_text(data))),))
    if not any(p.text.strip() for p in doc.pages):
        raise RejectedFile("no extractable text (a scanned PDF without a text layer, or an empty document)")
    return doc


def _load_pdf(path: Path) -> LoadedDocument:
    import pypdf
    from llama_index.readers.file import PDFReader

    try:
        reader = pypdf.PdfReader(str(path))
        if reader.is_encrypted:
            raise RejectedFile("encrypted (password-protected) PDF; decrypt it first")
        n_pages = len(reader.pages)
        meta: Any = reader.metadata or {}
        title = str(meta.get("/Title", "") or "").strip()
    except RejectedFile:
        raise
    except Exception as exc:
        raise RejectedFile(f"unreadable or damaged PDF ({exc.__class__.__name__}: {exc})") from exc
    if n_pages == 0:
        raise RejectedFile("PDF has no pages")
    try:
        docs = PDFReader(return_full_document=False).load_data(path)
    except Exception as exc:
        raise RejectedFile(f"unreadable or damaged PDF ({exc.__class__.__name__}: {exc})") from exc
    pages = tuple(
        LoadedPage(str(d.metadata.get("page_label", i + 1)), clean_text(d.text)) for i, d in enumerate(docs)
    )
    return LoadedDocument("pdf", pages, title=title)


def _check_zip(path: Path) -> None:
    """Refuse zip bombs before a reader inflates them."""
    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(i.file_size for i in zf.infolist())
            packed = sum(i.compress_size for i in zf.infolist()) or 1
            if "word/document.xml" not in zf.namelist():
                raise RejectedFile("not a Word document (word/document.xml missing)")
    except zipfile.BadZipFile as exc:
        raise RejectedFile("corrupt or truncated DOCX (not a valid zip archive)") from exc
    if total > MAX_DOCX_UNCOMPRESSED or total / packed > MAX_COMPRESSION_RATIO:
        raise RejectedFile(
            f"DOCX expands to {total / 1e6:.0f} MB (ratio {total / packed:.0f}:1): refused as a possible zip bomb"
        )


def _load_docx(path: Path) -> LoadedDocument:
    from llama_index.readers.file import DocxReader

    _check_zip(path)
    try:
        docs = DocxReader().load_data(path)
    except Exception as exc:
        raise RejectedFile(f"unreadable or damaged DOCX ({exc.__class__.__name__}: {exc})") from exc
    text = clean_text("\n\n".join(d.text for d in docs))
    return LoadedDocument("docx", (LoadedPage("", text),), headings=_docx_headings(path))


def _docx_headings(path: Path) -> tuple[str, ...]:
    """Heading paragraphs by style; docx2txt (the reader's backend) drops styles."""
    try:
        import docx

        document = docx.Document(str(path))
        return tuple(
            p.text.strip() for p in document.paragraphs
            if p.text.strip() and p.style is not None
            and (p.style.name or "").lower().startswith(("heading", "title"))
        )
    except Exception:  # noqa: BLE001 - headings are a nicety; the text already loaded
        return ()


_INVISIBLE_TAGS = ("script", "style", "noscript", "template", "head", "svg", "iframe", "object")


def _load_html(markup: str) -> LoadedDocument:
    """Visible text only: scripts, styles, hidden elements and the head never reach the index."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(list(_INVISIBLE_TAGS)):
        tag.decompose()
    for tag in soup.find_all(True):
        if tag.decomposed:
            continue
        style = str(tag.get("style", "")).replace(" ", "").lower() if tag.attrs else ""
        if (tag.attrs and tag.has_attr("hidden")) or "display:none" in style or tag.name.startswith("ix:header"):
            tag.decompose()
    headings = tuple(h.get_text(" ", strip=True) for h in soup.find_all(["h1", "h2", "h3", "h4"]))
    for block in soup.find_all(["p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table"]):
        block.insert_after("\n")
    for cell in soup.find_all(["td", "th"]):
        cell.insert_after(" ")
    text = clean_text(soup.get_text())
    return LoadedDocument("html", (LoadedPage("", text),), title=title, headings=tuple(h for h in headings if h))


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)
_HTML_TAG = re.compile(r"<!--.*?-->|<[^>\n]+>", re.DOTALL)


def _load_markdown(source: str) -> LoadedDocument:
    text = clean_text(_HTML_TAG.sub(" ", source))
    headings = tuple(m.group(2).strip() for m in _MD_HEADING.finditer(text))
    title = headings[0] if headings else ""
    return LoadedDocument("markdown", (LoadedPage("", text),), title=title, headings=headings)
