"""The answer stage: grounded generation over the context passages, then citation checks.

Abstention is decided by retrieval scores, not by the model (small models never abstain on
their own), and any model failure degrades to the extractive generator instead of an error:
the user always gets passages with citations.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from rag_app.generation.citations import attribute, validate
from rag_app.generation.llm import (
    ChatModel,
    EmbeddedLlamaServer,
    ExtractiveGenerator,
    GenerationError,
    OpenAIChat,
    find_embedded_model,
    llama_server_available,
)
from rag_app.generation.prompts import ABSTAIN_TEXT, build_messages, is_abstention, passage_label
from rag_app.generation.text import content_set
from rag_app.types import Answer, Candidate, Timings

if TYPE_CHECKING:
    from rag_app.config import GenerationConfig

log = logging.getLogger(__name__)

ABSTAIN_GENERATOR = "abstain"
DEFAULT_CONTEXT_CHARS = 12_000


def open_chat_model(
    config: GenerationConfig, stack: contextlib.ExitStack | None = None, *, embedded: bool = True
) -> ChatModel | None:
    """The chat model a config asks for: its endpoint if `base_url` is set, else the embedded model.

    The embedded server is a child process registered on `stack` (it stops when the stack closes);
    without a stack, or when the model or llama-cpp-python is missing or fails to start, this returns
    None and the Generator answers extractively.
    """
    if config.base_url:
        return OpenAIChat(
            config.base_url,
            config.api_key,
            config.model,
            timeout_s=config.timeout_s,
            max_retries=config.max_retries,
            max_tokens=config.max_tokens,
            temperature=config.temperature,
        )
    if not embedded or stack is None:
        return None
    path = config.embedded_model_path or find_embedded_model()
    if not path or not llama_server_available():
        log.info("no embedded LLM available (model file or llama-cpp-python[server] missing); extractive answers")
        return None
    try:
        server = stack.enter_context(EmbeddedLlamaServer(path, port=config.embedded_port))
    except GenerationError as exc:
        log.warning("embedded LLM did not start, answering extractively: %s", exc.message)
        return None
    return server.chat_model(
        max_tokens=config.max_tokens, temperature=config.temperature, timeout_s=max(config.timeout_s, 120.0)
    )


def abstention_score(candidate: Candidate) -> float | None:
    """The score abstention is calibrated on: the cross-encoder's when it ran, else the dense
    cosine (BM25 and RRF scores are not comparable across queries, so they never decide)."""
    if candidate.rerank_score is not None:
        return candidate.rerank_score
    return candidate.dense_score


class Generator:
    """Produces an `Answer` for a question from context candidates, streaming the text as it comes.

    `chat_model=None` means offline: the extractive generator quotes the best passage sentences.
    """

    def __init__(
        self,
        chat_model: ChatModel | None = None,
        *,
        context_passages: int = 5,
        abstain_threshold: float | None = None,
        max_context_chars: int | None = None,
        extractive: ExtractiveGenerator | None = None,
        attribute_uncited: bool = True,
    ) -> None:
        self.chat_model = chat_model
        self.context_passages = max(1, context_passages)
        self.abstain_threshold = abstain_threshold
        budget = getattr(chat_model, "context_chars", None)
        self.max_context_chars = max_context_chars or budget or DEFAULT_CONTEXT_CHARS
        self.extractive = extractive or ExtractiveGenerator()
        self.attribute_uncited = attribute_uncited

    @classmethod
    def from_config(cls, config: GenerationConfig, chat_model: ChatModel | None = None) -> Generator:
        """Settings from `config`; pass the model from `open_chat_model(config, stack)` (or None)."""
        return cls(
            chat_model,
            context_passages=config.context_passages,
            abstain_threshold=config.abstain_threshold,
        )

    @property
    def name(self) -> str:
        return self.chat_model.name if self.chat_model is not None else self.extractive.name

    def answer(
        self,
        question: str,
        rewritten: str,
        context: Sequence[Candidate],
        candidates: Sequence[Candidate] = (),
        timings: Timings | None = None,
    ) -> Answer:
        """Non-streaming form of `stream`."""
        for item in self.stream(question, rewritten, context, candidates, timings):
            if isinstance(item, Answer):
                return item
        raise RuntimeError("Generator.stream ended without an Answer")  # pragma: no cover

    def stream(
        self,
        question: str,
        rewritten: str,
        context: Sequence[Candidate],
        candidates: Sequence[Candidate] = (),
        timings: Timings | None = None,
    ) -> Iterator[str | Answer]:
        """Yield text chunks as generated, then exactly one final `Answer`.

        The chunks are a live preview; `Answer.text` is authoritative (invalid citation markers
        removed; after a mid-stream model failure it holds only the extractive fallback, which the
        stream yields after a blank line).
        """
        timings = timings or Timings()
        ctx = tuple(context[: self.context_passages])
        cands = tuple(candidates) or ctx
        asked = " ".join((rewritten or question).split())
        started = time.perf_counter()

        reason = self._abstain_reason(ctx)
        if reason is not None:
            text = self._abstention_text(ctx or cands[: self.context_passages])
            yield text
            yield Answer(
                question=question,
                rewritten_query=rewritten,
                text=text,
                generator=ABSTAIN_GENERATOR,
                citations=(),
                candidates=cands,
                context=ctx,
                timings=timings.add("generate", (time.perf_counter() - started) * 1000),
                abstained=True,
                notes=(reason,),
            )
            return

        passages = [c.passage for c in ctx]
        notes: list[str] = []
        text = ""
        generator = self.extractive.name
        from_model = False
        if self.chat_model is not None:
            messages = build_messages(asked, passages, self.max_context_chars)
            pieces: list[str] = []
            try:
                for piece in self.chat_model.stream(messages):
                    pieces.append(piece)
                    yield piece
                text = "".join(pieces).strip()
                if not text:
                    notes.append(f"{self.chat_model.name} returned an empty answer; answered extractively.")
            except GenerationError as exc:
                notes.append(f"{self.chat_model.name} failed: {exc.message} Answered extractively instead.")
                text = ""
            if text:
                generator, from_model = self.chat_model.name, True
            elif pieces:
                yield "\n\n"
        if not text:
            text = self.extractive.answer_text(asked, [(i, p.text) for i, p in enumerate(passages, 1)])
            yield text
        gen_ms = (time.perf_counter() - started) * 1000

        t0 = time.perf_counter()
        inferred: tuple[int, ...] = ()
        if self.attribute_uncited and from_model:
            text, inferred = attribute(text, passages)
        check = validate(text, passages)
        if check.invalid_numbers:
            notes.append(
                "Removed citations to passages that do not exist: " + ", ".join(f"[{n}]" for n in check.invalid_numbers)
            )
        if inferred:
            notes.append(
                "Citations "
                + ", ".join(f"[{n}]" for n in inferred)
                + " were added by word overlap: the model did not cite those sentences."
            )
        # claims that cite nothing and that no passage supports are as unsupported as badly cited ones
        unsupported = list(check.unsupported_sentences) + [
            s for s in check.uncited_sentences if len(content_set(s)) >= 3 and not is_abstention(s)
        ]
        if unsupported:
            notes.append(f"{len(unsupported)} sentence(s) are not supported by the passages.")
        abstained = is_abstention(check.text) and not check.citations
        if not check.citations and not abstained:
            notes.append("The answer cites no passage.")
        yield Answer(
            question=question,
            rewritten_query=rewritten,
            text=check.text,
            generator=generator,
            citations=check.citations,
            candidates=cands,
            context=ctx,
            timings=timings.add("generate", gen_ms).add("citations", (time.perf_counter() - t0) * 1000),
            abstained=abstained,
            invalid_citations=check.invalid_numbers,
            unsupported_sentences=tuple(unsupported),
            notes=tuple(notes),
        )

    def _abstain_reason(self, ctx: Sequence[Candidate]) -> str | None:
        if not ctx:
            return "No passages were retrieved for this question."
        scores = [s for s in (abstention_score(c) for c in ctx) if s is not None]
        if self.abstain_threshold is not None and scores and max(scores) < self.abstain_threshold:
            return (f"Best relevance score {max(scores):.3f} is below the abstention threshold "
                    f"{self.abstain_threshold:g}.")
        return None

    @staticmethod
    def _abstention_text(closest: Sequence[Candidate]) -> str:
        if not closest:
            return ABSTAIN_TEXT
        lines = [ABSTAIN_TEXT, "", "Closest passages:"]
        lines.extend(f"- {passage_label(c.passage)}" for c in closest[:3])
        return "\n".join(lines)
