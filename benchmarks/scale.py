"""Dense index at scale: Flat vs HNSW vs IVF-PQ through rag_app.index.dense.DenseIndex.

    python benchmarks/scale.py [--sizes 10000,100000,1000000] [--queries 200] [--kinds flat,hnsw,ivfpq]
                               [--distribution clustered|uniform] [--out FILE]

The vectors are SYNTHETIC: normalised 384-d float32 vectors (the MiniLM dimension), by default drawn
around 2,000 random cluster centres (sentence embeddings are clustered; uniformly random vectors on the
sphere are the hardest case for ANN and can be chosen with --distribution uniform). Queries come from the
same distribution. Nothing here measures retrieval quality, only index cost, speed and ANN recall.

For each size the vectors go to a temporary .npy file; the exact top-10 of a query subset is computed
in batches over the corpus (never a Flat index over 1M for ground truth). Then, per index kind, two
subprocesses (so memory is separable):
  build: DenseIndex.build + save, timed; peak RSS; index file size;
  serve: DenseIndex.load as the app does; RSS after load; single-query latency p50/p95 at k=10 and at
         k=100 (what hybrid retrieval asks the dense side for), with faiss's default OpenMP threads and
         with 1 thread; recall@10 against exact for each setting (HNSW efSearch 64/128, IVF-PQ nprobe 16/32).
HNSW is built with M=32, efConstruction=80, IVF-PQ with the app's defaults (nlist = 4*sqrt(n) capped at
4096, PQ m=48 x 8 bits, candidates re-scored exactly: 2 x k of them, from the vectors that DenseIndex.load
memory-maps), each as DenseIndex.build does. Memory is reported as anonymous (heap) and file-backed
(memory-mapped pages the queries touched: page cache the kernel can drop) apart. Recall@10 is given for a
k=10 search and for the top 10 of a k=100 search (what hybrid asks for). Prints one JSON document.
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

ROOT = Path(__file__).resolve().parents[1]
DIM = 384
K = 10
SETTINGS: dict[str, list[tuple[str, int]]] = {
    "flat": [("exact", 0)],
    "hnsw": [("efSearch", 64), ("efSearch", 128)],
    "ivfpq": [("nprobe", 16), ("nprobe", 32)],
}


def log(message: str) -> None:
    print(f"[scale] {message}", file=sys.stderr, flush=True)


def status_mb(*fields: str) -> dict[str, float]:
    """Memory fields of /proc/self/status in MB (VmRSS; RssAnon = heap, RssFile = memory-mapped pages,
    reclaimable page cache); NaN where unavailable."""
    out = dict.fromkeys(fields, float("nan"))
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                name = line.split(":")[0]
                if name in out:
                    out[name] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


def rss_mb() -> float:
    return status_mb("VmRSS")["VmRSS"]


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ---- data ---------------------------------------------------------------------------------------


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def generate(path: Path, n: int, distribution: str, seed: int, centres: np.ndarray | None) -> None:
    """Write n normalised vectors to a .npy file in chunks (1M x 384 float32 is 1.5 GB)."""
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, DIM))
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        if distribution == "uniform" or centres is None:
            block = rng.standard_normal((m, DIM), dtype=np.float32)
        else:
            pick = rng.integers(0, len(centres), m)
            # noise norm ~0.9 around unit centres: neighbours share a centre, but are not near-duplicates
            block = centres[pick] + rng.standard_normal((m, DIM), dtype=np.float32) * (0.9 / np.sqrt(DIM))
        out[start : start + m] = _normalise(block)
    out.flush()
    del out


def exact_topk(corpus: np.ndarray, queries: np.ndarray, k: int, batch: int = 100_000) -> np.ndarray:
    """Exact inner-product top-k ids, scanning the corpus in batches (bounded memory)."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, len(corpus), batch):
        block = np.asarray(corpus[start : start + batch], dtype=np.float32)
        sims = queries @ block.T
        kk = min(k, sims.shape[1])
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        cand_s = np.concatenate([best_s, np.take_along_axis(sims, top, 1)], axis=1)
        cand_i = np.concatenate([best_i, top + start], axis=1)
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s = np.take_along_axis(cand_s, order, 1)
        best_i = np.take_along_axis(cand_i, order, 1)
    return best_i


# ---- workers (subprocesses) -----------------------------------------------------------------------


def _config(kind: str, ivf_nlist: int) -> Any:
    from rag_app.config import IndexConfig

    return IndexConfig(index_type=kind, hnsw_m=32, hnsw_ef_construction=80, hnsw_ef_search=64, ivf_nlist=ivf_nlist,
                       ivf_nprobe=16)


