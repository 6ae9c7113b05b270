"""BM25 over passages with bm25s (English stemmer and stopwords), mapped to passage vids.

bm25s has no incremental add, so an index version keeps a *main* bm25s index (rebuilt only when the
dense main index is) plus a small *hot* set of passages added since, scored exactly at query time with
the main index's corpus statistics (N, average length, per-term document frequency) so both halves are
on one BM25 scale and can be merged by score.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

IdArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
MaskArray = npt.NDArray[np.float32]

STATS_FILE = "stats.json"
DF_FILE = "df.npy"
STOPWORDS = "en"
DEFAULT_K1, DEFAULT_B = 1.5, 0.75


def _bm25s() -> Any:
    """Import bm25s lazily; it sets its own logger to DEBUG on import, which we undo."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def _stemmer() -> Any:
    try:
        import Stemmer

        return Stemmer.Stemmer("english")
    except ImportError:  # pragma: no cover - PyStemmer is a declared dependency
        logger.warning("PyStemmer missing: BM25 runs without stemming (pip install PyStemmer)")
        return None


def lucene_idf(df: int, n_docs: int) -> float:
    """bm25s' "lucene" idf: never negative, so a term in most documents still scores a little."""
    return math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


@dataclass(frozen=True)
class Bm25Stats:
    """Corpus statistics of a main index, persisted beside the bm25s files to score hot passages.

    `df[vocab[term]]` is the number of main documents containing `term` (bm25s' own vocabulary ids).
    """

    n_docs: int
    avgdl: float
    k1: float
    b: float
    vocab: Mapping[str, int]
    df: IdArray

    def doc_freq(self, term: str) -> int:
        tid = self.vocab.get(term)
        return int(self.df[tid]) if tid is not None and 0 <= tid < len(self.df) else 0


@dataclass(frozen=True)
class HotDoc:
    """One tokenised hot passage: its distinct terms, their counts and its length (tokens kept)."""

    terms: tuple[str, ...]
    tfs: npt.NDArray[np.int32]
    length: int


def tokenize_docs(texts: Mapping[int, str], stemmer: Any = None) -> dict[int, HotDoc]:
    """Tokenise exactly as `LexicalIndex.build` does (bm25s.tokenize, English stopwords and stemmer)."""
    if not texts:
        return {}
    bm25s = _bm25s()
    vids = list(texts)
    tokens = bm25s.tokenize([texts[v] for v in vids], stopwords=STOPWORDS,
                            stemmer=stemmer if stemmer is not None else _stemmer(), show_progress=False)
    inverse = np.empty(len(tokens.vocab), dtype=object)
    for term, tid in tokens.vocab.items():
        inverse[tid] = term
    out: dict[int, HotDoc] = {}
    for vid, ids in zip(vids, tokens.ids, strict=True):
        uniq, counts = np.unique(np.asarray(ids, dtype=np.int64), return_counts=True)
        out[int(vid)] = HotDoc(tuple(inverse[uniq].tolist()), counts.astype(np.int32), len(ids))
    return out


