"""Query normalisation and follow-up condensation (rules and LLM with validation)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import pytest

from rag_app.generation.llm import GenerationError
from rag_app.rewrite import (
    QueryRewriter,
    condense_rule_based,
    extract_literals,
    is_follow_up,
    normalise_query,
)

HISTORY = [("user", "Who founded Acme Corp?"), ("assistant", "Jane Doe founded Acme Corp [1].")]


class ScriptedChat:
    """A ChatModel that returns a fixed reply (or raises) and records the prompts it saw."""

    name = "scripted"

    def __init__(self, reply: str = "", error: Exception | None = None) -> None:
        self.reply = reply
        self.error = error
        self.seen: list[Sequence[Mapping[str, str]]] = []

    def complete(self, messages: Sequence[Mapping[str, str]]) -> str:
        self.seen.append(messages)
        if self.error is not None:
            raise self.error
        return self.reply

    def stream(self, messages: Sequence[Mapping[str, str]]) -> Iterator[str]:
        yield self.complete(messages)


def test_normalise_query() -> None:
    raw = "  What\u2019s the \u201creturn policy\u201d for SKU\u20114471\u2011B\u00a0?\u200b  \n"
    assert normalise_query(raw) == 'What\'s the "return policy" for SKU-4471-B ?'
    assert normalise_query("ＳＫＵ－４４７１") == "SKU-4471"  # NFKC full-width
    assert normalise_query("Price of SKU-4471-B") == "Price of SKU-4471-B"


def test_extract_literals() -> None:
    found = extract_literals('Is "net revenue" in FY2023 for SKU-4471-B under GDPR v2.1?')
    assert found == ['"net revenue"', "FY2023", "SKU-4471-B", "GDPR", "v2.1"]


def test_follow_up_carries_previous_subject() -> None:
    out = condense_rule_based("and when was it founded?", HISTORY)
    assert "Acme Corp" in out and "founded" in out
    assert out == "When was Acme Corp founded?"


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What about Beta Inc?", "Who founded Beta Inc?"),
        ("Where is its headquarters?", "Where is Acme Corp's headquarters?"),
        ("How much?", "How much? (Acme Corp founded)"),
        ("Where was he born?", "Where was he born? (Acme Corp)"),
    ],
)
def test_follow_up_forms(question: str, expected: str) -> None:
    assert condense_rule_based(question, HISTORY) == expected


@pytest.mark.parametrize(
    "question",
    ["What is the warranty for SKU-4471-B?", "Is there a refund policy for enterprise customers?",
     "Who founded Globex Corporation?"],
)  # fmt: skip
def test_standalone_questions_are_unchanged(question: str) -> None:
    assert not is_follow_up(question)
    assert condense_rule_based(question, HISTORY) == question


def test_chained_follow_ups_keep_the_subject() -> None:
    history = [*HISTORY, ("user", "and when was it founded?"), ("assistant", "In 1999 [1].")]
    assert "Acme Corp" in condense_rule_based("where?", history)


def test_no_history_is_unchanged() -> None:
    assert condense_rule_based("and when was it founded?", []) == "and when was it founded?"
    result = QueryRewriter().rewrite("  Who  founded Acme?", [])
    assert (result.rewritten, result.method) == ("Who founded Acme?", "none")


def test_rules_rewriter() -> None:
    result = QueryRewriter().rewrite("and when was it founded?", HISTORY)
    assert result.method == "rules" and result.original == "and when was it founded?"
    assert "Acme Corp" in result.rewritten and "founded" in result.rewritten


def test_llm_rewrite_used_when_valid() -> None:
    chat = ScriptedChat("Standalone query: When was Acme Corp founded?")
    result = QueryRewriter(chat).rewrite("and when was it founded?", HISTORY)
    assert result == type(result)("and when was it founded?", "When was Acme Corp founded?", "llm")
    prompt = chat.seen[0][-1]["content"]
    assert "Who founded Acme Corp?" in prompt and "and when was it founded?" in prompt


def test_llm_dropped_literal_is_reappended() -> None:
    chat = ScriptedChat("Acme Corp warranty length")
    result = QueryRewriter(chat).rewrite("what is its warranty for SKU-4471-B?", HISTORY)
    assert result.method == "llm" and result.rewritten == "Acme Corp warranty length SKU-4471-B"


@pytest.mark.parametrize(
    "chat",
    [
        ScriptedChat(error=GenerationError("down", "unreachable")),
        ScriptedChat(error=RuntimeError("weird")),
        ScriptedChat(""),
        ScriptedChat("When was Acme Corp founded?\nIt was founded in 1999."),
        ScriptedChat("x" * 2000),
    ],
)
def test_bad_llm_output_falls_back_to_rules(chat: ScriptedChat) -> None:
    result = QueryRewriter(chat).rewrite("and when was it founded?", HISTORY)
    assert result.method == "rules" and result.rewritten == "When was Acme Corp founded?"


@pytest.mark.parametrize(
    "reply",
    [
        "Jane Doe founded Acme Corp [1].",  # an answer, not a query
        "What is the name of the company that founded Acme Corp?",  # lost 'headquarters'
    ],
)
def test_llm_output_that_drops_the_question_is_rejected(reply: str) -> None:
    result = QueryRewriter(ScriptedChat(reply)).rewrite("Where is its headquarters?", HISTORY)
    assert result.method == "rules" and result.rewritten == "Where is Acme Corp's headquarters?"
