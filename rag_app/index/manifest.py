"""What built an index version; opening it with another embedding model is refused, never mixed."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from rag_app.inference import INT8_SUFFIX

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class IndexMismatchError(RuntimeError):
    """The index on disk was built differently from what the settings ask for."""


def package_versions() -> dict[str, str]:
    out = {}
    for name in ("rag_app", "faiss-cpu", "bm25s", "sentence-transformers", "torch", "transformers"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "?"
    return out


@dataclass(frozen=True)
class Manifest:
    version: str
    embed_model: str
    embed_location: str
    dim: int
    index_type: str
    chunking: dict[str, int]
    dense_count: int
    bm25_count: int
    store_generation: int
    created_at: str
    packages: dict[str, str] = field(default_factory=package_versions)
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, directory: Path) -> None:
        tmp = directory / (MANIFEST_NAME + ".tmp")
        tmp.write_text(self.to_json())
        os.replace(tmp, directory / MANIFEST_NAME)

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_NAME
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise IndexMismatchError(f"{path} is missing or unreadable ({exc}); run `rag-app reindex`") from exc

    def check_model(self, embed_model: str) -> None:
        """`embed_model` is the encoder's vector-space name (`inference.vector_model_name`)."""
        if self.embed_model == embed_model:
            return
        spec = embed_model.removesuffix(INT8_SUFFIX)
        if self.embed_model.removesuffix(INT8_SUFFIX) == spec:
            # Same model, int8 on one side only: the vectors differ enough to reorder close hits.
            def kind(name: str) -> str:
                return "onnx-int8" if name.endswith(INT8_SUFFIX) else "fp32 (torch or onnx)"

            raise IndexMismatchError(
                f"the index in {self.version} was built with {spec!r} on the {kind(self.embed_model)} backend "
                f"but RAG_APP_BACKEND now gives {kind(embed_model)} vectors. int8 and fp32 vectors are not mixed: "
                "run `rag-app reindex` to re-encode the stored passages with this backend, "
                "or set RAG_APP_BACKEND back."
            )
        raise IndexMismatchError(
            f"the index in {self.version} was built with embedding model {self.embed_model!r} "
            f"but RAG_APP_EMBED_MODEL is {embed_model!r}. Vectors from different models cannot be mixed: "
            "run `rag-app reindex` to re-encode the stored passages with the new model, "
            "or set RAG_APP_EMBED_MODEL back."
        )
