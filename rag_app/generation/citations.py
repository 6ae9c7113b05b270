"""Parse and check [n] citation markers in a generated answer (pure functions, no I/O).

Models cite passages that do not exist and attach citations to claims the passage does not
make; both are cheap to detect lexically, so every answer is checked before it is shown:
markers naming no passage are removed (and reported), the rest are resolved to `Citation`s,
and each cited sentence gets a support score against the passage(s) it cites.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag_app.generation.text import content_set, split_sentences
from rag_app.types import Citation, Passage

SUPPORT_THRESHOLD = 0.5
"""Minimum share of a sentence's content words (stopwords dropped, lightly stemmed) that must occur in
the cited passage for the citation to count as supported. 0.5 tolerates paraphrase and connective
words a model adds, while a sentence whose facts (names, numbers, key nouns) are mostly absent from
the passage falls below it. It is a lexical sanity check, not entailment: a negated or re-ordered
claim built from the passage's own words still passes."""

MAX_RANGE = 50
"""A range marker spanning more numbers than this ([1-9999]) is treated as garbage, not expanded."""

_NUM = r"\d{1,3}"
MARKER_RE = re.compile(
    r"\[\s*(?:(?:passage|source|doc(?:ument)?)\s*)?"
    rf"({_NUM}(?:\s*(?:[,;]|[-–—])\s*(?:(?:passage|source|doc(?:ument)?)\s*)?{_NUM})*)\s*\]",
    re.IGNORECASE,
)
_LEADING_MARKERS_RE = re.compile(r"^(?:\s*\[[^\]]{1,40}\])+")
_MARKER_WITH_SPACE_RE = re.compile(r"[ \t]*" + MARKER_RE.pattern, re.IGNORECASE)


@dataclass(frozen=True)
class Marker:
    """One bracketed marker as written: its span in the text and the passage numbers it names."""

    start: int
    end: int
    numbers: tuple[int, ...]


@dataclass(frozen=True)
class CitationCheck:
    """Outcome of `validate`: the cleaned text and what its citations resolve to."""

    text: str
    citations: tuple[Citation, ...]
    invalid_numbers: tuple[int, ...]
    unsupported_sentences: tuple[str, ...]
    uncited_sentences: tuple[str, ...]

    @property
    def cited_numbers(self) -> tuple[int, ...]:
        return tuple(sorted({c.number for c in self.citations}))


def _expand(body: str) -> tuple[int, ...]:
    numbers: list[int] = []
    for part in re.split(r"\s*[,;]\s*", body):
        bounds = [int(x) for x in re.findall(r"\d+", part)]
        if len(bounds) == 2:
            lo, hi = min(bounds), max(bounds)
            if hi - lo + 1 > MAX_RANGE:
                numbers.extend((lo, hi))
            else:
                numbers.extend(range(lo, hi + 1))
        else:
            numbers.extend(bounds)
    return tuple(dict.fromkeys(numbers))


def parse_markers(text: str) -> list[Marker]:
    """All markers: [n], [n, m], [n-m], [n][m] (two markers), also [Passage n]."""
    return [Marker(m.start(), m.end(), _expand(m.group(1))) for m in MARKER_RE.finditer(text)]


def cited_numbers(text: str) -> list[int]:
    """Distinct passage numbers cited anywhere in `text`, in order of first appearance."""
    seen: dict[int, None] = {}
    for marker in parse_markers(text):
        for n in marker.numbers:
            seen.setdefault(n, None)
    return list(seen)


def strip_markers(text: str) -> str:
    """The text with every marker removed (for scoring and display of bare sentences)."""
    return re.sub(r"[ \t]+([.,;:!?])", r"\1", _MARKER_WITH_SPACE_RE.sub("", text)).strip()


def support_score(sentence: str, passage_texts: Sequence[str]) -> float | None:
    """Content-word recall of `sentence` in the union of `passage_texts`; None if it has no content words."""
    terms = content_set(strip_markers(sentence))
    if not terms:
        return None
    vocab: set[str] = set()
    for text in passage_texts:
        vocab |= content_set(text)
    return len(terms & vocab) / len(terms)


