"""Query normalisation and follow-up condensation.

Retrieval sees one query string, so a follow-up such as "and when was it founded?" must become
standalone first. Rules handle the common cases for free; a chat model, when available, does
better, but its output is validated and the user's literals (IDs, codes, quoted phrases) are
guaranteed to survive, because losing "SKU-4471-B" silently ruins exact-match retrieval.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rag_app.generation.text import STOPWORDS, content_set, words

if TYPE_CHECKING:
    from rag_app.generation.llm import ChatModel

log = logging.getLogger(__name__)

RewriteMethod = Literal["none", "rules", "llm"]

_CHAR_MAP = str.maketrans(
    {
        "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "`": "'",
        "“": '"', "”": '"', "„": '"', "‟": '"', "″": '"', "«": '"', "»": '"',
        "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "−": "-",
        "\u200b": None, "\u200c": None, "\u200d": None, "\ufeff": None, "\u00ad": None,
    }
)  # fmt: skip

_QUOTED_RE = re.compile(r'"([^"\n]{2,120})"')
_CODE_RE = re.compile(
    r"(?<![\w-])(?=[\w./-]*\d)[A-Za-z0-9][\w./-]*[A-Za-z0-9](?![\w-])"  # contains a digit: SKU-4471-B, v2.1
    r"|(?<![\w-])[A-Z]{2,}(?:[-_][A-Z0-9]+)*(?![\w-])"  # acronyms and upper codes: GDPR, ISO-X
)
_CAP_WORD_RE = re.compile(r"^[A-Z][\w'&.-]*$")
_STRONG_PRONOUNS = frozenset(("it", "its", "they", "them", "their", "theirs", "he", "she", "him", "his", "her", "hers"))
_WEAK_PRONOUNS = frozenset(("this", "that", "these", "those", "there"))
_FOLLOW_UP_START_RE = re.compile(r"^(?:and|also|but|so|then|or)\b|^(?:what|how)\s+about\b", re.IGNORECASE)
_WHAT_ABOUT_RE = re.compile(r"^(?:and\s+)?(?:what|how)\s+about\s+(.+?)[\s?.!]*$", re.IGNORECASE)
_LEADING_CONJ_RE = re.compile(r"^(?:and|also|but|so|then|or)\b[\s,]*", re.IGNORECASE)
_LABEL_RE = re.compile(r"^(?:standalone\s+)?(?:question|query|rewritten(?:\s+query)?|search query)\s*:\s*", re.I)

SHORT_QUESTION_WORDS = 3
"""Questions of at most this many words without an entity of their own are treated as follow-ups."""


def normalise_query(q: str) -> str:
    """NFKC, smart quotes and dashes to ASCII, invisible characters dropped, whitespace collapsed.

    Case and punctuation are kept: IDs and quoted phrases must reach BM25 exactly as typed.
    """
    text = unicodedata.normalize("NFKC", q).translate(_CHAR_MAP)
    return " ".join(text.split())


def extract_literals(text: str) -> list[str]:
    """Quoted phrases and code-like tokens (digits, ALL-CAPS) that must be preserved verbatim."""
    found: list[str] = []
    for match in _QUOTED_RE.finditer(text):
        found.append(f'"{match.group(1)}"')
    unquoted = _QUOTED_RE.sub(" ", text)
    for match in _CODE_RE.finditer(unquoted):
        token = match.group().rstrip(".")
        if token:
            found.append(token)
    return list(dict.fromkeys(found))


def _capitalised_phrases(text: str) -> list[str]:
    """Runs of capitalised words ('Acme Corp', 'Bank of America'); a lone sentence-initial word is not one."""
    tokens = re.findall(r"[\w'&.-]+", _QUOTED_RE.sub(" , ", text))
    phrases: list[str] = []
    run: list[tuple[int, str]] = []

    def flush() -> None:
        while run and run[-1][1].lower() in ("of", "and", "the", "&", "for", "de"):
            run.pop()
        words_ = [w for _, w in run]
        if run and run[0][0] == 0:
            while words_ and words_[0].lower() in STOPWORDS:
                words_.pop(0)
            if len(words_) == 1 and len(run) == 1:
                words_ = []
        if words_:
            phrases.append(" ".join(w.rstrip(".") for w in words_))
        run.clear()

    for i, token in enumerate(tokens):
        if _CAP_WORD_RE.match(token) or (run and token.lower() in ("of", "and", "the", "&", "for", "de")):
            run.append((i, token))
        else:
            flush()
    flush()
    return list(dict.fromkeys(p for p in phrases if p))


def key_terms(text: str) -> list[str]:
    """What a follow-up must inherit: literals, capitalised names, then other content words."""
    terms = extract_literals(text) + _capitalised_phrases(text)
    covered: set[str] = set()
    for term in terms:
        covered |= content_set(term)
    for token in words(_QUOTED_RE.sub(" ", text)):
        low = token.lower()
        if low in STOPWORDS or len(low) < 3 or low.isdigit():
            continue
        if content_set(token) <= covered:
            continue
        covered |= content_set(token)
        terms.append(token)
    return list(dict.fromkeys(terms))


def _has_own_entity(question: str) -> bool:
    return bool(extract_literals(question) or _capitalised_phrases(question))


def is_follow_up(question: str) -> bool:
    """Heuristic: pronoun reference, a leading 'and'/'what about', or a very short entity-less question."""
    q = normalise_query(question)
    if _FOLLOW_UP_START_RE.match(q):
        return True
    toks = [w.lower() for w in words(q)]
    if not toks:
        return False
    own = _has_own_entity(q)
    if len(toks) <= SHORT_QUESTION_WORDS and not own:
        return True
    if own:
        return False
    if any(t in _STRONG_PRONOUNS for t in toks):
        return True
    existential = re.compile(r"\b(?:is|are|was|were|be)\s+there\b|\bthere\s+(?:is|are|was|were)\b", re.I)
    weak = [t for t in toks if t in _WEAK_PRONOUNS and not (t == "there" and existential.search(q))]
    return bool(weak) and len(toks) <= 6


def _contains_term(text: str, term: str) -> bool:
    if term.lower() in text.lower():
        return True
    terms = content_set(term)
    return bool(terms) and terms <= content_set(text)


def _condense_pair(question: str, previous: str) -> str:
    """Make `question` standalone using the (already standalone) previous user question."""
    if not is_follow_up(question):
        return question
    prev_entities = extract_literals(previous) + _capitalised_phrases(previous)
    main = prev_entities[0] if prev_entities else ""

    what_about = _WHAT_ABOUT_RE.match(question)
    if what_about:
        subject = what_about.group(1).strip()
        if main and main in previous:
            return previous.replace(main, subject, 1)
        return f"{previous.rstrip(' ?.!')} {subject}?"

    out = _LEADING_CONJ_RE.sub("", question).strip() or question
    out = out[0].upper() + out[1:]
    if main and not _contains_term(out, main):
        out, n = re.subn(r"\bits\b", f"{main}'s", out, count=1, flags=re.IGNORECASE)
        if not n:
            out = re.sub(r"\bit\b", main, out, count=1, flags=re.IGNORECASE)
    # short questions inherit every key term; longer ones only the names and literals they lack
    inherit = key_terms(previous) if len(words(out)) <= SHORT_QUESTION_WORDS else prev_entities
    missing = [t for t in inherit if not _contains_term(out, t)]
    if missing:
        out = f"{out} ({' '.join(missing)})"
    return out


def condense_rule_based(question: str, history: Sequence[tuple[str, str]]) -> str:
    """A standalone form of `question` given (role, content) history, or the question unchanged.

    Earlier user turns are condensed in order, so chains of follow-ups keep their subject.
    """
    q = normalise_query(question)
    previous: str | None = None
    user_turns = [normalise_query(c) for role, c in history if role == "user" and c.strip()]
    if user_turns and user_turns[-1] == q:
        user_turns.pop()  # the caller already appended the current question
    for turn in user_turns:
        previous = turn if previous is None else _condense_pair(turn, previous)
    if previous is None:
        return q
    return _condense_pair(q, previous)


@dataclass(frozen=True)
class RewriteResult:
    original: str
    rewritten: str
    method: RewriteMethod


REWRITE_SYSTEM = (
    "You rewrite the user's last question into one standalone search query. "
    "Use the conversation only to replace references like it, they, that or 'what about' with what they "
    "refer to. Keep names, IDs, codes, numbers and quoted phrases exactly as written. "
    "Do not answer the question. Reply with the query only, on one line."
)


class QueryRewriter:
    """Condenses follow-ups into standalone queries: with a chat model if given, else by rules."""

    def __init__(
        self,
        chat_model: ChatModel | None = None,
        *,
        max_history_turns: int = 6,
        max_turn_chars: int = 400,
    ) -> None:
        self.chat_model = chat_model
        self.max_history_turns = max_history_turns
        self.max_turn_chars = max_turn_chars

    def rewrite(self, question: str, history: Sequence[tuple[str, str]] = ()) -> RewriteResult:
        normalised = normalise_query(question)
        if not any(role == "user" for role, _ in history):
            return RewriteResult(question, normalised, "none")
        if self.chat_model is not None:
            rewritten = self._rewrite_llm(normalised, history)
            if rewritten is not None:
                return RewriteResult(question, rewritten, "llm")
        condensed = condense_rule_based(normalised, history)
        return RewriteResult(question, condensed, "rules" if condensed != normalised else "none")

    def _messages(self, question: str, history: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
        lines = []
        for role, content in list(history)[-self.max_history_turns :]:
            text = " ".join(content.split())
            if len(text) > self.max_turn_chars:
                text = text[: self.max_turn_chars] + " …"
            lines.append(f"{'User' if role == 'user' else 'Assistant'}: {text}")
        user = "Conversation:\n" + "\n".join(lines) + f"\n\nLast question: {question}\n\nStandalone query:"
        return [{"role": "system", "content": REWRITE_SYSTEM}, {"role": "user", "content": user}]

    def _rewrite_llm(self, question: str, history: Sequence[tuple[str, str]]) -> str | None:
        assert self.chat_model is not None
        try:
            raw = self.chat_model.complete(self._messages(question, history))
        except Exception as exc:  # noqa: BLE001 - any model failure: the rules still work
            log.warning("LLM query rewrite failed, using rules: %s", getattr(exc, "message", type(exc).__name__))
            return None
        out = self.validate_llm_output(raw, question, history)
        if out is None:
            log.info("LLM query rewrite rejected, using rules")
        return out

    @staticmethod
    def validate_llm_output(raw: str, question: str, history: Sequence[tuple[str, str]] = ()) -> str | None:
        """Accept one non-empty line of sane length that keeps the question's content words; None otherwise.

        The question's literals are re-appended if the model dropped them.
        """
        text = raw.strip()
        if not text or "\n" in text:
            return None
        text = _LABEL_RE.sub("", text).strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            text = text[1:-1].strip()
        text = normalise_query(text)
        previous = next((c for role, c in reversed(history) if role == "user"), "")
        limit = max(200, 3 * (len(question) + len(previous)))
        if not text or len(text) > limit or re.search(r"\[\d{1,3}\]", text):
            return None  # empty, rambling, or an answer with citations rather than a query
        if any(role != "user" and normalise_query(c) in text for role, c in history if len(c) > 20):
            return None  # copied an assistant turn
        asked = content_set(question)
        if asked and len(asked & content_set(text)) < 0.5 * len(asked):
            return None  # lost what the user asked about
        missing = [lit for lit in extract_literals(question) if lit.strip('"') not in text]
        if missing:
            text = f"{text} {' '.join(missing)}"
        return text
