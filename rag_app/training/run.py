"""`rag-app train`: load pairs, split off the held-out part, evaluate, mine negatives, train, evaluate
again, write a report beside the model and optionally adopt it.

Every run writes `<out>/training_report.json` (what `rag-app adopt MODEL_DIR` reads): base model, data,
hyper-parameters, the train statistics and the held-out metrics before and after.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rag_app.config import ChunkingConfig, ModelConfig, RetrievalConfig
from rag_app.encoders import Reranker
from rag_app.store import now_iso
from rag_app.training.biencoder import BiEncoderTrainConfig, Example, train_biencoder
from rag_app.training.common import MIN_GAIN
from rag_app.training.heldout import CorpusIndex, eval_dir_for, format_comparison, make_encoder
from rag_app.training.negatives import NegativeConfig, mine_negatives
from rag_app.training.pairs import (
    CorpusPassage,
    HeldOutSplit,
    TrainingData,
    TrainPair,
    corpus_from_jsonl,
    from_beir,
    from_pairs_file,
    from_squad,
    inverse_cloze_pairs,
    split_heldout,
    synthetic_pairs,
)
from rag_app.training.reranker import RerankerTrainConfig, default_reranker_base, train_reranker

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int, str], None]
REPORT_FILE = "training_report.json"
#: reported beside the product's rerank row (the trained model's recorded weight), never used for adoption:
#: `rerank~1` is the cross-encoder alone (no blending with the fused score)
INTERPOLATION_DIAGNOSTIC = (1.0,)


@dataclass(frozen=True)
class DataSpec:
    pairs: Path | None = None
    beir: Path | None = None
    squad: Path | None = None
    split: str = "train"
    corpus: Path | None = None
    self_supervised: int = 0
    synthetic: int = 0
    generated_only: bool = False
    held_out: float = 0.2
    seed: int = 13
    max_train_pairs: int = 0


@dataclass(frozen=True)
class RunContext:
    """Where and with what the run happens (taken from the user's settings by the CLI)."""

    data_dir: Path
    models: ModelConfig = field(default_factory=ModelConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    base_model: str = ""            # the current bi-encoder (resolved `auto`)
    reranker: str = ""              # the current reranker folder/name, '' for none
    work_dir: Path | None = None    # where the held-out corpus index lives (default <data_dir>/training)
    chat: Callable[[list[dict[str, str]]], str] | None = None  # for --synthetic


def store_corpus(data_dir: Path) -> dict[str, CorpusPassage]:
    """The user's stored passages as a training corpus (id = passage id; group = its document)."""
    from rag_app.store import Store

    path = data_dir / "store.sqlite"
    if not path.exists():
        return {}
    store = Store(path)
    try:
        return {p.id: CorpusPassage(p.id, p.doc_title, p.text, p.doc_id) for p in store.iter_passages()}
    finally:
        store.close()


def load_data(spec: DataSpec, ctx: RunContext) -> TrainingData | None:
    """The labelled data of the spec (None when only generated pairs were asked for)."""
    given = [x for x in (spec.pairs, spec.beir, spec.squad) if x is not None]
    if len(given) > 1:
        raise ValueError("give one of --pairs, --beir, --squad")
    if spec.beir is not None:
        return from_beir(spec.beir, spec.split)
    if spec.squad is not None:
        return from_squad(spec.squad)
    if spec.pairs is not None:
        if spec.pairs.is_dir():
            if (spec.pairs / "questions.jsonl").is_file():
                return from_squad(spec.pairs)
            return from_beir(spec.pairs, spec.split)
        corpus = corpus_from_jsonl(spec.corpus) if spec.corpus else store_corpus(ctx.data_dir)
        return from_pairs_file(spec.pairs, corpus)
    if not (spec.self_supervised or spec.synthetic):
        raise ValueError("no training data: give --pairs, --beir or --squad, or --self-supervised N / --synthetic N")
    return None


def generated_data(corpus: Mapping[str, CorpusPassage], pairs: list[TrainPair], name: str) -> TrainingData:
    """Generated pairs as labelled data (for a held-out part when there are no real labels); each
    passage's document is its split group, so no document is on both sides."""
    queries = {p.query_id: p.query for p in pairs}
    qrels = {p.query_id: {p.positive_id: 1} for p in pairs}
    groups = {p.query_id: corpus[p.positive_id].group or p.positive_id for p in pairs}
    return TrainingData(name, f"generated:{name}", dict(corpus), queries, qrels, groups)


@dataclass
class Prepared:
    data: TrainingData
    split: HeldOutSplit
    train_pairs: list[TrainPair]
    counts: dict[str, int]
    generated_held_out: bool = False


def prepare(spec: DataSpec, ctx: RunContext, progress: Progress | None = None) -> Prepared:
    labelled = load_data(spec, ctx)
    corpus = labelled.corpus if labelled is not None else store_corpus(ctx.data_dir)
    if not corpus:
        raise ValueError(f"no corpus: {ctx.data_dir} holds no passages; ingest documents or give --beir/--pairs")
    counts: dict[str, int] = {}
    if labelled is not None:
        split = split_heldout(labelled, spec.held_out, spec.seed)
        exclude = set(split.excluded) | {p for j in split.held_out.qrels.values() for p in j}
        generated = _generate(spec, ctx, corpus, exclude, progress)
        train_pairs = [] if spec.generated_only else split.train.pairs()
        counts["labelled"] = len(train_pairs)
        train_pairs += generated
        data = labelled
        gen_held = False
    else:
        generated = _generate(spec, ctx, corpus, set(), progress)
        data = generated_data(corpus, generated, ctx.data_dir.name or "corpus")
        split = split_heldout(data, spec.held_out, spec.seed)
        train_ids = set(split.train.qrels)
        train_pairs = [p for p in generated if p.query_id in train_ids]
        gen_held = True
    for p in train_pairs:
        if p.source != "labelled":
            counts[p.source] = counts.get(p.source, 0) + 1
    if spec.max_train_pairs and len(train_pairs) > spec.max_train_pairs:
        rng = random.Random(spec.seed)
        train_pairs = sorted(rng.sample(train_pairs, spec.max_train_pairs), key=train_pairs.index)
    if not train_pairs:
        raise ValueError("no training pairs left after splitting off the held-out part")
    if not split.held_out.qrels:
        raise ValueError("the held-out part is empty: give more data or a larger --held-out fraction")
    return Prepared(data, split, train_pairs, counts, gen_held)


def _generate(spec: DataSpec, ctx: RunContext, corpus: Mapping[str, CorpusPassage], exclude: set[str],
              progress: Progress | None) -> list[TrainPair]:
    out: list[TrainPair] = []
    if spec.self_supervised:
        out += inverse_cloze_pairs(corpus, spec.self_supervised, spec.seed, exclude=exclude)
    if spec.synthetic:
        if ctx.chat is None:
            raise ValueError("--synthetic needs an LLM: set RAG_APP_LLM_BASE_URL or install the embedded model")
        out += synthetic_pairs(corpus, spec.synthetic, ctx.chat, spec.seed, exclude=exclude,
                               progress=(lambda d, t: progress("synthetic questions", d, t, "")) if progress else None)
    return out


def build_examples(prepared: Prepared, index: CorpusIndex, neg: NegativeConfig, ranker_mode: str | None = None,
                   encoder: Any = None) -> list[Example]:
    """Training rows: every pair with `neg.k` mined negatives (padded with random passages when the
    ranking ran short, so every row has the same number)."""
    data = prepared.data
    corpus = data.corpus
    texts = {pid: p.full_text() for pid, p in corpus.items()}
    excluded = set(prepared.split.excluded)
    triples = []
    extra: dict[str, str] = {}
    for i, pair in enumerate(prepared.train_pairs):
        positives = {p for p, g in data.qrels.get(pair.query_id, {}).items() if g >= 1} | {pair.positive_id}
        key = str(i)
        triples.append((key, pair.query, positives))
        if pair.positive_text != texts.get(pair.positive_id):
            extra[key] = pair.positive_text
    if ranker_mode is None:
        mined = mine_negatives(triples, texts, neg, bm25=index.ranker("bm25"),
                               dense=index.ranker("dense", encoder), exclude=excluded, extra_positive_text=extra)
    else:  # one fused ranking (the reranker sees hybrid candidates)
        single = replace(neg, source="bm25")
        mined = mine_negatives(triples, texts, single, bm25=index.ranker(ranker_mode, encoder), exclude=excluded,
                               extra_positive_text=extra)
    rng = random.Random(neg.seed)
    pool = [pid for pid in corpus if pid not in excluded]
    examples = []
    short = 0
    for (key, query, positives), pair in zip(triples, prepared.train_pairs, strict=True):
        negs = list(mined.get(key, []))
        if len(negs) < neg.k:
            short += 1
            while len(negs) < neg.k and len(pool) > len(positives) + len(negs):
                pid = rng.choice(pool)
                if pid not in positives and pid not in negs:
                    negs.append(pid)
        examples.append(Example(query, pair.positive_text, tuple(texts[p] for p in negs)))
    if short:
        logger.info("%d of %d pairs had fewer than %d mined negatives; padded with random passages",
                    short, len(examples), neg.k)
    return examples


def corpus_index(prepared: Prepared, ctx: RunContext, base_spec: str, progress: Progress | None) -> CorpusIndex:
    """The held-out corpus in its own data dir (reused between runs with the same corpus and base model)."""
    base = make_encoder(base_spec, ctx.models)
    root = ctx.work_dir or (ctx.data_dir / "training" / "corpus")
    data_dir = eval_dir_for(root, prepared.data.name, prepared.data.corpus, base, ctx.chunking)
    return CorpusIndex(data_dir, prepared.data.corpus, base, ctx.chunking, ctx.retrieval, progress)


def _data_report(spec: DataSpec, prepared: Prepared) -> dict[str, Any]:
    return {"source": prepared.data.source, "name": prepared.data.name, "split": spec.split,
            "held_out": prepared.split.describe(), "held_out_from_generated_pairs": prepared.generated_held_out,
            "train_pairs": len(prepared.train_pairs), "pairs_by_source": prepared.counts,
            "corpus_passages": len(prepared.data.corpus)}


def _write_report(out_dir: Path, report: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2, default=str))


def default_out_dir(data_dir: Path, kind: str) -> Path:
    return data_dir / "training" / "runs" / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_biencoder(spec: DataSpec, ctx: RunContext, cfg: BiEncoderTrainConfig, neg: NegativeConfig,
                  out_dir: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Train a bi-encoder from the current one and compare both on the held-out part."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    prepared = prepare(spec, ctx, progress)
    base_spec = ctx.base_model or ctx.models.embed_model
    index = corpus_index(prepared, ctx, base_spec, progress)
    timings["prepare+index"] = time.perf_counter() - t0
    try:
        held = prepared.split.held_out
        # The installed reranker as the product runs it (its own input cap), for the hybrid + rerank rows.
        current_reranker = (Reranker(ctx.reranker, max_length=ctx.models.rerank_max_length)
                            if ctx.reranker else None)
        t = time.perf_counter()
        before = index.evaluate(held.queries, held.qrels, index.base, current_reranker, progress=progress)
        timings["evaluate before"] = time.perf_counter() - t
        t = time.perf_counter()
        examples = build_examples(prepared, index, neg, encoder=index.base)
        timings["mine negatives"] = time.perf_counter() - t
        t = time.perf_counter()
        stats = train_biencoder(base_spec, examples, out_dir, cfg, progress)
        timings["train"] = time.perf_counter() - t
        t = time.perf_counter()
        trained = make_encoder(str(out_dir.resolve()), ctx.models)
        after = index.evaluate(held.queries, held.qrels, trained, current_reranker, progress=progress)
        timings["evaluate after"] = time.perf_counter() - t
    finally:
        index.close()
    gain = after["dense"]["ndcg@10"] - before["dense"]["ndcg@10"]
    report: dict[str, Any] = {
        "kind": "biencoder", "model_dir": str(out_dir.resolve()), "base_model": base_spec,
        "trained_at": now_iso(), "data": _data_report(spec, prepared), "negatives": asdict(neg),
        "hyperparameters": asdict(cfg), "train": stats.as_dict(),
        "held_out": {"before": before, "after": after, "reranker": ctx.reranker or None,
                     "n_queries": len(prepared.split.held_out.qrels)},
        "improvement": {"dense_ndcg@10": gain,
                        "hybrid_ndcg@10": after["hybrid"]["ndcg@10"] - before["hybrid"]["ndcg@10"]},
        "improved": gain > MIN_GAIN,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "eval_dir": str(index.data_dir),
    }
    report["timings_s"]["total"] = round(time.perf_counter() - t0, 1)
    _write_report(out_dir, report)
    return report


def run_reranker(spec: DataSpec, ctx: RunContext, cfg: RerankerTrainConfig, neg: NegativeConfig,
                 out_dir: Path, base: str = "", progress: Progress | None = None) -> dict[str, Any]:
    """Train a cross-encoder on hybrid-retrieval negatives; compare hybrid (+ the current reranker)
    with hybrid + the new reranker on the held-out part."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    prepared = prepare(spec, ctx, progress)
    dense_spec = ctx.base_model or ctx.models.embed_model
    index = corpus_index(prepared, ctx, dense_spec, progress)
    timings["prepare+index"] = time.perf_counter() - t0
    ce_base = base or default_reranker_base()
    try:
        held = prepared.split.held_out
        current = Reranker(ctx.reranker, max_length=cfg.max_length) if ctx.reranker else None
        t = time.perf_counter()
        before = index.evaluate(held.queries, held.qrels, index.base, current, modes=("hybrid", "rerank"),
                                progress=progress)
        timings["evaluate before"] = time.perf_counter() - t
        t = time.perf_counter()
        examples = build_examples(prepared, index, neg, ranker_mode="hybrid", encoder=index.base)
        timings["mine negatives"] = time.perf_counter() - t
        t = time.perf_counter()
        stats = train_reranker(ce_base, examples, out_dir, cfg, progress)
        timings["train"] = time.perf_counter() - t
        t = time.perf_counter()
        trained = Reranker(str(out_dir.resolve()), max_length=cfg.max_length)
        after = index.evaluate(held.queries, held.qrels, index.base, trained, modes=("hybrid", "rerank"),
                               progress=progress, interpolations=INTERPOLATION_DIAGNOSTIC)
        timings["evaluate after"] = time.perf_counter() - t
    finally:
        index.close()
    reference = max(before["hybrid"]["ndcg@10"], before.get("rerank", {}).get("ndcg@10", float("-inf")))
    gain = after["rerank"]["ndcg@10"] - reference
    report: dict[str, Any] = {
        "kind": "reranker", "model_dir": str(out_dir.resolve()), "base_model": ce_base, "dense_model": dense_spec,
        "trained_at": now_iso(), "data": _data_report(spec, prepared), "negatives": asdict(neg),
        "hyperparameters": asdict(cfg), "train": stats.as_dict(),
        "held_out": {"before": before, "after": after, "reranker_before": ctx.reranker or None,
                     "n_queries": len(prepared.split.held_out.qrels)},
        "improvement": {"rerank_ndcg@10": gain, "reference": "hybrid" if current is None else "current reranker"},
        "improved": gain > MIN_GAIN,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "eval_dir": str(index.data_dir),
    }
    report["timings_s"]["total"] = round(time.perf_counter() - t0, 1)
    _write_report(out_dir, report)
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """The side-by-side held-out table and a one-line verdict."""
    held = report["held_out"]
    data = report["data"]
    n = held.get("n_queries")
    title = (f"held-out: {n} queries ({data['held_out']['fraction']:.0%} of {data['name']}, seed "
             f"{data['held_out']['seed']}; never trained on), {data['train_pairs']} training pairs")
    before, after = held["before"], held["after"]
    if report["kind"] == "reranker":
        table = format_comparison(before, after, title, "before", "after")
        gain = report["improvement"]["rerank_ndcg@10"]
        verdict = (f"rerank nDCG@10 {after['rerank']['ndcg@10']:.4f} vs {report['improvement']['reference']} "
                   f"{after['rerank']['ndcg@10'] - gain:.4f} ({gain:+.4f})")
    else:
        table = format_comparison(before, after, title)
        gain = report["improvement"]["dense_ndcg@10"]
        verdict = f"dense nDCG@10 {gain:+.4f}"
    verdict += f" (improved means > {MIN_GAIN:+.4f})"
    train = report["train"]
    lines = [table, "",
             f"{'improved' if report['improved'] else 'NOT improved'}: {verdict}",
             f"trained {train['steps']} steps in {train['seconds']:.0f} s (loss {train['first_loss']} -> "
             f"{train['last_loss']}); total {report['timings_s'].get('total', 0):.0f} s",
             f"model: {report['model_dir']}"]
    return "\n".join(lines)
