"""Training data: (question, passage) pairs from files, BEIR and SQuAD folders, or the corpus itself.

Everything is normalised into one `TrainingData`: a corpus of passages, queries, graded judgements
and a split *group* per query. The held-out part is split by group (a BEIR query id, a SQuAD article
title, a question text for plain pairs files), so questions about a held-out article are never seen
in training, and passages that only held-out queries judge relevant are never trained on either.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag_app.beir import load_corpus, load_qrels, load_queries, split_queries

logger = logging.getLogger(__name__)

QUERY_KEYS = ("query", "question", "anchor", "q")
TEXT_KEYS = ("passage", "positive", "text", "context", "passage_text", "document")
ID_KEYS = ("passage_id", "positive_id", "doc_id", "corpus_id", "pid", "gold_passage_id", "corpus-id")
TITLE_KEYS = ("title", "passage_title")
GROUP_KEYS = ("group", "article", "split_group")


@dataclass(frozen=True)
class CorpusPassage:
    """One retrievable unit (a BEIR document, a SQuAD paragraph, a stored passage)."""

    id: str
    title: str
    text: str
    group: str = ""

    def full_text(self) -> str:
        """What the product embeds: the title on its own line, then the text (as `Passage.index_text`)."""
        if self.title and self.title not in self.text[: len(self.title) + 5]:
            return f"{self.title}\n{self.text}"
        return self.text


@dataclass(frozen=True)
class TrainPair:
    """A query and one positive passage; `positive_text` overrides the corpus text (inverse-cloze
    positives have their query sentence removed)."""

    query_id: str
    query: str
    positive_id: str
    positive_text: str
    source: str = "labelled"


@dataclass(frozen=True)
class TrainingData:
    name: str
    source: str
    corpus: dict[str, CorpusPassage]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    groups: dict[str, str] = field(default_factory=dict)

    def group_of(self, qid: str) -> str:
        return self.groups.get(qid, qid)

    def pairs(self) -> list[TrainPair]:
        """One pair per (query, relevant passage), in query order."""
        out = []
        for qid, judged in self.qrels.items():
            text = self.queries.get(qid)
            if not text:
                continue
            for pid, grade in judged.items():
                if grade >= 1 and pid in self.corpus:
                    out.append(TrainPair(qid, text, pid, self.corpus[pid].full_text()))
        return out

    def subset(self, qids: Iterable[str]) -> TrainingData:
        wanted = set(qids)
        keep = [q for q in self.qrels if q in wanted]
        queries = {q: self.queries[q] for q in keep if q in self.queries}
        return TrainingData(self.name, self.source, self.corpus, queries, {q: self.qrels[q] for q in keep},
                            {q: self.group_of(q) for q in keep})


@dataclass(frozen=True)
class HeldOutSplit:
    train: TrainingData
    held_out: TrainingData
    #: passages never used as training positives or negatives: relevant only to held-out queries,
    #: or belonging to a held-out group (a held-out SQuAD article)
    excluded: frozenset[str]
    fraction: float
    seed: int

    def describe(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "seed": self.seed, "train_queries": len(self.train.qrels),
                "held_out_queries": len(self.held_out.qrels),
                "held_out_groups": len({self.held_out.group_of(q) for q in self.held_out.qrels}),
                "excluded_passages": len(self.excluded)}


def split_heldout(data: TrainingData, fraction: float = 0.2, seed: int = 13) -> HeldOutSplit:
    """Deterministic split by group (`rag_app.beir.split_queries` over the group keys)."""
    by_group: dict[str, dict[str, int]] = {}
    for qid in data.qrels:
        by_group.setdefault(data.group_of(qid), {})[qid] = 1
    train_groups, held_groups = split_queries(by_group, fraction, seed)
    if not held_groups and fraction > 0 and len(train_groups) > 1:
        # Fewer groups than 1/fraction: still hold one out, or there is nothing to evaluate on.
        first = sorted(train_groups)[0]
        train_groups.discard(first)
        held_groups.add(first)
    train = data.subset(q for q in data.qrels if data.group_of(q) in train_groups)
    held = data.subset(q for q in data.qrels if data.group_of(q) in held_groups)
    train_pos = {p for judged in train.qrels.values() for p, g in judged.items() if g >= 1}
    held_pos = {p for judged in held.qrels.values() for p, g in judged.items() if g >= 1}
    excluded = {p for p in held_pos if p not in train_pos}
    excluded |= {pid for pid, passage in data.corpus.items() if passage.group and passage.group in held_groups}
    return HeldOutSplit(train, held, frozenset(excluded), fraction, seed)


# ---- loaders --------------------------------------------------------------------------------------


def from_beir(directory: Path, split: str = "train") -> TrainingData:
    """A BEIR folder's split: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv (each query is its own group)."""
    corpus = {d.id: CorpusPassage(d.id, d.title, d.text) for d in load_corpus(directory)}
    texts = load_queries(directory)
    qrels_all = load_qrels(directory, split)
    qrels = {q: {p: g for p, g in judged.items() if p in corpus}
             for q, judged in qrels_all.items() if q in texts}
    qrels = {q: j for q, j in qrels.items() if any(g >= 1 for g in j.values())}
    missing = len(qrels_all) - len(qrels)
    if missing:
        logger.info("%d judged queries of %s have no text or no relevant passage in the corpus", missing, directory)
    if not qrels:
        raise ValueError(f"{directory}: no judged query of split {split!r} has text and a relevant passage")
    return TrainingData(Path(directory).resolve().name, f"beir:{Path(directory).resolve()}:{split}", corpus,
                        {q: texts[q] for q in qrels}, qrels, {q: q for q in qrels})


