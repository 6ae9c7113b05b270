"""Pieces of the chat page: pure helpers (escaping, file names, tables) and small renderers.

Everything that comes from a document or a user (passage text, file names, quoted answers,
notes) goes through `md_escape` before Streamlit sees it, and nothing is ever rendered with
`unsafe_allow_html`: a passage holding `<script>` must show up as text, not run.
All retrieval and answering decisions stay in `rag_app`; this module only formats results.
"""

from __future__ import annotations

import contextlib
import html
import logging
import re
import tempfile
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd
import streamlit as st

from rag_app.generation.prompts import parse_messages
from rag_app.generation.text import content_set, split_sentences, words
from rag_app.types import Answer, Candidate, Citation, Document, Passage, Rejection, Timings

if TYPE_CHECKING:
    from rag_app.config import Settings
    from rag_app.pipeline import RagPipeline

logger = logging.getLogger(__name__)

UPLOAD_TYPES: tuple[str, ...] = ("pdf", "docx", "html", "htm", "md", "txt")
FAKE_LLM_ENV = "RAG_APP_UI_FAKE_LLM"
HIGHLIGHT_COLOUR = "orange-background"
SCORE_STAGES: tuple[tuple[str, str], ...] = (("BM25", "bm25"), ("Dense", "dense"), ("Fused", "fused"),
                                             ("Rerank", "rerank"))
CANDIDATE_COLUMNS: tuple[str, ...] = (
    "rank", "document", "page", "bm25_score", "bm25_rank", "dense_score", "dense_rank",
    "fused_score", "fused_rank", "rerank_score", "rerank_rank", "text",
)
MAX_LISTED_DOCUMENTS = 50


# ---- test/demo chat model ------------------------------------------------------------------
class QuoteFirstPassageChat:
    """A deterministic stand-in chat model: a test/demo hook enabled by RAG_APP_UI_FAKE_LLM=1.

    It answers by quoting the first sentence of passage [1] followed by "[1]", so UI tests and
    demos exercise streaming and citations without an LLM. To any other prompt (query rewriting)
    it replies with nothing, which the rewriter rejects, so follow-ups are condensed by its rules.
    """

    name = "fake-quote-llm (test/demo)"

    def complete(self, messages: Sequence[Mapping[str, str]]) -> str:
        parsed = parse_messages(messages)
        if not parsed.passages:
            return ""
        sentence = first_sentence(parsed.passages[0][3])
        return f"{sentence} [1]" if sentence else ""

    def stream(self, messages: Sequence[Mapping[str, str]]) -> Iterator[str]:
        """Word by word, like a real model's token stream."""
        for i, word in enumerate(self.complete(messages).split(" ")):
            yield word if i == 0 else " " + word


def fake_llm_enabled(environ: Mapping[str, str]) -> bool:
    return environ.get(FAKE_LLM_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def build_pipeline(settings: Settings, fake_llm: bool = False) -> RagPipeline:
    """The app's pipeline; `fake_llm` swaps in `QuoteFirstPassageChat` (tests and offline demos)."""
    from rag_app.pipeline import PipelineConfig, RagPipeline

    if fake_llm:
        return RagPipeline(PipelineConfig.from_settings(settings), chat_model=QuoteFirstPassageChat())
    return RagPipeline.from_settings(settings)


# ---- text: escaping and highlighting ---------------------------------------------------------
# Every ASCII punctuation mark that Streamlit markdown could read as syntax: emphasis, links,
# lists, tables, math ($), directives (:red[..]), autolinks (www., http:, a@b).
_MD_SPECIAL_RE = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:$=^@])")
_SINGLE_NEWLINE_RE = re.compile(r"(?<!\n)\n(?!\n)")
_PARAGRAPH_RE = re.compile(r"\n[ \t\r\f\v]*\n\s*")


def md_escape(text: str) -> str:
    """Markdown that displays `text` literally: HTML-escaped, then markdown punctuation backslashed.

    Escaping is per character, so escaping stream chunks one by one equals escaping the whole.
    """
    return _MD_SPECIAL_RE.sub(r"\\\1", html.escape(text, quote=False))


def md_lines(text: str) -> str:
    """Escaped text keeping its line structure (answers quote one passage sentence per line)."""
    paragraphs = _PARAGRAPH_RE.split(text.strip())
    return "\n\n".join(
        "  \n".join(md_escape(line.strip()) for line in para.splitlines() if line.strip()) for para in paragraphs
    )


