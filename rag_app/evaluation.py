"""Evaluation harness: retrieval quality and latency per mode on a BEIR folder, ANN recall, fusion tuning.

Pure orchestration over the pipeline: the corpus is ingested once into its own data dir (reused
while it holds the same corpus), each mode is run through the real retriever, and passages are
turned into documents by max-pooling (a document ranks where its best passage ranks). Candidate
depth per side is raised to ``DEPTH_FACTOR × max(ks)`` passages so ``max(ks)`` distinct documents
can be returned. Fusion tuning never re-runs retrieval: it fuses one cached pass of BM25 and dense
candidate lists per query for every grid point.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from rag_app.beir import load_corpus, load_qrels, load_queries, split_queries
from rag_app.config import ChunkingConfig, IndexConfig, ModelConfig, RetrievalConfig
from rag_app.index.dense import DenseIndex, choose_kind, exact_search
from rag_app.ingest.pipeline import Record
from rag_app.metrics import evaluable_queries, evaluate, per_query, percentile
from rag_app.retrieval.fusion import fuse
from rag_app.retrieval.hybrid import NO_RERANKER
from rag_app.types import MODES, SearchResult

if TYPE_CHECKING:
    from rag_app.pipeline import RagPipeline

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int, str], None]
FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]

DEFAULT_MODES: tuple[str, ...] = ("bm25", "dense", "hybrid", "rerank")
DEFAULT_KS: tuple[int, ...] = (10, 100)
DEPTH_FACTOR = 3
ANN_KINDS: tuple[str, ...] = ("flat", "hnsw", "ivfpq")
RRF_KS: tuple[int, ...] = (10, 20, 40, 60, 100)
BM25_WEIGHTS: tuple[float, ...] = tuple(round(i / 10, 1) for i in range(11))
MARKER_FILE = "eval_corpus.json"
WARM_UP_QUERY = "a warm-up question that is not part of the evaluation"
TIE_EPS = 1e-5  # float32 inner products of unit vectors agree to ~1e-6; ties within this are ties
LABELS = {"ndcg": "nDCG", "recall": "Recall", "mrr": "MRR", "precision": "P"}


# ---- report types -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModeResult:
    """One mode's metric means (empty when the mode could not run) and query latency."""

    mode: str
    metrics: dict[str, float]
    n_queries: int
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    stage_p50_ms: dict[str, float] = field(default_factory=dict)
    stage_p95_ms: dict[str, float] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class AnnRecall:
    """Recall@k of an ANN index against exact search on the same query vectors (tie-aware)."""

    kind: str
    k: int
    recall: float | None
    n_queries: int
    n_vectors: int
    build_s: float | None = None
    ann_ms_per_query: float | None = None
    exact_ms_per_query: float | None = None
    note: str = ""


@dataclass(frozen=True)
class FusionSetting:
    method: str
    rrf_k: int
    bm25_weight: float
    score_tune: float
    score_held_out: float | None

    def env_lines(self) -> tuple[str, ...]:
        lines = [f"RAG_APP_FUSION={self.method}", f"RAG_APP_BM25_WEIGHT={self.bm25_weight}"]
        if self.method == "rrf":
            lines.append(f"RAG_APP_RRF_K={self.rrf_k}")
        return tuple(lines)


@dataclass(frozen=True)
class FusionTuning:
    split: str
    metric: str
    n_tune: int
    n_held_out: int
    grid_size: int
    depth_passages: int
    current: FusionSetting
    best_per_method: tuple[FusionSetting, ...]
    best: FusionSetting
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvalReport:
    dataset: str
    split: str
    data_dir: str
    n_documents: int
    n_passages: int
    n_queries: int
    index_reused: bool
    metric_names: tuple[str, ...]
    depth_passages: int
    settings: dict[str, Any]
    modes: tuple[ModeResult, ...]
    ann: AnnRecall | None = None
    tuning: FusionTuning | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Benchmark:
    """The evaluated queries of one split (judged, with text), in qrels file order."""

    name: str
    directory: Path
    split: str
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CandidateLists:
    """One retrieval pass per query, reused for every fusion grid point."""

    query_ids: tuple[str, ...]
    bm25: tuple[list[tuple[int, float]], ...]
    dense: tuple[list[tuple[int, float]], ...]
    vid_doc: dict[int, str]
    depth: int


