from __future__ import annotations

import itertools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from rag_app.config import ChunkingConfig
from rag_app.ingest.chunking import chunk_document, pack, sentence_spans
from rag_app.ingest.loaders import LoadedDocument, LoadedPage
from rag_app.ingest.pipeline import assemble


def _words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def test_sentence_spans_split_on_terminators_and_paragraphs() -> None:
    text = "First sentence here. Second one! Third? Fourth\n\nNew paragraph without stop"
    spans = [text[s.start : s.end] for s in sentence_spans(text)]
    assert spans == ["First sentence here.", "Second one!", "Third?", "Fourth", "New paragraph without stop"]


def test_abbreviations_do_not_end_sentences() -> None:
    text = "Results were shown by Smith et al. In 2019 they grew. See e.g. Table 2 for details."
    spans = [text[s.start : s.end] for s in sentence_spans(text)]
    assert "Smith et al. In 2019 they grew." in spans[0]


def test_passages_respect_size_and_overlap() -> None:
    # 30 sentences of 10 words: passages of <= 50 words with >= 1 sentence of overlap.
    sentences = [f"{_words(9, f'S{i}w')} end{i}." for i in range(30)]
    text = " ".join(sentences)
    cfg = ChunkingConfig(chunk_words=50, overlap_words=10, min_words=5)
    chunks = chunk_document(text, [(0, len(text))], [], cfg)
    assert len(chunks) > 5
    for c in chunks:
        assert len(text[c.start : c.end].split()) <= 50
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end, "consecutive passages overlap"
        assert b.end > a.end, "every passage adds new text"
    assert chunks[0].start == 0 and chunks[-1].end == len(text)


def test_long_sentence_is_cut_at_words() -> None:
    text = _words(120, "w")
    chunks = chunk_document(text, [(0, len(text))], [], ChunkingConfig(chunk_words=50, overlap_words=0, min_words=1))
    assert [len(text[c.start : c.end].split()) for c in chunks] == [50, 50, 20]


def test_small_tail_merges_into_previous() -> None:
    spans_text = [f"{_words(9, f'S{i}w')} end." for i in range(5)] + ["Tiny tail."]
    text = " ".join(spans_text)
    cfg = ChunkingConfig(chunk_words=50, overlap_words=0, min_words=5)
    chunks = pack(sentence_spans(text), cfg)
    assert text[chunks[-1][0] : chunks[-1][1]].endswith("Tiny tail.")
    assert len(chunks) == 1


def test_pages_and_headings_and_offsets() -> None:
    loaded = LoadedDocument(
        "pdf",
        (LoadedPage("i", "Intro\n\nThe preface talks about apples. It is short."),
         LoadedPage("1", "Methods\n\nWe measured pears carefully. Then we ate them.")),
        headings=("Intro", "Methods"),
    )
    text, pages, passages = assemble("doc1", loaded, ChunkingConfig(chunk_words=200, overlap_words=40, min_words=1))
    assert [p.label for p in pages] == ["i", "1"]
    assert [p.page_label for p in passages] == ["i", "1"]
    assert passages[1].heading == "Methods"
    assert "pears" in passages[1].text and "apples" not in passages[1].text
    for p in passages:
        assert text[p.char_start : p.char_end] == p.text


def test_passage_ids_are_content_derived_and_stable() -> None:
    loaded = LoadedDocument("text", (LoadedPage("", "Alpha beta gamma. Delta epsilon."),))
    cfg = ChunkingConfig(chunk_words=200, overlap_words=40, min_words=1)
    _, _, a = assemble("docX", loaded, cfg)
    _, _, b = assemble("docX", loaded, cfg)
    _, _, c = assemble("docY", loaded, cfg)
    assert [p.id for p in a] == [p.id for p in b]
    assert a[0].id != c[0].id
    assert 0 <= a[0].vid < 2**63


_chars = st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_characters="\x7f")
_sentence = st.text(alphabet=_chars, min_size=1, max_size=60).map(lambda s: s.strip() or "x")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_sentence, min_size=1, max_size=25), min_size=1, max_size=4),
       st.integers(min_value=5, max_value=60), st.integers(min_value=0, max_value=4))
def test_every_passage_is_the_source_slice_it_claims(pages: list[list[str]], words: int, overlap: int) -> None:
    loaded = LoadedDocument("text", tuple(LoadedPage(str(i), ". ".join(p) + ".") for i, p in enumerate(pages)))
    cfg = ChunkingConfig(chunk_words=words, overlap_words=min(overlap, words - 1), min_words=1)
    text, _spans, passages = assemble("d", loaded, cfg)
    for p in passages:
        assert text[p.char_start : p.char_end] == p.text
        assert p.text == p.text.strip() and p.text
    # every word of the document is covered by some passage
    covered = [False] * len(text)
    for p in passages:
        for i in range(p.char_start, p.char_end):
            covered[i] = True
    for m in re.finditer(r"\S+", text):
        assert all(covered[m.start() : m.end()]), f"word {m.group()!r} lost"
