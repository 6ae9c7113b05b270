"""Inference backends for the bi-encoder and the cross-encoder: PyTorch, ONNX Runtime fp32, ONNX Runtime int8.

``load_sentence_transformer(location, backend, ...)`` and ``load_cross_encoder(location, backend, ...)``
return an object with the part of the sentence-transformers API the encoders use (``encode`` /
``predict``, ``max_seq_length``, ``get_embedding_dimension``), so ``BiEncoder`` and ``Reranker`` work
unchanged whichever backend is chosen.

Why not sentence-transformers' own ``backend="onnx"``: it needs ``optimum-onnx``, whose only release
caps ``transformers<4.58`` (installing it would downgrade transformers 5, which this project needs).
So the export is done here, from the local weights only, nothing downloaded:

* the model is loaded once with sentence-transformers (PyTorch) and its whole module pipeline
  (transformer, pooling, dense layers, normalisation; for a cross-encoder the head and its activation)
  is traced to ONNX (``torch.onnx.export``, TorchScript exporter, dynamic batch and sequence axes);
* ``onnx-int8`` is ONNX Runtime's dynamic quantisation (int8 weights of MatMul/Gemm, per channel) of
  that fp32 graph: the same method as sentence-transformers' ``export_dynamic_quantized_onnx_model``;
* the tokenizer is the model's own fast tokenizer (``tokenizer.json``, with any lower-casing that
  sentence-transformers adds), run through ``tokenizers`` with the same padding and
  ``longest_first`` truncation at ``max_seq_length``.

Each export is written into a temporary folder under the cache dir and renamed into place, so an
interrupted or concurrent export never leaves a half-written model; the folder name carries a
fingerprint of the source folder (file names, sizes, mtimes), so retraining a model re-exports it.
At run time only ``onnxruntime``, ``tokenizers`` and numpy are used: the ONNX path never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder, SentenceTransformer

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
Backend = Literal["torch", "onnx", "onnx-int8"]
Kind = Literal["embedder", "cross-encoder"]
BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8")
EXPORT_FORMAT = 1  # bump when the exported layout changes: old cache folders are then ignored
META_FILE = "rag_app_onnx.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
_EXPORT_LOCK = threading.RLock()


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (a missing package, or a model it cannot export)."""


# ---- choosing the backend -----------------------------------------------------------------------


def check_backend(backend: str, setting: str = "RAG_APP_BACKEND") -> Backend:
    """Validate a backend name (the `setting` it came from) and say what is missing for it."""
    name = backend.strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"{setting}={backend!r} is not one of {', '.join(BACKENDS)}")
    if name != "torch":
        missing = [pkg for pkg in ("onnxruntime", "onnx") if not _importable(pkg)]
        if missing:
            raise BackendUnavailableError(
                f"{setting}={name} needs {' and '.join(missing)}: pip install {' '.join(missing)} "
                "(neither changes torch or transformers)"
            )
    return cast(Backend, name)


def effective_backend(backend: str, device: str) -> Backend:
    """The backend that really runs: ONNX Runtime serves the CPU only, any other device gets torch."""
    name = check_backend(backend)
    return name if name == "torch" or device.startswith("cpu") else "torch"


INT8_SUFFIX = "@onnx-int8"


def vector_model_name(spec: str, backend: str) -> str:
    """The name a bi-encoder's vectors are stored and indexed under (store cache, index manifest).

    fp32 ONNX reproduces torch to ~1e-6 cosine, so both share the model's own name and an index built
    with one is searched with the other. int8 moves vectors by up to ~0.02 cosine, which can reorder
    close hits: it is a different vector space, so an index is never searched with vectors of the other.
    """
    return spec + INT8_SUFFIX if check_backend(backend) == "onnx-int8" else spec


def onnx_available() -> str | None:
    """None when the ONNX backends can run, else why not."""
    try:
        check_backend("onnx-int8")
    except BackendUnavailableError as exc:
        return str(exc)
    return None


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def default_cache_dir(data_dir: Path | None = None) -> Path:
    """`<data dir>/models/onnx` when a data dir is given, else `$XDG_CACHE_HOME/rag_app/onnx`."""
    if data_dir is not None:
        return Path(data_dir) / "models" / "onnx"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rag_app" / "onnx"


# ---- export -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedModel:
    """A ready ONNX export: the folder holds model.onnx, tokenizer.json and the meta file."""

    path: Path
    backend: Backend
    kind: Kind
    meta: dict[str, Any]

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE


