"""Retrieval latency benchmark: per-stage p50/p95 on SciFact and on a ~100k-passage perturbed SciFact,
against llama-index's own hybrid (QueryFusionRetriever over VectorStoreIndex + BM25Retriever).

    python benchmarks/retrieval.py [--queries N] [--passages 100000] [--quick] [--out FILE]

Prints one JSON document (or writes it to --out). The SciFact index is the one `rag-app eval` builds
(`<data dir>/eval/scifact-<hash>`, built here if missing); the 100k corpus lives in a temporary folder
that is removed afterwards. Nothing is written into the repository.

The llama-index baseline needs `llama-index-retrievers-bm25` and `llama-index-embeddings-huggingface`;
without them its section says why it was skipped. (`llama-index-retrievers-bm25` 0.8 pins PyStemmer<3: it
can live outside the venv, e.g. `pip install --no-deps --target DIR ...` and `PYTHONPATH=DIR`.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag_app.config import Settings
from rag_app.encoders import BiEncoder
from rag_app.evaluation import ensure_corpus, eval_data_dir, load_benchmark, max_pool, vid_to_doc
from rag_app.ingest.pipeline import Record
from rag_app.metrics import evaluate, percentile
from rag_app.pipeline import PipelineConfig, RagPipeline, active_embed_model, resolve_reranker

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
STAGES = ("bm25", "encode", "dense", "fusion", "rerank", "fetch")
NOISE_SIGMA = 0.02
WINDOW_WORDS = 90
MAX_WINDOW_WORDS = 150  # below the default 200-word chunk size
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 50), 3), "p95": round(percentile(values, 95), 3),
            "mean": round(float(np.mean(values)), 3), "n": len(values)}


# ---- our retriever ------------------------------------------------------------------------------


def time_ours(pipeline: RagPipeline, queries: Sequence[str], mode: str, k: int,
              warmup: str | None = None) -> tuple[dict[str, Any], list[Any]]:
    """Per-stage and wall-clock latency of the real retriever (the result cache is bypassed, the query-vector
    cache emptied after the warm-up). The warm-up query (default: the first one) is not timed; pass one outside
    `queries` so no cache is primed."""
    pipeline.retriever.search(warmup or queries[0], mode, k)  # warm-up
    pipeline.encoder.clear_query_cache()  # vectors cached by an earlier run (another mode) are not latency
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    totals: list[float] = []
    results = []
    for query in queries:
        t0 = time.perf_counter()
        result = pipeline.retriever.search(query, mode, k)
        totals.append((time.perf_counter() - t0) * 1000)
        for stage, ms in result.timings.as_dict().items():
            stages.setdefault(stage, []).append(ms)
        results.append(result)
    out = {"stages_ms": {s: summary(v) for s, v in stages.items() if v}, "total_ms": summary(totals)}
    return out, results


def ndcg_from(runs: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> float:
    pooled = {q: max_pool(docs, 10) for q, docs in runs.items()}
    return round(evaluate({q: qrels[q] for q in runs}, pooled, ["ndcg@10"])["ndcg@10"], 4)


# ---- llama-index baseline -----------------------------------------------------------------------


def llama_index_available() -> str | None:
    """None when the baseline can be built, else why not."""
    missing = []
    for module, package in (("llama_index.retrievers.bm25", "llama-index-retrievers-bm25"),
                            ("llama_index.embeddings.huggingface", "llama-index-embeddings-huggingface")):
        try:
            __import__(module)
        except ImportError as exc:
            missing.append(f"{package} ({exc.__class__.__name__}: {exc})")
    return f"not importable: {'; '.join(missing)}" if missing else None


def build_llama_index(texts: Sequence[str], ids: Sequence[str], vectors: np.ndarray, model_path: str,
                      per_side: int, k: int) -> tuple[Any, float]:
    """llama-index's documented BM25 + vector hybrid over the same passages and (precomputed) vectors;
    the query side is encoded by HuggingFaceEmbedding with the same MiniLM folder."""
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.retrievers.bm25 import BM25Retriever

    t0 = time.perf_counter()
    nodes = [TextNode(id_=i, text=t, embedding=v.tolist()) for i, t, v in zip(ids, texts, vectors, strict=True)]
    embed = HuggingFaceEmbedding(model_name=model_path, device="cpu", normalize=True)
    vector = VectorStoreIndex(nodes, embed_model=embed).as_retriever(similarity_top_k=per_side)
    bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=per_side)
    return llama_fusion([vector, bm25], k), time.perf_counter() - t0


def llama_fusion(retrievers: Sequence[Any], k: int) -> Any:
    """llama-index's documented hybrid: QueryFusionRetriever in reciprocal-rank mode over `retrievers`."""
    from llama_index.core.llms.mock import MockLLM
    from llama_index.core.retrievers import QueryFusionRetriever
    from llama_index.core.retrievers.fusion_retriever import FUSION_MODES

    # num_queries=1: no LLM query rewrites (the default 4 would call the LLM); MockLLM keeps Settings.llm unused.
    return QueryFusionRetriever(list(retrievers), llm=MockLLM(), num_queries=1, mode=FUSION_MODES.RECIPROCAL_RANK,
                                similarity_top_k=k, use_async=True)


