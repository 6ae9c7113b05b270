"""Tiny cross-encoder training runs: weights change, the pairs rank better, the result loads as a Reranker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag_app.encoders import Reranker
from rag_app.training.biencoder import Example
from rag_app.training.reranker import RerankerTrainConfig, build_cross_encoder, is_cross_encoder, train_reranker

from .conftest import FACTS

pytestmark = pytest.mark.slow


def _examples(n_neg: int = 3) -> list[Example]:
    out = []
    for i, (q, p) in enumerate(FACTS):
        negs = tuple(FACTS[(i + j) % len(FACTS)][1] for j in range(1, n_neg + 1))
        out.append(Example(q, p, negs))
    return out


def _ranking(reranker: Reranker) -> tuple[float, float]:
    """(mean rank of each question's passage among all passages, mean positive-minus-best-negative margin)."""
    passages = [p for _, p in FACTS]
    ranks, margins = [], []
    for i, (q, _) in enumerate(FACTS):
        scores = np.array(reranker.score(q, passages))
        ranks.append(int((scores > scores[i]).sum()) + 1)
        margins.append(float(scores[i] - np.delete(scores, i).max()))
    return float(np.mean(ranks)), float(np.mean(margins))


def _state(model_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    out: dict[str, np.ndarray] = {}
    for f in sorted(model_dir.rglob("*.safetensors")):
        out.update({f"{f.parent.relative_to(model_dir)}/{k}": v for k, v in load_file(str(f)).items()})
    return out


def test_tiny_random_bert_cross_encoder(tmp_path: Path, tiny_bert: Path) -> None:
    """Plumbing on a random 2-layer BERT: a [CLS] head is added, trained, saved, loadable by `Reranker`."""
    from sentence_transformers import CrossEncoder

    base = tmp_path / "base"
    build_cross_encoder(str(tiny_bert), RerankerTrainConfig(max_length=64)).save(str(base))
    assert is_cross_encoder(str(base))
    config = RerankerTrainConfig(epochs=3, batch_size=4, learning_rate=3e-3, warmup_ratio=0.0, max_length=64,
                                 loss="bce", rerank_weight=0.25)
    stats = train_reranker(str(base), _examples(), tmp_path / "ce", config)
    assert stats.steps == 24 and len(stats.losses) >= 2
    assert Reranker(str(tmp_path / "ce")).weight == 0.25  # recorded beside the model for the product
    before, after = _state(base), _state(tmp_path / "ce")
    assert before.keys() == after.keys()
    assert any(not np.allclose(before[k], after[k]) for k in before)
    assert isinstance(CrossEncoder(str(tmp_path / "ce")), CrossEncoder)
    scores = Reranker(str(tmp_path / "ce"), max_length=64).score(FACTS[0][0], [p for _, p in FACTS])
    assert len(scores) == len(FACTS) and np.isfinite(scores).all()


def test_minilm_mean_head_cross_encoder_learns_the_pairs(tmp_path: Path, minilm_path: str) -> None:
    config = RerankerTrainConfig(epochs=1, batch_size=4, learning_rate=1e-4, warmup_ratio=0.0, max_length=64,
                                 loss="mnrl", seed=3)
    base = tmp_path / "base"
    build_cross_encoder(minilm_path, config).save(str(base))
    stats = train_reranker(str(base), _examples(), tmp_path / "ce", config)
    assert stats.steps == 2
    assert (tmp_path / "ce" / "config.json").is_file()  # what RAG_APP_RERANK_MODEL=auto looks for
    rank_before, margin_before = _ranking(Reranker(str(base), max_length=64))
    rank_after, margin_after = _ranking(Reranker(str(tmp_path / "ce"), max_length=64))
    assert margin_after > margin_before
    assert rank_after <= rank_before


@pytest.mark.parametrize("loss", ["lambda", "listnet"])
def test_listwise_losses_train(tmp_path: Path, tiny_bert: Path, loss: str) -> None:
    config = RerankerTrainConfig(epochs=1, batch_size=4, learning_rate=1e-3, warmup_ratio=0.0, max_length=32,
                                 loss=loss, head="cls")
    stats = train_reranker(str(tiny_bert), _examples(2), tmp_path / "ce", config)
    assert stats.steps == 2
    assert np.isfinite(Reranker(str(tmp_path / "ce"), max_length=32).score("q", ["a", "b"])).all()