def _clean(text: str, n_passages: int) -> tuple[str, list[int]]:
    """Drop invalid numbers and canonicalise markers to [a][b]; return the text and the invalid numbers."""
    out: list[str] = []
    invalid: list[int] = []
    pos = 0
    for marker in parse_markers(text):
        chunk = text[pos : marker.start]
        valid = tuple(n for n in marker.numbers if 1 <= n <= n_passages)
        invalid.extend(n for n in marker.numbers if not 1 <= n <= n_passages)
        if not valid:
            chunk = chunk.rstrip(" \t")
        out.append(chunk)
        if valid:
            out.append("".join(f"[{n}]" for n in valid))
        pos = marker.end
    out.append(text[pos:])
    cleaned = "".join(out)
    cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", cleaned) if invalid else cleaned
    return cleaned, list(dict.fromkeys(invalid))


def validate(answer_text: str, passages: Sequence[Passage]) -> CitationCheck:
    """Remove markers naming no passage, resolve the rest, and score each cited sentence's support.

    Passage numbers are 1-based positions in `passages` (the order they were shown to the model).
    A marker opening a sentence ("... in 1999. [1] It ...") belongs to the sentence before it.
    One `Citation` per (sentence, passage); `Citation.support` is that passage's content-word recall
    (None when the sentence has no content words, which counts as supported). A sentence is listed as
    unsupported when even the union of the passages it cites falls below SUPPORT_THRESHOLD.
    """
    cleaned, invalid = _clean(answer_text, len(passages))

    sentences: list[tuple[str, list[int]]] = []
    for start, end in split_sentences(cleaned):
        raw = cleaned[start:end]
        lead = _LEADING_MARKERS_RE.match(raw)
        if lead and sentences:
            sentences[-1][1].extend(_numbers_in(lead.group()))
            raw = raw[lead.end() :].strip()
            if not raw:
                continue
        sentences.append((raw, _numbers_in(raw)))

    citations: list[Citation] = []
    unsupported: list[str] = []
    uncited: list[str] = []
    for raw, cited in sentences:
        bare = strip_markers(raw)
        if not bare:
            continue
        numbers = list(dict.fromkeys(cited))
        if not numbers:
            uncited.append(bare)
            continue
        for n in numbers:
            passage = passages[n - 1]
            score = support_score(bare, [passage.index_text()])
            citations.append(
                Citation(
                    number=n,
                    passage=passage,
                    sentence=bare,
                    support=score,
                    supported=score is None or score >= SUPPORT_THRESHOLD,
                )
            )
        union = support_score(bare, [passages[n - 1].index_text() for n in numbers])
        if union is not None and union < SUPPORT_THRESHOLD:
            unsupported.append(bare)

    return CitationCheck(
        text=cleaned,
        citations=tuple(citations),
        invalid_numbers=tuple(invalid),
        unsupported_sentences=tuple(unsupported),
        uncited_sentences=tuple(uncited),
    )


def attribute(
    text: str, passages: Sequence[Passage], threshold: float = SUPPORT_THRESHOLD
) -> tuple[str, tuple[int, ...]]:
    """Attach [n] to sentences that cite nothing but that one passage clearly supports.

    Small models (SmolLM2-135M) almost never write markers even when told to; post-hoc
    attribution by the same lexical support measure gives their answers checkable citations.
    Returns the new text and the numbers added (callers should say citations were inferred).
    """
    if not passages:
        return text, ()
    spans = split_sentences(text)
    inserts: list[tuple[int, int]] = []
    for i, (span_start, end) in enumerate(spans):
        lead = _LEADING_MARKERS_RE.match(text[span_start:end])
        start = span_start + (lead.end() if lead else 0)
        sentence = text[start:end]
        if not sentence.strip() or parse_markers(sentence):
            continue
        if i + 1 < len(spans) and _LEADING_MARKERS_RE.match(text[spans[i + 1][0] : spans[i + 1][1]]):
            continue  # "Claim. [2] Next claim": the next span's leading marker cites this one
        best_n, best = 0, 0.0
        for n, passage in enumerate(passages, start=1):
            score = support_score(sentence, [passage.index_text()])
            if score is not None and score > best:
                best_n, best = n, score
        if best_n and best >= threshold:
            tail = re.search(r"[.!?:;]*[\"'”’)]*$", sentence)
            quoted = tail is not None and any(ch in "\"'”’)" for ch in tail.group())
            # "claim [1]." but 'said "claim." [1]' (a marker inside quotes would read as quoted text)
            at = end if quoted or tail is None else start + tail.start()
            inserts.append((at, best_n))
    out = text
    for at, n in reversed(inserts):
        out = f"{out[:at].rstrip()} [{n}]{out[at:]}"
    return out, tuple(dict.fromkeys(n for _, n in inserts))


def _numbers_in(text: str) -> list[int]:
    return [n for marker in parse_markers(text) for n in marker.numbers]
