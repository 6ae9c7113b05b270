"""Rerank stage: quality against latency for the cross-encoder's backend, input length and depth; prints JSON.

    python benchmarks/rerank.py --reranker MODEL_DIR [--backends onnx,onnx-int8] [--max-lengths 256,192,128]
                                [--top-n 30,20,10] [--queries N] [--timed N] [--work DIR] [--out FILE]

A cross-encoder reads every (question, passage) pair in full, so its cost is set by the pairs it reads
(`RAG_APP_RERANK_TOP_N`), the word pieces per pair (`RAG_APP_RERANK_MAX_LENGTH`) and the arithmetic per
word piece (`RAG_APP_BACKEND`: fp32 or int8). This measures what each choice costs in nDCG@10.

Data: SciFact train with the split `rag-app train` uses (20% of the queries held out, seed 13), so a
reranker trained by `python benchmarks/training.py scifact-ce` is scored only on queries it never saw.
First stage: the product's hybrid (BM25 + dense over the packaged MiniLM, fused) through the training
corpus index (`--work`, shared with benchmarks/training.py so the corpus is encoded once). Each
candidate list is reordered exactly as the product does (`interpolate` with the reranker's recorded weight).

Per configuration (backend x max length): every held-out query's top-max(top_n) is scored once; the
shallower depths reuse the scores of their head (a pair's score does not depend on the others in its
batch), so nDCG@10 is exact for every depth. Latency is measured apart, per depth, on the first `--timed`
held-out queries, one query at a time after a warm-up: the wall-clock of `Reranker.score` (the stage's whole
cost; fusion and lookups add ~1 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval import summary

from rag_app.config import DEFAULT_EMBED_MODEL, ModelConfig
from rag_app.encoders import Reranker
from rag_app.metrics import evaluate
from rag_app.retrieval.fusion import interpolate
from rag_app.training.heldout import DEPTH_PASSAGES
from rag_app.training.run import DataSpec, RunContext, corpus_index, prepare

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def log(message: str) -> None:
    print(f"[rerank] {message}", file=sys.stderr, flush=True)


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reranker", required=True, help="cross-encoder folder (e.g. one trained by training.py)")
    parser.add_argument("--backends", default="onnx,onnx-int8")
    parser.add_argument("--max-lengths", default="256,192,128")
    parser.add_argument("--top-n", default="30,20,10")
    parser.add_argument("--queries", type=int, default=0, help="first N held-out queries (default all)")
    parser.add_argument("--timed", type=int, default=40, help="held-out queries timed per depth")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rag_training_bench"),
                        help="benchmarks/training.py's --work (its corpus index is reused)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not (DATA / "scifact").is_dir():
        print(json.dumps({"error": f"needs ../shared/data/scifact (looked in {DATA})"}))
        return 2
    depths = sorted(ints(args.top_n), reverse=True)
    models = ModelConfig(embed_model=DEFAULT_EMBED_MODEL, max_seq_length=256)
    ctx = RunContext(data_dir=args.work / "data", models=models, base_model=DEFAULT_EMBED_MODEL,
                     work_dir=args.work / "corpus")
    prepared = prepare(DataSpec(beir=DATA / "scifact"), ctx)
    held = prepared.split.held_out
    qids = [q for q in held.qrels if q in held.queries][: args.queries or None]
    texts = [held.queries[q] for q in qids]
    log(f"{len(qids)} held-out queries; first stage over the corpus index in {args.work / 'corpus'}")
    index = corpus_index(prepared, ctx, DEFAULT_EMBED_MODEL, None)
    try:
        bm25 = index.bm25(texts, DEPTH_PASSAGES)
        dense = index.dense(index.base, texts, DEPTH_PASSAGES)
        fused = [index.fused(b, d) for b, d in zip(bm25, dense, strict=True)]
        judged = {q: dict(held.qrels[q]) for q in qids}

        def ndcg(orders: dict[str, list[int]]) -> float:
            run = {q: {d: 1.0 / (i + 1) for i, d in enumerate(index.to_docs(v, 10))} for q, v in orders.items()}
            return round(evaluate(judged, run, ["ndcg@10"])["ndcg@10"], 4)

        hybrid = ndcg({q: [v for v, _ in f] for q, f in zip(qids, fused, strict=True)})
        rows: list[dict[str, Any]] = []
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            for max_length in ints(args.max_lengths):
                reranker = Reranker(args.reranker, max_length=max_length, backend=backend,
                                    cache_dir=args.work / "onnx")
                t0 = time.perf_counter()
                reranker.warm_up()
                load_s = time.perf_counter() - t0
                weight = reranker.weight
                log(f"{backend} max_length {max_length}: scoring top-{depths[0]} of {len(qids)} queries")
                scores = [reranker.score(q, [index.text_of[v] for v, _ in f[: depths[0]]])
                          for q, f in zip(texts, fused, strict=True)]
                for n in depths:
                    orders = {}
                    for q, f, s in zip(qids, fused, scores, strict=True):
                        top = f[:n]
                        ce = {v: s[i] for i, (v, _) in enumerate(top)}
                        orders[q] = [v for v, _ in interpolate(ce, dict(top), weight)] + [v for v, _ in f[n:]]
                    reranker.score(texts[0], [index.text_of[v] for v, _ in fused[0][:n]])  # warm-up at this depth
                    times = []
                    for q, f in list(zip(texts, fused, strict=True))[: args.timed]:
                        passages = [index.text_of[v] for v, _ in f[:n]]
                        t1 = time.perf_counter()
                        reranker.score(q, passages)
                        times.append((time.perf_counter() - t1) * 1000)
                    latency = summary(times)
                    row = {"backend": reranker.backend, "max_length": max_length, "top_n": n,
                           "ndcg@10": ndcg(orders), "rerank_p50_ms": round(latency["p50"], 1),
                           "rerank_p95_ms": round(latency["p95"], 1), "load_s": round(load_s, 2),
                           "rerank_weight": weight}
                    log(json.dumps(row))
                    rows.append(row)
    finally:
        index.close()
    result = {
        "benchmark": "rerank stage: backend x max_length x depth",
        "data": {"dataset": "SciFact train, held-out 20% (seed 13)", "queries": len(qids), "timed": args.timed},
        "reranker": args.reranker, "hybrid_ndcg@10": hybrid, "rows": rows,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_1min": round(os.getloadavg()[0], 2)},
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)
    print(f"\n{'backend':<11}{'max_len':>8}{'top_n':>6}{'nDCG@10':>9}{'p50 ms':>9}{'p95 ms':>9}", file=sys.stderr)
    for r in rows:
        print(f"{r['backend']:<11}{r['max_length']:>8}{r['top_n']:>6}{r['ndcg@10']:>9.4f}{r['rerank_p50_ms']:>9.1f}"
              f"{r['rerank_p95_ms']:>9.1f}", file=sys.stderr)
    print(f"hybrid without rerank: {hybrid:.4f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