def _flow(text: str) -> str:
    """Escaped text with whitespace collapsed (hard-wrapped passages reflow); blank lines stay breaks."""
    return "\n\n".join(md_escape(re.sub(r"\s+", " ", part)) for part in _PARAGRAPH_RE.split(text))


def _unwrap(text: str) -> str:
    """Single newlines to spaces (same length, so offsets still index the original text)."""
    return _SINGLE_NEWLINE_RE.sub(" ", text)


def first_sentence(text: str, min_words: int = 3) -> str:
    """The first sentence of a passage with at least `min_words` words (headings are skipped)."""
    flat = _unwrap(text)
    sentences = [" ".join(flat[s:e].split()) for s, e in split_sentences(flat)]
    return next((s for s in sentences if len(words(s)) >= min_words), sentences[0] if sentences else "")


def highlight_spans(text: str, cited: Sequence[str], min_recall: float = 0.5) -> list[tuple[int, int]]:
    """Spans of the passage sentences that best match each cited answer sentence.

    The answer sentence may paraphrase, so the match is by content-word recall (the same measure
    the citation check uses); a sentence below `min_recall` is not highlighted at all.
    """
    flat = _unwrap(text)
    spans = split_sentences(flat)
    if not spans:
        return []
    terms_by_span = [content_set(flat[s:e]) for s, e in spans]
    chosen: set[tuple[int, int]] = set()
    for sentence in cited:
        terms = content_set(sentence)
        if not terms:
            continue
        overlaps = [len(terms & span_terms) for span_terms in terms_by_span]
        best = max(range(len(spans)), key=lambda i: overlaps[i])
        if overlaps[best] / len(terms) >= min_recall:
            chosen.add(spans[best])
    return sorted(chosen)


