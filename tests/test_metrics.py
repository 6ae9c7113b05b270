"""Metrics: hand-computed values, conventions, and agreement with ranx on random runs."""

from __future__ import annotations

import math
import random
import warnings
from typing import Any

import pytest

from rag_app.metrics import (
    evaluate,
    mean_mrr_at_k,
    mean_ndcg_at_k,
    mean_precision_at_k,
    mean_recall_at_k,
    mrr_at_k,
    ndcg_at_k,
    per_query,
    percentile,
    precision_at_k,
    ranked_ids,
    recall_at_k,
)

# q1 ranking by score: d2 (0.9), d3 (0.8), d5 (0.7), d1 (0.1), d4 (0.05)
#          grades:       1        0        -        2        1
# q2 retrieves nothing relevant; q3 has no relevant doc (grade 0 only) and is never averaged.
QRELS: dict[str, dict[str, int]] = {
    "q1": {"d1": 2, "d2": 1, "d3": 0, "d4": 1},
    "q2": {"d9": 1},
    "q3": {"d5": 0},
}
RUN: dict[str, dict[str, float]] = {
    "q1": {"d1": 0.1, "d2": 0.9, "d3": 0.8, "d5": 0.7, "d4": 0.05},
    "q2": {"d8": 1.0, "d7": 0.5},
    "q3": {"d5": 1.0},
}

# DCG@5(q1)  = 1/log2(2) + 0 + 0 + 2/log2(5) + 1/log2(6)
#            = 1 + 0.8613531161 + 0.3868528072 = 2.2482059234
# IDCG@5(q1) = grades [2, 1, 1] -> 2/log2(2) + 1/log2(3) + 1/log2(4)
#            = 2 + 0.6309297536 + 0.5 = 3.1309297536
NDCG5_Q1 = 0.7180633550838357  # 2.2482059234 / 3.1309297536
NDCG3_Q1 = 0.31939394323979897  # DCG@3 = 1, IDCG@3 = 3.1309297536


def test_ranked_ids_sorts_desc_and_keeps_insertion_order_on_ties() -> None:
    assert ranked_ids(RUN["q1"]) == ["d2", "d3", "d5", "d1", "d4"]
    assert ranked_ids(RUN["q1"], 2) == ["d2", "d3"]
    assert ranked_ids({"b": 1.0, "a": 1.0, "c": 2.0}) == ["c", "b", "a"]


def test_ndcg_hand_computed() -> None:
    assert ndcg_at_k(QRELS["q1"], RUN["q1"], 5) == pytest.approx(NDCG5_Q1, abs=1e-12)
    assert ndcg_at_k(QRELS["q1"], RUN["q1"], 10) == pytest.approx(NDCG5_Q1, abs=1e-12)
    assert ndcg_at_k(QRELS["q1"], RUN["q1"], 3) == pytest.approx(NDCG3_Q1, abs=1e-12)
    assert ndcg_at_k(QRELS["q1"], RUN["q1"], None) == pytest.approx(NDCG5_Q1, abs=1e-12)
    assert ndcg_at_k(QRELS["q2"], RUN["q2"], 10) == 0.0
    assert ndcg_at_k(QRELS["q3"], RUN["q3"], 10) == 0.0
    # Linear gain, not 2^rel - 1: a single grade-3 doc at rank 2 of 2 -> (3/log2 3) / (3/1)
    assert ndcg_at_k({"x": 3}, {"y": 2.0, "x": 1.0}, 10) == pytest.approx(1 / math.log2(3))
    # Ideal DCG is cut at k too: 3 relevant, k = 1, top-1 is the grade-2 doc -> 2/2 = 1.
    assert ndcg_at_k(QRELS["q1"], {"d1": 1.0}, 1) == 1.0


def test_recall_precision_mrr_hand_computed() -> None:
    # q1 relevant = {d1, d2, d4}; top-3 = d2, d3, d5 -> 1 hit
    assert recall_at_k(QRELS["q1"], RUN["q1"], 3) == pytest.approx(1 / 3)
    assert recall_at_k(QRELS["q1"], RUN["q1"], 5) == 1.0
    assert precision_at_k(QRELS["q1"], RUN["q1"], 3) == pytest.approx(1 / 3)
    # precision divides by k even though only 5 docs were retrieved: 3 / 10
    assert precision_at_k(QRELS["q1"], RUN["q1"], 10) == pytest.approx(0.3)
    assert precision_at_k(QRELS["q1"], RUN["q1"], None) == pytest.approx(3 / 5)
    assert mrr_at_k(QRELS["q1"], RUN["q1"], 10) == 1.0
    # first relevant at rank 3 -> 1/3; cut at 2 -> 0
    run = {"x": 3.0, "y": 2.0, "a": 1.0}
    assert mrr_at_k({"a": 1}, run, 10) == pytest.approx(1 / 3)
    assert mrr_at_k({"a": 1}, run, 2) == 0.0
    # grade 0 is not relevant
    assert mrr_at_k({"x": 0, "a": 1}, run, 10) == pytest.approx(1 / 3)


def test_ties_follow_insertion_order() -> None:
    assert mrr_at_k({"b": 1}, {"a": 1.0, "b": 1.0}, 10) == 0.5
    assert mrr_at_k({"b": 1}, {"b": 1.0, "a": 1.0}, 10) == 1.0