class HotLexical:
    """Exact BM25 over the few passages added since the main index was built.

    Scores use the main index's statistics (N, avgdl, df, k1, b), so a hot passage scores what it would
    in the main index if its addition left those statistics unchanged. A term the main index never saw
    takes its df from the hot set alone (N stays the main N: it is rare in the whole corpus). When the
    main index is empty the hot set is its own corpus, i.e. identical to a bm25s index over it.
    """

    def __init__(self, docs: Mapping[int, HotDoc], stats: Bm25Stats | None) -> None:
        self.docs = dict(docs)
        self.vids = np.fromiter(self.docs, dtype=np.int64, count=len(self.docs))
        lengths = np.fromiter((d.length for d in self.docs.values()), dtype=np.float64, count=len(self.docs))
        main = stats if stats is not None and stats.n_docs > 0 else None
        self._main = main
        self._n_docs = main.n_docs if main else len(self.docs)
        avgdl = main.avgdl if main else (float(lengths.mean()) if len(lengths) else 0.0)
        k1, b = (stats.k1, stats.b) if stats is not None else (DEFAULT_K1, DEFAULT_B)
        # Length normalisation per passage: k1 * (1 - b + b * dl / avgdl), as bm25s (avgdl 0 only if no terms).
        self._norm = k1 * (1.0 - b + b * lengths / (avgdl if avgdl > 0 else 1.0))
        # Postings: rows and term counts grouped by term, so a query term costs one slice.
        terms: dict[str, int] = {}
        tids = [terms.setdefault(t, len(terms)) for d in self.docs.values() for t in d.terms]
        term_ids = np.asarray(tids, dtype=np.int64)
        rows = np.repeat(np.arange(len(self.docs), dtype=np.int64),
                         [len(d.terms) for d in self.docs.values()]) if self.docs else np.zeros(0, np.int64)
        tfs = np.concatenate([d.tfs for d in self.docs.values()]) if self.docs else np.zeros(0, np.int32)
        order = np.argsort(term_ids, kind="stable")
        self._terms = terms
        self._rows = rows[order]
        self._tfs = tfs[order].astype(np.float64)
        self._starts = np.concatenate([[0], np.cumsum(np.bincount(term_ids, minlength=len(terms)))])

    @property
    def size(self) -> int:
        return len(self.vids)

    def _df(self, term: str, hot_df: int) -> int:
        if self._main is not None:
            df = self._main.doc_freq(term)
            if df:
                return df
        return hot_df

    def search_tokens(self, tokens: Sequence[str], k: int) -> list[tuple[int, float]]:
        """(vid, score) best first, positive scores only; a repeated query term counts each time (as bm25s)."""
        if not self.size or k <= 0:
            return []
        scores = np.zeros(self.size, dtype=np.float64)
        for term in tokens:
            hid = self._terms.get(term)
            if hid is None:
                continue
            start, end = int(self._starts[hid]), int(self._starts[hid + 1])
            rows, tf = self._rows[start:end], self._tfs[start:end]
            df = self._df(term, end - start)
            # A new term in more hot passages than a tiny main index has documents: N >= df keeps idf > 0.
            idf = lucene_idf(df, max(self._n_docs, df))
            scores[rows] += idf * tf / (tf + self._norm[rows])
        hit = np.flatnonzero(scores > 0)
        best = hit[np.argsort(-scores[hit], kind="stable")[:k]]
        return [(int(self.vids[r]), float(scores[r])) for r in best]


