"""Fine-tune the bi-encoder on (query, positive, hard negatives) with sentence-transformers' own
MultipleNegativesRankingLoss (in-batch + hard negatives) or its cached variant.

Shared (one encoder for both sides, the default) or asymmetric, DPR-style: the query and passage
sides start as two copies of the current model inside a sentence-transformers `Router`, are trained
jointly, and are saved as `<out>/query` and `<out>/passage` sentence-transformers folders, which
`rag_app.encoders.BiEncoder` loads as separate query/passage models.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rag_app.models import ensure_offline_default, resolve_model
from rag_app.training.common import (
    Progress,
    TrainStats,
    common_args,
    progress_callback,
    quiet,
    require_training_extras,
)

logger = logging.getLogger(__name__)

LOSSES = ("mnrl", "cached-mnrl")


@dataclass(frozen=True)
class Example:
    """One training row: a query, its positive and its hard negatives (texts)."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class BiEncoderTrainConfig:
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    max_seq_length: int = 256
    loss: str = "mnrl"
    mini_batch_size: int = 16   # cached-mnrl only: the memory-bound chunk size
    scale: float = 20.0
    asymmetric: bool = False
    seed: int = 13
    max_steps: int = -1

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.epochs <= 0 or self.batch_size < 2:
            raise ValueError("epochs must be > 0 and batch size >= 2 (in-batch negatives need a batch)")


def is_asymmetric(location: str) -> bool:
    root = Path(location)
    return (root / "query").is_dir() and (root / "passage").is_dir()


def load_sides(base: str, max_seq_length: int) -> tuple[Any, Any, int]:
    """(query model, passage model, the passage model's own max length) of a base spec; the same object
    for a shared model. The own length is restored before saving: training may truncate harder than
    inference should."""
    from sentence_transformers import SentenceTransformer

    ensure_offline_default()
    location = resolve_model(base, "base model").location
    if is_asymmetric(location):
        q = SentenceTransformer(str(Path(location) / "query"), device="cpu")
        p = SentenceTransformer(str(Path(location) / "passage"), device="cpu")
    else:
        q = p = SentenceTransformer(location, device="cpu")
    own = int(p.max_seq_length or max_seq_length)
    for m in {id(q): q, id(p): p}.values():
        m.max_seq_length = min(max_seq_length, m.max_seq_length or 512)
    return q, p, own


def _rows(examples: Sequence[Example]) -> dict[str, list[str]]:
    n_neg = min((len(e.negatives) for e in examples), default=0)
    if any(len(e.negatives) != n_neg for e in examples):
        logger.info("using %d hard negatives per example (the fewest any example has)", n_neg)
    data: dict[str, list[str]] = {"anchor": [e.query for e in examples], "positive": [e.positive for e in examples]}
    for j in range(n_neg):
        data[f"negative_{j + 1}"] = [e.negatives[j] for e in examples]
    return data


def train_biencoder(base: str, examples: Sequence[Example], out_dir: Path, config: BiEncoderTrainConfig,
                    progress: Progress | None = None) -> TrainStats:
    """Train from `base` (a packaged name, folder or hub name; shared or query/passage) and save to `out_dir`."""
    require_training_extras()
    if not examples:
        raise ValueError("no training examples")
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.base.modules import Router
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    q_model, p_model, inference_length = load_sides(base, config.max_seq_length)
    asymmetric = config.asymmetric or q_model is not p_model
    if asymmetric:
        if q_model is p_model:  # two independent copies of the shared model
            _, p_model, _ = load_sides(base, config.max_seq_length)
            q_model, _, _ = load_sides(base, config.max_seq_length)
        router = Router.for_query_document(query_modules=list(q_model.children()),
                                           document_modules=list(p_model.children()))
        model = SentenceTransformer(modules=[router], device="cpu")
        model.max_seq_length = config.max_seq_length
    else:
        model = q_model
    rows = _rows(examples)
    dataset = Dataset.from_dict(rows)
    if config.loss == "cached-mnrl":
        loss: Any = losses.CachedMultipleNegativesRankingLoss(model, scale=config.scale,
                                                              mini_batch_size=config.mini_batch_size)
    else:
        loss = losses.MultipleNegativesRankingLoss(model, scale=config.scale)
    stats = TrainStats(examples=len(examples))
    with tempfile.TemporaryDirectory(prefix="rag-train-") as tmp:
        kwargs = common_args(tmp, epochs=config.epochs, batch_size=min(config.batch_size, len(examples)),
                             learning_rate=config.learning_rate, warmup_ratio=config.warmup_ratio,
                             seed=config.seed, n_examples=len(examples), max_steps=config.max_steps)
        if asymmetric:
            kwargs["router_mapping"] = {c: ("query" if c == "anchor" else "document") for c in rows}
        args = SentenceTransformerTrainingArguments(batch_sampler=BatchSamplers.NO_DUPLICATES, **kwargs)
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                             callbacks=[progress_callback(progress, stats)])
        quiet(trainer)
        trainer.train()
    model.max_seq_length = inference_length
    save_biencoder(model, out_dir, asymmetric)
    (out_dir / "training_config.json").write_text(json.dumps({"base": base, **asdict(config),
                                                              "asymmetric": asymmetric}, indent=2))
    return stats


def save_biencoder(model: Any, out_dir: Path, asymmetric: bool) -> None:
    """A shared model is one sentence-transformers folder; an asymmetric one is `query/` + `passage/`."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Router

    max_length = model.max_seq_length
    if out_dir.exists():
        for child in ("query", "passage"):
            shutil.rmtree(out_dir / child, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not asymmetric:
        model.save(str(out_dir))
        return
    router = next(m for m in model.children() if isinstance(m, Router))
    for route, folder in (("query", "query"), ("document", "passage")):
        side = SentenceTransformer(modules=list(router.sub_modules[route].children()), device="cpu")
        side.max_seq_length = max_length
        side.save(str(out_dir / folder))
