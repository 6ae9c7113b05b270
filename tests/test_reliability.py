"""Crash safety (SIGKILL during ingest), concurrent queries during ingest, update and delete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from rag_app.encoders import BiEncoder
from rag_app.pipeline import PipelineConfig, RagPipeline

TOPICS = ["astronomy", "baking", "cycling", "dentistry", "electronics", "falconry", "geology", "harpsichords",
          "irrigation", "juggling", "knitting", "lighthouses", "metallurgy", "navigation", "origami", "pottery"]


def _make_files(folder: Path, topics: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for topic in topics:
        path = folder / f"{topic}.txt"
        sentences = [f"This document is about {topic} and nothing else, part {i}. "
                     f"Experts in {topic} agree that practice number {i} matters." for i in range(40)]
        path.write_text(" ".join(sentences), encoding="utf-8")
        paths.append(path)
    return paths


def _assert_consistent(pipeline: RagPipeline) -> None:
    """Every stored document is fully searchable in both indexes; nothing half-present."""
    snap = pipeline.indexes.snapshot()
    assert snap is not None
    dense_ids = set(snap.dense.ids().tolist()) - set(snap.deleted) | set(snap.hot_vids.tolist())
    bm25_ids = set(snap.lexical.vids.tolist())
    for doc in pipeline.documents():
        passages = pipeline.store.passages_of(doc.id)
        assert len(passages) == doc.n_passages > 0
        for p in passages:
            assert p.vid in dense_ids, f"{doc.name}: passage missing from dense index"
            assert p.vid in bm25_ids, f"{doc.name}: passage missing from BM25"
    report = pipeline.check()
    assert report.ok, report.problems


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from rag_app.index.versions import IndexVersions
    from rag_app.pipeline import PipelineConfig, RagPipeline
    from rag_app.store import Store

    # Test hooks: slow the commits and the publish down so a kill lands inside them.
    real_add, real_publish = Store.add_document, IndexVersions.publish
    def slow_add(self, *a, **k):
        real_add(self, *a, **k)
        time.sleep(0.15)
    def slow_publish(self, *a, **k):
        time.sleep(0.3)
        real_publish(self, *a, **k)
    Store.add_document, IndexVersions.publish = slow_add, slow_publish

    data, folder, ready = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    pipeline = RagPipeline(PipelineConfig(data_dir=data), use_embedded_llm=False)
    pipeline.encoder.warm_up()
    ready.write_text("ready")
    pipeline.ingest([folder])
""")


@pytest.mark.slow
def test_sigkill_during_ingest_leaves_a_usable_index(tmp_path: Path, encoder: BiEncoder) -> None:
    data = tmp_path / "data"
    committed = _make_files(tmp_path / "committed", TOPICS[:3])
    base = RagPipeline(PipelineConfig(data_dir=data), encoder=encoder, use_embedded_llm=False)
    base.ingest(committed)
    committed_names = {d.name for d in base.documents()}
    base.close()
    script = tmp_path / "ingest_and_die.py"
    script.write_text(KILL_SCRIPT)
    batches = [TOPICS[3:6], TOPICS[6:9], TOPICS[9:12], TOPICS[12:16]]
    delays = [0.05, 0.4, 0.8, 1.6]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for round_no, (topics, delay) in enumerate(zip(batches, delays, strict=True)):
        folder = _make_files(tmp_path / f"batch{round_no}", topics)[0].parent
        ready = tmp_path / f"ready{round_no}"
        proc = subprocess.Popen([sys.executable, str(script), str(data), str(folder), str(ready)], env=env)
        try:
            deadline = time.time() + 120
            while not ready.exists() and proc.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        restarted = RagPipeline(PipelineConfig(data_dir=data), encoder=encoder, use_embedded_llm=False)
        names = {d.name for d in restarted.documents()}
        assert committed_names <= names, "a previously committed document was lost"
        _assert_consistent(restarted)
        hits = restarted.search("astronomy experts", mode="hybrid", k=3).candidates
        assert hits and hits[0].passage.doc_name == "astronomy.txt"
        restarted.close()
    # A final ingest of everything completes whatever the kills interrupted.
    final = RagPipeline(PipelineConfig(data_dir=data), encoder=encoder, use_embedded_llm=False)
    final.ingest([tmp_path / f"batch{i}" for i in range(4)])
    assert len(final.documents()) == 16
    _assert_consistent(final)


def test_queries_during_ingest_never_fail(tmp_path: Path, encoder: BiEncoder) -> None:
    pipeline = RagPipeline(PipelineConfig(data_dir=tmp_path / "data"), encoder=encoder, use_embedded_llm=False)
    pipeline.ingest(_make_files(tmp_path / "first", TOPICS[:2]))
    errors: list[BaseException] = []
    results: list[int] = []
    stop = threading.Event()

    def query() -> None:
        while not stop.is_set():
            try:
                for mode in ("bm25", "dense", "hybrid"):
                    result = pipeline.retriever.search("experts agree on practice", mode=mode, k=5)
                    for c in result.candidates:
                        assert c.passage.text  # fully formed, never torn
                    results.append(len(result.candidates))
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
                return

    readers = [threading.Thread(target=query) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for i in range(3):
            pipeline.ingest(_make_files(tmp_path / f"more{i}", TOPICS[2 + 3 * i : 5 + 3 * i]))
        pipeline.delete("astronomy.txt")
    finally:
        stop.set()
        for t in readers:
            t.join(timeout=60)
    assert not errors, errors[:3]
    assert len(results) > 10 and all(n > 0 for n in results)
    assert len(pipeline.documents()) == 10
    _assert_consistent(pipeline)


def test_check_detects_and_repairs_a_damaged_index(tmp_path: Path, encoder: BiEncoder) -> None:
    pipeline = RagPipeline(PipelineConfig(data_dir=tmp_path / "data"), encoder=encoder, use_embedded_llm=False)
    pipeline.ingest(_make_files(tmp_path / "f", TOPICS[:2]))
    current = pipeline.indexes.versions.current()
    assert current is not None
    (current / "dense.faiss").write_bytes(b"garbage")
    report = pipeline.check()
    assert not report.ok and any("unusable" in p for p in report.problems)
    repaired = pipeline.check(repair=True)
    assert repaired.repaired
    assert pipeline.check().ok
    fresh = RagPipeline(PipelineConfig(data_dir=tmp_path / "data"), encoder=encoder, use_embedded_llm=False)
    assert fresh.search("baking experts", mode="dense", k=1).candidates[0].passage.doc_name == "baking.txt"