def fingerprint(location: str) -> str:
    """What identifies the source model: its folder's files (relative name, size, mtime), or its hub name."""
    digest = hashlib.sha256(f"format={EXPORT_FORMAT}".encode())
    root = Path(location)
    if root.is_dir():
        digest.update(str(root.resolve()).encode())
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            if rel.startswith(".") or rel.lower().endswith(".md"):
                continue
            stat = path.stat()
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    else:
        digest.update(location.encode())
    return digest.hexdigest()[:16]


def export_dir(location: str, backend: Backend, kind: Kind, cache_dir: Path) -> Path:
    parts = [p for p in Path(location).parts[-2:] if p not in ("/", "")]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts) or location).strip("-")[-48:] or "model"
    return Path(cache_dir) / f"{slug}-{kind}-{fingerprint(location)}-{backend}"


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT or not (folder / MODEL_FILE).is_file():
        return None
    return meta


def ensure_exported(location: str, backend: Backend, kind: Kind, cache_dir: Path | None = None) -> ExportedModel:
    """The ONNX export of `location` for `backend`, made once (atomically) and reused afterwards."""
    if backend == "torch":
        raise ValueError("the torch backend has no export")
    check_backend(backend)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = export_dir(location, backend, kind, cache)
    meta = _read_meta(target)
    if meta is not None:
        return ExportedModel(target, backend, kind, meta)
    with _EXPORT_LOCK:  # one export at a time per process; other processes are handled by the rename
        meta = _read_meta(target)
        if meta is not None:
            return ExportedModel(target, backend, kind, meta)
        cache.mkdir(parents=True, exist_ok=True)
        source = ensure_exported(location, "onnx", kind, cache) if backend == "onnx-int8" else None
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=cache))
        try:
            meta = _export_fp32(location, kind, tmp) if source is None else _quantize(source, tmp)
            meta.update(format=EXPORT_FORMAT, backend=backend, kind=kind, source=location)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
            _publish(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    meta = _read_meta(target)
    if meta is None:  # pragma: no cover - published just above
        raise BackendUnavailableError(f"the ONNX export at {target} is unreadable")
    logger.info("exported %s (%s, %s) to %s", location, kind, backend, target)
    return ExportedModel(target, backend, kind, meta)


def _publish(tmp: Path, target: Path) -> None:
    """Rename the finished export into place; a broken leftover is moved aside, a concurrent winner kept."""
    for fh_path in tmp.iterdir():
        with open(fh_path, "rb") as fh:
            os.fsync(fh.fileno())
    if target.exists() and _read_meta(target) is None:
        shutil.rmtree(target, ignore_errors=True)
    try:
        os.rename(tmp, target)
    except OSError:
        if _read_meta(target) is None:
            raise


class _Traced:
    """Builds the torch module that maps token tensors to the pipeline's output (set up lazily: torch)."""

    @staticmethod
    def module(model: Any, output: str, activation: Any, names: Sequence[str]) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model
                self.activation = activation

            def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
                features: dict[str, Any] = dict(zip(names, tensors, strict=True))
                features["modality"] = "text"
                out = self.model(features)[output]
                if self.activation is not None:
                    out = self.activation(out)
                return cast(torch.Tensor, out)

        return Wrapped().eval()


def _load_torch(location: str, kind: Kind, eager: bool) -> Any:
    """The sentence-transformers model to trace; eager attention traces to the pattern ONNX Runtime fuses."""
    kwargs: dict[str, Any] = {"model_kwargs": {"attn_implementation": "eager"}} if eager else {}
    if kind == "embedder":
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(location, device="cpu", **kwargs)
    from sentence_transformers import CrossEncoder

    return CrossEncoder(location, device="cpu", **kwargs)


def _export_fp32(location: str, kind: Kind, out: Path) -> dict[str, Any]:
    """Trace the sentence-transformers pipeline (or cross-encoder) to ONNX with dynamic batch/sequence axes,
    then fuse it with ONNX Runtime's transformer optimizer when that reproduces the output."""
    import torch

    try:
        model = _load_torch(location, kind, eager=True)
    except (TypeError, ValueError):  # a model without a selectable attention implementation
        model = _load_torch(location, kind, eager=False)
    model.eval()
    if kind == "embedder":
        output, activation = "sentence_embedding", None
        sample: list[Any] = ["a short sample sentence", "and a second, somewhat longer sample sentence here"]
    else:
        output, activation = "scores", model.activation_fn
        if isinstance(activation, torch.nn.Identity):
            activation = None
        sample = [("a query", "a passage about something"), ("another query", "another, longer passage here")]
    first = model[0]
    tokenizer = getattr(first, "tokenizer", None)
    backend_tok = getattr(tokenizer, "backend_tokenizer", None)
    if tokenizer is None or backend_tok is None:
        raise BackendUnavailableError(f"{location}: no fast tokenizer, cannot run it with ONNX Runtime")
    features = model.preprocess(sample)
    names = [n for n in INPUT_NAMES if n in features]
    unknown = sorted(k for k, v in features.items() if k not in names and isinstance(v, torch.Tensor))
    if unknown or "input_ids" not in names or "attention_mask" not in names:
        raise BackendUnavailableError(f"{location}: unsupported model inputs {sorted(features)} for the ONNX export")
    wrapped = _Traced.module(model, output, activation, names)
    tensors = tuple(features[n] for n in names)
    dynamic = {n: {0: "batch", 1: "sequence"} for n in names}
    dynamic["output"] = {0: "batch"}
    raw = out / "raw.onnx"
    with torch.no_grad():
        reference = wrapped(*tensors).detach().numpy()
        torch.onnx.export(wrapped, tensors, str(raw), input_names=list(names), output_names=["output"],
                          dynamic_axes=dynamic, opset_version=17, do_constant_folding=True, dynamo=False)
    # A second, differently shaped batch guards against shapes frozen by tracing.
    check = model.preprocess([*sample, sample[0]][::-1])
    with torch.no_grad():
        check_ref = wrapped(*(check[n] for n in names)).detach().numpy()
    _check_export(raw, [check[n] for n in names], names, check_ref)
    config = getattr(getattr(first, "auto_model", None), "config", None) or getattr(first, "config", None)
    optimized = _optimize(raw, out / MODEL_FILE, config)
    if optimized:
        try:
            _check_export(out / MODEL_FILE, [check[n] for n in names], names, check_ref)
        except BackendUnavailableError:
            optimized = False
    if optimized:
        raw.unlink()
    else:
        os.replace(raw, out / MODEL_FILE)
    backend_tok.save(str(out / TOKENIZER_FILE))
    max_len = int(getattr(model, "max_seq_length", None) or getattr(model, "max_length", None) or 512)
    positions = getattr(config, "max_position_embeddings", None)
    return {
        "inputs": names,
        "max_seq_length": max_len,
        "max_position_embeddings": int(positions) if isinstance(positions, int) and positions > 0 else None,
        "pad_token": tokenizer.pad_token, "pad_token_id": int(tokenizer.pad_token_id or 0),
        "padding_side": getattr(tokenizer, "padding_side", "right"),
        "output_dim": int(reference.shape[-1]) if reference.ndim > 1 else 1,
        "activation": None if activation is None else type(activation).__name__,
        "fused": optimized,
    }


def _optimize(raw: Path, target: Path, config: Any) -> bool:
    """ONNX Runtime's transformer fusions (attention, skip-layer-norm, bias-gelu); False when not applicable."""
    heads = int(getattr(config, "num_attention_heads", 0) or 0)
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    if not heads or not hidden:
        return False
    try:
        from onnxruntime.transformers import optimizer

        model = optimizer.optimize_model(str(raw), model_type="bert", num_heads=heads, hidden_size=hidden,
                                         opt_level=1)
        model.save_model_to_file(str(target))
    except Exception as exc:  # noqa: BLE001 - any failure keeps the plain (correct) export
        logger.info("ONNX Runtime could not fuse %s (%s); keeping the plain export", raw, exc)
        target.unlink(missing_ok=True)
        return False
    return True


def _check_export(path: Path, tensors: Sequence[Any], names: Sequence[str], reference: FloatArray) -> None:
    """The exported graph must reproduce PyTorch on the sample batch, or the export is refused."""
    session = _session(path, threads=1)
    feeds = {n: np.asarray(t.numpy(), dtype=np.int64) for n, t in zip(names, tensors, strict=True)}
    got = session.run(None, feeds)[0]
    if got.shape != reference.shape or not np.allclose(got, reference, atol=1e-3, rtol=1e-3):
        raise BackendUnavailableError(f"the ONNX export at {path} does not reproduce the PyTorch output")


def _quantize(source: ExportedModel, out: Path) -> dict[str, Any]:
    """Dynamic int8 quantisation, per channel, of every supported op (MatMul, fused Attention, embedding
    Gather): measured on MiniLM 2x the fp32 speed at cosine >= 0.989 to fp32; per-tensor fell to 0.90."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source.model_file), str(out / MODEL_FILE), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    shutil.copy2(source.path / TOKENIZER_FILE, out / TOKENIZER_FILE)
    return {k: v for k, v in source.meta.items() if k not in ("format", "backend", "kind", "source")}


# ---- ONNX Runtime models -------------------------------------------------------------------------


def _session(path: Path, threads: int = 0) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Spinning worker threads starve each other on a shared CPU (measured: 2.5x slower single queries).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _threads() -> int:
    raw = os.environ.get("RAG_APP_ONNX_THREADS", "")
    return int(raw) if raw.isdigit() else 0


class _OnnxModel:
    """Tokenizer + ONNX Runtime session for one export; thread-safe (tokenizer settings are per call)."""

    def __init__(self, exported: ExportedModel, max_seq_length: int | None = None) -> None:
        from tokenizers import Tokenizer

        self.exported = exported
        meta = exported.meta
        self.inputs: list[str] = list(meta["inputs"])
        self._tokenizer = Tokenizer.from_file(str(exported.path / TOKENIZER_FILE))
        self._lock = threading.Lock()
        self._session = _session(exported.model_file, _threads())
        self._max_len = 0
        self.max_seq_length = int(max_seq_length or meta["max_seq_length"])

    @property
    def max_seq_length(self) -> int:
        return self._max_len

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        cap = self.exported.meta.get("max_position_embeddings")
        value = int(value)
        if cap:
            value = min(value, int(cap))
        with self._lock:
            self._max_len = value
            self._tokenizer.enable_truncation(max_length=value, strategy="longest_first")
            self._tokenizer.enable_padding(direction=self.exported.meta.get("padding_side", "right"),
                                           pad_id=int(self.exported.meta["pad_token_id"]),
                                           pad_token=str(self.exported.meta["pad_token"]))

    def run(self, batch: Sequence[Any]) -> FloatArray:
        with self._lock:
            encodings = self._tokenizer.encode_batch(list(batch))
        feeds: dict[str, Any] = {}
        for name in self.inputs:
            if name == "input_ids":
                feeds[name] = np.asarray([e.ids for e in encodings], dtype=np.int64)
            elif name == "attention_mask":
                feeds[name] = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
            else:
                feeds[name] = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
        return np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)


class OnnxSentenceTransformer:
    """The subset of ``SentenceTransformer`` that ``BiEncoder`` uses, served by ONNX Runtime."""

    def __init__(self, exported: ExportedModel, max_seq_length: int | None = None) -> None:
        self.backend = exported.backend
        self.location = str(exported.meta.get("source", ""))
        self._model = _OnnxModel(exported, max_seq_length)
        self._dim = int(exported.meta["output_dim"])

    @property
    def max_seq_length(self) -> int:
        return self._model.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self._model.max_seq_length = value

    def get_embedding_dimension(self) -> int:
        return self._dim

    get_sentence_embedding_dimension = get_embedding_dimension

    def encode(self, sentences: str | Sequence[str], batch_size: int = 32, show_progress_bar: bool | None = None,
               convert_to_numpy: bool = True, normalize_embeddings: bool = False, **_: Any) -> FloatArray:
        single = isinstance(sentences, str)
        texts = [sentences] if isinstance(sentences, str) else list(sentences)
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for start in range(0, len(texts), max(1, batch_size)):
            idx = order[start : start + batch_size]
            out[idx] = self._model.run([texts[i] for i in idx])
        if normalize_embeddings:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.maximum(norms, 1e-12)
        return out[0] if single else out


class OnnxCrossEncoder:
    """The subset of ``CrossEncoder`` that ``Reranker`` uses (``predict``), served by ONNX Runtime.
    The activation (sigmoid for a 1-label model) is part of the exported graph, as in ``predict``."""

    def __init__(self, exported: ExportedModel, max_length: int | None = None) -> None:
        self.backend = exported.backend
        self._model = _OnnxModel(exported, max_length)

    @property
    def max_length(self) -> int:
        return self._model.max_seq_length

    def predict(self, sentences: Sequence[tuple[str, str]] | Sequence[list[str]], batch_size: int = 32,
                show_progress_bar: bool | None = None, convert_to_numpy: bool = True, **_: Any) -> FloatArray:
        pairs = [(str(a), str(b)) for a, b in sentences]
        if not pairs:
            return np.zeros((0,), dtype=np.float32)
        order = np.argsort([-(len(a) + len(b)) for a, b in pairs], kind="stable")
        rows: list[FloatArray] = [np.zeros(0, dtype=np.float32)] * len(pairs)
        for start in range(0, len(pairs), max(1, batch_size)):
            idx = order[start : start + batch_size]
            scores = self._model.run([pairs[i] for i in idx])
            for j, i in enumerate(idx):
                rows[i] = scores[j]
        out = np.stack(rows)
        return out.reshape(-1) if out.ndim == 2 and out.shape[1] == 1 else out


# ---- entry points --------------------------------------------------------------------------------


class SentenceEncoderLike(Protocol):
    """What ``BiEncoder`` needs from a loaded model, whichever backend serves it."""

    max_seq_length: int

    def encode(self, sentences: Any, batch_size: int = ..., show_progress_bar: bool | None = ...,
               convert_to_numpy: bool = ..., normalize_embeddings: bool = ..., **kwargs: Any) -> Any: ...

    def get_embedding_dimension(self) -> int | None: ...


class CrossEncoderLike(Protocol):
    def predict(self, sentences: Any, batch_size: int = ..., show_progress_bar: bool | None = ...,
                **kwargs: Any) -> Any: ...


def load_sentence_transformer(location: str, backend: str = "torch", device: str = "cpu",
                              cache_dir: Path | None = None,
                              max_seq_length: int | None = None) -> SentenceTransformer | OnnxSentenceTransformer:
    """A bi-encoder for `location` on `backend` ("torch" | "onnx" | "onnx-int8"); ONNX exports are made
    once into `cache_dir` (default: the user cache, see `default_cache_dir`)."""
    name = check_backend(backend)
    if effective_backend(name, device) == "torch":
        if name != "torch":
            logger.warning("RAG_APP_BACKEND=%s runs on the CPU only; using torch on %s", name, device)
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(location, device=device)
        if max_seq_length:
            model.max_seq_length = min(max_seq_length, model.max_seq_length or 512)
        return model
    exported = ensure_exported(location, name, "embedder", cache_dir)
    onnx_model = OnnxSentenceTransformer(exported)
    if max_seq_length:
        onnx_model.max_seq_length = min(max_seq_length, onnx_model.max_seq_length)
    return onnx_model


def load_cross_encoder(location: str, backend: str = "torch", device: str = "cpu", cache_dir: Path | None = None,
                       max_length: int | None = None) -> CrossEncoder | OnnxCrossEncoder:
    """A cross-encoder for `location` on `backend`; see `load_sentence_transformer`."""
    name = check_backend(backend)
    if effective_backend(name, device) == "torch":
        if name != "torch":
            logger.warning("RAG_APP_BACKEND=%s runs on the CPU only; using torch on %s", name, device)
        from sentence_transformers import CrossEncoder

        ce: CrossEncoder = CrossEncoder(location, device=device, max_length=max_length)
        return ce
    exported = ensure_exported(location, name, "cross-encoder", cache_dir)
    return OnnxCrossEncoder(exported, max_length)


def backend_kwargs(location: str, backend: str, kind: Kind = "embedder",
                   cache_dir: Path | None = None) -> dict[str, Any]:
    """For callers that want to know what will be loaded: the export folder and files for `backend`
    (made now if missing), or the torch loading kwargs."""
    name = check_backend(backend)
    if name == "torch":
        return {"backend": "torch", "model_name_or_path": location}
    exported = ensure_exported(location, name, kind, cache_dir)
    return {"backend": name, "path": str(exported.path), "model_file": str(exported.model_file),
            "tokenizer_file": str(exported.path / TOKENIZER_FILE), "meta": exported.meta}


def timed_encode(model: SentenceEncoderLike, texts: Sequence[str], batch_size: int) -> tuple[FloatArray, float]:
    """Encode (normalised) and return the wall-clock seconds; used by the benchmarks."""
    import time

    t0 = time.perf_counter()
    out = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                       show_progress_bar=False)
    return np.asarray(out, dtype=np.float32), time.perf_counter() - t0

