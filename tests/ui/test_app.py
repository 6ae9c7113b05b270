"""The real page script under `AppTest`: chat, citations, scores, escaping, upload and delete."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rag_app.ui.components import CANDIDATE_COLUMNS

RUN_TIMEOUT = 120  # a first run may load the embedding model


def start(app_path: Path) -> AppTest:
    at = AppTest.from_file(str(app_path), default_timeout=RUN_TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def shown_text(at: AppTest) -> list[str]:
    """Every markdown and caption body on the page (main area and sidebar)."""
    return [m.value for m in at.markdown] + [c.value for c in at.caption]


def doc_ids(data_dir: Path) -> dict[str, str]:
    from rag_app.pipeline import PipelineConfig, RagPipeline

    pipeline = RagPipeline(PipelineConfig(data_dir=data_dir), use_embedded_llm=False)
    try:
        return {d.name: d.id for d in pipeline.documents()}
    finally:
        pipeline.close()


def test_empty_collection_prompts_for_upload(app_path: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_APP_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("RAG_APP_UI_FAKE_LLM", "1")
    at = start(app_path)
    assert any("collection is empty" in info.value for info in at.info)
    assert at.chat_input[0].disabled
    assert "Collection (0)" in [s.value for s in at.subheader]


def test_chat_round_trip_with_citation_scores_table_and_costs(app_path: Path, data_dir: Path) -> None:
    at = ask(start(app_path), "When was the Skerryvore lighthouse completed?")

    assistant = at.chat_message[1]
    assert assistant.name == "assistant"
    answer_md = assistant.markdown[0].value
    assert "completed in 1844" in answer_md and "\\[1\\]" in answer_md
    assert any(c.value.startswith("Answered by fake") for c in assistant.caption)

    chips = at.button_group[0]
    assert chips.options == ["[1]"]
    chips.set_value(1).run()
    assert not at.exception, at.exception
    highlighted = [m.value for m in at.markdown if ":orange-background[" in m.value]
    assert len(highlighted) == 1
    marked = highlighted[0].split(":orange-background[", 1)[1].split("]", 1)[0]
    assert "completed in 1844" in marked and "Tiree" not in marked  # only the cited sentence
    assert any("**\\[1\\] lighthouse\\.md**" in t for t in shown_text(at))  # document name
    labels = {m.label: m.value for m in at.metric}
    assert list(labels) == ["BM25 score", "Dense score", "Fused score", "Rerank score"]
    assert all(labels[k] != "—" for k in ("BM25 score", "Dense score", "Fused score"))
    assert labels["Rerank score"] == "—"  # no reranker is installed here
    assert [c.value for c in at.caption if c.value.startswith(("rank", "not ranked"))] == [
        "rank 1", "rank 1", "rank 1", "not ranked by this stage"]

    table = at.dataframe[0].value
    assert tuple(table.columns) == CANDIDATE_COLUMNS
    assert list(table["rank"]) == [1, 2]
    assert table.loc[0, "document"] == "lighthouse.md"
    assert table["dense_score"].notna().all() and table["fused_rank"].notna().all()
    assert table.loc[0, "bm25_rank"] == 1  # the other passage shares no words with the question
    assert table["rerank_score"].isna().all()
    assert len(at.get("vega_lite_chart")) == 1  # the per-stage cost chart

    models = [c.value for c in at.sidebar.caption]
    assert "Reranker: none installed" in models
    assert any(m.startswith("Generator: fake") for m in models)
    assert any(m.startswith("Embedding model: gt") for m in models)


def test_follow_up_uses_history_and_shows_the_rewritten_query(app_path: Path, data_dir: Path) -> None:
    at = ask(start(app_path), "When was the Skerryvore lighthouse completed?")
    at = ask(at, "And how tall is it?")
    assert [m.name for m in at.chat_message] == ["user", "assistant", "user", "assistant"]
    searched = [c.value for c in at.chat_message[2].caption]
    assert searched and searched[0].startswith("Searched for:") and "Skerryvore" in searched[0]
    assert not at.chat_message[0].caption  # the first question was searched as asked


def test_sidebar_settings_reach_retrieval_and_notes_are_shown(app_path: Path, data_dir: Path) -> None:
    at = start(app_path)
    at.selectbox(key="mode").set_value("rerank")
    at.selectbox(key="fusion").set_value("minmax")
    at.slider(key="top_k").set_value(1)
    at.run()
    at = ask(at, "What does the Zanzibar release protocol require?")
    assistant = at.chat_message[1]
    notes = [c.value for c in assistant.caption if c.value.startswith("Note:")]
    assert any("reranker" in n.lower() for n in notes), notes
    assert any("rerank retrieval" in c.value for c in assistant.caption)
    assert len(at.dataframe[0].value) == 1  # k = 1


def test_document_text_is_always_escaped(app_path: Path, data_dir: Path) -> None:
    at = ask(start(app_path), "What does the Zanzibar release protocol require?")
    at.button_group[0].set_value(1).run()
    assert not at.exception, at.exception

    shown = [t for t in shown_text(at) if "alert" in t]
    assert len(shown) == 2, shown  # the quoting answer and the opened passage
    for text in shown:
        assert "&lt;script&gt;alert\\(1\\)&lt;/script&gt;" in text
        assert "<script" not in text
    assert not at.get("html")  # no st.html anywhere
    assert not [m.value for m in at.markdown if m.proto.allow_html]
    assert not [c.value for c in at.caption if c.proto.allow_html]
    # the grid renders cells as plain text, so the table keeps the passage as written
    assert any("<script>alert(1)</script>" in t for t in at.dataframe[0].value["text"])


def test_upload_summary_sanitises_refuses_and_does_not_reingest(
    app_path: Path, data_dir: Path, texts: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_APP_MAX_FILE_MB", "0.002")  # ~2 KB: big.txt is refused before ingest
    at = start(app_path)
    at.file_uploader[0].set_value([
        ("../../etc/quince\x07 orchard.md", texts["quince.md"].encode(), "text/markdown"),
        ("lighthouse.md", texts["lighthouse.md"].encode(), "text/markdown"),
        ("big.txt", b"word " * 1000, "text/plain"),
        ("blank.txt", b"   \n  ", "text/plain"),
    ]).run()
    assert not at.exception, at.exception

    summary = ["Added 1 document(s) (1 passages indexed)."]
    assert [s.value for s in at.success] == summary
    assert any("lighthouse\\.md" in i.value for i in at.info)  # duplicate
    errors = [e.value for e in at.error]
    assert any("big\\.txt" in e and "over the limit" in e for e in errors), errors
    assert any("blank\\.txt" in e for e in errors), errors
    # listed under its uploaded name, escaped, without the control character
    assert "**\\.\\./\\.\\./etc/quince orchard\\.md**" in [m.value for m in at.sidebar.markdown]
    assert "Collection (3)" in [s.value for s in at.subheader]

    at.run()  # a rerun shows the summary again and does not ingest the same uploads twice
    assert not at.exception, at.exception
    assert "Collection (3)" in [s.value for s in at.subheader]
    assert [s.value for s in at.success] == summary

    at = ask(at, "Who planted the quince orchard?")
    assert "Tobias Renn" in at.chat_message[1].markdown[0].value


def test_delete_document_from_sidebar(app_path: Path, data_dir: Path) -> None:
    ids = doc_ids(data_dir)
    at = start(app_path)
    assert "Collection (2)" in [s.value for s in at.subheader]
    at.button(key=f"delete-{ids['lighthouse.md']}").click().run()
    assert not at.exception, at.exception
    assert "Collection (1)" in [s.value for s in at.subheader]
    assert [s.value for s in at.success] == ["Deleted lighthouse\\.md\\."]
    assert all("lighthouse" not in m.value for m in at.sidebar.markdown)
    assert list(doc_ids(data_dir)) == ["protocol.txt"]

    at = ask(at, "When was the Skerryvore lighthouse completed?")
    assert "lighthouse.md" not in set(at.dataframe[0].value["document"])


def test_reuploading_a_changed_file_updates_it(app_path: Path, data_dir: Path, texts: dict[str, str]) -> None:
    at = start(app_path)
    at.file_uploader[0].set_value(("notes.md", texts["quince.md"].encode(), "text/markdown")).run()
    assert [s.value for s in at.success] == ["Added 1 document(s) (1 passages indexed)."]
    changed = texts["quince.md"].replace("twelve trees", "fourteen trees")
    at.file_uploader[0].set_value(("notes.md", changed.encode(), "text/markdown")).run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["Updated 1 document(s) (1 passages indexed)."]
    assert "Collection (3)" in [s.value for s in at.subheader]


def test_abstention_is_shown_clearly(app_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_APP_ABSTAIN_THRESHOLD", "1000")  # no retrieval score reaches it
    at = ask(start(app_path), "When was the Skerryvore lighthouse completed?")
    assistant = at.chat_message[1]
    assert [w.value for w in assistant.warning] == ["No answer found in your documents."]
    assert "do not contain the answer" in assistant.markdown[0].value
    assert any("abstention threshold" in c.value for c in assistant.caption)
    assert not at.button_group  # nothing cited


def test_a_failing_question_shows_an_error_and_the_page_survives(
    app_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_APP_EMBED_MODEL", str(data_dir / "no-such-model"))
    at = ask(start(app_path), "When was the Skerryvore lighthouse completed?")
    errors = [e.value for e in at.chat_message[1].error]
    assert len(errors) == 1 and errors[0].startswith("Could not answer"), errors
    at = ask(at, "Second try?")  # still usable
    assert len(at.chat_message) == 4
