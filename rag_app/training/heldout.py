"""Before/after evaluation on the held-out part, and the corpus index that hard negatives are mined from.

The corpus is ingested once, through `RagPipeline`, into its own data dir (same chunking, BM25 and
fusion as the product; reused while it holds the same corpus and base model). Any bi-encoder can then
rank it: its passage vectors are cached in that store under a key that includes a fingerprint of the
model's weights, so re-training into the same folder never reuses stale vectors. Dense search is exact
(the product's flat index is exact too below `ann_threshold`), hybrid is the product's `fuse`, and rerank
reorders the fused top `rerank_top_n` with a cross-encoder exactly as `HybridRetriever` does. Passages are
max-pooled to documents before nDCG@10 / Recall@100 are computed with `rag_app.metrics`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from rag_app.config import ChunkingConfig, IndexConfig, ModelConfig, RetrievalConfig
from rag_app.encoders import BiEncoder, Reranker
from rag_app.index.dense import exact_search
from rag_app.ingest.pipeline import Record
from rag_app.metrics import evaluate
from rag_app.retrieval.fusion import fuse, interpolate
from rag_app.training.pairs import CorpusPassage

if TYPE_CHECKING:
    from rag_app.pipeline import RagPipeline

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int, str], None]
FloatArray = npt.NDArray[np.float32]

METRICS: tuple[str, ...] = ("ndcg@10", "recall@100")
DEPTH_PASSAGES = 300  # per side, so 100 distinct documents survive max-pooling (as `rag-app eval`)
MARKER = "training_corpus.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".json", ".txt", ".model")


def model_fingerprint(location: str) -> str:
    """Content hash of a local model folder (weights and configs); '' for a hub name."""
    root = Path(location)
    if not root.is_dir():
        return ""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES):
        if "checkpoint" in path.parts or path.name in ("training_report.json", "README.md"):
            continue
        digest.update(str(path.relative_to(root)).encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def encoder_key(encoder: BiEncoder) -> str:
    """The store key for this model's vectors: the name, plus a weights fingerprint for local folders."""
    location = encoder.resolved().location
    fp = model_fingerprint(location)
    return f"{encoder.name}@{fp}" if fp else encoder.name


def make_encoder(spec: str, models: ModelConfig) -> BiEncoder:
    return BiEncoder(replace(models, embed_model=spec))


def corpus_fingerprint(corpus: Mapping[str, CorpusPassage]) -> str:
    digest = hashlib.sha256()
    for pid in sorted(corpus):
        p = corpus[pid]
        digest.update(json.dumps([pid, p.title, p.text]).encode())
    return digest.hexdigest()[:16]


