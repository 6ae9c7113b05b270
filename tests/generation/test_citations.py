"""Citation parsing and checking on hand-made answers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rag_app.generation.citations import (
    SUPPORT_THRESHOLD,
    attribute,
    cited_numbers,
    parse_markers,
    strip_markers,
    validate,
)
from rag_app.types import Passage


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Claim [1].", [(1,)]),
        ("Claim [1, 3].", [(1, 3)]),
        ("Claim [2-4].", [(2, 3, 4)]),
        ("Claim [2–3].", [(2, 3)]),
        ("Claim [1][2].", [(1,), (2,)]),
        ("Claim [ 1 ; 2 ].", [(1, 2)]),
        ("Claim [Passage 2].", [(2,)]),
        ("In [2019] nothing; [a] neither.", []),
        ("Huge [1-900].", [(1, 900)]),
    ],
)
def test_parse_markers(text: str, expected: list[tuple[int, ...]]) -> None:
    assert [m.numbers for m in parse_markers(text)] == expected


def test_cited_numbers_and_strip() -> None:
    text = "A [2] and B [1][2]. C [3-4]."
    assert cited_numbers(text) == [2, 1, 3, 4]
    assert strip_markers(text) == "A and B. C."


@pytest.fixture
def passages(make_passage: Callable[..., Passage]) -> list[Passage]:
    return [
        make_passage("Acme Corp was founded in 1999 by Jane Doe in Springfield.", "a.pdf", "1"),
        make_passage("The Eiffel Tower was completed in 1889 for the World's Fair in Paris.", "b.pdf", "7"),
    ]


def test_invalid_markers_are_removed_and_reported(passages: list[Passage]) -> None:
    check = validate("Acme Corp was founded in 1999 [1][7]. The tower was completed in 1889 [5, 2].", passages)
    assert check.invalid_numbers == (7, 5)
    assert check.text == "Acme Corp was founded in 1999 [1]. The tower was completed in 1889 [2]."
    assert [(c.number, c.passage.doc_name) for c in check.citations] == [(1, "a.pdf"), (2, "b.pdf")]
    assert all(c.supported for c in check.citations)
    assert check.unsupported_sentences == ()


def test_marker_only_invalid_is_dropped_cleanly(passages: list[Passage]) -> None:
    check = validate("Jane Doe founded Acme Corp [9].", passages)
    assert check.text == "Jane Doe founded Acme Corp."
    assert check.invalid_numbers == (9,)
    assert check.citations == ()
    assert check.uncited_sentences == ("Jane Doe founded Acme Corp.",)


def test_one_citation_per_sentence_and_passage(passages: list[Passage]) -> None:
    check = validate(
        "Acme Corp was founded in 1999 [1][1], and the tower in 1889 [2]. Jane Doe founded it [1].", passages
    )
    pairs = [(c.sentence, c.number) for c in check.citations]
    assert pairs == [
        ("Acme Corp was founded in 1999, and the tower in 1889.", 1),
        ("Acme Corp was founded in 1999, and the tower in 1889.", 2),
        ("Jane Doe founded it.", 1),
    ]
    # each passage alone covers part of the first sentence; together they support it
    assert check.unsupported_sentences == ()


def test_leading_marker_belongs_to_previous_sentence(passages: list[Passage]) -> None:
    check = validate("Acme Corp was founded in 1999. [1] The Eiffel Tower was completed in 1889.[2]", passages)
    assert [(c.number, c.sentence) for c in check.citations] == [
        (1, "Acme Corp was founded in 1999."),
        (2, "The Eiffel Tower was completed in 1889."),
    ]


def test_unsupported_sentences_are_listed_not_hidden(passages: list[Passage]) -> None:
    text = "Acme Corp was founded in 1999 [1]. Acme sells quantum submarines to Martian governments [1]."
    check = validate(text, passages)
    bad = [c for c in check.citations if not c.supported]
    assert len(bad) == 1 and bad[0].support is not None and bad[0].support < SUPPORT_THRESHOLD
    assert check.unsupported_sentences == ("Acme sells quantum submarines to Martian governments.",)
    assert "quantum submarines" in check.text  # flagged, not removed


def test_wrong_passage_is_unsupported(passages: list[Passage]) -> None:
    check = validate("The Eiffel Tower was completed in 1889 [1].", passages)
    assert not check.citations[0].supported
    assert check.unsupported_sentences == ("The Eiffel Tower was completed in 1889.",)


def test_light_stemming_accepts_inflections(passages: list[Passage]) -> None:
    check = validate("Jane Doe's founding of Acme Corp happened in 1999 [1].", passages)
    assert check.citations[0].supported


def test_sentence_without_content_words_counts_as_supported(passages: list[Passage]) -> None:
    check = validate("Yes [1].", passages)
    assert check.citations[0].support is None and check.citations[0].supported


def test_attribute_adds_markers_only_where_supported(passages: list[Passage]) -> None:
    text = (
        'Jane Doe founded Acme Corp. The tower was completed in 1889! It said "the tower was completed." Mars is red.'
    )
    out, added = attribute(text, passages)
    assert out == (
        "Jane Doe founded Acme Corp [1]. The tower was completed in 1889 [2]! "
        'It said "the tower was completed." [2] Mars is red.'
    )
    assert added == (1, 2)
    check = validate(out, passages)
    assert [c.number for c in check.citations] == [1, 2, 2] and all(c.supported for c in check.citations)


def test_attribute_leaves_cited_sentences_alone(passages: list[Passage]) -> None:
    text = "Acme Corp was founded in 1999 [2]. Jane Doe founded it. [1]"
    assert attribute(text, passages) == (text, ())
