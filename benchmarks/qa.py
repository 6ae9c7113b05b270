"""Answer quality on SQuAD 2.0 dev (../shared/data/squad2-dev): retrieval, abstention, answers.

Reports, as JSON:
- gold passage in the top-5 context (mode rerank when a reranker exists, else hybrid) for answerable questions;
- abstention: the best relevance score (rerank, else dense cosine) thresholded; the threshold is
  calibrated on half of the articles (best F1 for "unanswerable") and precision/recall reported on the
  other half, so the figure is not tuned on what it reports;
- answers from the configured generator (embedded SmolLM2 by default) on a sample of answerable
  questions: exact match / token F1 against the gold answers, invalid citations left in answers
  (must be 0), and how often a citation points at the gold passage.

Usage: python benchmarks/qa.py [--answers 100] [--data-dir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SQUAD = ROOT.parent / "shared" / "data" / "squad2-dev"


def normalise_answer(text: str) -> str:
    """SQuAD's official normalisation: lowercase, drop punctuation, articles and extra spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1_score(prediction: str, gold: str) -> float:
    pred, ref = normalise_answer(prediction).split(), normalise_answer(gold).split()
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_threshold(scores: list[float], unanswerable: list[bool]) -> tuple[float, float]:
    """Threshold maximising F1 of predicting 'unanswerable' as score < threshold."""
    best = (float("-inf"), 0.0)
    for t in sorted(set(scores)):
        pred = [s < t for s in scores]
        tp = sum(p and u for p, u in zip(pred, unanswerable, strict=True))
        fp = sum(p and not u for p, u in zip(pred, unanswerable, strict=True))
        fn = sum((not p) and u for p, u in zip(pred, unanswerable, strict=True))
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if f1 > best[1]:
            best = (t, f1)
    return best


def precision_recall(scores: list[float], unanswerable: list[bool], threshold: float) -> dict[str, float]:
    pred = [s < threshold for s in scores]
    tp = sum(p and u for p, u in zip(pred, unanswerable, strict=True))
    fp = sum(p and not u for p, u in zip(pred, unanswerable, strict=True))
    fn = sum((not p) and u for p, u in zip(pred, unanswerable, strict=True))
    return {"precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
            "recall": round(tp / (tp + fn), 4) if tp + fn else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SQUAD)
    parser.add_argument("--data-dir", type=Path, default=None, help="reuse an index here (default: temp)")
    parser.add_argument("--answers", type=int, default=100, help="answerable questions to generate for")
    parser.add_argument("--no-generate", action="store_true")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from rag_app.config import Settings
    from rag_app.generation.answer import abstention_score
    from rag_app.generation.citations import parse_markers
    from rag_app.ingest.pipeline import Record
    from rag_app.pipeline import PipelineConfig, RagPipeline

    passages = [json.loads(line) for line in (args.data / "passages.jsonl").open()]
    questions = [json.loads(line) for line in (args.data / "questions.jsonl").open()]
    tmp = None
    data_dir = args.data_dir
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory()
        data_dir = Path(tmp.name)
    settings = Settings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
    pipeline = RagPipeline(PipelineConfig.from_settings(settings))
    t0 = time.perf_counter()
    pipeline.ingest_records([Record(p["_id"], p["title"], p["text"]) for p in passages])
    ingest_s = time.perf_counter() - t0
    mode = pipeline.default_mode()
    n_ctx = pipeline.config.generation.context_passages

    hits = 0
    answerable = [q for q in questions if not q["is_impossible"]]
    scores: dict[str, float] = {}
    latencies = []
    for q in questions:
        t = time.perf_counter()
        result = pipeline.search(q["question"], mode=mode, k=max(n_ctx, 10))
        latencies.append((time.perf_counter() - t) * 1000)
        top = result.candidates[:n_ctx]
        best = max((s for s in (abstention_score(c) for c in top) if s is not None), default=float("-inf"))
        scores[q["id"]] = best
        if not q["is_impossible"] and any(c.passage.doc_name == q["gold_passage_id"] for c in top):
            hits += 1

    titles = sorted({q["title"] for q in questions})
    random.Random(args.seed).shuffle(titles)
    calib_titles = set(titles[: len(titles) // 2])
    calib = [q for q in questions if q["title"] in calib_titles]
    held = [q for q in questions if q["title"] not in calib_titles]
    threshold, calib_f1 = best_threshold([scores[q["id"]] for q in calib], [q["is_impossible"] for q in calib])
    held_pr = precision_recall([scores[q["id"]] for q in held], [q["is_impossible"] for q in held], threshold)

    out: dict[str, Any] = {
        "benchmark": "squad2-dev qa",
        "passages": len(passages), "questions": len(questions), "answerable": len(answerable),
        "ingest_s": round(ingest_s, 1), "retrieval_mode": mode,
        "reranker": pipeline.reranker.name if pipeline.reranker else None,
        "gold_in_top5": round(hits / len(answerable), 4),
        "retrieval_p50_ms": round(sorted(latencies)[len(latencies) // 2], 1),
        "abstention": {
            "score": "rerank" if pipeline.reranker else "dense cosine",
            "threshold_calibrated_on_half_the_articles": round(threshold, 4),
            "calibration_f1": round(calib_f1, 4),
            "held_out_articles": held_pr,
            "unanswerable_share": round(sum(q["is_impossible"] for q in held) / len(held), 4),
        },
    }

    if not args.no_generate:
        sample = random.Random(args.seed).sample(answerable, min(args.answers, len(answerable)))
        em = f1 = 0.0
        invalid_left = 0
        cites_gold = 0
        gen_ms = []
        generator = ""
        for q in sample:
            t = time.perf_counter()
            answer = pipeline.ask(q["question"])
            gen_ms.append((time.perf_counter() - t) * 1000)
            generator = answer.generator
            text = answer.text
            body = re.sub(r"\[[\d,\s\-–]+\]", "", text)
            em += max(float(normalise_answer(body) == normalise_answer(g)) for g in q["answers"])
            f1 += max(f1_score(body, g) for g in q["answers"])
            valid = {i + 1 for i in range(len(answer.context))}
            invalid_left += sum(1 for m in parse_markers(text) for n in m.numbers if n not in valid)
            if any(c.passage.doc_name == q["gold_passage_id"] for c in answer.citations):
                cites_gold += 1
        n = len(sample)
        out["answers"] = {
            "generator": generator, "questions": n, "exact_match": round(em / n, 4), "f1": round(f1 / n, 4),
            "invalid_citations_in_answers": invalid_left, "cites_gold_passage": round(cites_gold / n, 4),
            "p50_ms": round(sorted(gen_ms)[n // 2], 1),
        }
    pipeline.close()
    if tmp is not None:
        tmp.cleanup()
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
