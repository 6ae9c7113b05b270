"""Generation stage: grounded prompts, chat models (OpenAI-compatible, embedded, extractive), checked citations.

Importing this package is cheap: no network, no subprocess, and `openai` loads on first use.
"""

from rag_app.generation.answer import ABSTAIN_GENERATOR, Generator, open_chat_model
from rag_app.generation.citations import SUPPORT_THRESHOLD, CitationCheck, parse_markers, validate
from rag_app.generation.llm import (
    ChatModel,
    EmbeddedLlamaServer,
    ExtractiveGenerator,
    GenerationError,
    OpenAIChat,
    find_embedded_model,
    llama_server_available,
)
from rag_app.generation.prompts import ABSTAIN_TEXT, SYSTEM_PROMPT, build_messages

__all__ = [
    "ABSTAIN_GENERATOR",
    "ABSTAIN_TEXT",
    "SUPPORT_THRESHOLD",
    "SYSTEM_PROMPT",
    "ChatModel",
    "CitationCheck",
    "EmbeddedLlamaServer",
    "ExtractiveGenerator",
    "GenerationError",
    "Generator",
    "OpenAIChat",
    "build_messages",
    "find_embedded_model",
    "llama_server_available",
    "open_chat_model",
    "parse_markers",
    "validate",
]
