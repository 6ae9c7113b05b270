"""Pieces shared by the bi-encoder and cross-encoder trainers: progress with loss, the trainer
arguments that suit a small CPU machine, and the check that the training extras are installed."""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


#: Smallest held-out nDCG@10 gain that counts as "improved" (and that adoption accepts). Below it a change
#: is noise: on SciFact's 162 held-out queries one query moving from rank 1 to 2 shifts nDCG@10 by ~0.002,
#: and a run whose synthetic questions taught nothing measured +0.0002 (README, training block).
MIN_GAIN = 0.005

Progress = Callable[[str, int, int, str], None]


class TrainingUnavailableError(RuntimeError):
    """sentence-transformers' trainer needs `datasets` and `accelerate`."""


def require_training_extras() -> None:
    missing = [m for m in ("datasets", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise TrainingUnavailableError(
            f"training needs {', '.join(missing)}: pip install 'sentence-transformers[train]==6.2.0' "
            "(check with --dry-run that it keeps torch==2.13.0)"
        )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_DISABLED", "true")


@dataclass
class TrainStats:
    steps: int = 0
    epochs: float = 0.0
    examples: int = 0
    seconds: float = 0.0
    losses: list[tuple[int, float]] = field(default_factory=list)

    @property
    def first_loss(self) -> float | None:
        return self.losses[0][1] if self.losses else None

    @property
    def last_loss(self) -> float | None:
        return self.losses[-1][1] if self.losses else None

    def as_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "epochs": self.epochs, "examples": self.examples,
                "seconds": round(self.seconds, 1), "first_loss": self.first_loss, "last_loss": self.last_loss,
                "loss_curve": [(s, round(v, 5)) for s, v in self.losses]}


def progress_callback(progress: Progress | None, stats: TrainStats, stage: str = "train") -> Any:
    """A transformers TrainerCallback that reports steps and the running loss to `progress` and `stats`."""
    from transformers import TrainerCallback

    class _Callback(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.loss = float("nan")
            self.t0 = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
                   **kwargs: Any) -> None:
            if logs and "loss" in logs and math.isfinite(float(logs["loss"])):
                self.loss = float(logs["loss"])
                stats.losses.append((int(state.global_step), self.loss))

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            stats.steps = int(state.global_step)
            if progress:
                detail = f"loss {self.loss:.4f}" if math.isfinite(self.loss) else ""
                progress(stage, int(state.global_step), int(state.max_steps or 0), detail)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            stats.seconds = time.perf_counter() - self.t0
            stats.epochs = float(state.epoch or 0.0)

    return _Callback()


def quiet(trainer: Any) -> None:
    """Without tqdm, transformers prints every log dict to stdout (breaking `--json`); our callback reports."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cls in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cls)


def common_args(output_dir: str, *, epochs: float, batch_size: int, learning_rate: float, warmup_ratio: float,
                seed: int, n_examples: int, max_steps: int = -1, log_points: int = 25) -> dict[str, Any]:
    """Trainer arguments for CPU runs: no checkpoints, no reporting integrations, our own progress bar."""
    steps_per_epoch = max(1, math.ceil(n_examples / batch_size))
    total = max_steps if max_steps > 0 else max(1, math.ceil(steps_per_epoch * epochs))
    return {
        "output_dir": output_dir,
        "num_train_epochs": epochs,
        "max_steps": max_steps,
        "per_device_train_batch_size": batch_size,
        "learning_rate": learning_rate,
        "warmup_steps": warmup_ratio,  # a float is a ratio of the total steps (transformers >= 5)
        "seed": seed,
        "data_seed": seed,
        "save_strategy": "no",
        "eval_strategy": "no",
        "logging_strategy": "steps",
        "logging_steps": max(1, total // log_points),
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "dataloader_drop_last": False,
    }