def time_llama(fusion: Any, queries: Sequence[str],
               warmup: str | None = None) -> tuple[dict[str, Any], list[list[str]]]:
    fusion.retrieve(warmup or queries[0])  # warm-up
    totals, hits = [], []
    for query in queries:
        t0 = time.perf_counter()
        nodes = fusion.retrieve(query)
        totals.append((time.perf_counter() - t0) * 1000)
        hits.append([n.node.node_id for n in nodes])
    return {"total_ms": summary(totals)}, hits


LLAMA_CONFIG = {
    "retriever": "QueryFusionRetriever(mode='reciprocal_rerank', num_queries=1, use_async=True, llm=MockLLM())",
    "sides": "VectorStoreIndex (SimpleVectorStore, precomputed MiniLM passage vectors, HuggingFaceEmbedding "
             "for queries) + BM25Retriever.from_defaults (bm25s, English stemmer and stopwords)",
}


# ---- SciFact ------------------------------------------------------------------------------------


def scifact_pipeline(settings: Settings, encoder: BiEncoder) -> RagPipeline:
    base = PipelineConfig.from_settings(settings)
    config = replace(base, data_dir=eval_data_dir(settings.data_dir, SCIFACT, base.models, base.chunking))
    reranker = resolve_reranker(settings.rerank_model, settings.data_dir, base.models)
    return RagPipeline(config, encoder=encoder, reranker=reranker, use_embedded_llm=False)


def passages_with_vectors(pipeline: RagPipeline) -> tuple[list[Any], np.ndarray]:
    passages = list(pipeline.store.iter_passages())
    vectors, missing = pipeline.store.get_embeddings(pipeline.encoder.name, [p.vid for p in passages],
                                                     pipeline.encoder.dimension)
    if missing:
        raise RuntimeError(f"{len(missing)} SciFact passages have no cached vector; run `rag-app eval` first")
    return passages, vectors


def bench_scifact(pipeline: RagPipeline, n_queries: int | None, k: int, with_llama: bool) -> dict[str, Any]:
    bench = load_benchmark(SCIFACT, "train", n_queries)
    qids, queries = list(bench.queries), list(bench.queries.values())
    doc_of = vid_to_doc(pipeline)
    out: dict[str, Any] = {"queries": len(queries), "passages": pipeline.store.counts()["passages"],
                           "k_passages": k}
    log(f"scifact: timing our hybrid on {len(queries)} queries")
    ours, results = time_ours(pipeline, queries, "hybrid", k)
    ours["ndcg@10"] = ndcg_from({q: [doc_of[c.passage.vid] for c in r.candidates]
                                 for q, r in zip(qids, results, strict=True)}, bench.qrels)
    out["hybrid"] = ours
    if pipeline.reranker is not None:
        log("scifact: timing rerank")
        out["rerank"], _ = time_ours(pipeline, queries, "rerank", k)
    else:
        out["rerank"] = {"note": "no cross-encoder reranker is installed (RAG_APP_RERANK_MODEL or a trained one)"}
    if with_llama:
        out["llama_index"] = bench_llama_scifact(pipeline, bench, doc_of, k, ours)
    return out


def bench_llama_scifact(pipeline: RagPipeline, bench: Any, doc_of: dict[int, str], k: int,
                        ours: dict[str, Any]) -> dict[str, Any]:
    reason = llama_index_available()
    if reason:
        return {"status": "skipped", "reason": reason}
    passages, vectors = passages_with_vectors(pipeline)
    log(f"scifact: building the llama-index hybrid over {len(passages)} passages")
    fusion, build_s = build_llama_index([p.index_text() for p in passages], [str(p.vid) for p in passages], vectors,
                                        pipeline.encoder.resolved().location, pipeline.config.retrieval.bm25_candidates,
                                        k)
    log("scifact: timing the llama-index hybrid")
    timing, hits = time_llama(fusion, list(bench.queries.values()))
    runs = {q: [doc_of[int(h)] for h in hit] for q, hit in zip(bench.queries, hits, strict=True)}
    return {"status": "ok", "config": LLAMA_CONFIG, "build_s": round(build_s, 2), **timing,
            "ndcg@10": ndcg_from(runs, bench.qrels), **ratios(timing, ours)}


