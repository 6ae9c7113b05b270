from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag_app.config import IndexConfig
from rag_app.index.dense import DenseIndex, choose_kind, exact_search


def _data(n: int = 500, dim: int = 32, q: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    queries = rng.normal(size=(q, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ids = rng.choice(2**62, size=n, replace=False).astype(np.int64)
    return x, ids, queries


def _brute(x: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> list[list[int]]:
    sims = queries @ x.T
    return [[int(ids[j]) for j in np.argsort(-row, kind="stable")[:k]] for row in sims]


def test_flat_equals_numpy_brute_force() -> None:
    x, ids, queries = _data()
    index = DenseIndex.build(x, ids, IndexConfig(index_type="flat"), dim=32)
    scores, got = index.search(queries, 10)
    assert [list(map(int, row)) for row in got] == _brute(x, ids, queries, 10)
    np.testing.assert_allclose(scores[:, 0], np.max(queries @ x.T, axis=1), rtol=1e-5)


def test_exact_search_matches_brute_force() -> None:
    x, ids, queries = _data(seed=3)
    _, got = exact_search(x, ids, queries, 7)
    assert [list(map(int, row)) for row in got] == _brute(x, ids, queries, 7)


def test_exclude_removes_ids_from_results() -> None:
    x, ids, queries = _data()
    index = DenseIndex.build(x, ids, IndexConfig(index_type="flat"), dim=32)
    top = _brute(x, ids, queries, 10)
    excluded = frozenset(row[0] for row in top)
    _, got = index.search(queries, 10, exclude=excluded)
    for row, expected in zip(got, top, strict=True):
        assert not excluded & set(map(int, row))
        assert int(row[0]) == expected[1] or expected[1] in excluded


def test_remove_flat_and_save_load_roundtrip(tmp_path: Path) -> None:
    x, ids, queries = _data()
    index = DenseIndex.build(x, ids, IndexConfig(index_type="flat"), dim=32)
    index.remove(ids[:100])
    path = tmp_path / "dense.faiss"
    index.save(path)
    loaded = DenseIndex.load(path, "flat", 32, IndexConfig())
    assert loaded.size == 400
    _, got = loaded.search(queries, 5)
    assert [list(map(int, r)) for r in got] == _brute(x[100:], ids[100:], queries, 5)
    assert not list(tmp_path.glob("*.tmp"))


def test_hnsw_recall_is_high_and_cannot_remove() -> None:
    x, ids, queries = _data(n=2000)
    index = DenseIndex.build(x, ids, IndexConfig(index_type="hnsw"), dim=32)
    _, got = index.search(queries, 10)
    truth = _brute(x, ids, queries, 10)
    recall = np.mean([len(set(map(int, g)) & set(t)) / 10 for g, t in zip(got, truth, strict=True)])
    assert recall > 0.9
    with pytest.raises(NotImplementedError):
        index.remove(ids[:1])


def _recall(got: np.ndarray, truth: list[list[int]]) -> float:
    return float(np.mean([len(set(map(int, g)) & set(t)) / len(t) for g, t in zip(got, truth, strict=True)]))


def test_ivfpq_rescores_exactly_from_memory_mapped_vectors(tmp_path: Path) -> None:
    """Coarse codes (4 bytes for 32 dims) alone lose most neighbours; re-scoring more PQ candidates with
    the exact vectors gets them back, the scores returned are exact inner products, and a loaded index
    (exact vectors memory-mapped) returns the same as the built one."""
    x, ids, queries = _data(n=3000, dim=32)
    truth = _brute(x, ids, queries, 10)
    exact = dict(zip(map(int, ids), range(len(ids)), strict=True))
    recalls = {}
    for refine in (1.0, 8.0):
        cfg = IndexConfig(index_type="ivfpq", pq_m=4, ivf_nprobe=64, ivf_refine=refine)
        index = DenseIndex.build(x, ids, cfg, dim=32)
        scores, got = index.search(queries, 10)
        recalls[refine] = _recall(got, truth)
        for row_s, row_i, q in zip(scores, got, queries, strict=True):
            np.testing.assert_allclose(row_s, x[[exact[int(i)] for i in row_i]] @ q, rtol=1e-5, atol=1e-6)
    assert recalls[8.0] > recalls[1.0] + 0.2 and recalls[8.0] >= 0.85, recalls
    path = tmp_path / "dense.faiss"
    index.save(path)
    loaded = DenseIndex.load(path, "ivfpq", 32, cfg)
    again_s, again_i = loaded.search(queries, 10)
    np.testing.assert_array_equal(again_i, got)
    np.testing.assert_allclose(again_s, scores, rtol=1e-6)
    with pytest.raises(NotImplementedError):
        loaded.remove(ids[:1])


def test_auto_kind_switches_at_threshold() -> None:
    cfg = IndexConfig(index_type="auto", ann_threshold=1000)
    assert choose_kind(cfg, 999) == "flat"
    assert choose_kind(cfg, 1000) == "hnsw"
    assert choose_kind(IndexConfig(index_type="ivfpq"), 10) == "ivfpq"


def test_single_query_search_uses_one_thread_locally_and_restores_it() -> None:
    import threading

    import faiss

    from rag_app.index.dense import single_query_threads

    x, ids, queries = _data(seed=5)
    index = DenseIndex.build(x, ids, IndexConfig(index_type="flat"), dim=32)
    _, batch = index.search(queries, 5)
    singles = [index.search(queries[i : i + 1], 5)[1][0].tolist() for i in range(len(queries))]
    assert singles == batch.tolist()

    def in_other_thread() -> int:
        got: list[int] = []
        worker = threading.Thread(target=lambda: got.append(faiss.omp_get_max_threads()))
        worker.start()
        worker.join()
        return got[0]

    faiss.omp_set_num_threads(2)
    seen: dict[str, int] = {"other_thread_before": in_other_thread()}
    with single_query_threads(1):
        seen["inside"] = faiss.omp_get_max_threads()
        seen["other_thread_inside"] = in_other_thread()
    seen["after"] = faiss.omp_get_max_threads()
    with single_query_threads(8):
        seen["batch"] = faiss.omp_get_max_threads()
    assert seen["inside"] == 1
    assert seen["other_thread_inside"] == seen["other_thread_before"]  # the setting is the caller's alone
    assert seen["after"] == seen["batch"] == 2
