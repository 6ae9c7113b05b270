"""Ingest every file in ../shared/data/docs through the pipeline, then search it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_app.encoders import BiEncoder
from rag_app.pipeline import PipelineConfig, RagPipeline

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, shared_data: Path, encoder: BiEncoder) -> RagPipeline:
    pipeline = RagPipeline(PipelineConfig(data_dir=tmp_path_factory.mktemp("docs")), encoder=encoder,
                           use_embedded_llm=False)
    report = pipeline.ingest([shared_data / "docs"])
    files = sorted(p.name for p in (shared_data / "docs").iterdir())
    assert report.documents_added + len(report.rejected) == len(files)
    for rejection in report.rejected:
        assert rejection.reason  # every rejection says why
    return pipeline


def test_every_file_yields_passages(loaded: RagPipeline, shared_data: Path) -> None:
    names = {d.name: d for d in loaded.documents()}
    for path in (shared_data / "docs").iterdir():
        assert path.name in names, f"{path.name} was not ingested"
        assert names[path.name].n_passages >= 1
    pdf = names["siege_of_vicksburg_sample_ocr.pdf"]
    assert pdf.n_pages == 6
    pages = {p.page_label for p in loaded.store.passages_of(pdf.id)}
    assert len(pages) >= 5


def test_bm25_finds_a_known_sentence(loaded: RagPipeline) -> None:
    result = loaded.search("Genoa and Lucca are now just family estates of the Buonapartes", mode="bm25", k=3)
    assert result.candidates[0].passage.doc_name == "war_and_peace_ch1.txt"


def test_dense_finds_a_paraphrase(loaded: RagPipeline) -> None:
    # Paraphrase of "The United States Trustee appoints and supervises standing trustees".
    result = loaded.search("who oversees and names the standing bankruptcy trustees", mode="dense", k=3)
    assert result.candidates[0].passage.doc_name == "us_trustee_handbook_1p.docx"


def test_passages_point_at_their_source_text(loaded: RagPipeline) -> None:
    for doc in loaded.documents():
        text = loaded.store.document_text(doc.id)
        for passage in loaded.store.passages_of(doc.id):
            assert text[passage.char_start : passage.char_end] == passage.text
            assert 1 <= len(passage.text.split()) <= 260