def from_squad(directory: Path, include_impossible: bool = False) -> TrainingData:
    """passages.jsonl (`_id,title,text`) + questions.jsonl (`id,question,gold_passage_id,title,is_impossible`):
    answerable questions become (question, gold passage) pairs, grouped by article title."""
    directory = Path(directory)
    corpus: dict[str, CorpusPassage] = {}
    for line_no, obj in _jsonl(directory / "passages.jsonl"):
        pid = str(obj.get("_id") or obj.get("id") or "")
        if not pid:
            raise ValueError(f"{directory / 'passages.jsonl'}:{line_no}: missing '_id'")
        title = str(obj.get("title") or "")
        corpus[pid] = CorpusPassage(pid, title, str(obj.get("text") or ""), title)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    groups: dict[str, str] = {}
    for line_no, obj in _jsonl(directory / "questions.jsonl"):
        if obj.get("is_impossible") and not include_impossible:
            continue
        qid = str(obj.get("id") or f"line{line_no}")
        gold = str(obj.get("gold_passage_id") or "")
        if gold not in corpus:
            continue
        queries[qid] = str(obj.get("question") or "")
        qrels[qid] = {gold: 1}
        groups[qid] = str(obj.get("title") or corpus[gold].group)
    if not qrels:
        raise ValueError(f"{directory}: no answerable question with a gold passage in passages.jsonl")
    return TrainingData(directory.resolve().name, f"squad:{directory.resolve()}", corpus, queries, qrels, groups)


def _jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from exc
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object")
            yield line_no, obj


def _first(row: Mapping[str, Any], keys: Sequence[str]) -> str:
    for key in keys:
        value = row.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return ""


def _rows(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            for line_no, row in enumerate(reader, 2):
                yield line_no, {k.strip().lower(): v for k, v in row.items() if k}
    else:
        for line_no, obj in _jsonl(path):
            yield line_no, {str(k).lower(): v for k, v in obj.items()}


def text_id(text: str) -> str:
    return "t" + hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:16]


