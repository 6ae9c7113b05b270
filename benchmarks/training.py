"""Before/after experiments of in-product training on ../shared/data; prints JSON.

    python benchmarks/training.py                         # all experiments (long: run it in the background)
    python benchmarks/training.py scifact-bi scifact-ce   # chosen ones
    python benchmarks/training.py squad-bi --epochs 1

Experiments (each on its own held-out 20%, seed 13, never trained on):
  scifact-bi   bi-encoder on SciFact train pairs + 1 BM25 hard negative; dense/hybrid nDCG@10, Recall@100
  scifact-ict  the same, trained only on inverse-cloze pairs from the corpus (no labels), same held-out part
  scifact-ce   cross-encoder from the packaged MiniLM on hybrid-mined negatives; hybrid vs hybrid + rerank
  squad-bi     bi-encoder on SQuAD 2.0 dev answerable questions, held out by article title
  squad-ce     cross-encoder on the same SQuAD questions and held-out articles; hybrid vs hybrid + rerank
  scifact-syn  the same as scifact-ict with --synthetic-pairs questions written by the embedded SmolLM2
Work data (corpus indexes, models) goes to --work (default /tmp/rag_training_bench); the corpus index is
reused between runs, so only the first run pays for encoding the corpus with the base model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag_app.config import DEFAULT_EMBED_MODEL, ModelConfig
from rag_app.training.biencoder import BiEncoderTrainConfig
from rag_app.training.negatives import NegativeConfig
from rag_app.training.reranker import RerankerTrainConfig
from rag_app.training.run import DataSpec, RunContext, format_report, run_biencoder, run_reranker

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EXPERIMENTS = ("scifact-bi", "scifact-ict", "scifact-ce", "squad-bi", "squad-ce", "scifact-syn")


def progress(stage: str, done: int, total: int, detail: str = "") -> None:
    if (total and (done == total or done % max(1, total // 10) == 0)) or stage == "train":
        print(f"  [{time.strftime('%H:%M:%S')}] {stage} {done}/{total} {detail}", file=sys.stderr, flush=True)


def summary(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report[k] for k in ("kind", "base_model", "model_dir", "improved", "improvement", "held_out",
                                   "hyperparameters", "negatives", "timings_s")} | {
        "train": {k: v for k, v in report["train"].items() if k != "loss_curve"},
        "data": report["data"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="*", default=[], help=f"any of {', '.join(EXPERIMENTS)} (default all)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rag_training_bench"))
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--hard-negatives", type=int, default=None)
    parser.add_argument("--negatives", choices=["bm25", "dense", "both"], default="bm25")
    parser.add_argument("--loss", default=None, help="mnrl|cached-mnrl (bi-encoder) or mnrl|bce|lambda|listnet")
    parser.add_argument("--ict-pairs", type=int, default=2000)
    parser.add_argument("--synthetic-pairs", type=int, default=300)
    parser.add_argument("--tag", default="", help="suffix of the model folders")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(json.dumps({"error": f"needs ../shared/data (looked in {DATA})"}))
        return 2
    chosen = args.experiments or list(EXPERIMENTS)
    unknown = [e for e in chosen if e not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment(s) {unknown}; choose from {', '.join(EXPERIMENTS)}")
    models = ModelConfig(embed_model=DEFAULT_EMBED_MODEL, max_seq_length=args.max_seq_length)
    ctx = RunContext(data_dir=args.work / "data", models=models, base_model=DEFAULT_EMBED_MODEL,
                     work_dir=args.work / "corpus")
    results: dict[str, Any] = {}
    for name in chosen:
        out = args.work / "models" / f"{name}{args.tag}"
        t0 = time.perf_counter()
        print(f"== {name} -> {out}", file=sys.stderr, flush=True)
        neg = NegativeConfig(k=args.hard_negatives if args.hard_negatives is not None else 1, source=args.negatives)
        bi = BiEncoderTrainConfig(epochs=args.epochs or 1.0, batch_size=args.batch_size or 32,
                                  learning_rate=args.lr or 3e-5, max_seq_length=args.max_seq_length,
                                  loss=args.loss or "mnrl")
        if name == "scifact-bi":
            report = run_biencoder(DataSpec(beir=DATA / "scifact"), ctx, bi, neg, out, progress)
        elif name == "scifact-ict":
            spec = DataSpec(beir=DATA / "scifact", self_supervised=args.ict_pairs, generated_only=True)
            report = run_biencoder(spec, ctx, bi, neg, out, progress)
        elif name == "scifact-syn":
            from rag_app.generation.llm import EmbeddedLlamaServer

            with EmbeddedLlamaServer() as server:
                chat = server.chat_model(max_tokens=64, temperature=0.3)
                syn_ctx = replace(ctx, chat=chat.complete)
                spec = DataSpec(beir=DATA / "scifact", synthetic=args.synthetic_pairs, generated_only=True)
                report = run_biencoder(spec, syn_ctx, bi, neg, out, progress)
        elif name == "squad-bi":
            report = run_biencoder(DataSpec(squad=DATA / "squad2-dev"), ctx, bi, neg, out, progress)
        else:
            ce_neg = NegativeConfig(k=args.hard_negatives if args.hard_negatives is not None else 3,
                                    source="both", depth=30, sample=True)
            ce = RerankerTrainConfig(epochs=args.epochs or 1.0, batch_size=args.batch_size or 16,
                                     learning_rate=args.lr or 5e-5, max_length=args.max_seq_length,
                                     loss=args.loss or "mnrl")
            data = DataSpec(squad=DATA / "squad2-dev") if name == "squad-ce" else DataSpec(beir=DATA / "scifact")
            report = run_reranker(data, ctx, ce, ce_neg, out, progress=progress)
        print(format_report(report), file=sys.stderr, flush=True)
        results[name] = summary(report) | {"wall_clock_s": round(time.perf_counter() - t0, 1)}
        print(json.dumps({name: results[name]}, default=str), flush=True)
    if len(results) > 1:
        print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
