"""Pure helpers of the UI: file names, escaping, highlighting, tables, uploads, the fake chat model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from rag_app.generation.prompts import build_messages
from rag_app.types import Answer, Candidate, Citation, Passage, Timings
from rag_app.ui import components as ui


@dataclass
class FakeUpload:
    name: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def getvalue(self) -> bytes:
        return self.data


def passage(text: str, pid: str = "p1", name: str = "doc.txt") -> Passage:
    return Passage(id=pid, vid=1, doc_id="d1", ordinal=0, text=text, char_start=0, char_end=len(text),
                   page_label="3", doc_name=name)


@pytest.mark.parametrize(("raw", "safe"), [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd.txt", "passwd.txt"),
    ("..\\..\\windows\\evil.DOCX", "evil.docx"),
    ("a..b..md", "a.b.md"),
    ("..", "upload"),
    (".hidden.md", "hidden.md"),
    ("bell\x07\x00name\u202etxt.md", "bellnametxt.md"),
    ('what?<is>"this"|*.html', "what__is__this.html"),
    ("noext", "noext"),
    ("   .txt", "upload.txt"),
])
def test_sanitise_filename(raw: str, safe: str) -> None:
    assert ui.sanitise_filename(raw) == safe


def test_sanitise_filename_bounds_length_and_keeps_extension() -> None:
    name = ui.sanitise_filename("é" * 400 + ".pdf")
    assert name.endswith(".pdf") and len(name.encode()) <= 160


def test_md_escape_shows_markup_as_text() -> None:
    escaped = ui.md_escape("<script>alert(1)</script> **bold** [x](http://e.vil) $x$ :red[y]")
    assert escaped.startswith("&lt;script&gt;alert\\(1\\)&lt;/script&gt;")
    for raw in ("**", "[x]", "](", "http:", "$x$", ":red[", "<"):
        assert raw not in escaped
    # per-character: escaping chunks equals escaping the whole (streaming relies on it)
    text = "a <b> [1] & c"
    assert "".join(ui.md_escape(ch) for ch in text) == ui.md_escape(text)


def test_md_lines_keeps_line_breaks() -> None:
    assert ui.md_lines('"one" [1]\n"two" [2]') == '"one" \\[1\\]  \n"two" \\[2\\]'


def test_highlight_marks_the_best_matching_sentence_only() -> None:
    text = "Intro line here.\nThe tower is 48 metres\ntall and made of granite. Keepers lived there."
    spans = ui.highlight_spans(text, ["The tower is 48 metres tall"])
    assert len(spans) == 1
    start, end = spans[0]
    assert text[start:end].startswith("The tower") and text[start:end].endswith("granite.")
    md = ui.highlight_markdown(text, spans)
    assert md == ("Intro line here\\. :orange-background[**The tower is 48 metres tall and made of granite\\.**]"
                  " Keepers lived there\\.")
    assert ui.highlight_spans(text, ["completely unrelated words"]) == []


def test_highlight_markdown_escapes_document_html() -> None:
    text = "Hello <script>alert(1)</script> world. Second sentence here."
    md = ui.highlight_markdown(text, ui.highlight_spans(text, ["Hello world alert script"]))
    assert "<script>" not in md and "&lt;script&gt;" in md


def test_cited_sources_and_score_cells() -> None:
    p1, p2 = passage("First passage text.", "p1"), passage("Second passage.", "p2")
    c1 = Candidate(p1, bm25_score=2.5, bm25_rank=1, dense_score=0.5, dense_rank=2, fused_score=0.03, fused_rank=1)
    c2 = Candidate(p2, dense_score=0.7, dense_rank=1, fused_score=0.02, fused_rank=2)
    answer = Answer(
        question="q", rewritten_query="q", text="A [1]. B [2][1].", generator="g",
        citations=(Citation(1, p1, "A"), Citation(2, p2, "B"), Citation(1, p1, "B", supported=False)),
        candidates=(c1, c2), context=(c1, c2),
    )
    sources = ui.cited_sources(answer)
    assert [(s.number, s.sentences, s.supported) for s in sources] == [(1, ("A", "B"), False), (2, ("B",), True)]
    assert sources[0].candidate is c1
    assert ui.score_cells(c2) == [
        ("BM25", "—", "not ranked by this stage"), ("Dense", "0.7000", "rank 1"),
        ("Fused", "0.0200", "rank 2"), ("Rerank", "—", "not ranked by this stage"),
    ]
    frame = ui.candidates_frame(answer.candidates)
    assert tuple(frame.columns) == ui.CANDIDATE_COLUMNS
    assert str(frame["bm25_rank"].dtype) == "Int64" and frame["bm25_rank"].isna().tolist() == [False, True]
    assert str(frame["rerank_score"].dtype) == "float64"
    assert ui.candidates_frame(()).empty


def test_timings_frame_keeps_stage_order() -> None:
    timings = Timings().add("rewrite", 1.0).add("bm25", 2.0).add("encode", 3.0).add("bm25", 1.5)
    frame = ui.timings_frame(timings)
    assert frame["stage"].tolist() == ["rewrite", "bm25", "encode"] and frame["ms"].tolist() == [1.0, 3.5, 3.0]


def test_write_uploads_refuses_big_and_unsupported_and_avoids_collisions(tmp_path: Path) -> None:
    files = [
        FakeUpload("../a.md", b"# A\n\nalpha text"),
        FakeUpload("sub/a.md", b"# A2\n\nother text"),
        FakeUpload("big.txt", b"x" * 2000),
        FakeUpload("tool.exe", b"MZ"),
    ]
    staged = ui.write_uploads(files, tmp_path, max_bytes=1000)
    assert [p.name for p in staged.paths] == ["a.md", "a-2.md"]
    assert staged.display_names == {tmp_path / "a.md": "../a.md", tmp_path / "a-2.md": "sub/a.md"}
    assert (tmp_path / "a-2.md").read_bytes() == b"# A2\n\nother text"
    reasons = {r.path: r.reason for r in staged.refused}
    assert "over the limit of 0.000954 MB" in reasons["big.txt"]
    assert reasons["tool.exe"].startswith("unsupported file type '.exe'")


def test_upload_staging_cleans_up() -> None:
    with ui.upload_staging() as folder:
        (folder / "x.txt").write_text("x")
        assert folder.is_dir()
    assert not folder.exists()


def test_progress_adapter_maps_library_calls() -> None:
    seen: list[tuple[float, str]] = []
    adapter = ui.ProgressAdapter(lambda v, t: seen.append((v, t)))
    adapter("read", 1, 4, "a_b.md")
    adapter("encode", 7, 0, "")
    assert seen == [(0.25, "read\\: 1/4 · a\\_b\\.md"), (0.25, "encode\\: 7")]


def test_fake_chat_model_quotes_first_sentence_of_passage_one() -> None:
    chat = ui.QuoteFirstPassageChat()
    messages = build_messages("who?", [passage("# Title\n\nAnna Pavlovna gave\na party. Then more.", "p1"),
                                       passage("Other passage entirely.", "p2")])
    assert chat.complete(messages) == "Anna Pavlovna gave a party. [1]"
    assert "".join(chat.stream(messages)) == "Anna Pavlovna gave a party. [1]"
    assert len(list(chat.stream(messages))) > 3  # streamed word by word
    rewrite_prompt = [{"role": "system", "content": "rewrite"}, {"role": "user", "content": "Last question: x"}]
    assert chat.complete(rewrite_prompt) == ""  # the rewriter then uses its rules


def test_fake_llm_flag() -> None:
    assert ui.fake_llm_enabled({"RAG_APP_UI_FAKE_LLM": "1"})
    assert ui.fake_llm_enabled({"RAG_APP_UI_FAKE_LLM": "true"})
    assert not ui.fake_llm_enabled({})
    assert not ui.fake_llm_enabled({"RAG_APP_UI_FAKE_LLM": "0"})


def test_history_skips_failed_turns() -> None:
    messages = [ui.ChatMessage("user", "q1"), ui.ChatMessage("assistant", "a1"),
                ui.ChatMessage("user", "q2", error="boom"), ui.ChatMessage("assistant", "", error="boom")]
    assert ui.history(messages) == [("user", "q1"), ("assistant", "a1")]