# ---- dataset and index --------------------------------------------------------------------------


def load_benchmark(dataset_dir: Path, split: str = "train", max_queries: int | None = None) -> Benchmark:
    """Judged queries of `split` that have text, first `max_queries` of them in qrels order."""
    qrels_all = load_qrels(dataset_dir, split)
    texts = load_queries(dataset_dir)
    judged = evaluable_queries(qrels_all)
    missing = [q for q in judged if q not in texts]
    chosen = [q for q in judged if q in texts][: max_queries or None]
    notes = (f"{len(missing)} judged queries have no text in queries.jsonl and were skipped",) if missing else ()
    name = dataset_dir.resolve().name
    return Benchmark(name, dataset_dir, split, {q: texts[q] for q in chosen},
                     {q: dict(qrels_all[q]) for q in chosen}, notes)


def metric_names(ks: Sequence[int]) -> tuple[str, ...]:
    """nDCG and MRR at the smallest cutoff, recall at every cutoff (default: the four of the report)."""
    if not ks or min(ks) < 1:
        raise ValueError(f"cutoffs must be positive integers, got {list(ks)}")
    k0 = min(ks)
    return (f"ndcg@{k0}", *(f"recall@{k}" for k in sorted(set(ks))), f"mrr@{k0}")


def eval_data_dir(base: Path, dataset_dir: Path, models: ModelConfig, chunking: ChunkingConfig) -> Path:
    """`<base>/eval/<dataset>-<hash of what shapes the vectors and passages>`. The model is named as the
    index names it (`inference.vector_model_name`): int8 gets its own folder, torch and fp32 ONNX share one."""
    from rag_app.inference import effective_backend, vector_model_name

    embed = vector_model_name(models.embed_model, effective_backend(models.backend, models.device))
    key = json.dumps({"embed_model": embed, "max_seq_length": models.max_seq_length,
                      "chunking": asdict(chunking)}, sort_keys=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset_dir.resolve().name).strip("-") or "dataset"
    return base / "eval" / f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def corpus_fingerprint(dataset_dir: Path) -> str:
    digest = hashlib.sha256()
    with (dataset_dir / "corpus.jsonl").open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_marker(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def ensure_corpus(pipeline: RagPipeline, dataset_dir: Path, progress: Progress | None = None) -> bool:
    """Index the BEIR corpus into the pipeline's data dir; True when an existing index was reused.

    An interrupted ingest resumes (documents already stored are skipped); a different corpus in the
    same folder is deleted first so no stale document can be retrieved.
    """
    marker = pipeline.config.data_dir / MARKER_FILE
    fingerprint = corpus_fingerprint(dataset_dir)
    recorded = _read_marker(marker)
    if (recorded.get("corpus_sha256") == fingerprint
            and recorded.get("documents") == pipeline.store.counts()["documents"]
            and pipeline.indexes.manifest() is not None):
        _match_index_kind(pipeline)
        return True
    if recorded and recorded.get("corpus_sha256") != fingerprint:
        logger.info("the eval folder holds another corpus; deleting it first")
        for doc in pipeline.store.list_documents():
            pipeline.store.delete_document(doc.id)
    records = [Record(d.id, d.title, d.text) for d in load_corpus(dataset_dir)]
    pipeline.ingest_records(records, progress)
    _match_index_kind(pipeline, force=bool(recorded))
    marker.write_text(json.dumps({"corpus_sha256": fingerprint, "dataset": str(dataset_dir.resolve()),
                                  "documents": pipeline.store.counts()["documents"]}, indent=2))
    return False


def _match_index_kind(pipeline: RagPipeline, force: bool = False) -> None:
    """Rebuild from cached vectors when the live index kind is not the configured one."""
    manifest = pipeline.indexes.manifest()
    wanted = choose_kind(pipeline.config.index, pipeline.store.counts()["passages"])
    if force or manifest is None or manifest.index_type != wanted:
        pipeline.indexes.refresh(full=True)


def vid_to_doc(pipeline: RagPipeline) -> dict[int, str]:
    """Passage vid -> BEIR document id (the record's external id)."""
    external = {d.id: d.external_id or d.name for d in pipeline.store.list_documents()}
    return {p.vid: external.get(p.doc_id, p.doc_id) for p in pipeline.store.iter_passages()}


# ---- runs ---------------------------------------------------------------------------------------


def max_pool(doc_ids: Iterable[str], limit: int) -> dict[str, float]:
    """Documents ranked by their best passage. Passages arrive best-first, so a document's first
    appearance is its best passage; the score only encodes that order (1/rank), which stays correct
    when a list mixes stages (reranked head, fused tail)."""
    out: dict[str, float] = {}
    for doc in doc_ids:
        if doc not in out:
            out[doc] = 1.0 / (len(out) + 1)
            if len(out) >= limit:
                break
    return out


def eval_retrieval(cfg: RetrievalConfig, depth: int) -> RetrievalConfig:
    return replace(cfg, bm25_candidates=max(cfg.bm25_candidates, depth),
                   dense_candidates=max(cfg.dense_candidates, depth))


def _query_ms(result: SearchResult) -> float:
    """Retrieval latency: every stage but fetching passage texts (eval fetches `depth`, not top_k)."""
    return sum(ms for stage, ms in result.timings.stages if stage != "fetch")


def _stage_summary(timings: Sequence[Mapping[str, float]], p: float) -> dict[str, float]:
    stages = sorted({s for t in timings for s in t})
    return {s: percentile([t[s] for t in timings if s in t], p) for s in stages}


def run_mode(pipeline: RagPipeline, bench: Benchmark, mode: str, ks: Sequence[int],
             progress: Progress | None = None) -> ModeResult:
    """Every query through the real retriever (not the result cache), max-pooled to documents."""
    if mode == "rerank" and pipeline.reranker is None:
        return ModeResult(mode, {}, 0, note=NO_RERANKER)
    depth = DEPTH_FACTOR * max(ks)
    cfg = eval_retrieval(pipeline.config.retrieval, depth)
    items = list(bench.queries.items())
    # Warm-up (model loads and first-call allocations are not query latency) on a query outside the set,
    # and no vector cached by an earlier mode: every measured query pays for its own encoding.
    pipeline.retriever.search(WARM_UP_QUERY, mode, depth, cfg)
    pipeline.encoder.clear_query_cache()
    run: dict[str, dict[str, float]] = {}
    latency: list[float] = []
    stages: list[dict[str, float]] = []
    for i, (qid, text) in enumerate(items, 1):
        result = pipeline.retriever.search(text, mode, depth, cfg)
        run[qid] = max_pool((c.passage.doc_name for c in result.candidates), max(ks))
        latency.append(_query_ms(result))
        stages.append(result.timings.as_dict())
        if progress:
            progress(f"eval {mode}", i, len(items), "")
    metrics = evaluate(bench.qrels, run, metric_names(ks))
    return ModeResult(mode, metrics, len(items), percentile(latency, 50), percentile(latency, 95),
                      _stage_summary(stages, 50), _stage_summary(stages, 95))


# ---- ANN recall ---------------------------------------------------------------------------------


def live_vectors(pipeline: RagPipeline) -> tuple[FloatArray, IdArray]:
    """Every live passage vector of the current index model, from the store's cache."""
    snap = pipeline.indexes.snapshot()
    if snap is None:
        raise ValueError("the index is empty: nothing to measure ANN recall on")
    vids = pipeline.store.all_vids()
    matrix, missing = pipeline.store.get_embeddings(snap.manifest.embed_model, list(vids), snap.manifest.dim)
    if missing:
        keep = np.setdiff1d(np.arange(len(vids)), np.asarray(missing, dtype=np.int64))
        matrix, vids = matrix[keep], vids[keep]
    return matrix, vids


def recall_against_exact(matrix: FloatArray, vids: IdArray, queries: FloatArray, *, ann_ids: IdArray,
                         exact_ids: IdArray, exact_scores: FloatArray, k: int) -> float:
    """Mean fraction of the exact top-k an ANN result recovered. A returned vector whose true score
    ties the k-th exact score counts as found (duplicate vectors make the exact set ambiguous)."""
    row_of = {int(v): i for i, v in enumerate(vids)}
    total = 0.0
    for row in range(len(queries)):
        want = min(k, len(vids))
        exact = {int(i) for i in exact_ids[row, :want]}
        kth = float(exact_scores[row, want - 1])
        hits = 0
        for vid in (int(i) for i in ann_ids[row, :want] if int(i) >= 0):
            if vid in exact or float(matrix[row_of[vid]] @ queries[row]) >= kth - TIE_EPS:
                hits += 1
        total += hits / want
    return total / max(len(queries), 1)


def _timed_per_query(fn: Callable[[FloatArray], tuple[FloatArray, IdArray]],
                     queries: FloatArray) -> tuple[FloatArray, IdArray, float]:
    scores, ids = [], []
    t0 = time.perf_counter()
    for row in range(len(queries)):
        s, i = fn(queries[row : row + 1])
        scores.append(s[0])
        ids.append(i[0])
    ms = (time.perf_counter() - t0) * 1000 / max(len(queries), 1)
    return np.stack(scores).astype(np.float32), np.stack(ids).astype(np.int64), ms


def ann_recall_vectors(matrix: FloatArray, vids: IdArray, queries: FloatArray, *, kind: str,
                       config: IndexConfig, k: int = 10) -> AnnRecall:
    """Build a `kind` index in memory from the vectors and compare its top-k with exact search."""
    if kind not in ANN_KINDS:
        raise ValueError(f"unknown ANN index type {kind!r}; choose one of {', '.join(ANN_KINDS)}")
    n, dim = len(vids), int(matrix.shape[1]) if matrix.ndim == 2 else 0
    if n == 0 or len(queries) == 0:
        return AnnRecall(kind, k, None, len(queries), n, note="no vectors or no queries")
    t0 = time.perf_counter()
    try:
        index = DenseIndex.build(matrix, vids, config, dim, kind=kind)
    except ValueError as exc:
        return AnnRecall(kind, k, None, len(queries), n, note=str(exc))
    build_s = time.perf_counter() - t0
    _, ann_ids, ann_ms = _timed_per_query(lambda q: index.search(q, k), queries)
    exact_scores, exact_ids, exact_ms = _timed_per_query(lambda q: exact_search(matrix, vids, q, k), queries)
    recall = recall_against_exact(matrix, vids, queries, ann_ids=ann_ids, exact_ids=exact_ids,
                                  exact_scores=exact_scores, k=k)
    return AnnRecall(kind, k, recall, len(queries), n, build_s, ann_ms, exact_ms)


def ann_recall(pipeline: RagPipeline, queries: Sequence[str], kind: str = "hnsw", k: int = 10) -> AnnRecall:
    """ANN recall@k of `kind` built from the snapshot's vectors, on the encoded `queries`."""
    matrix, vids = live_vectors(pipeline)
    qvecs = pipeline.encoder.encode_queries(list(queries))
    return ann_recall_vectors(matrix, vids, qvecs, kind=kind, config=pipeline.config.index, k=k)


# ---- fusion tuning ------------------------------------------------------------------------------


def cache_candidates(pipeline: RagPipeline, bench: Benchmark, depth: int,
                     progress: Progress | None = None) -> CandidateLists:
    """One BM25 and one dense search per query at `depth` passages (queries encoded in a batch)."""
    snap = pipeline.indexes.snapshot()
    if snap is None:
        raise ValueError("the index is empty: ingest the corpus first")
    qids = tuple(bench.queries)
    texts = [bench.queries[q] for q in qids]
    bm25 = []
    for i, text in enumerate(texts, 1):
        bm25.append(snap.bm25_search(text, depth))
        if progress and (i % 50 == 0 or i == len(texts)):
            progress("tune: bm25", i, len(texts), "")
    dense = snap.dense_search(pipeline.encoder.encode_queries(texts), depth) if texts else []
    return CandidateLists(qids, tuple(bm25), tuple(dense), vid_to_doc(pipeline), depth)


def fusion_grid(rrf_k_default: int) -> list[tuple[str, int, float]]:
    """RRF over k × BM25 weight (0.5 is plain RRF), min-max and z-score over the BM25 weight."""
    grid = [("rrf", k, w) for k in RRF_KS for w in BM25_WEIGHTS]
    grid += [(m, rrf_k_default, w) for m in ("minmax", "zscore") for w in BM25_WEIGHTS]
    return grid


def fused_run(lists: CandidateLists, method: str, rrf_k: int, bm25_weight: float,
              limit: int) -> dict[str, dict[str, float]]:
    run = {}
    for qid, bm25, dense in zip(lists.query_ids, lists.bm25, lists.dense, strict=True):
        fused = fuse(method, bm25, dense, rrf_k=rrf_k, bm25_weight=bm25_weight)
        run[qid] = max_pool((lists.vid_doc.get(vid, str(vid)) for vid, _ in fused), limit)
    return run


def _mean(values: Mapping[str, float], ids: Iterable[str]) -> float | None:
    chosen = [values[q] for q in ids if q in values]
    return math.fsum(chosen) / len(chosen) if chosen else None


def score_setting(lists: CandidateLists, qrels: Mapping[str, Mapping[str, int]], setting: tuple[str, int, float],
                  *, metric: str, tune_ids: set[str], held_ids: set[str]) -> FusionSetting:
    method, rrf_k, weight = setting
    limit = int(metric.split("@")[1]) if "@" in metric else 1000
    values = per_query(qrels, fused_run(lists, method, rrf_k, weight, limit), metric)
    return FusionSetting(method, rrf_k, weight, _mean(values, tune_ids) or 0.0, _mean(values, held_ids))


def tune_fusion(lists: CandidateLists, qrels: Mapping[str, Mapping[str, int]], current: RetrievalConfig,
                *, split: str = "train", metric: str = "ndcg@10", held_out_fraction: float = 0.2,
                progress: Progress | None = None) -> FusionTuning:
    """Grid-search fusion on cached candidate lists: choose on the tune part of the split, report the
    held-out part too (a deterministic `split_queries` split) so the gain is not just overfitting."""
    judged = {q: qrels[q] for q in lists.query_ids if q in qrels}
    tune_ids, held_ids = split_queries(judged, held_out_fraction)
    if not tune_ids:
        tune_ids, held_ids = held_ids, set()
    grid = fusion_grid(current.rrf_k)
    scored = []
    for i, setting in enumerate(grid, 1):
        scored.append(score_setting(lists, judged, setting, metric=metric, tune_ids=tune_ids, held_ids=held_ids))
        if progress:
            progress("tune: grid", i, len(grid), "")
    now = score_setting(lists, judged, (current.fusion, current.rrf_k, current.bm25_weight), metric=metric,
                        tune_ids=tune_ids, held_ids=held_ids)
    per_method = tuple(_best([s for s in scored if s.method == m]) for m in ("rrf", "minmax", "zscore"))
    warnings = () if split == "train" else (
        f"tuning on the {split!r} split: tune only on training queries, never on test; "
        "scores tuned on a split are not an evaluation of it",)
    return FusionTuning(split, metric, len(tune_ids), len(held_ids), len(grid), lists.depth, now, per_method,
                        _best(list(per_method)), warnings)


def _best(settings: Sequence[FusionSetting]) -> FusionSetting:
    """Highest tune score; ties keep grid order (first wins)."""
    return max(settings, key=lambda s: s.score_tune)


# ---- the whole evaluation -----------------------------------------------------------------------


def _settings_summary(pipeline: RagPipeline, depth: int) -> dict[str, Any]:
    cfg = pipeline.config
    manifest = pipeline.indexes.manifest()
    return {
        "embed_model": cfg.models.embed_model, "max_seq_length": cfg.models.max_seq_length,
        "chunking": asdict(cfg.chunking), "fusion": cfg.retrieval.fusion, "rrf_k": cfg.retrieval.rrf_k,
        "bm25_weight": cfg.retrieval.bm25_weight, "candidates_per_side": depth,
        "rerank_top_n": cfg.retrieval.rerank_top_n, "reranker": pipeline.reranker.name if pipeline.reranker else None,
        "index_type": manifest.index_type if manifest else None,
    }


def evaluate_dataset(
    pipeline: RagPipeline | Callable[[], RagPipeline],
    dataset_dir: Path | str,
    *,
    split: str = "train",
    modes: Sequence[str] = DEFAULT_MODES,
    ks: Sequence[int] = DEFAULT_KS,
    progress: Progress | None = None,
    max_queries: int | None = None,
    ann_kind: str | None = "hnsw",
    tune: bool = False,
) -> EvalReport:
    """Index the corpus (or reuse it), run every mode, measure ANN recall, optionally tune fusion."""
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"unknown mode(s) {bad or modes}; choose from {', '.join(MODES)}")
    names = metric_names(ks)
    pipe = pipeline() if callable(pipeline) else pipeline
    directory = Path(dataset_dir)
    bench = load_benchmark(directory, split, max_queries)
    if not bench.queries:
        raise ValueError(f"no judged query with text in {directory} for split {split!r}")
    reused = ensure_corpus(pipe, directory, progress)
    depth = DEPTH_FACTOR * max(ks)
    results = tuple(run_mode(pipe, bench, mode, ks, progress) for mode in modes)
    ann = ann_recall(pipe, list(bench.queries.values()), ann_kind, min(ks)) if ann_kind else None
    tuning = None
    if tune:
        lists = cache_candidates(pipe, bench, depth, progress)
        tuning = tune_fusion(lists, bench.qrels, pipe.config.retrieval, split=split, metric=names[0],
                             progress=progress)
    counts = pipe.store.counts()
    return EvalReport(bench.name, split, str(pipe.config.data_dir), counts["documents"], counts["passages"],
                      len(bench.queries), reused, names, depth, _settings_summary(pipe, depth), results, ann,
                      tuning, bench.notes)