def worker_build(kind: str, vectors_path: Path, index_path: Path, ivf_nlist: int) -> dict[str, Any]:
    from rag_app.index.dense import DenseIndex

    vectors = np.load(vectors_path, mmap_mode="r")
    base_rss = rss_mb()
    ids = np.arange(len(vectors), dtype=np.int64)
    t0 = time.perf_counter()
    index = DenseIndex.build(np.asarray(vectors), ids, _config(kind, ivf_nlist), DIM, kind=kind)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.save(index_path)
    return {"build_s": round(build_s, 2), "save_s": round(time.perf_counter() - t0, 2),
            "index_file_mb": round(index_path.stat().st_size / 2**20, 1), "rss_before_build_mb": base_rss,
            "build_peak_rss_mb": peak_rss_mb(),
            "note": "build peak RSS includes the memory-mapped input vectors that faiss read"}


def _inner(index: Any) -> Any:
    """The index that holds the search parameter (IVF-PQ: the coarse index under the exact refine stage)."""
    import faiss

    inner = faiss.downcast_index(index.index.index)
    return faiss.downcast_index(inner.base_index) if isinstance(inner, faiss.IndexRefine) else inner


def worker_serve(kind: str, index_path: Path, queries_path: Path, truth_path: Path, n_latency: int,
                 ivf_nlist: int) -> dict[str, Any]:
    import faiss

    from rag_app.index.dense import DenseIndex

    base_rss = rss_mb()
    base_parts = status_mb("RssAnon", "RssFile")
    t0 = time.perf_counter()
    index = DenseIndex.load(index_path, kind, DIM, _config(kind, ivf_nlist))
    load_s = time.perf_counter() - t0
    loaded_rss = rss_mb()
    loaded_parts = status_mb("RssAnon", "RssFile")
    queries = np.load(queries_path)
    truth = np.load(truth_path)
    default_threads = faiss.omp_get_max_threads()
    rows = []
    for param, value in SETTINGS[kind]:
        inner = _inner(index)
        if param == "efSearch":
            inner.hnsw.efSearch = value
        elif param == "nprobe":
            inner.nprobe = value
        row: dict[str, Any] = {"setting": f"{param}={value}" if value else param}
        for k in (K, 100):  # batched: recall only; hybrid takes the dense side's top 100
            _, ids = index.search(queries, k)
            recall = float(np.mean([len(set(ids[r, :K].tolist()) & set(truth[r].tolist())) / K
                                    for r in range(len(queries))]))
            row[f"recall@{K}" if k == K else f"recall@{K}_of_k{k}"] = round(recall, 4)
        for threads in (default_threads, 1):
            faiss.omp_set_num_threads(threads)
            for k in (K, 100):
                index.search(queries[:1], k)  # warm-up
                lat = []
                for q in queries[:n_latency]:
                    t0 = time.perf_counter()
                    index.search(q[None, :], k)
                    lat.append((time.perf_counter() - t0) * 1000)
                row[f"latency_ms_k{k}_threads{threads}"] = {"p50": round(float(np.percentile(lat, 50)), 3),
                                                            "p95": round(float(np.percentile(lat, 95)), 3),
                                                            "n": len(lat)}
        faiss.omp_set_num_threads(default_threads)
        rows.append(row)
    after = status_mb("RssAnon", "RssFile")
    return {"load_s": round(load_s, 3), "rss_before_load_mb": base_rss, "rss_after_load_mb": loaded_rss,
            "index_rss_mb": round(loaded_rss - base_rss, 1), "serve_peak_rss_mb": peak_rss_mb(),
            "index_rss_anon_mb": round(loaded_parts["RssAnon"] - base_parts["RssAnon"], 1),
            "rss_file_after_queries_mb": round(after["RssFile"] - base_parts["RssFile"], 1),
            "rss_anon_after_queries_mb": round(after["RssAnon"] - base_parts["RssAnon"], 1),
            "default_omp_threads": default_threads, "settings": rows}


def run_worker(args: list[str], timeout_s: float) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "timeout_s": timeout_s}
    if proc.returncode != 0:
        return {"status": "error", "stderr": proc.stderr[-2000:]}
    return {"status": "ok", **json.loads(proc.stdout.strip().splitlines()[-1])}


# ---- main ---------------------------------------------------------------------------------------