def eval_dir_for(base_dir: Path, name: str, corpus: Mapping[str, CorpusPassage], base_model: BiEncoder,
                 chunking: ChunkingConfig) -> Path:
    """`<base_dir>/<name>-<hash of corpus, base model weights, max length and chunking>`."""
    key = json.dumps({"corpus": corpus_fingerprint(corpus), "model": encoder_key(base_model),
                      "max_seq_length": base_model.config.max_seq_length, "chunking": asdict(chunking)},
                     sort_keys=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "corpus"
    return base_dir / f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class RankedLists:
    bm25: list[list[tuple[int, float]]]
    dense: list[list[tuple[int, float]]]


class CorpusIndex:
    """A corpus in its own pipeline data dir, rankable by BM25, any bi-encoder, fusion and a reranker."""

    def __init__(self, data_dir: Path, corpus: Mapping[str, CorpusPassage], base: BiEncoder,
                 chunking: ChunkingConfig | None = None, retrieval: RetrievalConfig | None = None,
                 progress: Progress | None = None) -> None:
        from rag_app.pipeline import PipelineConfig, RagPipeline

        self.corpus = corpus
        self.retrieval = retrieval or RetrievalConfig()
        models = replace(base.config, rerank_model="none")
        config = PipelineConfig(data_dir=data_dir, chunking=chunking or ChunkingConfig(),
                                index=IndexConfig(index_type="flat"), retrieval=self.retrieval, models=models)
        self.pipeline: RagPipeline = RagPipeline(config, encoder=base, use_embedded_llm=False)
        self.base = base
        self._ensure_ingested(progress)
        store = self.pipeline.store
        external = {d.id: d.external_id or d.name for d in store.list_documents()}
        passages = list(store.iter_passages())
        self.vids = np.array([p.vid for p in passages], dtype=np.int64)
        self.doc_of = {p.vid: external.get(p.doc_id, p.doc_id) for p in passages}
        self.text_of = {p.vid: p.index_text() for p in passages}
        snap = self.pipeline.indexes.snapshot()
        if snap is None:
            raise ValueError("the training corpus is empty")
        self._snapshot = snap
        self._matrices: dict[str, FloatArray] = {}
        self._bm25_cache: dict[tuple[str, int], list[tuple[int, float]]] = {}

    @property
    def data_dir(self) -> Path:
        return self.pipeline.config.data_dir

    def _ensure_ingested(self, progress: Progress | None) -> None:
        marker = self.data_dir / MARKER
        fingerprint = corpus_fingerprint(self.corpus)
        try:
            recorded = json.loads(marker.read_text())
        except (OSError, ValueError):
            recorded = {}
        store = self.pipeline.store
        if recorded.get("corpus") == fingerprint and recorded.get("documents") == store.counts()["documents"] \
                and self.pipeline.indexes.manifest() is not None:
            return
        # The folder name already encodes the corpus, so anything stored here is a resumable part of it.
        records = [Record(pid, p.title, p.text) for pid, p in self.corpus.items() if p.text.strip()]
        self.pipeline.ingest_records(records, progress)
        if self.pipeline.indexes.manifest() is None:
            self.pipeline.indexes.refresh(full=True)
        marker.write_text(json.dumps({"corpus": fingerprint, "documents": store.counts()["documents"]}))

    # ---- vectors and rankings -------------------------------------------------------------------
    def _key(self, encoder: BiEncoder) -> str:
        return self.base.name if encoder is self.base else encoder_key(encoder)

    def matrix(self, encoder: BiEncoder, progress: Progress | None = None) -> FloatArray:
        """Every passage vector of `encoder` (cached in the store; missing ones are encoded now)."""
        key = self._key(encoder)
        if key in self._matrices:
            return self._matrices[key]
        store = self.pipeline.store
        dim = encoder.dimension
        matrix, missing = store.get_embeddings(key, list(self.vids), dim)
        if missing:
            wanted = [int(self.vids[i]) for i in missing]
            done = 0
            for start in range(0, len(wanted), 256):
                chunk = wanted[start : start + 256]
                vectors = encoder.encode_passages([self.text_of[v] for v in chunk])
                store.put_embeddings(key, chunk, vectors)
                done += len(chunk)
                if progress:
                    progress("encode corpus", done, len(wanted), "")
            matrix, missing = store.get_embeddings(key, list(self.vids), dim)
        self._matrices[key] = matrix
        return matrix

    def bm25(self, queries: Sequence[str], depth: int) -> list[list[tuple[int, float]]]:
        out = []
        for q in queries:
            key = (q, depth)
            if key not in self._bm25_cache:
                self._bm25_cache[key] = self._snapshot.bm25_search(q, depth)
            out.append(self._bm25_cache[key])
        return out

    def dense(self, encoder: BiEncoder, queries: Sequence[str], depth: int,
              progress: Progress | None = None) -> list[list[tuple[int, float]]]:
        if not queries:
            return []
        matrix = self.matrix(encoder, progress)
        qvecs = encoder.encode_queries(list(queries))
        k = min(depth, len(self.vids))
        scores, ids = exact_search(matrix, self.vids, qvecs, k)
        return [[(int(i), float(s)) for i, s in zip(ids[r], scores[r], strict=True) if i >= 0]
                for r in range(len(queries))]

    def fused(self, bm25: list[tuple[int, float]], dense: list[tuple[int, float]]) -> list[tuple[int, float]]:
        cfg = self.retrieval
        return [(int(v), float(s)) for v, s in fuse(cfg.fusion, bm25, dense, rrf_k=cfg.rrf_k,
                                                    bm25_weight=cfg.bm25_weight)]

    def reranked(self, reranker: Reranker, query: str, fused: list[tuple[int, float]],
                 interpolations: Sequence[float] = ()) -> tuple[list[int], dict[float, list[int]]]:
        """The fused list with its top `rerank_top_n` reordered as the product does (the reranker's own
        weight, see `Reranker.weight`, unless the retrieval config sets one), and per weight w in
        `interpolations` reordered by w * minmax(rerank) + (1 - w) * minmax(fused) as a diagnostic
        (w = 1: the cross-encoder alone)."""
        n = self.retrieval.rerank_top_n
        top = fused[:n]
        tail = [v for v, _ in fused[n:]]
        scores = reranker.score(query, [self.text_of[v] for v, _ in top])
        ce = {v: float(s) for (v, _), s in zip(top, scores, strict=True)}
        first = dict(top)
        weight = self.retrieval.rerank_weight if self.retrieval.rerank_weight is not None else reranker.weight
        order = [v for v, _ in interpolate(ce, first, weight)]
        mixed = {w: [v for v, _ in interpolate(ce, first, w)] + tail for w in interpolations}
        return order + tail, mixed

    def to_docs(self, vids: Sequence[int], limit: int | None = None) -> list[str]:
        """Documents by their best passage (first appearance), best first."""
        out: list[str] = []
        seen: set[str] = set()
        for v in vids:
            doc = self.doc_of.get(v)
            if doc is not None and doc not in seen:
                seen.add(doc)
                out.append(doc)
                if limit and len(out) >= limit:
                    break
        return out

    def ranker(self, mode: str, encoder: BiEncoder | None = None) -> Callable[[Sequence[str], int], list[list[str]]]:
        """`(query texts, depth) -> document id lists` for negative mining (`bm25`, `dense`, `hybrid`)."""
        enc = encoder or self.base

        def rank(queries: Sequence[str], depth: int) -> list[list[str]]:
            passages = max(depth * 3, 30)
            if mode == "bm25":
                return [self.to_docs([v for v, _ in hits], depth) for hits in self.bm25(queries, passages)]
            dense = self.dense(enc, queries, passages)
            if mode == "dense":
                return [self.to_docs([v for v, _ in hits], depth) for hits in dense]
            bm25 = self.bm25(queries, passages)
            return [self.to_docs([v for v, _ in self.fused(b, d)], depth) for b, d in zip(bm25, dense, strict=True)]

        return rank

    # ---- evaluation -----------------------------------------------------------------------------
    def evaluate(self, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], encoder: BiEncoder,
                 reranker: Reranker | None = None, modes: Sequence[str] = ("dense", "hybrid", "rerank"),
                 metrics: Sequence[str] = METRICS, progress: Progress | None = None,
                 interpolations: Sequence[float] = ()) -> dict[str, dict[str, float]]:
        """`{mode: {metric: mean}}` over the judged `queries` (rerank only when a reranker is given; with
        `interpolations`, also `rerank~w` modes: see `reranked`)."""
        qids = [q for q in queries if q in qrels]
        texts = [queries[q] for q in qids]
        limit = max(int(m.split("@")[1]) for m in metrics if "@" in m)
        runs: dict[str, dict[str, dict[str, float]]] = {m: {} for m in modes if m != "rerank" or reranker}
        if "rerank" in runs:
            runs.update({f"rerank~{w:g}": {} for w in interpolations})
        need_bm25 = any(m in runs for m in ("bm25", "hybrid", "rerank"))
        need_dense = any(m in runs for m in ("dense", "hybrid", "rerank"))
        bm25 = self.bm25(texts, DEPTH_PASSAGES) if need_bm25 else []
        dense = self.dense(encoder, texts, DEPTH_PASSAGES, progress) if need_dense else []
        for i, qid in enumerate(qids):
            if "bm25" in runs:
                runs["bm25"][qid] = _scores(self.to_docs([v for v, _ in bm25[i]], limit))
            if "dense" in runs:
                runs["dense"][qid] = _scores(self.to_docs([v for v, _ in dense[i]], limit))
            if "hybrid" in runs or "rerank" in runs:
                fused = self.fused(bm25[i], dense[i])
                if "hybrid" in runs:
                    runs["hybrid"][qid] = _scores(self.to_docs([v for v, _ in fused], limit))
                if "rerank" in runs and reranker is not None:
                    order, mixed = self.reranked(reranker, texts[i], fused, interpolations)
                    runs["rerank"][qid] = _scores(self.to_docs(order, limit))
                    for w, vids in mixed.items():
                        runs[f"rerank~{w:g}"][qid] = _scores(self.to_docs(vids, limit))
            if progress and ("rerank" in runs or i + 1 == len(qids)):
                progress("evaluate held-out", i + 1, len(qids), "")
        judged = {q: dict(qrels[q]) for q in qids}
        return {mode: evaluate(judged, run, metrics) for mode, run in runs.items()}

    def close(self) -> None:
        self.pipeline.close()