def test_means_and_evaluate() -> None:
    # Evaluable queries: q1, q2 (q3 has no relevant doc). q2 scores 0 everywhere.
    assert mean_ndcg_at_k(QRELS, RUN, 5) == pytest.approx(NDCG5_Q1 / 2, abs=1e-12)
    assert mean_recall_at_k(QRELS, RUN, 3) == pytest.approx((1 / 3) / 2)
    assert mean_precision_at_k(QRELS, RUN, 10) == pytest.approx(0.3 / 2)
    assert mean_mrr_at_k(QRELS, RUN, 10) == 0.5
    assert per_query(QRELS, RUN, "recall@5") == {"q1": 1.0, "q2": 0.0}
    result = evaluate(QRELS, RUN)
    assert set(result) == {"ndcg@10", "recall@10", "recall@100", "mrr@10"}
    assert result["ndcg@10"] == pytest.approx(NDCG5_Q1 / 2, abs=1e-12)
    assert result["recall@10"] == 0.5
    assert result["recall@100"] == 0.5
    assert result["mrr@10"] == 0.5


def test_query_missing_from_run_counts_as_zero() -> None:
    qrels = {"q1": {"d2": 1}, "q_missing": {"z": 1}}
    run = {"q1": {"d2": 1.0}, "q_not_judged": {"d2": 1.0}}
    # q1 = 1, q_missing = 0 -> mean 0.5; q_not_judged is ignored.
    assert evaluate(qrels, run, ["mrr@10", "ndcg@10"]) == {"mrr@10": 0.5, "ndcg@10": 0.5}


def test_metric_name_errors() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(QRELS, RUN, ["map@10"])
    with pytest.raises(ValueError, match="k must be"):
        evaluate(QRELS, RUN, ["ndcg@0"])
    with pytest.raises(ValueError, match="no query"):
        evaluate({"q": {"d": 0}}, RUN, ["ndcg@10"])
    # no cutoff = the whole ranking
    assert evaluate(QRELS, RUN, ["recall"]) == {"recall": 0.5}


def test_percentile() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    # sorted [1, 2, 3, 4]; position = 3 * p / 100
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5  # position 1.5 -> 2 + 0.5 * (3 - 2)
    assert percentile(values, 95) == pytest.approx(3.85)  # position 2.85 -> 3 + 0.85
    assert percentile(values, 100) == 4.0
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_percentile_matches_numpy() -> None:
    np = pytest.importorskip("numpy")
    rng = random.Random(3)
    for _ in range(20):
        values = [rng.uniform(0, 100) for _ in range(rng.randint(1, 50))]
        for p in (0, 1, 25, 50, 90, 95, 99, 100):
            assert percentile(values, p) == pytest.approx(float(np.percentile(values, p)), abs=1e-9)


# --- agreement with ranx ------------------------------------------------------------------------


def _random_benchmark(seed: int) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    """Graded qrels (every query has >= 1 relevant doc) and a run with distinct scores.

    Scores are distinct because ranx's tie order is arbitrary for long lists (unstable sort);
    some queries are missing from the run and some runs are shorter than the cutoffs.
    """
    rng = random.Random(seed)
    pool = [f"doc{i:03d}" for i in range(120)]
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for qi in range(60):
        query = f"q{qi}"
        judged = rng.sample(pool, rng.randint(1, 12))
        grades = {doc: rng.choice([0, 1, 1, 2, 3]) for doc in judged}
        grades[judged[0]] = rng.randint(1, 3)
        qrels[query] = grades
        if rng.random() < 0.1:
            continue  # missing from the run
        retrieved = rng.sample(pool, rng.randint(1, 110))
        # bias: put some relevant docs in so metrics are not all ~0
        retrieved += [doc for doc in judged if doc not in retrieved and rng.random() < 0.5]
        run[query] = {doc: rng.random() for doc in retrieved}
    return qrels, run


@pytest.fixture(scope="module")
def ranx_module() -> Any:
    try:
        import ranx
    except Exception as exc:  # noqa: BLE001  # pragma: no cover - depends on the environment
        pytest.skip(f"ranx is not importable ({exc}); cannot cross-check metrics")
    return ranx


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_agrees_with_ranx(ranx_module: Any, seed: int) -> None:
    qrels, run = _random_benchmark(seed)
    metrics = [
        "ndcg@1",
        "ndcg@5",
        "ndcg@10",
        "ndcg@100",
        "recall@1",
        "recall@10",
        "recall@100",
        "precision@5",
        "precision@10",
        "mrr@10",
        "mrr@100",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r_qrels = ranx_module.Qrels(qrels)
        r_run = ranx_module.Run(run)
        expected_mean = ranx_module.evaluate(r_qrels, r_run, metrics, make_comparable=True)
        expected_per_query = ranx_module.evaluate(
            r_qrels,
            ranx_module.Run(run).make_comparable(r_qrels),
            metrics,
            return_mean=False,
        )
    ours = evaluate(qrels, run, metrics)
    for metric in metrics:
        assert ours[metric] == pytest.approx(float(expected_mean[metric]), abs=1e-6), metric
        table = per_query(qrels, run, metric)
        # ranx returns per-query arrays in sorted query-id order.
        for query, value in zip(sorted(qrels), expected_per_query[metric], strict=True):
            assert table[query] == pytest.approx(float(value), abs=1e-6), (metric, query)
