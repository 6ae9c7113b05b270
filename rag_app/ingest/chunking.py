"""Sentence-aware chunking into passages of about `chunk_words` words with sentence overlap.

Passages never cross a page boundary (a citation names one page) and their text is always the
exact slice `text[char_start:char_end]` of the document text, so a UI can highlight in context.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag_app.config import ChunkingConfig

_WORD = re.compile(r"\S+")
# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) before whitespace,
# or at a paragraph break. Abbreviation mistakes only cost a slightly different cut.
_BOUNDARY = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])|\n\s*\n")
_ABBREV = re.compile(r"\b(?:e\.g|i\.e|et al|Fig|Figs|Dr|Mr|Mrs|Ms|vs|No|Vol|cf|approx|Inc|Ltd|Jr|Sr|St)\.$")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    words: int


@dataclass(frozen=True)
class Chunk:
    start: int
    end: int
    page_index: int
    heading: str


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentence spans within text[start:end], trimmed of surrounding whitespace."""
    end = len(text) if end is None else end
    spans: list[Span] = []
    pos = start
    segment = text[start:end]
    cuts = []
    for match in _BOUNDARY.finditer(segment):
        if _ABBREV.search(segment[max(0, match.start() - 12) : match.start()]) and "\n" not in match.group(0):
            continue
        cuts.append((start + match.start(), start + match.end()))
    for cut_start, cut_end in [*cuts, (end, end)]:
        s, e = _trim(text, pos, cut_start)
        if e > s:
            spans.append(Span(s, e, len(_WORD.findall(text, s, e))))
        pos = cut_end
    return spans


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _split_long(text: str, span: Span, max_words: int) -> list[Span]:
    """A sentence longer than a passage is cut at word boundaries."""
    words = list(_WORD.finditer(text, span.start, span.end))
    out = []
    for i in range(0, len(words), max_words):
        group = words[i : i + max_words]
        out.append(Span(group[0].start(), group[-1].end(), len(group)))
    return out


def pack(spans: Sequence[Span], config: ChunkingConfig) -> list[tuple[int, int]]:
    """Greedy packing of sentences; each new passage repeats trailing sentences worth up to
    `overlap_words` words of the previous one (never the whole previous passage)."""
    chunks: list[tuple[int, int]] = []
    i = 0
    n = len(spans)
    while i < n:
        j = i
        words = 0
        while j < n and (words == 0 or words + spans[j].words <= config.chunk_words):
            words += spans[j].words
            j += 1
        chunks.append((i, j))
        if j >= n:
            break
        # Step back over trailing sentences for overlap, keeping at least one new sentence.
        k = j
        back = 0
        while k - 1 > i and back + spans[k - 1].words <= config.overlap_words:
            back += spans[k - 1].words
            k -= 1
        i = k if k > i else j
    # Fold a too-small tail into its predecessor when that keeps the passage a sane size.
    if len(chunks) >= 2:
        a, b = chunks[-2], chunks[-1]
        tail_words = sum(s.words for s in spans[a[1] : b[1]])
        head_words = sum(s.words for s in spans[a[0] : a[1]])
        if tail_words < config.min_words and head_words + tail_words <= config.chunk_words * 1.5:
            chunks[-2:] = [(a[0], b[1])]
    return [(spans[a].start, spans[b - 1].end) for a, b in chunks]


def heading_positions(text: str, headings: Sequence[str]) -> list[tuple[int, str]]:
    """Where each heading occurs, found in document order."""
    out: list[tuple[int, str]] = []
    pos = 0
    for heading in headings:
        found = text.find(heading, pos)
        if found < 0:
            found = text.find(heading)
        if found >= 0:
            out.append((found, heading))
            pos = found + len(heading)
    out.sort()
    return out


def chunk_document(
    text: str, page_bounds: Sequence[tuple[int, int]], headings: Sequence[str], config: ChunkingConfig
) -> list[Chunk]:
    """Chunks for each page range [start, end) of `text`, each tagged with its nearest heading."""
    positions = heading_positions(text, headings)
    starts = [p for p, _ in positions]
    chunks: list[Chunk] = []
    for page_index, (p_start, p_end) in enumerate(page_bounds):
        spans: list[Span] = []
        for span in sentence_spans(text, p_start, p_end):
            spans.extend(_split_long(text, span, config.chunk_words) if span.words > config.chunk_words else [span])
        for c_start, c_end in pack(spans, config):
            # The heading governing the passage start (allowing for "# " markup before it), else
            # the first heading inside the passage.
            h = bisect.bisect_right(starts, c_start + 8) - 1
            if h < 0 and starts and starts[0] < c_end:
                h = 0
            heading = positions[h][1] if h >= 0 else ""
            chunks.append(Chunk(c_start, c_end, page_index, heading))
    return chunks