def ratios(llama: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    return {"latency_ratio_llama_over_ours": {
        p: round(llama["total_ms"][p] / ours["total_ms"][p], 2) for p in ("p50", "p95")}}


# ---- ~100k perturbed SciFact --------------------------------------------------------------------


def perturbed_windows(text: str, rng: random.Random) -> list[str]:
    """The abstract's sentences shuffled, then cut into windows of about WINDOW_WORDS words."""
    # Windows stay below the chunk size (and over-long sentences are dropped) so each one is exactly one
    # passage: the precomputed vectors are looked up by passage text.
    sentences = [s for s in _SENTENCE.split(text.strip()) if s and len(s.split()) <= MAX_WINDOW_WORDS]
    rng.shuffle(sentences)
    windows, current = [], []
    for sentence in sentences:
        if current and sum(len(s.split()) for s in current) + len(sentence.split()) > MAX_WINDOW_WORDS:
            windows.append(" ".join(current))
            current = []
        current.append(sentence)
        if sum(len(s.split()) for s in current) >= WINDOW_WORDS:
            windows.append(" ".join(current))
            current = []
    if current:
        windows.append(" ".join(current))
    return windows


def perturbed_corpus(pipeline: RagPipeline, target: int, seed: int = 13) -> tuple[list[Record], dict[str, Any]]:
    """Copies of every SciFact abstract until `target` windows exist, each with a noisy copy of its
    abstract's real vector (the mean of its passages' MiniLM vectors, + N(0, σ²) per dim, renormalised)."""
    passages, vectors = passages_with_vectors(pipeline)
    by_doc: dict[str, list[int]] = {}
    for row, p in enumerate(passages):
        by_doc.setdefault(p.doc_id, []).append(row)
    docs = {d.id: d for d in pipeline.store.list_documents()}
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    records: list[Record] = []
    vecs: dict[str, np.ndarray] = {}
    copy = 0
    while len(records) < target:
        copy += 1
        for doc_id, rows in by_doc.items():
            base = vectors[rows].mean(axis=0)
            for j, window in enumerate(perturbed_windows(pipeline.store.document_text(doc_id), rng)):
                noisy = base / np.linalg.norm(base) + nrng.normal(0.0, NOISE_SIGMA, base.shape[0])
                vecs[window] = (noisy / np.linalg.norm(noisy)).astype(np.float32)
                records.append(Record(f"{docs[doc_id].external_id}#c{copy}w{j}", "", window))
                if len(records) >= target:
                    break
            if len(records) >= target:
                break
    return records, vecs


class PrecomputedEncoder(BiEncoder):
    """The real MiniLM for queries; passages get the precomputed (noisy) vectors by text."""

    def __init__(self, real: BiEncoder, vectors: dict[str, np.ndarray]) -> None:
        super().__init__(real.config, real.setting)
        self._real = real
        self._vectors = vectors

    def warm_up(self) -> None:
        self._real.warm_up()

    @property
    def dimension(self) -> int:
        return self._real.dimension

    def resolved(self) -> Any:
        return self._real.resolved()

    def encode_queries(self, queries: Sequence[str]) -> Any:
        return self._real.encode_queries(queries)

    def clear_query_cache(self) -> None:
        self._real.clear_query_cache()

    def encode_passages(self, passages: Sequence[str], progress: Callable[[int], None] | None = None) -> Any:
        return np.stack([self._vectors[p] for p in passages]) if passages else self._real.encode_passages([])


def bench_perturbed(scifact: RagPipeline, settings: Settings, target: int, n_queries: int | None, k: int,
                    llama_queries: int, work_dir: Path) -> dict[str, Any]:
    log(f"perturbed: building {target} windows")
    records, vecs = perturbed_corpus(scifact, target)
    config = replace(PipelineConfig.from_settings(settings), data_dir=work_dir)
    pipeline = RagPipeline(config, encoder=PrecomputedEncoder(scifact.encoder, vecs), use_embedded_llm=False)
    try:
        t0 = time.perf_counter()
        report = pipeline.ingest_records(records)
        build_s = time.perf_counter() - t0
        manifest = pipeline.indexes.manifest()
        queries = list(load_benchmark(SCIFACT, "train", n_queries).queries.values())
        log(f"perturbed: timing our hybrid on {len(queries)} queries over {report.passages_added} passages")
        ours, _ = time_ours(pipeline, queries, "hybrid", k)
        out: dict[str, Any] = {
            "passages": pipeline.store.counts()["passages"], "queries": len(queries), "k_passages": k,
            "index_type": manifest.index_type if manifest else None, "ingest_and_index_s": round(build_s, 1),
            "hybrid": ours,
        }
        if llama_queries:
            out["llama_index"] = bench_llama_perturbed(records, vecs, scifact, queries[:llama_queries], k, ours)
        return out
    finally:
        pipeline.close()


def bench_llama_perturbed(records: Sequence[Record], vecs: dict[str, np.ndarray], scifact: RagPipeline,
                          queries: Sequence[str], k: int, ours: dict[str, Any]) -> dict[str, Any]:
    reason = llama_index_available()
    if reason:
        return {"status": "skipped", "reason": reason}
    log(f"perturbed: building the llama-index hybrid over {len(records)} passages")
    vectors = np.stack([vecs[r.text] for r in records])
    fusion, build_s = build_llama_index([r.text for r in records], [r.external_id for r in records], vectors,
                                        scifact.encoder.resolved().location, scifact.config.retrieval.bm25_candidates,
                                        k)
    log(f"perturbed: timing the llama-index hybrid on {len(queries)} queries")
    timing, _ = time_llama(fusion, queries)
    return {"status": "ok", "config": LLAMA_CONFIG, "build_s": round(build_s, 2), **timing,
            "note": f"timed on the first {len(queries)} queries only", **ratios(timing, ours)}


# ---- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=None, help="SciFact train queries (default all 809)")
    parser.add_argument("--passages", type=int, default=100_000, help="size of the perturbed corpus")
    parser.add_argument("--k", type=int, default=20, help="passages returned per query (pooled to 10 docs)")
    parser.add_argument("--llama-queries", type=int, default=100,
                        help="queries for the llama-index baseline on the big corpus (0: skip it there)")
    parser.add_argument("--no-llama", action="store_true", help="skip the llama-index baseline")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 queries, 5k perturbed passages")
    parser.add_argument("--data-dir", help="base data dir holding eval/ (default RAG_APP_DATA_DIR)")
    parser.add_argument("--work-dir", help="folder for the perturbed corpus (default: a temporary one, removed)")
    parser.add_argument("--out", help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)
    if args.quick:
        args.queries, args.passages, args.llama_queries = args.queries or 20, min(args.passages, 5000), 10
    return args


def notes(args: argparse.Namespace) -> list[str]:
    return [
        "Latencies are wall-clock per query on this machine, single-threaded query loop, after one warm-up "
        "query; 'total_ms' wraps the whole retriever call, stage times come from its own Timings.",
        "Quality: the returned passages are max-pooled to documents (a document ranks at its best passage) "
        f"and scored with nDCG@10 on the SciFact train qrels; both systems return the same {args.k} passages "
        "depth and search the same passages with the same MiniLM vectors.",
        f"Perturbed corpus: SciFact abstracts are copied until {args.passages} passages exist; in each copy an "
        f"abstract's sentences are shuffled (seeded) and cut into windows of about {WINDOW_WORDS} words, ids "
        "suffixed '#c<copy>w<window>'. BM25 is built over these perturbed texts. Encoding them with MiniLM "
        "would take 30+ minutes here, so each window's vector is its abstract's real MiniLM vector (mean of "
        f"its passages) plus gaussian noise (sigma {NOISE_SIGMA} per dimension), renormalised: only retrieval "
        "latency is meaningful there, not quality. Queries are the real SciFact claims, encoded by MiniLM.",
        "The llama-index baseline gets precomputed passage vectors (no re-encoding) and encodes queries with "
        "HuggingFaceEmbedding over the same packaged MiniLM folder.",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not (SCIFACT / "corpus.jsonl").is_file():
        print(json.dumps({"error": f"SciFact not found at {SCIFACT}"}))
        return 2
    settings = Settings()
    if args.data_dir:
        settings = settings.model_copy(update={"data_dir": Path(args.data_dir)})
    # `auto`: the bi-encoder adopted for the data dir, else the packaged one (as `rag-app eval` resolves it)
    settings = settings.model_copy(update={"embed_model": active_embed_model(settings.embed_model,
                                                                             settings.data_dir)})
    encoder = BiEncoder(settings.models())
    encoder.warm_up()
    scifact = scifact_pipeline(settings, encoder)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="rag-bench-"))
    try:
        log(f"scifact index: {scifact.config.data_dir}")
        ensure_corpus(scifact, SCIFACT)
        result: dict[str, Any] = {
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
            "settings": {"embed_model": settings.embed_model, "fusion": settings.fusion, "rrf_k": settings.rrf_k,
                         "bm25_weight": settings.bm25_weight, "candidates_per_side": settings.bm25_candidates,
                         "chunk_words": settings.chunk_words},
            "scifact": bench_scifact(scifact, args.queries, args.k, not args.no_llama),
            "perturbed": bench_perturbed(scifact, settings, args.passages, args.queries, args.k,
                                         0 if args.no_llama else args.llama_queries, work),
            "notes": notes(args),
        }
    finally:
        scifact.close()
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
