"""The answer stage end to end against the fake server: streaming, citation checks, fallback, abstention."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import pytest

from rag_app.config import GenerationConfig
from rag_app.generation import ABSTAIN_TEXT, GenerationError, Generator, OpenAIChat, open_chat_model
from rag_app.types import Answer, Candidate, Timings

from .conftest import FakeOpenAI

MakeCandidates = Callable[..., tuple[Candidate, ...]]
Corpus = dict[str, tuple[str, str, str]]


def _run(gen: Generator, question: str, context: tuple[Candidate, ...]) -> tuple[list[str], Answer]:
    chunks: list[str] = []
    final: list[Answer] = []
    for item in gen.stream(question, question, context, context, Timings().add("retrieve", 5.0)):
        if isinstance(item, Answer):
            final.append(item)
        else:
            assert not final, "text after the final Answer"
            chunks.append(item)
    assert len(final) == 1
    return chunks, final[0]


def _chat(fake: FakeOpenAI, **kwargs: object) -> OpenAIChat:
    options: dict[str, object] = {"timeout_s": 5.0, "max_retries": 2}
    options.update(kwargs)
    return OpenAIChat(fake.base_url, "sk-test-key-123456", "fake-model", **options)  # type: ignore[arg-type]


def test_streams_tokens_then_answer_with_checked_citations(
    fake_llm: FakeOpenAI, make_candidates: MakeCandidates, corpus: Corpus
) -> None:
    fake_llm.reply = "Acme Corp was founded in 1999 by Jane Doe [1]. It is in Springfield [1][4]."
    context = make_candidates([corpus["acme"], corpus["eiffel"]])
    chunks, answer = _run(Generator(_chat(fake_llm)), "Who founded Acme Corp?", context)

    assert "".join(chunks) == fake_llm.reply
    assert len(chunks) > 5
    assert answer.text == "Acme Corp was founded in 1999 by Jane Doe [1]. It is in Springfield [1]."
    assert answer.invalid_citations == (4,)
    assert any("[4]" in note for note in answer.notes)
    assert {c.number for c in answer.citations} == {1}
    assert all(c.passage == context[0].passage for c in answer.citations)
    assert answer.generator.startswith("openai:fake-model@127.0.0.1:")
    assert not answer.abstained
    stages = answer.timings.as_dict()
    assert "retrieve" in stages and "generate" in stages and "citations" in stages
    assert answer.context == context and answer.candidates == context

    user = fake_llm.requests[0]["messages"][1]["content"]
    assert "Question: Who founded Acme Corp?" in user and '<passage n="2"' in user
    assert corpus["acme"][0] not in fake_llm.requests[0]["messages"][0]["content"]


def test_401_falls_back_to_extractive_with_citations(
    fake_llm: FakeOpenAI, make_candidates: MakeCandidates, corpus: Corpus
) -> None:
    fake_llm.mode = "401"
    context = make_candidates([corpus["eiffel"], corpus["acme"]])
    chunks, answer = _run(Generator(_chat(fake_llm)), "When was the Eiffel Tower completed?", context)

    assert answer.generator == "extractive"
    assert any("401" in note and "API key" in note for note in answer.notes)
    assert all("sk-test-key-123456" not in note for note in answer.notes)
    assert answer.citations and answer.citations[0].number == 1
    assert "1889" in answer.text and "".join(chunks) == answer.text
    assert len(fake_llm.requests) == 1


@pytest.mark.parametrize("mode", ["429", "500"])
def test_retryable_errors_retry_then_fall_back(
    fake_llm: FakeOpenAI, make_candidates: MakeCandidates, corpus: Corpus, mode: str
) -> None:
    fake_llm.mode = mode
    context = make_candidates([corpus["acme"]])
    _, answer = _run(Generator(_chat(fake_llm, max_retries=2)), "When was Acme Corp founded?", context)
    assert len(fake_llm.requests) == 3
    assert answer.generator == "extractive"
    assert any(mode in note for note in answer.notes)
    assert answer.citations and "1999" in answer.text


def test_timeout_falls_back(fake_llm: FakeOpenAI, make_candidates: MakeCandidates, corpus: Corpus) -> None:
    fake_llm.mode = "hang"
    context = make_candidates([corpus["acme"]])
    _, answer = _run(Generator(_chat(fake_llm, timeout_s=0.5, max_retries=0)), "When was Acme Corp founded?", context)
    assert answer.generator == "extractive" and any("did not answer" in n for n in answer.notes)


def test_no_model_is_extractive(make_candidates: MakeCandidates, corpus: Corpus) -> None:
    context = make_candidates([corpus["rhine"], corpus["eiffel"]])
    answer = Generator(None).answer("How long is the Rhine?", "How long is the Rhine?", context, context)
    assert answer.generator == "extractive" and not answer.notes
    assert "1,230 kilometres" in answer.text and answer.citations[0].number == 1
    assert all(c.supported for c in answer.citations)


def test_abstains_below_threshold_and_lists_closest(
    fake_llm: FakeOpenAI, make_candidates: MakeCandidates, corpus: Corpus
) -> None:
    context = make_candidates([corpus["acme"], corpus["eiffel"]], top_score=0.2)
    gen = Generator(_chat(fake_llm), abstain_threshold=0.5)
    chunks, answer = _run(gen, "What is the capital of Mars?", context)
    assert answer.abstained and answer.text.startswith(ABSTAIN_TEXT)
    assert "acme_history.pdf, p. 3" in answer.text and answer.context == context
    assert answer.citations == () and "".join(chunks) == answer.text
    assert fake_llm.requests == []  # the model is not asked
    assert "below the abstention threshold" in answer.notes[0]


def test_abstains_without_candidates() -> None:
    answer = Generator(None).answer("Anything?", "Anything?", ())
    assert answer.abstained and answer.text == ABSTAIN_TEXT and answer.generator == "abstain"


def test_model_abstention_is_recognised(fake_llm: FakeOpenAI, make_candidates: MakeCandidates, corpus: Corpus) -> None:
    fake_llm.reply = ABSTAIN_TEXT
    context = make_candidates([corpus["acme"]])
    _, answer = _run(Generator(_chat(fake_llm)), "Who painted the Mona Lisa?", context)
    assert answer.abstained and answer.citations == ()


def test_context_is_limited_and_rewritten_query_is_asked(
    fake_llm: FakeOpenAI, make_candidates: MakeCandidates, corpus: Corpus
) -> None:
    context = make_candidates([corpus["acme"], corpus["eiffel"], corpus["rhine"]])
    gen = Generator(_chat(fake_llm), context_passages=2)
    answer = gen.answer("and when?", "When was Acme Corp founded?", context, context)
    user = fake_llm.requests[0]["messages"][1]["content"]
    assert '<passage n="2"' in user and '<passage n="3"' not in user
    assert "Question: When was Acme Corp founded?" in user
    assert answer.question == "and when?" and answer.rewritten_query == "When was Acme Corp founded?"
    assert len(answer.context) == 2 and len(answer.candidates) == 3


def test_from_config(fake_llm: FakeOpenAI, make_candidates: MakeCandidates, corpus: Corpus) -> None:
    config = GenerationConfig(
        base_url=fake_llm.base_url, api_key="k-123456", model="fake-model", context_passages=1, abstain_threshold=0.1
    )
    with contextlib.ExitStack() as stack:
        chat = open_chat_model(config, stack)
        gen = Generator.from_config(config, chat)
        assert isinstance(chat, OpenAIChat) and gen.context_passages == 1 and gen.abstain_threshold == 0.1
        answer = gen.answer("Who founded Acme Corp?", "", make_candidates([corpus["acme"]]))
    assert answer.generator == chat.name and answer.citations
    assert open_chat_model(GenerationConfig(), None) is None


def test_uncited_model_answer_gets_inferred_citations(
    fake_llm: FakeOpenAI, make_candidates: MakeCandidates, corpus: Corpus
) -> None:
    fake_llm.reply = "The Eiffel Tower was designed by Gustave Eiffel. The capital of Australia is Canberra."
    context = make_candidates([corpus["acme"], corpus["eiffel"]])
    chunks, answer = _run(Generator(_chat(fake_llm)), "Who designed the Eiffel Tower?", context)
    assert "".join(chunks) == fake_llm.reply
    assert answer.text == "The Eiffel Tower was designed by Gustave Eiffel [2]. The capital of Australia is Canberra."
    assert [c.number for c in answer.citations] == [2]
    assert answer.unsupported_sentences == ("The capital of Australia is Canberra.",)
    assert any("added by word overlap" in n for n in answer.notes)

    strict = Generator(_chat(fake_llm), attribute_uncited=False).answer("q?", "", context)
    assert strict.citations == () and "The answer cites no passage." in strict.notes


class _BreaksMidStream:
    """A ChatModel that yields two tokens and then fails like a dropped connection."""

    name = "breaks"

    def complete(self, messages: Sequence[Mapping[str, str]]) -> str:
        raise GenerationError("connection dropped", "unreachable")

    def stream(self, messages: Sequence[Mapping[str, str]]) -> Iterator[str]:
        yield "Acme"
        yield " Corp was"
        raise GenerationError("connection dropped", "unreachable")


def test_mid_stream_failure_switches_to_extractive(make_candidates: MakeCandidates, corpus: Corpus) -> None:
    context = make_candidates([corpus["acme"]])
    chunks, answer = _run(Generator(_BreaksMidStream()), "When was Acme Corp founded?", context)
    assert chunks[:3] == ["Acme", " Corp was", "\n\n"]
    assert "".join(chunks[3:]) == answer.text and "1999" in answer.text
    assert answer.generator == "extractive" and "connection dropped" in answer.notes[0]
