"""Ingest benchmark: SciFact's 5,183 abstracts through chunking, encoding and indexing.

Prints JSON with passages/s for each stage and peak RSS. Usage:
    python benchmarks/ingest.py [--corpus ../shared/data/scifact] [--limit N] [--backend onnx] [--out FILE]

Model load includes a one-time ONNX export when the export cache (a temporary folder here) is empty.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--limit", type=int, default=0, help="only the first N documents (0 = all)")
    parser.add_argument("--backend", default="onnx", help="torch | onnx | onnx-int8 (RAG_APP_BACKEND)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from rag_app.beir import iter_corpus
    from rag_app.config import ChunkingConfig, ModelConfig
    from rag_app.encoders import BiEncoder
    from rag_app.ingest.loaders import LoadedDocument, LoadedPage
    from rag_app.ingest.pipeline import Record, assemble
    from rag_app.pipeline import PipelineConfig, RagPipeline

    docs = list(iter_corpus(args.corpus))
    if args.limit:
        docs = docs[: args.limit]
    records = [Record(d._id, d.title, d.text) for d in docs]

    export_cache = tempfile.TemporaryDirectory(prefix="rag_ingest_onnx_")
    t0 = time.perf_counter()
    encoder = BiEncoder(ModelConfig(backend=args.backend, onnx_cache_dir=export_cache.name))
    encoder.warm_up()
    load_s = time.perf_counter() - t0

    # Stage 1: chunking alone (pure CPU, no model).
    t0 = time.perf_counter()
    n_chunked = 0
    for r in records:
        loaded = LoadedDocument("record", (LoadedPage("", r.text),), title=r.title)
        n_chunked += len(assemble("x", loaded, ChunkingConfig(), title=r.title)[2])
    chunk_s = time.perf_counter() - t0

    # Stages 2-3: the real ingest (encode + store) and index build, timed by the pipeline itself.
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = RagPipeline(PipelineConfig(data_dir=Path(tmp)), encoder=encoder, use_embedded_llm=False)
        t0 = time.perf_counter()
        report = pipeline.ingest_records(records)
        total_s = time.perf_counter() - t0
        stages = report.timings.as_dict()
        pipeline.close()

    n = report.passages_added
    encode_s = stages.get("encode", 0.0) / 1000
    index_s = stages.get("index", 0.0) / 1000
    store_s = stages.get("store", 0.0) / 1000
    out = {
        "benchmark": "ingest",
        "corpus": str(args.corpus),
        "documents": len(records),
        "passages": n,
        "backend": encoder.backend,
        "model_load_s_with_export": round(load_s, 2),
        "chunking": {"seconds": round(chunk_s, 2), "passages_per_s": round(n_chunked / chunk_s, 1)},
        "encoding": {"seconds": round(encode_s, 2), "passages_per_s": round(n / encode_s, 1) if encode_s else None},
        "store": {"seconds": round(store_s, 2)},
        "indexing": {"seconds": round(index_s, 2), "passages_per_s": round(n / index_s, 1) if index_s else None},
        "end_to_end": {"seconds": round(total_s, 2), "passages_per_s": round(n / total_s, 1)},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    export_cache.cleanup()
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