class LexicalIndex:
    """The main bm25s index. It has no add/delete: rebuilt with the dense main index; until then a
    snapshot (`with_hot`) masks deleted rows and adds new passages as a `HotLexical` set."""

    def __init__(self, retriever: object | None, vids: IdArray, params: dict[str, object],
                 stats: Bm25Stats | None = None) -> None:
        self._retriever = retriever
        self.vids = np.asarray(vids, dtype=np.int64)
        self.params = params
        self.stats = stats
        self._stem = _stemmer()

    @classmethod
    def build(cls, texts: Sequence[str], vids: Sequence[int], k1: float = DEFAULT_K1, b: float = DEFAULT_B,
              method: str = "lucene") -> LexicalIndex:
        bm25s = _bm25s()
        params: dict[str, object] = {"k1": k1, "b": b, "method": method, "stemmer": "english", "stopwords": "en"}
        if not texts:
            empty = Bm25Stats(0, 0.0, k1, b, {}, np.zeros(0, dtype=np.int64)) if method == "lucene" else None
            return cls(None, np.zeros(0, dtype=np.int64), params, empty)
        stem = _stemmer()
        tokens = bm25s.tokenize(list(texts), stopwords=STOPWORDS, stemmer=stem, show_progress=False)
        retriever = bm25s.BM25(k1=k1, b=b, method=method)
        retriever.index(tokens, show_progress=False)
        stats = None
        if method == "lucene":  # hot scoring implements this variant only; others rebuild on every change
            # The score matrix is CSC with one column per vocabulary id and one stored entry per
            # (document, term) pair, so its column lengths are exactly the df bm25s used.
            indptr = np.asarray(retriever.scores["indptr"], dtype=np.int64)
            df = indptr[1:] - indptr[:-1]
            lengths = np.fromiter((len(d) for d in tokens.ids), dtype=np.float64, count=len(tokens.ids))
            stats = Bm25Stats(len(texts), float(lengths.mean()), k1, b, retriever.vocab_dict, df)
        return cls(retriever, np.asarray(vids, dtype=np.int64), params, stats)

    @property
    def size(self) -> int:
        return len(self.vids)

    def deleted_mask(self, deleted: Collection[int] | IdArray) -> MaskArray | None:
        """bm25s `weight_mask` zeroing the rows of `deleted` (None when nothing is deleted)."""
        gone = np.fromiter((int(v) for v in deleted), dtype=np.int64) if not isinstance(deleted, np.ndarray) \
            else deleted
        if not len(gone):
            return None
        return np.where(np.isin(self.vids, gone), 0.0, 1.0).astype(np.float32)

    def tokenize_query(self, query: str) -> list[str]:
        bm25s = _bm25s()
        tokens = bm25s.tokenize([query], stopwords=STOPWORDS, stemmer=self._stem, show_progress=False,
                                return_ids=False)
        return list(tokens[0]) if tokens else []

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """(vid, score) best first over every row; zero-score hits (no query term matched) are dropped.
        Deletions are a snapshot's business (`with_hot`), so a shared index is never mutated."""
        if self._retriever is None or k <= 0:
            return []
        return self.search_tokens(self.tokenize_query(query), k, None)

    def search_tokens(self, tokens: list[str], k: int, mask: MaskArray | None) -> list[tuple[int, float]]:
        if self._retriever is None or k <= 0 or not tokens:
            return []
        k = min(k, self.size)
        kwargs: dict[str, object] = {"k": k, "show_progress": False, "n_threads": 1}
        if mask is not None:
            kwargs["weight_mask"] = mask
        docs, scores = self._retriever.retrieve([tokens], **kwargs)  # type: ignore[attr-defined]
        out = []
        for row, score in zip(docs[0], scores[0], strict=True):
            if score > 0:
                out.append((int(self.vids[int(row)]), float(score)))
        return out

    def with_hot(self, hot_docs: Mapping[int, HotDoc], deleted: Collection[int] | IdArray = (),
                 previous: LexicalSnapshot | None = None) -> LexicalSnapshot:
        """An immutable view: this index minus `deleted`, plus `hot_docs` on this index's BM25 scale.
        `previous`'s hot set is reused when it holds the same passages over this same index (a delete
        of main passages: postings of up to `hot_max` passages are not rebuilt)."""
        if hot_docs and self.stats is None:
            raise ValueError("this BM25 index has no corpus statistics for hot passages; rebuild it")
        if previous is not None and previous.main is self and previous.hot.docs.keys() == hot_docs.keys():
            hot = previous.hot
        else:
            hot = HotLexical(hot_docs, self.stats)
        return LexicalSnapshot(self, hot, self.deleted_mask(deleted))

    def save(self, directory: Path) -> None:
        tmp = directory.with_name(directory.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        if self._retriever is not None:
            self._retriever.save(str(tmp / "bm25"))  # type: ignore[attr-defined]
        np.save(tmp / "vids.npy", self.vids)
        (tmp / "params.json").write_text(json.dumps(self.params))
        if self.stats is not None:
            np.save(tmp / DF_FILE, self.stats.df)
            (tmp / STATS_FILE).write_text(json.dumps({"n_docs": self.stats.n_docs, "avgdl": self.stats.avgdl,
                                                      "k1": self.stats.k1, "b": self.stats.b}))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        """Raises ValueError when the parts of the folder disagree (a broken index, not a stale one)."""
        bm25s = _bm25s()
        vids = np.load(directory / "vids.npy")
        params = json.loads((directory / "params.json").read_text())
        retriever = bm25s.BM25.load(str(directory / "bm25")) if (directory / "bm25").exists() else None
        n_rows = int(retriever.scores["num_docs"]) if retriever is not None else 0
        if n_rows != len(vids):
            raise ValueError(f"{directory}: bm25s holds {n_rows} rows but vids.npy {len(vids)}")
        stats = None
        if (directory / STATS_FILE).exists():
            meta = json.loads((directory / STATS_FILE).read_text())
            df = np.load(directory / DF_FILE)
            vocab = dict(retriever.vocab_dict) if retriever is not None else {}
            if int(meta["n_docs"]) != n_rows or len(df) > len(vocab):
                raise ValueError(f"{directory}: BM25 statistics do not match the bm25s index")
            stats = Bm25Stats(int(meta["n_docs"]), float(meta["avgdl"]), float(meta["k1"]), float(meta["b"]),
                              vocab, df.astype(np.int64))
        return cls(retriever, vids, params, stats)

    @staticmethod
    def link(source: Path, target: Path) -> None:
        """Reuse a saved index in a new version: hard links (no copy, no rebuild), copies across devices."""
        def link_or_copy(src: str, dst: str) -> None:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)

        shutil.copytree(source, target, copy_function=link_or_copy)


@dataclass(frozen=True, eq=False)
class LexicalSnapshot:
    """What a snapshot searches: the main index minus deleted rows, plus the hot set, merged by score."""

    main: LexicalIndex
    hot: HotLexical
    mask: MaskArray | None = field(default=None, repr=False)

    @property
    def vids(self) -> IdArray:
        """Every vid this can return: main rows (masked ones included) then hot passages."""
        return np.concatenate([self.main.vids, self.hot.vids])

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """(vid, score) best first over main and hot; zero scores are dropped, at most `k`."""
        if k <= 0:
            return []
        tokens = self.main.tokenize_query(query)
        if not tokens:
            return []
        hits = self.main.search_tokens(tokens, k, self.mask) + self.hot.search_tokens(tokens, k)
        hits.sort(key=lambda h: -h[1])
        return hits[:k]