def _scores(docs: Sequence[str]) -> dict[str, float]:
    return {d: 1.0 / (i + 1) for i, d in enumerate(docs)}


# ---- reports --------------------------------------------------------------------------------------

LABELS = {"ndcg": "nDCG", "recall": "Recall", "mrr": "MRR"}


def _label(metric: str) -> str:
    name, _, k = metric.partition("@")
    return f"{LABELS.get(name, name)}@{k}" if k else LABELS.get(name, name)


def format_comparison(before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]],
                      title: str = "", before_label: str = "before", after_label: str = "after",
                      metrics: Sequence[str] = METRICS) -> str:
    """Side-by-side table: one row per mode, before/after/delta per metric."""
    extra = sorted({m for m in [*before, *after] if m.startswith("rerank~")})
    modes = [m for m in ("bm25", "dense", "hybrid", "rerank", *extra) if m in before or m in after]
    headers = ["mode"]
    for metric in metrics:
        lab = _label(metric)
        headers += [f"{lab} {before_label}", f"{lab} {after_label}", "Δ"]
    rows = []
    for mode in modes:
        row = [mode]
        for metric in metrics:
            b = before.get(mode, {}).get(metric)
            a = after.get(mode, {}).get(metric)
            delta = None if a is None or b is None else a - b
            row += [_num(b), _num(a), "-" if delta is None else f"{delta:+.4f}"]
        rows.append(row)
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def improvement(before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]],
                mode: str, metric: str = "ndcg@10") -> float | None:
    b = before.get(mode, {}).get(metric)
    a = after.get(mode, {}).get(metric)
    return None if a is None or b is None else a - b


def report_summary(report: Mapping[str, Any]) -> str:
    """One line per stage timing of a training report."""
    timings = report.get("timings_s", {})
    return ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