def bench_size(n: int, args: argparse.Namespace, work: Path, centres: np.ndarray | None) -> dict[str, Any]:
    vec_path, q_path, t_path = work / f"vectors-{n}.npy", work / f"queries-{n}.npy", work / f"truth-{n}.npy"
    t0 = time.perf_counter()
    generate(vec_path, n, args.distribution, seed=n, centres=centres)
    gen_s = time.perf_counter() - t0
    n_queries = args.queries if n < 1_000_000 else min(args.queries, args.queries_1m)
    generate(q_path, n_queries, args.distribution, seed=n + 1, centres=centres)
    corpus = np.load(vec_path, mmap_mode="r")
    queries = np.load(q_path)
    t0 = time.perf_counter()
    truth = exact_topk(corpus, queries, K)
    exact_s = time.perf_counter() - t0
    np.save(t_path, truth)
    del corpus
    out: dict[str, Any] = {"n": n, "generate_s": round(gen_s, 2), "queries": n_queries,
                           "exact_ground_truth": {"seconds": round(exact_s, 2), "method":
                                                  "batched numpy matmul over 100k-row blocks, top-10 merge"},
                           "kinds": {}}
    for kind in args.kinds:
        idx_path = work / f"{kind}-{n}.faiss"
        log(f"n={n}: building {kind}")
        build = run_worker(["build", kind, str(vec_path), str(idx_path), str(args.ivf_nlist)], args.timeout_s)
        entry: dict[str, Any] = {"build": build}
        if build.get("status") == "ok":
            log(f"n={n}: serving {kind} (build {build.get('build_s')} s)")
            entry["serve"] = run_worker(["serve", kind, str(idx_path), str(q_path), str(t_path),
                                         str(args.latency_queries), str(args.ivf_nlist)], args.timeout_s)
        idx_path.unlink(missing_ok=True)
        out["kinds"][kind] = entry
    for p in (vec_path, q_path, t_path):
        p.unlink(missing_ok=True)
    return out


def p50(entry: dict[str, Any], setting: str, k: int = 100, threads: int = 1) -> float | None:
    for row in entry.get("serve", {}).get("settings", []):
        if row["setting"] == setting:
            return float(row[f"latency_ms_k{k}_threads{threads}"]["p50"])
    return None


def recommend(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The cheapest index per size whose recall@10 >= 0.95 and single-query p50 (k=100, 1 thread) <= 10 ms;
    else the one with the best recall among those within 30 ms."""
    out: dict[str, Any] = {}
    for res in results:
        choices = []
        for kind, entry in res["kinds"].items():
            for row in entry.get("serve", {}).get("settings", []):
                lat = row["latency_ms_k100_threads1"]["p50"]
                choices.append((kind, row["setting"], row[f"recall@{K}"], lat,
                                entry["build"].get("build_s"), entry["build"].get("index_file_mb")))
        good = [c for c in choices if c[2] >= 0.95 and c[3] <= 10.0]
        pick = min(good, key=lambda c: (c[0] != "flat", c[4] or 0)) if good else (
            max((c for c in choices if c[3] <= 30.0), key=lambda c: c[2], default=None))
        out[str(res["n"])] = None if pick is None else {
            "kind": pick[0], "setting": pick[1], "recall@10": pick[2], "p50_ms_k100": pick[3], "build_s": pick[4],
            "index_file_mb": pick[5]}
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        role, kind = argv[1], argv[2]
        if role == "build":
            result = worker_build(kind, Path(argv[3]), Path(argv[4]), int(argv[5]))
        else:
            result = worker_serve(kind, Path(argv[3]), Path(argv[4]), Path(argv[5]), int(argv[6]), int(argv[7]))
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated corpus sizes")
    parser.add_argument("--kinds", default="flat,hnsw,ivfpq")
    parser.add_argument("--queries", type=int, default=200, help="queries for recall (exact truth computed)")
    parser.add_argument("--queries-1m", type=int, default=100, help="cap on queries at >= 1M vectors")
    parser.add_argument("--latency-queries", type=int, default=100, help="single queries timed per setting")
    parser.add_argument("--distribution", choices=("clustered", "uniform"), default="clustered")
    parser.add_argument("--ivf-nlist", type=int, default=0, help="0: the app's default (4*sqrt(n), max 4096)")
    parser.add_argument("--timeout-s", type=float, default=2400, help="per build/serve subprocess")
    parser.add_argument("--work-dir", help="for the temporary vector files (default: a temp dir)")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    rng = np.random.default_rng(7)
    centres = _normalise(rng.standard_normal((2000, DIM), dtype=np.float32)) if args.distribution == "clustered" \
        else None
    results = []
    with tempfile.TemporaryDirectory(prefix="rag-scale-", dir=args.work_dir) as tmp:
        for n in sizes:
            results.append(bench_size(n, args, Path(tmp), centres))
            log(json.dumps(results[-1])[:400])
    report = {
        "benchmark": "dense index scale",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "data": f"SYNTHETIC normalised {DIM}-d float32 vectors, distribution={args.distribution}"
                + (" (2,000 random unit centres + gaussian noise of norm ~0.9)" if args.distribution == "clustered"
                   else " (uniform on the sphere)"),
        "k": K, "results": results, "recommendation": recommend(results),
        "notes": ["Latency: one query per search call, wall clock, after one warm-up; k=100 is what the hybrid "
                  "retriever asks the dense side for; 'threads1' sets faiss.omp_set_num_threads(1).",
                  "Recall@10 against exact inner-product search over the same vectors, on the query subset."],
    }
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
