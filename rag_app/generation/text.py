"""Small, dependency-free text helpers shared by rewriting, citation checks and the extractive generator.

Kept deliberately simple (regex tokens, a light suffix stemmer, a fixed stopword list) so the
support scores are explainable and stable: they are a sanity check, not a retrieval model.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_STOPWORD_TEXT = """
    a about above after again against all also am an and any are aren as at be because been before
    being below between both but by can cannot could did didn do does doesn doing don down during each
    either else ever few for from further get gets got had hadn has hasn have haven having he her here
    hers herself him himself his how however i if in into is isn it its itself just let like made make
    many may me might more most much must my myself neither no nor not now of off on once one only or
    other ought our ours ourselves out over own per please rather said same say says shall she should
    shouldn since so some such than that the their theirs them themselves then there these they this
    those though through thus to too under until up upon us very via was wasn way we well were weren
    what when where whether which while who whom whose why will with within without would wouldn yet
    you your yours yourself yourselves s t d ll m re ve according document documents passage passages
    tell know give show describe explain yes
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORD_TEXT.split())

_WORD_RE = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?(?:[-_./][A-Za-z0-9]+)*")
_SENTENCE_END_RE = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)\]]))\s+|\n+")
_ABBREVIATION_TEXT = "e.g i.e vs mr mrs ms dr prof st no nos fig figs al approx jr sr dept est u.s cf ca"
_ABBREVIATIONS: frozenset[str] = frozenset(_ABBREVIATION_TEXT.split())


def words(text: str) -> list[str]:
    """Word-like tokens, keeping codes such as SKU-4471-B or v2.1 together."""
    return _WORD_RE.findall(text)


def stem(word: str) -> str:
    """A light English suffix stemmer: enough to match founded/founding/founds, not a Porter clone."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    if any(ch.isdigit() for ch in w) or len(w) <= 3:
        return w
    for suffix, repl in (
        ("ational", "ate"),
        ("ations", "ate"),
        ("ation", "ate"),
        ("ies", "y"),
        ("sses", "ss"),
        ("ness", ""),
        ("ments", ""),
        ("ment", ""),
        ("ings", ""),
        ("ing", ""),
        ("edly", ""),
        ("ed", ""),
        ("ly", ""),
        ("es", ""),
        ("s", ""),
    ):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            if suffix == "s" and (w.endswith("ss") or w.endswith("us") or w.endswith("is")):
                return w
            if suffix == "es" and not re.search(r"(sh|ch|x|z|ss)es$", w):
                continue
            base = w[: len(w) - len(suffix)] + repl
            if suffix in ("ing", "ings", "ed", "edly") and re.search(r"([b-df-hj-kmnp-rtv-y])\1$", base):
                base = base[:-1]  # running -> run, stopped -> stop
            return base
    return w


def content_terms(text: str) -> list[str]:
    """Stemmed non-stopword tokens in order (duplicates kept)."""
    out: list[str] = []
    for token in words(text):
        low = token.lower()
        if low in STOPWORDS or (len(low) == 1 and not low.isdigit()):
            continue
        out.append(stem(low))
    return out


def content_set(text: str) -> frozenset[str]:
    return frozenset(content_terms(text))


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of sentences; splits on .!? + whitespace and on newlines, not after abbreviations."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END_RE.finditer(text):
        if "\n" not in match.group():
            # a punctuation boundary: not after abbreviations and initials ("Dr. Who", "J. Smith")
            head = text[start : match.start()].rstrip("\"'”’)]").rstrip(".!?")
            last = head.rsplit(None, 1)[-1].lower() if head.split() else ""
            following = text[match.end() : match.end() + 1]
            if last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()) or following.islower():
                continue  # "Dr. Who", "J. Smith", "Acme Corp. makes ..."
        end = match.start()
        if text[start:end].strip():
            spans.append(_trim(text, start, end))
        start = match.end()
    if text[start:].strip():
        spans.append(_trim(text, start, len(text)))
    return spans


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def iter_sentences(text: str) -> Iterator[str]:
    for start, end in split_sentences(text):
        yield text[start:end]
