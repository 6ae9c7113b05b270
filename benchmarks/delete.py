"""Delete and update on a large index: how long until search stops returning a deleted document.

    python benchmarks/delete.py [--passages 100000] [--deletes 20] [--queries 50] [--out FILE]

The corpus is synthetic on purpose (this measures index bookkeeping, not retrieval quality): documents of
Zipf-distributed words from a 30k-word vocabulary, ~5 passages each after chunking, and a deterministic
fake bi-encoder (a seeded random unit vector per text) so 100k passages need no model time. Everything
else is the real product path: `RagPipeline.ingest_records`, `RagPipeline.delete`, the versioned index
snapshots (dense Flat/HNSW + bm25s) and `RagPipeline.search`.

Reported per delete: the store delete, the first hybrid search afterwards (it opens the new snapshot:
deleted vectors are excluded by id, BM25 rows masked; nothing is rebuilt), and a check that the deleted
document's passages are found by neither BM25 (its own text as query) nor dense search (its own vector).
Then an update (same source, new text) and `compact` (fold deletions and the hot set into a rebuilt
index). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag_app.config import ModelConfig
from rag_app.encoders import BiEncoder
from rag_app.ingest.pipeline import Record
from rag_app.pipeline import PipelineConfig, RagPipeline

DIM = 384
WORDS_PER_DOC = 900  # ~5 passages of 200 words with 40 overlap


def log(message: str) -> None:
    print(f"[delete] {message}", file=sys.stderr, flush=True)


class HashEncoder(BiEncoder):
    """A seeded random unit vector per text: deterministic, model-free, same vector for the same text."""

    def __init__(self) -> None:
        super().__init__(ModelConfig(embed_model="hash-encoder"))

    def warm_up(self) -> None:
        return None

    @property
    def dimension(self) -> int:
        return DIM

    def resolved(self) -> Any:
        from rag_app.models import ResolvedModel

        return ResolvedModel("hash-encoder", "hash-encoder", "path")

    @staticmethod
    def vector(text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
        v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode_queries(self, queries: Sequence[str]) -> Any:
        return np.stack([self.vector(q) for q in queries]) if queries else np.zeros((0, DIM), np.float32)

    def encode_passages(self, passages: Sequence[str], progress: Callable[[int], None] | None = None) -> Any:
        return self.encode_queries(passages)


def synthetic_records(n_docs: int, seed: int = 7) -> list[Record]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(30_000)]
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    records = []
    for d in range(n_docs):
        words = rng.choices(vocab, weights, k=WORDS_PER_DOC)
        sentences, i = [], 0
        while i < len(words):
            n = rng.randint(8, 20)
            sentences.append(" ".join(words[i : i + n]).capitalize() + ".")
            i += n
        records.append(Record(f"doc-{d:06d}", f"Document {d}", " ".join(sentences)))
    return records


def percentile(values: Sequence[float], p: float) -> float:
    return round(float(np.percentile(np.asarray(values), p)), 2) if values else float("nan")


def deleted_is_gone(pipeline: RagPipeline, passages: Sequence[Any]) -> dict[str, bool]:
    """Search each deleted passage by its own text (BM25) and its own vector (dense)."""
    snap = pipeline.indexes.snapshot()
    assert snap is not None
    gone_vids = {p.vid for p in passages}
    bm25_hits, dense_hits = set(), set()
    for p in passages[:5]:
        bm25_hits |= {vid for vid, _ in snap.bm25_search(p.index_text(), 20)}
        dense_hits |= {vid for vid, _ in snap.dense_search(HashEncoder.vector(p.index_text())[None, :], 20)[0]}
    return {"bm25_never_returns_it": not (bm25_hits & gone_vids),
            "dense_never_returns_it": not (dense_hits & gone_vids)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--deletes", type=int, default=20)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="rag_delete_") as tmp:
        probe = synthetic_records(20)
        config = PipelineConfig(data_dir=Path(tmp) / "probe")
        pipe = RagPipeline(config, encoder=HashEncoder(), use_embedded_llm=False)
        per_doc = pipe.ingest_records(probe).passages_added / len(probe)
        pipe.close()
        n_docs = max(1, round(args.passages / per_doc))
        log(f"generating {n_docs} documents (~{per_doc:.1f} passages each)")
        records = synthetic_records(n_docs)
        pipeline = RagPipeline(PipelineConfig(data_dir=Path(tmp) / "data"), encoder=HashEncoder(),
                               use_embedded_llm=False)
        t0 = time.perf_counter()
        report = pipeline.ingest_records(records)
        ingest_s = time.perf_counter() - t0
        manifest = pipeline.indexes.manifest()
        log(f"ingested {report.passages_added} passages in {ingest_s:.1f} s ({manifest and manifest.index_type})")

        rng = random.Random(13)
        queries = [" ".join(r.text.split()[5:12]) for r in rng.sample(records, args.queries)]
        pipeline.search(queries[0], "hybrid", 10)  # warm the snapshot
        before = [pipeline.retriever.search(q, "hybrid", 10).timings.total_ms for q in queries]

        delete_ms, first_search_ms, checks = [], [], []
        for rec in rng.sample(records, args.deletes):
            doc = pipeline.store.find_documents(rec.external_id)[0]
            passages = pipeline.store.passages_of(doc.id)
            t0 = time.perf_counter()
            pipeline.delete(doc.id)
            t1 = time.perf_counter()
            pipeline.retriever.search(queries[0], "hybrid", 10)
            t2 = time.perf_counter()
            delete_ms.append((t1 - t0) * 1000)
            first_search_ms.append((t2 - t1) * 1000)
            checks.append(deleted_is_gone(pipeline, passages))
        after = [pipeline.retriever.search(q, "hybrid", 10).timings.total_ms for q in queries]

        victim = records[0]
        changed = Record(victim.external_id, victim.title, victim.text.replace("W", "Changed w", 3))
        old_doc = pipeline.store.find_documents(victim.external_id)
        t0 = time.perf_counter()
        upd = pipeline.ingest_records([changed])
        update_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        pipeline.compact()
        compact_s = time.perf_counter() - t0
        snap = pipeline.indexes.snapshot()
        counts = pipeline.store.counts()
        pipeline.close()

    out = {
        "benchmark": "delete",
        "corpus": "synthetic (Zipf words, hash vectors; index bookkeeping only)",
        "passages": report.passages_added, "documents": n_docs,
        "index_type": manifest.index_type if manifest else None,
        "ingest_s": round(ingest_s, 1),
        "deletes": args.deletes,
        "delete_ms": {"p50": percentile(delete_ms, 50), "max": round(max(delete_ms), 2)},
        "first_search_after_delete_ms": {"p50": percentile(first_search_ms, 50),
                                         "max": round(max(first_search_ms), 2)},
        "deleted_never_returned": all(all(c.values()) for c in checks),
        "hybrid_search_ms_before": {"p50": percentile(before, 50), "p95": percentile(before, 95)},
        "hybrid_search_ms_after_deletes": {"p50": percentile(after, 50), "p95": percentile(after, 95)},
        "update": {"seconds": round(update_s, 2), "replaced_documents": len(old_doc),
                   "documents_added": upd.documents_added, "passages_added": upd.passages_added},
        "compact_s": round(compact_s, 1),
        "after_compact": {"store_passages": counts["passages"],
                          "deleted_pending": len(snap.deleted) if snap else None,
                          "hot": len(snap.hot_vids) if snap else None},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    text = json.dumps(out, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0 if out["deleted_never_returned"] else 1


if __name__ == "__main__":
    sys.exit(main())
