"""Adoption: refused unless the held-out metric improved (old index untouched and working), a new index
version with provenance when it did, rollback to the previous version and ACTIVE pointer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rag_app.config import DEFAULT_EMBED_MODEL, ModelConfig
from rag_app.ingest.pipeline import Record
from rag_app.pipeline import ACTIVE_EMBEDDER_FILE, PipelineConfig, RagPipeline, resolve_reranker
from rag_app.training.adopt import (
    AdoptionRefusedError,
    adopt_biencoder,
    adopt_reranker,
    rollback_biencoder,
    rollback_reranker,
)

pytestmark = pytest.mark.slow

RECORDS = [
    Record("energy", "Energy", "Solar panels convert sunlight into electricity for homes and offices."),
    Record("rivers", "Rivers", "The Danube flows through ten countries before reaching the Black Sea."),
    Record("baking", "Baking", "Sourdough bread rises slowly because wild yeast ferments the dough."),
    Record("space", "Space", "The James Webb telescope observes infrared light from early galaxies."),
]


def _config(data_dir: Path) -> PipelineConfig:
    return PipelineConfig(data_dir=data_dir, models=ModelConfig(embed_model="auto", rerank_model="auto",
                                                                max_seq_length=64))


def _fake_run(tmp_path: Path, minilm_path: str, gain: float, name: str = "run") -> Path:
    """A 'trained' model folder (a copy of the MiniLM) with a training report claiming `gain`."""
    out = tmp_path / name
    shutil.copytree(minilm_path, out)
    held = {"dense": {"ndcg@10": 0.5}, "hybrid": {"ndcg@10": 0.6}}
    after = {"dense": {"ndcg@10": 0.5 + gain}, "hybrid": {"ndcg@10": 0.6}}
    (out / "training_report.json").write_text(json.dumps({
        "kind": "biencoder", "base_model": DEFAULT_EMBED_MODEL, "trained_at": "2026-11-22T00:00:00+00:00",
        "data": {"source": "beir:/x:train", "held_out": {"fraction": 0.2, "seed": 13}},
        "hyperparameters": {"epochs": 1.0}, "held_out": {"before": held, "after": after},
        "improvement": {"dense_ndcg@10": gain}, "improved": gain > 0}))
    return out


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    pipeline = RagPipeline(_config(data), use_embedded_llm=False)
    pipeline.ingest_records(RECORDS)
    pipeline.close()
    return data


def _top(pipeline: RagPipeline, query: str, mode: str = "dense") -> str:
    result = pipeline.search(query, mode=mode, k=1)
    assert result.candidates, result.notes
    return result.candidates[0].passage.doc_name


def test_refused_model_leaves_the_old_index_working(tmp_path: Path, data_dir: Path, minilm_path: str) -> None:
    versions_before = sorted(p.name for p in (data_dir / "index").glob("v*"))
    current_before = (data_dir / "index" / "CURRENT").read_text()
    run = _fake_run(tmp_path, minilm_path, gain=-0.01)
    with pytest.raises(AdoptionRefusedError, match="not adopted"):
        adopt_biencoder(_config(data_dir), run)
    with pytest.raises(AdoptionRefusedError):
        adopt_biencoder(_config(data_dir), _fake_run(tmp_path, minilm_path, gain=0.0, name="flat"))
    with pytest.raises(AdoptionRefusedError, match="needs >"):  # a gain within noise (MIN_GAIN) is no gain
        adopt_biencoder(_config(data_dir), _fake_run(tmp_path, minilm_path, gain=0.003, name="noise"))
    assert not (data_dir / ACTIVE_EMBEDDER_FILE).exists()
    assert not list(data_dir.glob("models/embedder/*"))
    assert sorted(p.name for p in (data_dir / "index").glob("v*")) == versions_before
    assert (data_dir / "index" / "CURRENT").read_text() == current_before
    pipeline = RagPipeline(_config(data_dir), use_embedded_llm=False)
    assert pipeline.encoder.name == DEFAULT_EMBED_MODEL
    assert _top(pipeline, "how does sourdough rise") == "baking"
    pipeline.close()
    (run / "training_report.json").unlink()
    with pytest.raises(AdoptionRefusedError, match=r"training_report\.json"):
        adopt_biencoder(_config(data_dir), run)


def test_adopt_then_rollback(tmp_path: Path, data_dir: Path, minilm_path: str) -> None:
    config = _config(data_dir)
    old_pipeline = RagPipeline(config, use_embedded_llm=False)
    assert _top(old_pipeline, "which river reaches the Black Sea") == "rivers"
    old_version = old_pipeline.indexes.versions.current()
    assert old_version is not None

    result = adopt_biencoder(config, _fake_run(tmp_path, minilm_path, gain=0.03), name="scifact-ft")
    assert result.name == "scifact-ft" and result.previous_index_version == old_version.name
    assert (data_dir / ACTIVE_EMBEDDER_FILE).read_text() == "scifact-ft"
    assert old_version.is_dir()  # the previous index version is kept
    # the already-running pipeline keeps serving from the snapshot it holds
    assert _top(old_pipeline, "which river reaches the Black Sea") == "rivers"
    old_pipeline.close()

    new_pipeline = RagPipeline(config, use_embedded_llm=False)
    assert new_pipeline.encoder.name == str((data_dir / "models" / "embedder" / "scifact-ft").resolve())
    manifest = new_pipeline.indexes.manifest()
    assert manifest is not None and manifest.version == result.index_version != old_version.name
    assert manifest.provenance["trained_model"] == "scifact-ft"
    assert manifest.provenance["base_model"] == DEFAULT_EMBED_MODEL
    assert manifest.provenance["epochs"] == 1.0
    assert manifest.provenance["held_out_metrics"]["after"]["dense"]["ndcg@10"] == pytest.approx(0.53)
    assert manifest.provenance["data"]["source"] == "beir:/x:train" and manifest.provenance["adopted_at"]
    assert _top(new_pipeline, "telescope infrared galaxies", "hybrid") == "space"
    new_pipeline.close()

    back = rollback_biencoder(config)
    assert back.index_version == old_version.name
    assert not (data_dir / ACTIVE_EMBEDDER_FILE).exists()
    restored = RagPipeline(config, use_embedded_llm=False)
    assert restored.encoder.name == DEFAULT_EMBED_MODEL
    assert restored.indexes.versions.current() == old_version
    assert _top(restored, "solar electricity") == "energy"
    restored.close()
    with pytest.raises(FileNotFoundError, match="nothing to roll back"):
        rollback_biencoder(config)


def test_rollback_rebuilds_when_the_old_version_was_pruned(tmp_path: Path, data_dir: Path,
                                                           minilm_path: str) -> None:
    config = _config(data_dir)
    result = adopt_biencoder(config, _fake_run(tmp_path, minilm_path, gain=0.01))
    assert result.previous_index_version is not None
    pipeline = RagPipeline(config, use_embedded_llm=False)
    for i in range(2):  # two later publishes prune the pre-adoption version
        pipeline.ingest_records([Record(f"extra{i}", "Extra", f"Penguins number {i} live in Antarctica colonies.")])
    pipeline.close()
    assert not (data_dir / "index" / result.previous_index_version).exists()
    back = rollback_biencoder(config)
    restored = RagPipeline(config, use_embedded_llm=False)
    manifest = restored.indexes.manifest()
    assert manifest is not None and manifest.embed_model == DEFAULT_EMBED_MODEL == restored.encoder.name
    assert manifest.version == back.index_version
    assert _top(restored, "penguins in Antarctica") in ("extra0", "extra1")
    restored.close()


def test_reranker_adoption_and_rollback(tmp_path: Path, data_dir: Path, tiny_bert: Path) -> None:
    from rag_app.training.reranker import RerankerTrainConfig, build_cross_encoder

    config = _config(data_dir)
    run = tmp_path / "ce"
    build_cross_encoder(str(tiny_bert), RerankerTrainConfig(max_length=32)).save(str(run))
    report = {"kind": "reranker", "base_model": str(tiny_bert), "held_out": {},
              "improvement": {"rerank_ndcg@10": -0.2, "reference": "hybrid"}}
    (run / "training_report.json").write_text(json.dumps(report))
    with pytest.raises(AdoptionRefusedError, match="hybrid"):
        adopt_reranker(config, run)
    assert resolve_reranker("auto", data_dir, config.models) is None
    with pytest.raises(AdoptionRefusedError, match="not a reranker"):
        adopt_reranker(config, _no_kind(run, tmp_path))
    (run / "training_report.json").write_text(json.dumps(report | {"improvement": {"rerank_ndcg@10": 0.02}}))
    adopt_reranker(config, run)
    reranker = resolve_reranker("auto", data_dir, config.models)
    assert reranker is not None
    pipeline = RagPipeline(config, use_embedded_llm=False)
    assert pipeline.default_mode() == "rerank"
    assert pipeline.search("bread", mode="rerank", k=2).candidates
    pipeline.close()
    rollback_reranker(config)
    assert resolve_reranker("auto", data_dir, config.models) is None


def _no_kind(run: Path, tmp_path: Path) -> Path:
    other = tmp_path / "no-kind"
    shutil.copytree(run, other)
    (other / "training_report.json").write_text(json.dumps({"improvement": {"rerank_ndcg@10": 0.5}}))
    return other
