"""The Streamlit page (`rag-app ui`): wires widgets to `RagPipeline` and renders what it returns.

It holds no retrieval logic. The pipeline is built once per process from `Settings()` (RAG_APP_*
environment, RAG_APP_DATA_DIR for the data dir); chat history lives in each browser session.
Test/demo hook: RAG_APP_UI_FAKE_LLM=1 answers with `components.QuoteFirstPassageChat`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import typing

import streamlit as st

from rag_app.config import FusionMethod, RetrievalConfig, Settings
from rag_app.pipeline import RagPipeline
from rag_app.types import MODES, Answer
from rag_app.ui import components as ui

logger = logging.getLogger("rag_app.ui")

FUSION_METHODS: tuple[FusionMethod, ...] = typing.get_args(FusionMethod)
MODE_HELP = "bm25: keywords · dense: embeddings · hybrid: both, fused · rerank: hybrid + cross-encoder"


@st.cache_resource(show_spinner="Opening the document index…")
def get_pipeline(settings_json: str, fake_llm: bool) -> RagPipeline:
    """One pipeline per process and settings: models and indexes are shared by every session."""
    return ui.build_pipeline(Settings.model_validate_json(settings_json), fake_llm)


@st.cache_resource
def upload_lock(data_dir: str) -> threading.Lock:
    """Serialises upload batches per data dir (they share one staging folder)."""
    return threading.Lock()


def load_settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic names the variable at fault
        st.error(f"Invalid settings: {ui.md_escape(str(exc))}")
        st.stop()
        raise  # unreachable: st.stop() raises


def upload_section(pipeline: RagPipeline) -> None:
    state = st.session_state
    files = st.file_uploader(
        "Add documents", type=list(ui.UPLOAD_TYPES), accept_multiple_files=True, key="uploader",
        help=f"PDF, Word, HTML, Markdown or text files, up to {ui.mb_text(pipeline.config.max_file_bytes)} each.",
    )
    new = [f for f in files or [] if f.file_id not in state.processed_uploads]
    if new:
        bar = st.progress(0.0, text="Preparing the upload…")
        with upload_lock(str(pipeline.config.data_dir)):
            summary = ui.ingest_uploads(pipeline, new, ui.ProgressAdapter(lambda v, t: bar.progress(v, text=t)))
        bar.empty()
        state.processed_uploads.update(f.file_id for f in new)
        state.last_upload = summary
    if state.last_upload is not None:
        ui.render_upload_summary(state.last_upload)


def settings_section(pipeline: RagPipeline) -> tuple[str, RetrievalConfig]:
    """Per-session retrieval choices: the mode and a RetrievalConfig copy with fusion, weight and k."""
    cfg = pipeline.config.retrieval
    default_mode = pipeline.default_mode()
    mode = st.selectbox("Retrieval mode", MODES, index=MODES.index(default_mode), key="mode", help=MODE_HELP)
    fusion = st.selectbox("Fusion", FUSION_METHODS, index=FUSION_METHODS.index(cfg.fusion), key="fusion",
                          help="rrf: reciprocal rank fusion · minmax / zscore: weighted normalised scores")
    weight = st.slider("BM25 weight", 0.0, 1.0, float(cfg.bm25_weight), 0.05, key="bm25_weight",
                       help="Share of BM25 in the fused score; the dense side gets the rest.")
    k = st.slider("Passages retrieved (k)", 1, 50, min(cfg.top_k, 50), key="top_k")
    return str(mode), dataclasses.replace(cfg, fusion=fusion or cfg.fusion, bm25_weight=weight, top_k=k)


def ask(pipeline: RagPipeline, question: str, mode: str, retrieval: RetrievalConfig) -> None:
    """Streams one answer into the page, then renders it in full and records the turn."""
    state = st.session_state
    past = ui.history(state.messages)
    user = ui.ChatMessage("user", question)
    state.messages.append(user)
    with st.chat_message("user"):
        st.markdown(ui.md_lines(question))
        rewritten_slot = st.empty()
    with st.chat_message("assistant"):
        slot = st.empty()
        sink: list[Answer] = []
        try:
            with slot.container():
                # k retrieved passages; at most the configured number of them go to the generator
                n_context = min(retrieval.top_k, pipeline.config.generation.context_passages)
                events = pipeline.stream(question, past, mode=mode, k=n_context, retrieval=retrieval)
                st.write_stream(ui.stream_text(events, sink))
        except Exception as exc:  # show the failure, keep the session usable
            logger.exception("answering failed")
            sink.clear()
            user.error = f"{type(exc).__name__}: {exc}"
        if sink:
            answer = sink[-1]
            user.rewritten = answer.rewritten_query
            message = ui.ChatMessage("assistant", answer.text, answer=answer, mode=mode)
        else:
            message = ui.ChatMessage("assistant", "", mode=mode, error=f"Could not answer: {user.error}")
        state.messages.append(message)
        with slot.container():
            ui.render_answer(message)
    if ui.rewrite_differs(question, user.rewritten):
        with rewritten_slot.container():
            st.caption(f"Searched for: {ui.md_escape(user.rewritten)}")


def main() -> None:
    st.set_page_config(page_title="Ask your documents", page_icon="📄", layout="wide")
    settings = load_settings()
    pipeline = get_pipeline(settings.model_dump_json(), ui.fake_llm_enabled(os.environ))
    state = st.session_state
    state.setdefault("messages", [])
    state.setdefault("processed_uploads", set())
    state.setdefault("last_upload", None)

    with st.sidebar:
        st.header("Documents")
        upload_section(pipeline)
    documents = pipeline.documents()
    with st.sidebar:
        st.subheader(f"Collection ({len(documents)})")
        ui.render_documents(pipeline, documents)
        st.subheader("Retrieval")
        mode, retrieval = settings_section(pipeline)
        st.subheader("Models")
        models_box = st.container()

    st.title("Ask your documents")
    if not documents:
        st.info("Your collection is empty. Upload PDF, Word, HTML, Markdown or text files in the sidebar "
                "(**Add documents**), then ask questions about them here.", icon="📄")
    for message in state.messages:
        with st.chat_message(message.role):
            if message.role == "user":
                ui.render_user(message)
            else:
                ui.render_answer(message)
    question = st.chat_input("Ask a question about your documents", disabled=not documents)
    if question and question.strip():
        ask(pipeline, question, mode, retrieval)

    with models_box:  # filled last: naming the generator may start it, which must not delay the page
        try:
            generator = pipeline.generator_name
        except Exception as exc:
            logger.exception("generator unavailable")
            generator = f"unavailable ({exc})"
        ui.render_models(pipeline, generator)


main()