# ---- output -------------------------------------------------------------------------------------


def _label(metric: str) -> str:
    name, _, k = metric.partition("@")
    return f"{LABELS.get(name, name)}@{k}" if k else LABELS.get(name, name)


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mode_rows(report: EvalReport) -> list[str]:
    headers = ["mode", *(_label(m) for m in report.metric_names), "p50 ms", "p95 ms"]
    rows = [[r.mode, *(_num(r.metrics.get(m)) for m in report.metric_names),
             _num(r.latency_p50_ms, 1), _num(r.latency_p95_ms, 1)] for r in report.modes]
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    for r, row in zip(report.modes, rows, strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if r.note:
            lines.append(f"  note ({r.mode}): {r.note}")
    return lines


def _ann_lines(ann: AnnRecall) -> list[str]:
    if ann.recall is None:
        return [f"ANN recall@{ann.k} ({ann.kind}): not measured: {ann.note}"]
    return [f"ANN recall@{ann.k} ({ann.kind} vs exact, {ann.n_queries} queries, {ann.n_vectors} vectors): "
            f"{ann.recall:.4f}; search {_num(ann.ann_ms_per_query, 2)} ms/query vs exact "
            f"{_num(ann.exact_ms_per_query, 2)} ms/query; built in {_num(ann.build_s, 1)} s"]


def _tuning_lines(t: FusionTuning) -> list[str]:
    lines = [f"fusion tuning on {t.split!r} ({t.grid_size} settings, {t.metric} on {t.n_tune} tune / "
             f"{t.n_held_out} held-out queries, one cached pass of {t.depth_passages} candidates per side):"]
    lines += [f"  warning: {w}" for w in t.warnings]
    lines.append(f"  {'':9}{'method':8}{'rrf_k':>6}{'bm25_w':>8}{'tune':>9}{'held-out':>10}")
    for tag, s in [("current", t.current)] + [("best", s) for s in t.best_per_method]:
        rrf_k = str(s.rrf_k) if s.method == "rrf" else "-"
        lines.append(f"  {tag:9}{s.method:8}{rrf_k:>6}{s.bm25_weight:>8.1f}{s.score_tune:>9.4f}"
                     f"{_num(s.score_held_out):>10}")
    lines.append(f"  overall best: {t.best.method} (save it in .env or the environment):")
    lines += [f"    {line}" for line in t.best.env_lines()]
    return lines


def format_table(report: EvalReport) -> str:
    s = report.settings
    lines = [f"{report.dataset} [{report.split}]: {report.n_queries} queries, {report.n_documents} documents, "
             f"{report.n_passages} passages ({'reused' if report.index_reused else 'built'} index in "
             f"{report.data_dir})",
             f"settings: {s['embed_model']}, chunk {s['chunking']['chunk_words']}/{s['chunking']['overlap_words']} "
             f"words, fusion {s['fusion']} (rrf_k {s['rrf_k']}, bm25 weight {s['bm25_weight']}), "
             f"{s['candidates_per_side']} passages per side, documents by max-pooled passages, "
             f"latency excludes passage fetch", ""]
    lines += _mode_rows(report)
    if report.ann is not None:
        lines += ["", *_ann_lines(report.ann)]
    if report.tuning is not None:
        lines += ["", *_tuning_lines(report.tuning)]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def report_json(report: EvalReport) -> dict[str, Any]:
    out = asdict(report)
    if report.tuning is not None:
        out["tuning"]["best"]["env"] = list(report.tuning.best.env_lines())
    return out
