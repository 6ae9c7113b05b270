"""Ranking metrics for the retrieval benchmarks (pure functions, no I/O).

Conventions follow ``ranx`` (and trec_eval where they agree) so numbers are comparable with
published BEIR results:

* ``qrels[q][doc]`` is a graded judgement; only grades >= 1 are relevant (0 or negative = not).
* ``run[q][doc]`` is a score, higher is better. A query's ranking is its docs sorted by score
  descending; **ties keep the run's insertion order** (a stable sort). ranx sorts with an
  unstable quicksort, which keeps insertion order for short lists but is arbitrary for long
  tied lists; trec_eval breaks ties by doc id. Insertion order was chosen because our runs
  are built from ranked lists, so it preserves the retriever's own order.
* nDCG uses linear gain (``rel``) with a ``log2(rank + 1)`` discount (Järvelin & Kekäläinen,
  as ranx ``ndcg`` and trec_eval ``ndcg_cut``); the ideal DCG uses the top-k judged grades.
* precision@k divides by k even when fewer than k docs were retrieved (as ranx/trec_eval).
* Means are over queries with at least one relevant doc; a query missing from the run
  scores 0 (it retrieved nothing), it is not dropped - dropping would flatter a system.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

logger = logging.getLogger(__name__)

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]
QueryMetric = Callable[[Mapping[str, int], Mapping[str, float], int | None], float]

DEFAULT_METRICS: tuple[str, ...] = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def ranked_ids(scores: Mapping[str, float], k: int | None = None) -> list[str]:
    """Doc ids best-first (stable sort: ties keep insertion order), cut to ``k`` if given."""
    ordered = sorted(scores, key=lambda doc: -scores[doc])
    return ordered if k is None else ordered[:k]


def _check_k(k: int | None) -> None:
    if k is not None and k < 1:
        raise ValueError(f"cutoff k must be >= 1 (or None for the whole ranking), got {k}")


def _relevant(query_qrels: Mapping[str, int]) -> dict[str, int]:
    return {doc: rel for doc, rel in query_qrels.items() if rel >= 1}


# Per-query metrics -----------------------------------------------------------------------------


def ndcg_at_k(query_qrels: Mapping[str, int], query_run: Mapping[str, float], k: int | None) -> float:
    """nDCG@k for one query with linear gain; 0.0 when the query has no relevant doc."""
    _check_k(k)
    relevant = _relevant(query_qrels)
    if not relevant:
        return 0.0
    dcg = math.fsum(
        relevant.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(ranked_ids(query_run, k), start=1)
    )
    ideal_grades = sorted(relevant.values(), reverse=True)
    if k is not None:
        ideal_grades = ideal_grades[:k]
    idcg = math.fsum(rel / math.log2(rank + 1) for rank, rel in enumerate(ideal_grades, start=1))
    return dcg / idcg


def recall_at_k(query_qrels: Mapping[str, int], query_run: Mapping[str, float], k: int | None) -> float:
    """Fraction of the query's relevant docs found in the top k."""
    _check_k(k)
    relevant = _relevant(query_qrels)
    if not relevant:
        return 0.0
    hits = sum(1 for doc in ranked_ids(query_run, k) if doc in relevant)
    return hits / len(relevant)


def precision_at_k(query_qrels: Mapping[str, int], query_run: Mapping[str, float], k: int | None) -> float:
    """Relevant docs in the top k divided by k (by the run length when ``k`` is None)."""
    _check_k(k)
    relevant = _relevant(query_qrels)
    top = ranked_ids(query_run, k)
    denominator = k if k is not None else len(top)
    if not relevant or denominator == 0:
        return 0.0
    return sum(1 for doc in top if doc in relevant) / denominator


def mrr_at_k(query_qrels: Mapping[str, int], query_run: Mapping[str, float], k: int | None) -> float:
    """Reciprocal rank of the first relevant doc within the top k, else 0.0."""
    _check_k(k)
    relevant = _relevant(query_qrels)
    for rank, doc in enumerate(ranked_ids(query_run, k), start=1):
        if doc in relevant:
            return 1.0 / rank
    return 0.0


METRICS: dict[str, QueryMetric] = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "mrr": mrr_at_k,
}

_METRIC_RE = re.compile(r"^(?P<name>[a-z]+)(?:@(?P<k>\d+))?$")


def parse_metric(metric: str) -> tuple[str, int | None]:
    """Split ``"ndcg@10"`` into ``("ndcg", 10)``; no ``@k`` means the whole ranking."""
    match = _METRIC_RE.match(metric.strip().lower())
    if match is None or match["name"] not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected NAME or NAME@K with NAME in {sorted(METRICS)}")
    k = int(match["k"]) if match["k"] is not None else None
    _check_k(k)
    return match["name"], k


# Per-query tables and means --------------------------------------------------------------------


def evaluable_queries(qrels: Qrels) -> list[str]:
    """Queries with at least one relevant doc: the only ones a mean is taken over."""
    return [query for query, judged in qrels.items() if any(rel >= 1 for rel in judged.values())]


def per_query(qrels: Qrels, run: Run, metric: str) -> dict[str, float]:
    """``{query: value}`` for every evaluable query; queries absent from the run score 0."""
    name, k = parse_metric(metric)
    fn = METRICS[name]
    empty: dict[str, float] = {}
    return {query: fn(qrels[query], run.get(query, empty), k) for query in evaluable_queries(qrels)}


def mean_metric(qrels: Qrels, run: Run, metric: str) -> float:
    """Mean of ``metric`` over evaluable queries; raises if there are none (an empty benchmark
    is a bug upstream, and a silent 0.0 would look like a real result)."""
    values = per_query(qrels, run, metric)
    if not values:
        raise ValueError("no query in qrels has a relevant document; nothing to evaluate")
    return math.fsum(values.values()) / len(values)


def mean_ndcg_at_k(qrels: Qrels, run: Run, k: int) -> float:
    return mean_metric(qrels, run, f"ndcg@{k}")


def mean_recall_at_k(qrels: Qrels, run: Run, k: int) -> float:
    return mean_metric(qrels, run, f"recall@{k}")


def mean_precision_at_k(qrels: Qrels, run: Run, k: int) -> float:
    return mean_metric(qrels, run, f"precision@{k}")


def mean_mrr_at_k(qrels: Qrels, run: Run, k: int) -> float:
    return mean_metric(qrels, run, f"mrr@{k}")


def evaluate(qrels: Qrels, run: Run, metrics: Iterable[str] = DEFAULT_METRICS) -> dict[str, float]:
    """``{metric: mean}`` for each metric name, e.g. ``"ndcg@10"``, ``"recall@100"``, ``"mrr@10"``.

    Run queries that are not in qrels are ignored; see the module docstring for conventions.
    """
    metric_list = list(metrics)
    unjudged = sum(1 for query in run if query not in qrels)
    if unjudged:
        logger.debug("ignoring %d run queries without qrels", unjudged)
    return {metric: mean_metric(qrels, run, metric) for metric in metric_list}


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) with linear interpolation, as ``numpy.percentile``'s default.

    Used for latency reports (p50/p95), where a nearest-rank jump on small samples misleads.
    """
    if not values:
        raise ValueError("percentile of an empty sequence is undefined")
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile p must be in [0, 100], got {p}")
    ordered = sorted(float(v) for v in values)
    position = (len(ordered) - 1) * p / 100.0
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    fraction = position - lower
    return ordered[lower] + (ordered[upper] - ordered[lower]) * fraction