def from_pairs_file(path: Path, corpus: Mapping[str, CorpusPassage] | None = None) -> TrainingData:
    """JSONL or CSV/TSV rows of a question and either the passage text or a passage id found in `corpus`.

    Accepted columns: question|query|anchor; passage|positive|text|context (text) or
    passage_id|positive_id|doc_id|corpus_id|pid (id); optional title, group (split unit, default the question).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file not found: {path}")
    known: dict[str, CorpusPassage] = dict(corpus or {})
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    groups: dict[str, str] = {}
    by_question: dict[str, str] = {}
    for line_no, row in _rows(path):
        question = _first(row, QUERY_KEYS)
        if not question:
            raise ValueError(f"{path}:{line_no}: no question (columns {', '.join(QUERY_KEYS)})")
        pid = _first(row, ID_KEYS)
        text = _first(row, TEXT_KEYS)
        if pid and pid not in known:
            if not text:
                raise ValueError(f"{path}:{line_no}: passage id {pid!r} is not in the corpus "
                                 "(give its text, ingest it, or pass --corpus)")
            known[pid] = CorpusPassage(pid, _first(row, TITLE_KEYS), text)
        elif not pid:
            if not text:
                raise ValueError(f"{path}:{line_no}: neither a passage text nor a passage id")
            pid = text_id(text)
            known.setdefault(pid, CorpusPassage(pid, _first(row, TITLE_KEYS), text))
        qid = by_question.setdefault(question, f"q{len(by_question):06d}")
        queries[qid] = question
        qrels.setdefault(qid, {})[pid] = 1
        groups[qid] = _first(row, GROUP_KEYS) or question
    if not qrels:
        raise ValueError(f"{path}: no pairs")
    return TrainingData(path.stem, f"pairs:{path.resolve()}", known, queries, qrels, groups)


def corpus_from_jsonl(path: Path) -> dict[str, CorpusPassage]:
    """A BEIR-style corpus file (`_id,title,text`) to resolve passage ids in a pairs file."""
    out = {}
    for line_no, obj in _jsonl(Path(path)):
        pid = str(obj.get("_id") or obj.get("id") or "")
        if not pid:
            raise ValueError(f"{path}:{line_no}: missing '_id'")
        out[pid] = CorpusPassage(pid, str(obj.get("title") or ""), str(obj.get("text") or ""))
    return out


# ---- pairs without labels -------------------------------------------------------------------------

_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_RE.split(text.strip()) if s.strip()]


def _eligible(corpus: Mapping[str, CorpusPassage], exclude: Iterable[str], min_words: int) -> list[str]:
    skip = set(exclude)
    return sorted(pid for pid, p in corpus.items() if pid not in skip and len(p.text.split()) >= min_words)


def inverse_cloze_pairs(corpus: Mapping[str, CorpusPassage], n: int, seed: int = 13,
                        exclude: Iterable[str] = (), title_probability: float = 0.5,
                        min_words: int = 30) -> list[TrainPair]:
    """Inverse-cloze pairs (Lee et al. 2019): a sentence of a passage (or its title) is the query, the
    rest of the passage the positive. Deterministic for a seed; at most one pair per passage."""
    rng = random.Random(seed)
    pool = _eligible(corpus, exclude, min_words)
    rng.shuffle(pool)
    out: list[TrainPair] = []
    for pid in pool:
        if len(out) >= n:
            break
        passage = corpus[pid]
        sents = sentences(passage.text)
        usable = [i for i, s in enumerate(sents) if 6 <= len(s.split()) <= 60]
        use_title = bool(passage.title) and len(passage.title.split()) >= 3 and (
            not usable or len(sents) < 2 or rng.random() < title_probability)
        if use_title:
            query, rest = passage.title, passage.text
        elif usable and len(sents) >= 2:
            i = rng.choice(usable)
            query = sents[i]
            rest = " ".join(s for j, s in enumerate(sents) if j != i)
            rest = f"{passage.title}\n{rest}" if passage.title else rest
        else:
            continue
        out.append(TrainPair(f"ict:{pid}", query, pid, rest, "self-supervised"))
    return out


SYNTHETIC_SYSTEM = ("You write search questions for a document collection. Given a passage, write ONE specific "
                    "question that the passage answers. Reply with the question only.")


def synthetic_pairs(corpus: Mapping[str, CorpusPassage], n: int, complete: Callable[[list[dict[str, str]]], str],
                    seed: int = 13, exclude: Iterable[str] = (), max_chars: int = 1500, min_words: int = 30,
                    progress: Callable[[int, int], None] | None = None) -> list[TrainPair]:
    """Questions written by an LLM (`complete(messages) -> text`, e.g. `OpenAIChat.complete` or the embedded
    model) for sampled passages. Replies that are not a usable question are dropped."""
    rng = random.Random(seed)
    pool = _eligible(corpus, exclude, min_words)
    rng.shuffle(pool)
    out: list[TrainPair] = []
    tried = 0
    for pid in pool:
        if len(out) >= n or tried >= 2 * n:
            break
        tried += 1
        passage = corpus[pid]
        messages = [{"role": "system", "content": SYNTHETIC_SYSTEM},
                    {"role": "user", "content": f"Passage:\n{passage.full_text()[:max_chars]}\n\nQuestion:"}]
        try:
            reply = complete(messages)
        except Exception as exc:  # noqa: BLE001 - one failed generation must not end the run
            logger.warning("synthetic question for %s failed: %s", pid, exc)
            continue
        question = clean_question(reply)
        if question:
            out.append(TrainPair(f"syn:{pid}", question, pid, passage.full_text(), "synthetic"))
        if progress:
            progress(len(out), n)
    return out


def clean_question(reply: str) -> str:
    """The first line that looks like a question, without list markers or quotes; '' if none."""
    for raw in reply.strip().splitlines():
        line = re.sub(r"^\s*(?:[-*\d.)]+\s*)?(?:question\s*:\s*)?", "", raw, flags=re.IGNORECASE).strip().strip('"\'')
        words = line.split()
        if 3 <= len(words) <= 40:
            return line
    return ""
