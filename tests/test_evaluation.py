"""Evaluation harness on a tiny BEIR folder: report table/JSON, index reuse, ANN recall, fusion tuning."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag_app.config import IndexConfig, ModelConfig, RetrievalConfig
from rag_app.encoders import BiEncoder
from rag_app.evaluation import (
    CandidateLists,
    ann_recall,
    ann_recall_vectors,
    cache_candidates,
    eval_data_dir,
    evaluate_dataset,
    format_table,
    fused_run,
    load_benchmark,
    max_pool,
    metric_names,
    report_json,
    tune_fusion,
)
from rag_app.index.manager import IndexSnapshot
from rag_app.metrics import evaluate
from rag_app.pipeline import PipelineConfig, RagPipeline
from rag_app.retrieval.hybrid import NO_RERANKER

CORPUS = [
    ("d1", "Photosynthesis", "Plants convert light energy into chemical energy in chloroplasts using chlorophyll."),
    ("d2", "Volcanoes", "Magma rises through the crust and erupts as lava, ash and volcanic gases."),
    ("d3", "Insulin", "The pancreas secretes insulin, a hormone that lowers blood glucose after meals."),
    ("d4", "Tides", "Ocean tides are caused mainly by the gravitational pull of the moon on the oceans."),
    ("d5", "Vaccines", "Vaccines train the immune system to recognise a pathogen without causing the disease."),
    ("d6", "Plate tectonics", "Earthquakes occur where tectonic plates grind past each other along faults."),
    ("d7", "Antibiotics", "Antibiotics kill bacteria or stop their growth but have no effect on viruses."),
    ("d8", "Coral reefs", "Coral reefs bleach when warm water makes corals expel their symbiotic algae."),
    ("d9", "Sleep", "Deep sleep consolidates memories and clears metabolic waste from the brain."),
    ("d10", "Telescopes", "Large telescopes collect faint light from distant galaxies with curved mirrors."),
]
QUERIES = {
    "q1": "how do plants turn sunlight into chemical energy",
    "q2": "what hormone lowers blood sugar",
    "q3": "why do corals lose their colour in warm water",
    "q4": "does penicillin work against viral infections",
}
QRELS = {"q1": {"d1": 1}, "q2": {"d3": 1}, "q3": {"d8": 1}, "q4": {"d7": 1, "d5": 0}}
METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def write_beir(directory: Path, corpus: list[tuple[str, str, str]] = CORPUS, split: str = "train") -> Path:
    (directory / "qrels").mkdir(parents=True, exist_ok=True)
    with (directory / "corpus.jsonl").open("w") as fh:
        for doc_id, title, text in corpus:
            fh.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (directory / "queries.jsonl").open("w") as fh:
        for qid, text in QUERIES.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"]
    lines += [f"{q}\t{d}\t{g}" for q, docs in QRELS.items() for d, g in docs.items()]
    (directory / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return directory


@pytest.fixture(scope="session")
def shared_encoder() -> Iterator[BiEncoder]:
    encoder = BiEncoder(ModelConfig())
    encoder.warm_up()
    yield encoder


@pytest.fixture(scope="module")
def beir_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_beir(tmp_path_factory.mktemp("tiny-beir"))


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("eval-data")


@pytest.fixture
def pipeline(eval_dir: Path, shared_encoder: BiEncoder) -> Iterator[RagPipeline]:
    pipe = RagPipeline(PipelineConfig(data_dir=eval_dir), encoder=shared_encoder)
    yield pipe
    pipe.close()


@pytest.fixture(scope="module")
def report(beir_dir: Path, eval_dir: Path, shared_encoder: BiEncoder) -> Any:
    pipe = RagPipeline(PipelineConfig(data_dir=eval_dir), encoder=shared_encoder)
    try:
        return evaluate_dataset(pipe, beir_dir, modes=("bm25", "dense", "hybrid", "rerank"), ks=(10, 100),
                                ann_kind="flat", tune=True)
    finally:
        pipe.close()


# ---- the report ---------------------------------------------------------------------------------


def test_report_has_every_mode_and_metric(report: Any) -> None:
    assert report.metric_names == METRICS
    assert [m.mode for m in report.modes] == ["bm25", "dense", "hybrid", "rerank"]
    assert report.n_documents == len(CORPUS) and report.n_queries == len(QUERIES)
    assert not report.index_reused
    for row in report.modes[:3]:
        assert set(row.metrics) == set(METRICS)
        assert all(0.0 <= v <= 1.0 for v in row.metrics.values())
        assert row.n_queries == 4 and row.latency_p50_ms is not None and row.latency_p95_ms is not None
        assert row.latency_p50_ms <= row.latency_p95_ms
    assert report.modes[2].metrics["ndcg@10"] > 0.5  # the toy queries are easy
    assert report.depth_passages == 300


def test_rerank_row_without_a_reranker_is_a_note_not_numbers(report: Any) -> None:
    rerank = report.modes[3]
    assert rerank.metrics == {} and rerank.latency_p50_ms is None and rerank.note == NO_RERANKER


def test_table_and_json_show_all_modes_and_metrics(report: Any) -> None:
    table = format_table(report)
    for label in ("nDCG@10", "Recall@10", "Recall@100", "MRR@10", "p50 ms", "p95 ms"):
        assert label in table
    for mode in ("bm25", "dense", "hybrid", "rerank"):
        assert f"\n{mode} " in table
    assert "note (rerank): no cross-encoder reranker is installed" in table
    assert "ANN recall@10 (flat vs exact" in table and "overall best:" in table
    data = json.loads(json.dumps(report_json(report)))
    modes = {m["mode"]: m for m in data["modes"]}
    assert set(modes) == {"bm25", "dense", "hybrid", "rerank"}
    for mode in ("bm25", "dense", "hybrid"):
        assert set(modes[mode]["metrics"]) == set(METRICS)
        assert {"latency_p50_ms", "latency_p95_ms", "stage_p50_ms"} <= set(modes[mode])
    assert modes["rerank"]["note"] == NO_RERANKER
    assert data["tuning"]["best"]["env"][0].startswith("RAG_APP_FUSION=")


def test_ann_recall_of_flat_is_exactly_one(report: Any) -> None:
    assert report.ann.kind == "flat" and report.ann.recall == 1.0 and report.ann.n_vectors == report.n_passages


def test_second_run_reuses_the_index(report: Any, beir_dir: Path, pipeline: RagPipeline) -> None:
    before = pipeline.indexes.manifest()
    again = evaluate_dataset(pipeline, beir_dir, modes=("bm25",), ks=(10,), ann_kind=None)
    assert again.index_reused and again.n_documents == len(CORPUS)
    assert pipeline.indexes.manifest() == before  # nothing was rebuilt
    assert again.ann is None and again.tuning is None and again.metric_names == ("ndcg@10", "recall@10", "mrr@10")


def test_a_changed_corpus_replaces_the_old_one(tmp_path: Path, shared_encoder: BiEncoder) -> None:
    data = tmp_path / "beir"
    pipe = RagPipeline(PipelineConfig(data_dir=tmp_path / "eval"), encoder=shared_encoder)
    try:
        evaluate_dataset(pipe, write_beir(data, CORPUS[:6]), modes=("bm25",), ann_kind=None)
        changed = evaluate_dataset(pipe, write_beir(data, CORPUS), modes=("bm25",), ann_kind=None)
        assert not changed.index_reused
        assert sorted(d.external_id for d in pipe.store.list_documents()) == sorted(d for d, _, _ in CORPUS)
    finally:
        pipe.close()


def test_eval_dir_depends_on_model_and_chunking(tmp_path: Path) -> None:
    from rag_app.config import ChunkingConfig

    base = eval_data_dir(tmp_path, Path("/x/scifact"), ModelConfig(), ChunkingConfig())
    assert base.parent == tmp_path / "eval" and base.name.startswith("scifact-")
    assert base == eval_data_dir(tmp_path, Path("/y/scifact"), ModelConfig(), ChunkingConfig())
    assert base != eval_data_dir(tmp_path, Path("/x/scifact"), ModelConfig(), ChunkingConfig(chunk_words=400))
    assert base != eval_data_dir(tmp_path, Path("/x/scifact"), ModelConfig(embed_model="other"), ChunkingConfig())


# ---- ANN recall ---------------------------------------------------------------------------------


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_ann_recall_is_one_even_with_duplicate_vectors() -> None:
    rng = np.random.default_rng(7)
    base = _unit(rng, 300, 16)
    matrix = np.concatenate([base, base[:100]])  # exact ties: the exact top-k is ambiguous
    vids = rng.choice(2**40, size=len(matrix), replace=False).astype(np.int64)
    queries = _unit(rng, 25, 16)
    flat = ann_recall_vectors(matrix, vids, queries, kind="flat", config=IndexConfig(), k=10)
    assert flat.recall == 1.0 and flat.n_queries == 25 and flat.n_vectors == 400
    hnsw = ann_recall_vectors(matrix, vids, queries, kind="hnsw", config=IndexConfig(), k=10)
    assert hnsw.recall is not None and 0.8 <= hnsw.recall <= 1.0
    ivfpq = ann_recall_vectors(matrix, vids, queries, kind="ivfpq", config=IndexConfig(pq_m=8), k=10)
    assert ivfpq.recall is not None and 0.0 < ivfpq.recall <= 1.0


def test_ann_recall_on_a_tiny_index_reports_why_ivfpq_cannot_run(report: Any, pipeline: RagPipeline) -> None:
    result = ann_recall(pipeline, list(QUERIES.values()), "ivfpq")
    assert result.recall is None and "256" in result.note
    assert ann_recall(pipeline, list(QUERIES.values()), "hnsw").recall == 1.0  # 10 vectors: HNSW is exact


# ---- fusion tuning ------------------------------------------------------------------------------


def test_tune_fusion_uses_one_cached_pass(report: Any, beir_dir: Path, pipeline: RagPipeline,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"bm25": 0, "dense": 0}
    bm25_search, dense_search = IndexSnapshot.bm25_search, IndexSnapshot.dense_search

    def count_bm25(self: IndexSnapshot, query: str, k: int) -> list[tuple[int, float]]:
        calls["bm25"] += 1
        return bm25_search(self, query, k)

    def count_dense(self: IndexSnapshot, queries: Any, k: int) -> list[list[tuple[int, float]]]:
        calls["dense"] += 1
        return dense_search(self, queries, k)

    monkeypatch.setattr(IndexSnapshot, "bm25_search", count_bm25)
    monkeypatch.setattr(IndexSnapshot, "dense_search", count_dense)
    bench = load_benchmark(beir_dir)
    lists = cache_candidates(pipeline, bench, 300)
    tuning = tune_fusion(lists, bench.qrels, RetrievalConfig(), split="train")
    assert calls == {"bm25": len(QUERIES), "dense": 1}  # 77 grid points, no further retrieval
    assert tuning.grid_size == 5 * 11 + 2 * 11
    assert [s.method for s in tuning.best_per_method] == ["rrf", "minmax", "zscore"]
    assert tuning.best in tuning.best_per_method
    assert tuning.best.score_tune == max(s.score_tune for s in tuning.best_per_method)
    assert tuning.n_tune + tuning.n_held_out == len(QUERIES) and not tuning.warnings
    env = tuning.best.env_lines()
    assert env[0] == f"RAG_APP_FUSION={tuning.best.method}" and env[1].startswith("RAG_APP_BM25_WEIGHT=")


def test_tuning_picks_the_side_that_is_right_and_warns_off_train() -> None:
    # BM25 ranks the relevant doc first, dense ranks it last: any setting leaning on BM25 wins.
    qrels = {f"q{i}": {f"rel{i}": 1} for i in range(10)}
    bm25 = tuple([(1000 + i, 9.0), (2000 + i, 1.0)] for i in range(10))
    dense = tuple([(2000 + i, 0.9), (3000 + i, 0.8), (1000 + i, 0.1)] for i in range(10))
    vid_doc = {1000 + i: f"rel{i}" for i in range(10)} | {2000 + i: f"x{i}" for i in range(10)}
    vid_doc |= {3000 + i: f"y{i}" for i in range(10)}
    lists = CandidateLists(tuple(qrels), bm25, dense, vid_doc, 3)
    tuning = tune_fusion(lists, qrels, RetrievalConfig(fusion="minmax", bm25_weight=0.0), split="test")
    assert tuning.best.score_tune == 1.0 and tuning.best.bm25_weight > 0.5
    assert tuning.current.score_tune < 1.0
    assert tuning.warnings and "never on test" in tuning.warnings[0]


# ---- metrics and pooling ------------------------------------------------------------------------


def test_metrics_of_a_perfect_run_are_one() -> None:
    qrels = {"a": {"d1": 1, "d2": 2}, "b": {"d3": 1}}
    run = {"a": {"d2": 3.0, "d1": 2.0, "x": 1.0}, "b": {"d3": 1.0, "y": 0.5}}
    assert evaluate(qrels, run, metric_names((10, 100))) == {m: 1.0 for m in METRICS}


def test_max_pool_ranks_documents_by_their_best_passage() -> None:
    pooled = max_pool(["a", "b", "a", "c", "b", "d"], limit=3)
    assert list(pooled) == ["a", "b", "c"] and pooled["a"] > pooled["b"] > pooled["c"]


def test_fused_run_of_perfect_lists_scores_one() -> None:
    lists = CandidateLists(("q",), ([(1, 5.0), (2, 4.0), (3, 1.0)],), ([(1, 0.9), (3, 0.5)],),
                           {1: "rel", 2: "rel", 3: "other"}, 3)
    run = fused_run(lists, "rrf", 60, 0.5, 10)
    assert run == {"q": {"rel": 1.0, "other": 0.5}}  # two passages of one document count once
    assert evaluate({"q": {"rel": 1}}, run, METRICS) == {m: 1.0 for m in METRICS}


def test_unknown_mode_and_bad_cutoffs_are_rejected(beir_dir: Path, pipeline: RagPipeline) -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        evaluate_dataset(pipeline, beir_dir, modes=("bm25", "magic"))
    with pytest.raises(ValueError, match="cutoffs"):
        metric_names([0])


# ---- the command --------------------------------------------------------------------------------


def test_cli_eval_prints_the_table_and_json(report: Any, beir_dir: Path, tmp_path: Path, shared_encoder: BiEncoder,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from rag_app import cli, pipeline

    monkeypatch.setattr(pipeline, "BiEncoder", lambda config: shared_encoder)
    monkeypatch.delenv("RAG_APP_DATA_DIR", raising=False)
    args = ["--data-dir", str(tmp_path), "eval", str(beir_dir), "--modes", "bm25,hybrid,rerank", "--queries", "3"]
    assert cli.main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["mode"] for m in data["modes"]] == ["bm25", "hybrid", "rerank"] and data["n_queries"] == 3
    assert data["ann"]["kind"] == "hnsw" and Path(data["data_dir"]).parent == tmp_path / "eval"
    assert cli.main([*args, "--tune-fusion", "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "reused index" in out and "nDCG@10" in out and "RAG_APP_FUSION=" in out
    assert cli.main(["--data-dir", str(tmp_path), "eval", str(tmp_path / "missing")]) == 2


def test_each_mode_pays_for_its_own_query_encoding(beir_dir: Path, tmp_path: Path) -> None:
    """A mode run after another must not time cached query vectors (hybrid after dense looked 2x faster)."""
    from rag_app.evaluation import ensure_corpus, run_mode

    encoder = BiEncoder(ModelConfig(query_cache_size=64))
    pipe = RagPipeline(PipelineConfig(data_dir=tmp_path), encoder=encoder)
    try:
        ensure_corpus(pipe, beir_dir)
        bench = load_benchmark(beir_dir)
        run_mode(pipe, bench, "dense", (10,))
        hybrid = run_mode(pipe, bench, "hybrid", (10,))
        stats = encoder.query_cache_stats()  # counted since the cache was cleared after the warm-up
    finally:
        pipe.close()
    assert stats is not None and (stats.hits, stats.misses) == (0, len(bench.queries))
    assert hybrid.stage_p50_ms["encode"] > 0.01
