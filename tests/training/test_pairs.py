"""Pairs loading, the held-out split and pair generation (pure, fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_app.training.pairs import (
    CorpusPassage,
    TrainingData,
    clean_question,
    from_beir,
    from_pairs_file,
    from_squad,
    inverse_cloze_pairs,
    sentences,
    split_heldout,
    synthetic_pairs,
)

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _need(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"needs ../shared/data/{name} (looked in {path})")
    return path


def test_pairs_jsonl_with_texts_and_ids(tmp_path: Path) -> None:
    corpus = {"d1": CorpusPassage("d1", "Doc one", "The first document text.")}
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"question": "what is first?", "passage_id": "d1"},
        {"query": "what is second?", "passage": "The second passage text.", "title": "Two"},
        {"question": "what is first?", "text": "Another passage for the first question."},
    ]) + "\n")
    data = from_pairs_file(path, corpus)
    assert len(data.queries) == 2  # the repeated question is one query with two positives
    first = next(q for q, t in data.queries.items() if t == "what is first?")
    assert "d1" in data.qrels[first] and len(data.qrels[first]) == 2
    pairs = data.pairs()
    assert len(pairs) == 3
    assert any(p.positive_text == "Two\nThe second passage text." for p in pairs)


def test_pairs_csv_and_errors_name_the_line(tmp_path: Path) -> None:
    good = tmp_path / "pairs.csv"
    good.write_text("question,passage\nwho?,Someone did it.\nwhat?,Something happened.\n")
    assert len(from_pairs_file(good).pairs()) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "passage_id": "missing"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: passage id 'missing' is not in the corpus"):
        from_pairs_file(bad, {})
    empty = tmp_path / "noq.jsonl"
    empty.write_text(json.dumps({"passage": "text"}) + "\n")
    with pytest.raises(ValueError, match=r"noq.jsonl:1: no question"):
        from_pairs_file(empty)


def _data(n_groups: int = 10, per_group: int = 3) -> TrainingData:
    corpus = {f"p{g}": CorpusPassage(f"p{g}", f"T{g}", f"text {g}", group=f"g{g}") for g in range(n_groups)}
    queries, qrels, groups = {}, {}, {}
    for g in range(n_groups):
        for i in range(per_group):
            qid = f"q{g}_{i}"
            queries[qid] = f"question {g} {i}"
            qrels[qid] = {f"p{g}": 1}
            groups[qid] = f"g{g}"
    return TrainingData("toy", "toy", corpus, queries, qrels, groups)


def test_split_is_by_group_deterministic_and_excludes_held_out_passages() -> None:
    data = _data()
    a = split_heldout(data, 0.2, seed=13)
    b = split_heldout(data, 0.2, seed=13)
    assert a.held_out.qrels.keys() == b.held_out.qrels.keys()
    train_groups = {data.group_of(q) for q in a.train.qrels}
    held_groups = {data.group_of(q) for q in a.held_out.qrels}
    assert len(held_groups) == 2 and not train_groups & held_groups
    assert len(a.train.qrels) + len(a.held_out.qrels) == len(data.qrels)
    # passages of held-out groups are never trained on
    assert a.excluded == {f"p{g[1:]}" for g in held_groups}
    assert not a.excluded & {p for j in a.train.qrels.values() for p in j}
    assert any(split_heldout(data, 0.2, seed=s).held_out.qrels.keys() != a.held_out.qrels.keys()
               for s in range(14, 20))


def test_split_holds_out_at_least_one_group() -> None:
    data = _data(n_groups=3)
    split = split_heldout(data, 0.1)
    assert split.held_out.qrels and split.train.qrels


def test_inverse_cloze_removes_the_query_sentence() -> None:
    text = ("Cats sleep for most of the day in warm places. They hunt small animals at night when it is dark. "
            "Domestic cats live with people in many countries around the world. Their whiskers sense nearby objects.")
    corpus = {f"d{i}": CorpusPassage(f"d{i}", f"All about cats volume {i}", text) for i in range(20)}
    pairs = inverse_cloze_pairs(corpus, 10, seed=1, exclude={"d0"})
    assert len(pairs) == 10 and all(p.positive_id != "d0" for p in pairs)
    assert pairs == inverse_cloze_pairs(corpus, 10, seed=1, exclude={"d0"})
    for p in pairs:
        assert p.source == "self-supervised"
        if p.query.startswith("All about cats"):
            assert p.positive_text == text
        else:
            assert p.query in sentences(text)
            assert p.query not in p.positive_text
    assert any(not p.query.startswith("All about") for p in pairs)


def test_synthetic_pairs_use_the_llm_and_drop_bad_replies() -> None:
    corpus = {f"d{i}": CorpusPassage(f"d{i}", "", " ".join(["word"] * 40) + f" fact {i}.") for i in range(6)}
    seen: list[str] = []

    def complete(messages: list[dict[str, str]]) -> str:
        seen.append(messages[-1]["content"])
        return "ok" if len(seen) % 3 == 0 else "1. Question: What is the fact?\nexplanation"

    pairs = synthetic_pairs(corpus, 3, complete, seed=2)
    assert len(pairs) == 3 and all(p.query == "What is the fact?" for p in pairs)
    assert all(p.source == "synthetic" for p in pairs)
    assert all("Passage:" in s for s in seen)


def test_clean_question() -> None:
    assert clean_question('"Where is Paris?"') == "Where is Paris?"
    assert clean_question("- Question: when did it start?") == "when did it start?"
    assert clean_question("no") == ""


@pytest.mark.data
def test_scifact_train_split_sizes() -> None:
    data = from_beir(_need("scifact"), "train")
    split = split_heldout(data, 0.2, 13)
    assert len(data.qrels) == 809
    assert (len(split.train.qrels), len(split.held_out.qrels)) == (647, 162)
    held_pos = {p for j in split.held_out.qrels.values() for p in j}
    assert split.excluded <= held_pos


@pytest.mark.data
def test_squad_split_by_article() -> None:
    data = from_squad(_need("squad2-dev"))
    assert all(len(j) == 1 for j in data.qrels.values())
    split = split_heldout(data, 0.2, 13)
    train_titles = {data.group_of(q) for q in split.train.qrels}
    held_titles = {data.group_of(q) for q in split.held_out.qrels}
    assert held_titles and not train_titles & held_titles
    held_passages = {pid for pid, p in data.corpus.items() if p.group in held_titles}
    assert held_passages <= split.excluded
    assert not {p for j in split.train.qrels.values() for p in j} & split.excluded
