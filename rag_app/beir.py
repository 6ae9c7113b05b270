"""Read BEIR-format benchmark folders (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv).

Errors name the offending file and line: benchmark folders are often hand-assembled, and a
bare KeyError from deep inside an evaluation run is useless.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class BeirDoc:
    """One corpus entry; ``_id`` keeps BEIR's field name so qrels ids match without mapping."""

    _id: str
    title: str
    text: str

    @property
    def id(self) -> str:
        return self._id


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"BEIR {what} file not found: {path}")
    return path


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line, one line in memory at a time."""
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from exc
            if not isinstance(obj, dict):
                # A bad file is a data error (ValueError) like every other malformation here.
                raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
            yield line_no, obj


def _get_id(obj: Mapping[str, Any], path: Path, line_no: int) -> str:
    raw = obj.get("_id")
    if raw is None or str(raw) == "":
        raise ValueError(f"{path}:{line_no}: missing '_id'")
    return str(raw)


def _get_text(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    return "" if value is None else str(value)


def iter_corpus(directory: PathLike) -> Iterator[BeirDoc]:
    """Stream ``corpus.jsonl`` so large corpora can be indexed without holding all JSON at once."""
    path = _require_file(Path(directory) / "corpus.jsonl", "corpus")
    for line_no, obj in _iter_jsonl(path):
        yield BeirDoc(_get_id(obj, path, line_no), _get_text(obj, "title"), _get_text(obj, "text"))


def load_corpus(directory: PathLike) -> list[BeirDoc]:
    """All corpus documents in file order."""
    return list(iter_corpus(directory))


def load_queries(directory: PathLike) -> dict[str, str]:
    """``{query_id: text}`` from ``queries.jsonl`` (BEIR ships every split's queries in one file)."""
    path = _require_file(Path(directory) / "queries.jsonl", "queries")
    queries: dict[str, str] = {}
    for line_no, obj in _iter_jsonl(path):
        queries[_get_id(obj, path, line_no)] = _get_text(obj, "text")
    return queries


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def load_qrels(directory: PathLike, split: str) -> dict[str, dict[str, int]]:
    """``{query_id: {doc_id: grade}}`` from ``qrels/SPLIT.tsv`` (tab-separated, header line first).

    The header is required: BEIR always writes one, so a first line that parses as data means
    the file is not what we think it is.
    """
    path = _require_file(Path(directory) / "qrels" / f"{split}.tsv", f"qrels ({split!r} split)")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        header = handle.readline()
        header_fields = header.rstrip("\r\n").split("\t")
        if not header.strip():
            raise ValueError(f"{path}: empty file, expected a 'query-id\\tcorpus-id\\tscore' header")
        if len(header_fields) == 3 and _is_int(header_fields[2].strip()):
            raise ValueError(
                f"{path}:1: expected a 'query-id\\tcorpus-id\\tscore' header line, got data {header.strip()!r}"
            )
        for line_no, line in enumerate(handle, start=2):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != 3:
                raise ValueError(f"{path}:{line_no}: expected 3 tab-separated fields, got {len(fields)}")
            query_id, doc_id, grade = (field.strip() for field in fields)
            if not query_id or not doc_id:
                raise ValueError(f"{path}:{line_no}: empty query or corpus id")
            try:
                score = int(grade)
            except ValueError as exc:
                raise ValueError(f"{path}:{line_no}: relevance {grade!r} is not an integer") from exc
            judged = qrels.setdefault(query_id, {})
            if doc_id in judged and judged[doc_id] != score:
                logger.warning(
                    "%s:%d: duplicate judgement for (%s, %s); keeping the last",
                    path,
                    line_no,
                    query_id,
                    doc_id,
                )
            judged[doc_id] = score
    return qrels


def split_queries(
    qrels: Mapping[str, Mapping[str, int]],
    held_out_fraction: float = 0.2,
    seed: int = 13,
) -> tuple[set[str], set[str]]:
    """Deterministic ``(train, held_out)`` split of the qrels' query ids, for tuning on one part
    and reporting on the other.

    Queries are ordered by ``sha256(f"{seed}:{query_id}")`` and the first
    ``round(n * held_out_fraction)`` are held out: the result depends only on the ids and the
    seed (not dict order or PYTHONHASHSEED), and adding queries later rarely moves old ones.
    """
    if not 0.0 <= held_out_fraction <= 1.0:
        raise ValueError(f"held_out_fraction must be in [0, 1], got {held_out_fraction}")
    ids = sorted(qrels, key=lambda q: (hashlib.sha256(f"{seed}:{q}".encode()).hexdigest(), q))
    n_held = math.floor(len(ids) * held_out_fraction + 0.5)
    return set(ids[n_held:]), set(ids[:n_held])
