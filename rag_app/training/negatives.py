"""Hard negatives: top-ranked passages that are not labelled positive and are not near-duplicates of one.

Selection is a pure function of a ranked id list, so BM25, the current dense model (ANCE-style) or
both fused can feed it. A mined negative is never a positive of its query, never an excluded
(held-out) passage and never a near-duplicate (token Jaccard above `max_jaccard`) of a positive:
duplicated abstracts and boilerplate copies are common in real corpora, and training a model to push
a copy of the answer away teaches it the opposite of what we want.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from rag_app.retrieval.fusion import reciprocal_rank_fusion

NEGATIVE_SOURCES = ("bm25", "dense", "both")
_TOKEN_RE = re.compile(r"\w+", re.UNICODE)

Ranker = Callable[[Sequence[str], int], list[list[str]]]


def tokens(text: str) -> frozenset[str]:
    return frozenset(t.lower() for t in _TOKEN_RE.findall(text))


def jaccard(a: Collection[str], b: Collection[str]) -> float:
    if not a and not b:
        return 1.0
    inter = len(set(a) & set(b))
    return inter / (len(a) + len(b) - inter)


@dataclass(frozen=True)
class NegativeConfig:
    k: int = 1
    source: str = "bm25"
    depth: int = 30          # ranks searched
    skip_top: int = 0        # ranks skipped first (guards against unlabelled positives at the very top)
    sample: bool = False     # sample k of the valid candidates (seeded) instead of taking the top k
    max_jaccard: float = 0.8
    seed: int = 13

    def __post_init__(self) -> None:
        if self.source not in NEGATIVE_SOURCES:
            raise ValueError(f"unknown negative source {self.source!r}; choose one of {', '.join(NEGATIVE_SOURCES)}")
        if self.k < 0 or self.depth < 1 or self.skip_top < 0:
            raise ValueError("hard negatives: k >= 0, depth >= 1 and skip_top >= 0 are required")


def select_negatives(
    ranked: Sequence[str],
    positives: Collection[str],
    k: int,
    *,
    texts: Mapping[str, str] | None = None,
    exclude: Collection[str] = (),
    max_jaccard: float = 0.8,
    skip_top: int = 0,
    depth: int | None = None,
    rng: random.Random | None = None,
    positive_tokens: Sequence[frozenset[str]] | None = None,
) -> list[str]:
    """Up to `k` ids from `ranked` (best first) that are not positive, not excluded, not repeated and,
    when `texts` are given, not near-duplicates of a positive's text. With `rng`, k are sampled from the
    valid candidates within `depth` (rank order kept); without, the top k are taken."""
    if k <= 0:
        return []
    positive_set = set(positives)
    blocked = positive_set | set(exclude)
    if positive_tokens is None:
        positive_tokens = [tokens(texts[p]) for p in positive_set if texts is not None and p in texts]
    window = ranked[skip_top : (depth if depth is not None else len(ranked))]
    valid: list[str] = []
    seen: set[str] = set()
    for pid in window:
        if pid in blocked or pid in seen:
            continue
        seen.add(pid)
        if texts is not None and positive_tokens and pid in texts:
            cand = tokens(texts[pid])
            if any(jaccard(cand, pos) > max_jaccard for pos in positive_tokens):
                continue
        valid.append(pid)
        if rng is None and len(valid) >= k:
            break
    if rng is None or len(valid) <= k:
        return valid[:k]
    chosen = set(rng.sample(range(len(valid)), k))
    return [pid for i, pid in enumerate(valid) if i in chosen]


def fuse_rankings(*rankings: Sequence[str], rrf_k: int = 60) -> list[str]:
    """Several ranked lists into one (reciprocal rank fusion, as the product's hybrid search)."""
    return [pid for pid, _ in reciprocal_rank_fusion([list(r) for r in rankings if r], k=rrf_k)]


def mine_negatives(
    queries: Sequence[tuple[str, str, Collection[str]]],
    texts: Mapping[str, str],
    config: NegativeConfig,
    *,
    bm25: Ranker | None = None,
    dense: Ranker | None = None,
    exclude: Collection[str] = (),
    extra_positive_text: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """`{key: [negative ids]}` for `(key, query text, positive ids)` triples.

    `bm25`/`dense` rank query texts into passage-id lists (best first); `config.source` picks which are
    used (`both` fuses them with RRF). `extra_positive_text` adds a text per key that negatives must not
    duplicate (e.g. an inverse-cloze positive, which is not the corpus text).
    """
    if config.k == 0 or not queries:
        return {key: [] for key, _, _ in queries}
    depth = config.skip_top + config.depth
    texts_in = [q for _, q, _ in queries]
    lists: list[list[list[str]]] = []
    if config.source in ("bm25", "both"):
        if bm25 is None:
            raise ValueError("BM25 negatives need a BM25 ranker")
        lists.append(bm25(texts_in, depth))
    if config.source in ("dense", "both"):
        if dense is None:
            raise ValueError("dense negatives need the current dense model")
        lists.append(dense(texts_in, depth))
    rng = random.Random(config.seed) if config.sample else None
    excluded = set(exclude)
    out: dict[str, list[str]] = {}
    for i, (key, _, positives) in enumerate(queries):
        ranked = lists[0][i] if len(lists) == 1 else fuse_rankings(*(lst[i] for lst in lists))
        pos_tokens = [tokens(texts[p]) for p in positives if p in texts]
        if extra_positive_text and key in extra_positive_text:
            pos_tokens.append(tokens(extra_positive_text[key]))
        out[key] = select_negatives(ranked, positives, config.k, texts=texts, exclude=excluded,
                                    max_jaccard=config.max_jaccard, skip_top=config.skip_top, depth=depth,
                                    rng=rng, positive_tokens=pos_tokens)
    return out


class Bm25Ranker:
    """BM25 (the product's bm25s setup) over an id -> text mapping; ranks query texts into id lists."""

    def __init__(self, texts: Mapping[str, str], exclude: Iterable[str] = ()) -> None:
        from rag_app.index.lexical import LexicalIndex

        skip = set(exclude)
        self.ids = [pid for pid in texts if pid not in skip]
        self._index = LexicalIndex.build([texts[p] for p in self.ids], list(range(len(self.ids))))

    def __call__(self, queries: Sequence[str], depth: int) -> list[list[str]]:
        return [[self.ids[vid] for vid, _ in self._index.search(q, depth)] for q in queries]
