"""Adopt a trained model into a data dir, and roll an adoption back.

Bi-encoder: the model is copied (or moved) to `<data_dir>/models/embedder/<name>`, the stored passages
are re-encoded into a *new* index version (manifest provenance: base model, data, epochs, held-out
metrics, dates), and only then does `models/embedder/ACTIVE` name it. Nothing happens unless the
training report says the held-out nDCG@10 improved, so a refused model leaves the data dir untouched;
a failed re-encode publishes nothing. A running pipeline keeps serving from the snapshot it holds
until it is restarted. The previous index version is kept; `rollback_biencoder` makes it (and the
previous ACTIVE) current again; when it has been pruned meanwhile, the previous model's index is
rebuilt from the store's cached vectors.

Reranker: copied to `<data_dir>/models/reranker/` (the folder `RAG_APP_RERANK_MODEL=auto` loads) only
when it beat hybrid (or the reranker already adopted); the one it replaces is kept as
`models/reranker.previous` for `rollback_reranker`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rag_app.config import DEFAULT_EMBED_MODEL
from rag_app.pipeline import ACTIVE_EMBEDDER_FILE, EMBEDDER_DIR, TRAINED_RERANKER_DIR, PipelineConfig, RagPipeline
from rag_app.store import now_iso
from rag_app.training.common import MIN_GAIN

logger = logging.getLogger(__name__)

REPORT_FILE = "training_report.json"
HISTORY_FILE = EMBEDDER_DIR / "HISTORY.json"
PREVIOUS_RERANKER = TRAINED_RERANKER_DIR.with_name("reranker.previous")
RERANKER_HISTORY = TRAINED_RERANKER_DIR.with_name("reranker_history.json")
IndexProgress = Callable[[str, int, int], None]


class AdoptionRefusedError(RuntimeError):
    """The model did not improve on the held-out part (or has no evaluation)."""


@dataclass(frozen=True)
class AdoptResult:
    kind: str
    name: str
    path: Path
    index_version: str | None
    previous: str | None
    previous_index_version: str | None
    gain: float
    message: str


def load_report(model_dir: Path) -> dict[str, Any]:
    path = model_dir / REPORT_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise AdoptionRefusedError(
            f"{model_dir} has no {REPORT_FILE}: only models trained by `rag-app train` (which evaluates them "
            "on a held-out part) can be adopted") from exc
    except ValueError as exc:
        raise AdoptionRefusedError(f"{path} is unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise AdoptionRefusedError(f"{path} is not a training report")
    return data


def _gain(report: Mapping[str, Any], key: str) -> float:
    value = report.get("improvement", {}).get(key)
    if value is None:
        raise AdoptionRefusedError(f"the training report has no held-out {key} comparison")
    return float(value)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "model"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _copy_model(src: Path, dst: Path, move: bool) -> None:
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    if move:
        shutil.move(str(src), str(tmp))
    else:
        shutil.copytree(src, tmp)
    os.replace(tmp, dst)


def _history(data_dir: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads((data_dir / HISTORY_FILE).read_text())
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def active_name(data_dir: Path) -> str | None:
    try:
        name = (data_dir / ACTIVE_EMBEDDER_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def embed_spec(data_dir: Path, name: str | None) -> str:
    """The embed model string a pipeline with RAG_APP_EMBED_MODEL=auto uses for ACTIVE=name."""
    if name is None:
        return DEFAULT_EMBED_MODEL
    return str((data_dir / EMBEDDER_DIR / name).resolve())


def _provenance(report: Mapping[str, Any], name: str) -> dict[str, Any]:
    held = report.get("held_out", {})
    return {
        "trained_model": name, "base_model": report.get("base_model"), "data": report.get("data", {}),
        "epochs": report.get("hyperparameters", {}).get("epochs"), "hyperparameters": report.get("hyperparameters"),
        "negatives": report.get("negatives"), "held_out_metrics": {"before": held.get("before"),
                                                                   "after": held.get("after")},
        "improvement": report.get("improvement"), "trained_at": report.get("trained_at"), "adopted_at": now_iso(),
    }


def adopt_biencoder(config: PipelineConfig, model_dir: Path, *, report: Mapping[str, Any] | None = None,
                    name: str | None = None, move: bool = False, min_gain: float = MIN_GAIN,
                    progress: IndexProgress | None = None) -> AdoptResult:
    """Adopt a trained bi-encoder into `config.data_dir` if its held-out dense nDCG@10 improved."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"no model folder at {model_dir}")
    report = dict(report) if report is not None else load_report(model_dir)
    if report.get("kind", "biencoder") != "biencoder":
        raise AdoptionRefusedError(f"{model_dir} is a {report.get('kind')}, not a bi-encoder (use --reranker)")
    gain = _gain(report, "dense_ndcg@10")
    if gain <= min_gain:
        raise AdoptionRefusedError(
            f"not adopted: held-out dense nDCG@10 changed by {gain:+.4f} (needs > {min_gain:+.4f}); "
            "the current model and index stay in use")
    data_dir = config.data_dir
    name = _slug(name or f"{model_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    target = data_dir / EMBEDDER_DIR / name
    if target.exists():
        raise FileExistsError(f"{target} exists already; choose another --name")
    (data_dir / EMBEDDER_DIR).mkdir(parents=True, exist_ok=True)
    previous = active_name(data_dir)
    _copy_model(model_dir, target, move)
    spec = embed_spec(data_dir, name)
    cfg = replace(config, models=replace(config.models, embed_model=spec, rerank_model="none"))
    pipeline = RagPipeline(cfg, use_embedded_llm=False)
    try:
        old = pipeline.indexes.versions.current()
        new_version = None
        try:
            if pipeline.store.counts()["passages"]:
                snap = pipeline.indexes.refresh(full=True, progress=progress, provenance=_provenance(report, name))
                new_version = snap.manifest.version
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # nothing was published; leave no half-adopted model
            raise
    finally:
        pipeline.close()
    history = _history(data_dir)
    history.append({"name": name, "previous": previous, "index_version": new_version,
                    "previous_index_version": old.name if old else None, "adopted_at": now_iso(),
                    "gain": gain})
    _write_atomic(data_dir / HISTORY_FILE, json.dumps(history, indent=2))
    _write_atomic(data_dir / ACTIVE_EMBEDDER_FILE, name)
    msg = (f"adopted {name} (held-out dense nDCG@10 {gain:+.4f}); "
           + (f"index {new_version} built with it" if new_version else "no stored passages to re-encode yet")
           + (f"; previous index {old.name} kept for `rag-app adopt --rollback`" if old else ""))
    return AdoptResult("biencoder", name, target, new_version, previous, old.name if old else None, gain, msg)


def rollback_biencoder(config: PipelineConfig, progress: IndexProgress | None = None) -> AdoptResult:
    """Restore the index version and ACTIVE pointer from before the last adoption."""
    data_dir = config.data_dir
    history = _history(data_dir)
    if not history:
        raise FileNotFoundError(f"nothing was adopted in {data_dir}; nothing to roll back")
    entry = history[-1]
    previous = entry.get("previous")
    if previous is not None and not (data_dir / EMBEDDER_DIR / previous).is_dir():
        raise FileNotFoundError(f"the previous model {previous!r} is gone from {data_dir / EMBEDDER_DIR}")
    spec = embed_spec(data_dir, previous)
    cfg = replace(config, models=replace(config.models, embed_model=spec, rerank_model="none"))
    pipeline = RagPipeline(cfg, use_embedded_llm=False)
    restored: str | None = None
    try:
        versions = pipeline.indexes.versions
        old_name = entry.get("previous_index_version")
        old_dir = versions.root / old_name if old_name else None
        if old_dir is not None and old_dir.is_dir() and _manifest_model(old_dir) == spec:
            versions.publish(old_dir)
            restored = old_dir.name
        elif pipeline.store.counts()["passages"]:
            # The old version was pruned (later ingests): rebuild it from the store's cached vectors.
            snap = pipeline.indexes.refresh(full=True, progress=progress)
            restored = snap.manifest.version
    finally:
        pipeline.close()
    if previous is None:
        (data_dir / ACTIVE_EMBEDDER_FILE).unlink(missing_ok=True)
    else:
        _write_atomic(data_dir / ACTIVE_EMBEDDER_FILE, previous)
    history.pop()
    _write_atomic(data_dir / HISTORY_FILE, json.dumps(history, indent=2))
    msg = (f"rolled back {entry['name']}: active model is now {previous or DEFAULT_EMBED_MODEL + ' (packaged)'}"
           + (f", index {restored}" if restored else ""))
    return AdoptResult("biencoder", previous or DEFAULT_EMBED_MODEL, data_dir / EMBEDDER_DIR / (previous or ""),
                       restored, entry["name"], entry.get("index_version"), 0.0, msg)


def _manifest_model(version_dir: Path) -> str | None:
    try:
        return str(json.loads((version_dir / "manifest.json").read_text()).get("embed_model"))
    except (OSError, ValueError):
        return None


# ---- reranker -------------------------------------------------------------------------------------


def adopt_reranker(config: PipelineConfig, model_dir: Path, *, report: Mapping[str, Any] | None = None,
                   min_gain: float = MIN_GAIN) -> AdoptResult:
    """Install a trained cross-encoder as `<data_dir>/models/reranker` if it improved held-out nDCG@10."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"no model folder at {model_dir}")
    report = dict(report) if report is not None else load_report(model_dir)
    if report.get("kind") != "reranker":
        raise AdoptionRefusedError(f"{model_dir} is not a reranker training run")
    gain = _gain(report, "rerank_ndcg@10")
    if gain <= min_gain:
        raise AdoptionRefusedError(
            f"not adopted: hybrid + this reranker changed held-out nDCG@10 by {gain:+.4f} against "
            f"{report.get('improvement', {}).get('reference', 'hybrid')} (needs > {min_gain:+.4f})")
    data_dir = config.data_dir
    target = data_dir / TRAINED_RERANKER_DIR
    staged = target.with_name("reranker.new")
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(model_dir, staged)
    (staged / "adoption.json").write_text(json.dumps(_provenance(report, model_dir.name), indent=2, default=str))
    previous = data_dir / PREVIOUS_RERANKER
    had_previous = target.is_dir()
    if had_previous:
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(target, previous)
    os.replace(staged, target)
    history = _reranker_history(data_dir)
    history.append({"model_dir": str(model_dir), "had_previous": had_previous, "adopted_at": now_iso(), "gain": gain})
    _write_atomic(data_dir / RERANKER_HISTORY, json.dumps(history, indent=2))
    return AdoptResult("reranker", model_dir.name, target, None, str(previous) if had_previous else None, None, gain,
                       f"adopted reranker {model_dir.name} into {target} (held-out nDCG@10 {gain:+.4f})")


def _reranker_history(data_dir: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads((data_dir / RERANKER_HISTORY).read_text())
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def rollback_reranker(config: PipelineConfig) -> AdoptResult:
    data_dir = config.data_dir
    target = data_dir / TRAINED_RERANKER_DIR
    previous = data_dir / PREVIOUS_RERANKER
    history = _reranker_history(data_dir)
    if not target.is_dir():
        raise FileNotFoundError(f"no adopted reranker in {target}; nothing to roll back")
    entry = history.pop() if history else {"had_previous": previous.is_dir()}
    removed = target.with_name("reranker.rolled-back")
    shutil.rmtree(removed, ignore_errors=True)
    os.replace(target, removed)
    if entry.get("had_previous") and previous.is_dir():
        os.replace(previous, target)
        msg = f"restored the previous reranker in {target}"
    else:
        msg = "removed the adopted reranker: search is back to hybrid without reranking"
    _write_atomic(data_dir / RERANKER_HISTORY, json.dumps(history, indent=2))
    return AdoptResult("reranker", target.name, target, None, str(removed), None, 0.0, msg)
