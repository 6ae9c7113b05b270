"""`rag-app eval` on real SciFact (train split, first 100 queries): the quality bar of the product."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag_app.config import ModelConfig
from rag_app.encoders import BiEncoder

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCIFACT = SHARED_DATA / "scifact"

pytestmark = [pytest.mark.slow, pytest.mark.data]


@pytest.fixture(scope="session")
def shared_encoder() -> Iterator[BiEncoder]:
    encoder = BiEncoder(ModelConfig())
    encoder.warm_up()
    yield encoder


def test_scifact_eval_bm25_dense_hybrid(tmp_path: Path, shared_encoder: BiEncoder, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.skip(f"needs the SciFact BEIR folder in ../shared/data (looked in {SCIFACT})")
    from rag_app import cli, pipeline

    monkeypatch.setattr(pipeline, "BiEncoder", lambda config: shared_encoder)
    for name in ("RAG_APP_FUSION", "RAG_APP_BM25_WEIGHT", "RAG_APP_RRF_K", "RAG_APP_CHUNK_WORDS",
                 "RAG_APP_EMBED_MODEL", "RAG_APP_RERANK_MODEL", "RAG_APP_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env settings
    code = cli.main(["--data-dir", str(tmp_path), "eval", str(SCIFACT), "--queries", "100",
                     "--modes", "bm25,dense,hybrid", "--ann", "flat", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    ndcg = {m["mode"]: m["metrics"]["ndcg@10"] for m in report["modes"]}
    assert report["n_queries"] == 100 and report["n_documents"] == 5183
    assert ndcg["bm25"] > 0.6, ndcg
    assert ndcg["hybrid"] >= max(ndcg["bm25"], ndcg["dense"]) - 0.01, ndcg
    assert report["ann"]["recall"] == 1.0
