"""The llama-index adapter: our retriever inside a llama-index query engine, scores intact on the nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_index.core.llms.mock import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers.no_text import NoText
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode

from rag_app.adapters.llama_index import RagAppRetriever
from rag_app.config import ModelConfig
from rag_app.encoders import BiEncoder
from rag_app.ingest.pipeline import Record
from rag_app.pipeline import PipelineConfig, RagPipeline
from rag_app.retrieval.hybrid import NO_RERANKER

RECORDS = [
    Record("moon", "Tides", "Ocean tides are caused mainly by the gravitational pull of the moon on the oceans."),
    Record("insulin", "Insulin", "The pancreas secretes insulin, a hormone that lowers blood glucose after meals."),
    Record("coral", "Coral reefs", "Coral reefs bleach when warm water makes corals expel their symbiotic algae."),
    Record("sleep", "Sleep", "Deep sleep consolidates memories and clears metabolic waste from the brain."),
]
STAGE_KEYS = ("bm25_score", "bm25_rank", "dense_score", "dense_rank", "fused_score", "fused_rank",
              "rerank_score", "rerank_rank")


@pytest.fixture(scope="session")
def shared_encoder() -> Iterator[BiEncoder]:
    encoder = BiEncoder(ModelConfig())
    encoder.warm_up()
    yield encoder


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, shared_encoder: BiEncoder) -> Iterator[RagPipeline]:
    pipe = RagPipeline(PipelineConfig(data_dir=tmp_path_factory.mktemp("li")), encoder=shared_encoder)
    pipe.ingest_records(RECORDS)
    yield pipe
    pipe.close()


def _check_node(hit: NodeWithScore, pipeline: RagPipeline) -> None:
    node = hit.node
    assert isinstance(node, TextNode)
    meta = node.metadata
    assert set(STAGE_KEYS) <= set(meta)
    passage = pipeline.store.passages_by_vid([p.vid for p in pipeline.store.iter_passages() if p.id == node.node_id])
    (stored,) = passage.values()
    assert node.text == stored.text and meta["document"] == stored.doc_name
    assert (meta["char_start"], meta["char_end"]) == (stored.char_start, stored.char_end)
    assert (node.start_char_idx, node.end_char_idx) == (stored.char_start, stored.char_end)


def test_engine_source_nodes_carry_the_stage_scores(pipeline: RagPipeline) -> None:
    retriever = RagAppRetriever(pipeline, mode="hybrid", k=3)
    # `from_args(..., response_mode="no_text")` drops the llm it is given and reaches for the global
    # Settings.llm (OpenAI by default); building the synthesizer keeps the LLM explicit.
    engine = RetrieverQueryEngine(retriever, response_synthesizer=NoText(llm=MockLLM()))
    response = engine.query("what causes the tides")
    nodes = response.source_nodes
    assert len(nodes) == 3 and nodes[0].node.metadata["document"] == "moon"
    for rank, hit in enumerate(nodes, 1):
        _check_node(hit, pipeline)
        meta = hit.node.metadata
        assert meta["rank"] == rank and meta["fused_rank"] == rank and meta["mode"] == "hybrid"
        assert hit.score == meta["fused_score"]  # the final stage's score
    assert nodes[0].node.metadata["bm25_rank"] == 1 and nodes[0].node.metadata["dense_rank"] == 1
    assert retriever.last_result is not None and retriever.last_result.mode == "hybrid"


def test_mock_llm_sees_passage_text_but_not_the_scores(pipeline: RagPipeline) -> None:
    engine = RetrieverQueryEngine.from_args(RagAppRetriever(pipeline, mode="bm25", k=2), llm=MockLLM(),
                                            response_mode="compact")
    response = engine.query("which hormone lowers blood glucose")
    assert "pancreas secretes insulin" in str(response)  # MockLLM echoes its prompt
    assert "bm25_score" not in str(response) and "document: insulin" in str(response)
    top = response.source_nodes[0]
    assert top.score == top.node.metadata["bm25_score"] and top.node.metadata["fused_score"] is None
    assert "bm25_score" not in top.node.get_content(MetadataMode.LLM)
    assert top.node.get_content(MetadataMode.EMBED) == top.node.get_content(MetadataMode.NONE)


def test_rerank_mode_without_reranker_keeps_the_note(pipeline: RagPipeline) -> None:
    retriever = RagAppRetriever(pipeline, mode="rerank", k=2)
    hits = retriever.retrieve("coral bleaching")
    assert len(hits) == 2 and all(h.node.metadata["rerank_score"] is None for h in hits)
    assert retriever.last_result is not None and NO_RERANKER in retriever.last_result.notes


def test_bad_arguments_are_rejected(pipeline: RagPipeline) -> None:
    with pytest.raises(ValueError, match="mode"):
        RagAppRetriever(pipeline, mode="magic")
    with pytest.raises(ValueError, match="k must be"):
        RagAppRetriever(pipeline, k=0)


def test_async_retrieve_works(pipeline: RagPipeline) -> None:
    import asyncio

    hits = asyncio.run(RagAppRetriever(pipeline, mode="dense", k=1).aretrieve("sleep and memory"))
    assert [h.node.metadata["document"] for h in hits] == ["sleep"]
    assert hits[0].score == hits[0].node.metadata["dense_score"]


def test_the_adapter_module_is_not_imported_by_the_core(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "import sys, rag_app.pipeline, rag_app.evaluation; print('rag_app.adapters.llama_index' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "False"