def highlight_markdown(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """The escaped passage with `spans` marked by a Streamlit background directive (no HTML)."""
    out: list[str] = []
    pos = 0
    for start, end in sorted(spans):
        if start < pos:
            continue
        out.append(_flow(text[pos:start]))
        out.append(f":{HIGHLIGHT_COLOUR}[**{md_escape(' '.join(text[start:end].split()))}**]")
        pos = end
    out.append(_flow(text[pos:]))
    return "".join(out).strip()


# ---- answers: citations, scores, tables ----------------------------------------------------
@dataclass(frozen=True)
class CitedSource:
    """One [n] chip: the passage, the answer sentences citing it, and its per-stage scores."""

    number: int
    passage: Passage
    sentences: tuple[str, ...]
    supported: bool
    candidate: Candidate | None


def cited_sources(answer: Answer) -> list[CitedSource]:
    """Distinct cited passages in order of number (an answer has one Citation per sentence and passage)."""
    groups: dict[int, list[Citation]] = {}
    for citation in answer.citations:
        groups.setdefault(citation.number, []).append(citation)
    by_id = {c.passage.id: c for c in (*answer.context, *answer.candidates)}
    return [
        CitedSource(
            number=n, passage=cs[0].passage, sentences=tuple(dict.fromkeys(c.sentence for c in cs if c.sentence)),
            supported=all(c.supported for c in cs), candidate=by_id.get(cs[0].passage.id),
        )
        for n, cs in sorted(groups.items())
    ]


def source_name(passage: Passage) -> str:
    return passage.doc_name or passage.doc_title or passage.doc_id


def score_cells(candidate: Candidate | None) -> list[tuple[str, str, str]]:
    """(stage, score, rank) texts per stage; a dash where the stage did not see the passage."""
    scores = candidate.scores_dict() if candidate is not None else {}
    cells = []
    for label, key in SCORE_STAGES:
        score, rank = scores.get(f"{key}_score"), scores.get(f"{key}_rank")
        cells.append((label, "—" if score is None else f"{score:.4f}",
                      "not ranked by this stage" if rank is None else f"rank {rank}"))
    return cells


def candidates_frame(candidates: Sequence[Candidate]) -> pd.DataFrame:
    """All retrieved candidates with every stage's score and rank (empty stages are blank)."""
    rows = [
        {"rank": i, "document": source_name(c.passage), "page": c.passage.page_label, **c.scores_dict(),
         "text": " ".join(c.passage.text.split())}
        for i, c in enumerate(candidates, 1)
    ]
    frame = pd.DataFrame(rows, columns=list(CANDIDATE_COLUMNS))
    for column in CANDIDATE_COLUMNS:
        if column.endswith("_rank"):
            frame[column] = pd.to_numeric(frame[column]).astype("Int64")
        elif column.endswith("_score"):
            frame[column] = pd.to_numeric(frame[column]).astype("float64")
    return frame


def timings_frame(timings: Timings) -> pd.DataFrame:
    """Milliseconds per stage, in the order the stages ran."""
    stages = timings.as_dict()
    return pd.DataFrame({"stage": list(stages), "ms": [round(ms, 2) for ms in stages.values()]})


# ---- chat state ---------------------------------------------------------------------------
@dataclass
class ChatMessage:
    """One chat turn kept in st.session_state; `id` keys its widgets so they survive reruns."""

    role: str
    content: str
    answer: Answer | None = None
    mode: str = ""
    rewritten: str = ""
    error: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


def history(messages: Sequence[ChatMessage]) -> list[tuple[str, str]]:
    """(role, content) pairs for `RagPipeline.stream`; failed turns are left out."""
    return [(m.role, m.content) for m in messages if m.content and not m.error]


def stream_text(events: Iterable[str | Answer], sink: list[Answer]) -> Iterator[str]:
    """Escaped text chunks for st.write_stream; the final `Answer` is appended to `sink`."""
    for item in events:
        if isinstance(item, Answer):
            sink.append(item)
        else:
            yield md_escape(item)


def rewrite_differs(question: str, rewritten: str) -> bool:
    return bool(rewritten) and " ".join(rewritten.split()).lower() != " ".join(question.split()).lower()


# ---- uploads ------------------------------------------------------------------------------
class UploadedLike(Protocol):
    """What the page needs from a Streamlit `UploadedFile`."""

    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int: ...

    def getvalue(self) -> bytes: ...


def _printable(text: str) -> str:
    """Drops control and format characters (incl. bidi overrides that disguise an extension)."""
    return "".join(ch for ch in unicodedata.normalize("NFC", text) if unicodedata.category(ch)[0] != "C")


def sanitise_filename(name: str, fallback: str = "upload", max_stem_bytes: int = 150) -> str:
    """A safe base name to write an upload to disk: no directories, `..`, control or shell-hostile
    characters, no leading dot; the (lower-cased) extension is kept so the loader picks the format."""
    base = _printable(re.split(r"[\\/]", name)[-1])
    base = re.sub(r'[<>:"|?*]', "_", base)
    while ".." in base:
        base = base.replace("..", ".")
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    ext = re.sub(r"[^0-9A-Za-z]", "", ext).lower()[:10]
    stem = stem.strip(" ._-").encode()[:max_stem_bytes].decode("utf-8", "ignore").rstrip(" .") or fallback
    return f"{stem}.{ext}" if ext else stem


def display_name(name: str) -> str:
    """The name users see for an upload: the original, minus control characters (escaped on render)."""
    return " ".join(_printable(name).split())[:200] or "upload"


@dataclass(frozen=True)
class StagedUploads:
    paths: tuple[Path, ...]
    display_names: dict[Path, str]
    refused: tuple[Rejection, ...]


def mb_text(n_bytes: int) -> str:
    """Megabytes as RAG_APP_MAX_FILE_MB counts them (MiB), so the limit reads as configured."""
    return f"{n_bytes / (1024 * 1024):.3g} MB"


def refuse_reason(file: UploadedLike, max_bytes: int) -> str | None:
    suffix = Path(sanitise_filename(file.name)).suffix.lower().lstrip(".")
    if suffix not in UPLOAD_TYPES:
        return f"unsupported file type {('.' + suffix) if suffix else '(none)'!r}; use {', '.join(UPLOAD_TYPES)}"
    if file.size > max_bytes:
        return f"file is {mb_text(file.size)}, over the limit of {mb_text(max_bytes)} (RAG_APP_MAX_FILE_MB)"
    return None


def write_uploads(files: Sequence[UploadedLike], directory: Path, max_bytes: int) -> StagedUploads:
    """Writes each acceptable upload under a sanitised, collision-free name; refuses the rest."""
    paths: list[Path] = []
    names: dict[Path, str] = {}
    refused: list[Rejection] = []
    used: set[str] = set()
    for file in files:
        shown = display_name(file.name)
        reason = refuse_reason(file, max_bytes)
        if reason is not None:
            refused.append(Rejection(shown, reason))
            continue
        safe = sanitise_filename(file.name)
        stem, suffix = Path(safe).stem, Path(safe).suffix
        n = 1
        while safe in used:
            n += 1
            safe = f"{stem}-{n}{suffix}"
        used.add(safe)
        path = directory / safe
        path.write_bytes(file.getvalue())
        paths.append(path)
        names[path] = shown
    return StagedUploads(tuple(paths), names, tuple(refused))


@contextlib.contextmanager
def upload_staging() -> Iterator[Path]:
    """A fresh private temporary folder for one upload batch, removed afterwards. Documents are
    identified by `upload:<name>` (not this path), so an edited re-upload still replaces its old version."""
    with tempfile.TemporaryDirectory(prefix="rag_app-uploads-") as tmp:
        yield Path(tmp)


@dataclass(frozen=True)
class UploadSummary:
    """What one upload batch did, kept in session_state so reruns can show it again."""

    added: int = 0
    passages: int = 0
    updated: int = 0
    duplicates: tuple[str, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    error: str = ""


class ProgressAdapter:
    """Turns the library's `progress(stage, done, total, detail)` calls into one bar's value and text."""

    def __init__(self, update: Callable[[float, str], object]) -> None:
        self.update = update
        self.fraction = 0.0

    def __call__(self, stage: str, done: int, total: int, detail: str = "") -> None:
        if total:
            self.fraction = min(1.0, max(0.0, done / total))
        text = f"{stage}: {done}/{total}" if total else f"{stage}: {done}"
        if detail:
            text += f" · {detail}"
        self.update(self.fraction, md_escape(text))


def ingest_uploads(pipeline: RagPipeline, files: Sequence[UploadedLike],
                   progress: Callable[[str, int, int, str], None] | None = None) -> UploadSummary:
    """Stage the uploads, ingest them, summarise; a failure becomes a message, never an exception."""
    try:
        with upload_staging() as directory:
            staged = write_uploads(files, directory, pipeline.config.max_file_bytes)
            if not staged.paths:
                return UploadSummary(rejected=staged.refused)
            sources = {path: f"upload:{name}" for path, name in staged.display_names.items()}
            report = pipeline.ingest(list(staged.paths), progress=progress, display_names=staged.display_names,
                                     sources=sources)
    except Exception as exc:  # the page must survive any ingest failure
        logger.exception("upload ingest failed")
        return UploadSummary(error=f"{type(exc).__name__}: {exc}")
    return UploadSummary(added=report.documents_added, passages=report.passages_added,
                         updated=report.documents_updated, duplicates=tuple(report.duplicates),
                         rejected=staged.refused + tuple(report.rejected))


# ---- renderers ----------------------------------------------------------------------------
def render_upload_summary(summary: UploadSummary) -> None:
    if summary.error:
        st.error(f"The upload failed: {md_escape(summary.error)}")
    if summary.added or summary.updated:
        parts = [f"Added {summary.added} document(s)"] if summary.added else []
        if summary.updated:
            parts.append(f"{'updated' if parts else 'Updated'} {summary.updated} document(s)")
        st.success(f"{', '.join(parts)} ({summary.passages} passages indexed).")
    if summary.duplicates:
        st.info("Already in the collection (skipped): " + ", ".join(md_escape(d) for d in summary.duplicates))
    for rejection in summary.rejected:
        st.error(f"Rejected **{md_escape(rejection.path)}**: {md_escape(rejection.reason)}")
    if not (summary.error or summary.added or summary.updated or summary.duplicates or summary.rejected):
        st.info("Nothing new was added.")


def _delete_document(pipeline: RagPipeline, doc_id: str, name: str) -> None:
    """Button callback: runs before the rerun, so the list below is already up to date."""
    try:
        deleted = pipeline.delete_document(doc_id)
        st.session_state["flash"] = f"Deleted {name}." if deleted else f"{name} was already gone."
    except Exception as exc:  # report, do not crash the page
        logger.exception("delete failed")
        st.session_state["flash"] = f"Could not delete {name}: {exc}"


def render_documents(pipeline: RagPipeline, documents: Sequence[Document]) -> None:
    """The collection: one row per document with its counts and a delete button."""
    flash = st.session_state.pop("flash", None)
    if flash:
        st.success(md_escape(flash))
    if not documents:
        st.caption("No documents yet.")
        return
    for doc in documents[:MAX_LISTED_DOCUMENTS]:
        with st.container(border=True):
            st.markdown(f"**{md_escape(doc.name)}**")
            st.caption(f"{doc.n_pages} page(s) · {doc.n_passages} passage(s) · added "
                       f"{md_escape(doc.added_at[:16].replace('T', ' '))}")
            st.button("Delete", key=f"delete-{doc.id}", on_click=_delete_document,
                      args=(pipeline, doc.id, doc.name), help="Remove this document from the index")
    if len(documents) > MAX_LISTED_DOCUMENTS:
        st.caption(f"… and {len(documents) - MAX_LISTED_DOCUMENTS} more (see `rag-app info`).")


def render_models(pipeline: RagPipeline, generator: str) -> None:
    st.caption(f"Embedding model: {md_escape(pipeline.config.models.embed_model)}")
    reranker = pipeline.reranker.name if pipeline.reranker is not None else "none installed"
    st.caption(f"Reranker: {md_escape(reranker)}")
    st.caption(f"Generator: {md_escape(generator)}")


def render_user(message: ChatMessage) -> None:
    st.markdown(md_lines(message.content))
    if rewrite_differs(message.content, message.rewritten):
        st.caption(f"Searched for: {md_escape(message.rewritten)}")


def render_citation(source: CitedSource) -> None:
    """The cited passage with the citing sentence highlighted, its place, and every stage's score."""
    passage = source.passage
    with st.container(border=True):
        page = f" · page {md_escape(passage.page_label)}" if passage.page_label else ""
        st.markdown(f"**{md_escape(f'[{source.number}]')} {md_escape(source_name(passage))}**{page}")
        if passage.heading:
            st.caption(md_escape(passage.heading))
        st.markdown(highlight_markdown(passage.text, highlight_spans(passage.text, source.sentences)))
        for column, (label, score, rank) in zip(st.columns(len(SCORE_STAGES)), score_cells(source.candidate),
                                                strict=True):
            column.metric(f"{label} score", score)
            column.caption(rank)
        if not source.supported:
            st.caption("⚠️ The citing sentence is only weakly supported by this passage.")


def render_answer(message: ChatMessage) -> None:
    """Answer text, who answered, notes, citation chips, all candidates and the per-stage cost."""
    answer = message.answer
    if answer is None:
        st.error(md_escape(message.error or "No answer."))
        return
    if answer.abstained:
        st.warning("No answer found in your documents.", icon="🔎")
    st.markdown(md_lines(answer.text))
    total = answer.timings.total_ms
    st.caption(f"Answered by {md_escape(answer.generator)} · {md_escape(message.mode or 'default')} retrieval · "
               f"{total:,.0f} ms")
    for note in answer.notes:
        st.caption(f"Note: {md_escape(note)}")
    sources = cited_sources(answer)
    if sources:
        numbers = [s.number for s in sources]
        chosen = st.pills("Sources", numbers, format_func=lambda n: f"[{n}]", key=f"cite-{message.id}",
                          help="Open a cited passage")
        match = next((s for s in sources if s.number == chosen), None)
        if match is not None:
            render_citation(match)
    with st.expander(f"All retrieved passages ({len(answer.candidates)})"):
        st.dataframe(
            candidates_frame(answer.candidates), hide_index=True,
            column_config=_candidate_columns(),
        )
    with st.expander(f"Cost per stage ({total:,.0f} ms)"):
        frame = timings_frame(answer.timings)
        st.bar_chart(frame, x="stage", y="ms", horizontal=True, sort=False, height=80 + 26 * len(frame))


def _candidate_columns() -> dict[str, Any]:
    config: dict[str, Any] = {"text": st.column_config.TextColumn("text", width="large")}
    for column in CANDIDATE_COLUMNS:
        if column.endswith("_score"):
            config[column] = st.column_config.NumberColumn(column, format="%.4f")
    return config
