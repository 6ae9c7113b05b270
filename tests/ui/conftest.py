"""Fixtures for the UI tests: small documents, a data dir filled through the library, the page under AppTest.

The data dir is filled with `RagPipeline.ingest` (the packaged MiniLM, no LLM), exactly as the
CLI would; the page then opens the same dir through RAG_APP_DATA_DIR with the fake chat model
(RAG_APP_UI_FAKE_LLM=1), so nothing here patches library internals.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APP_PATH = REPO / "rag_app" / "ui" / "app.py"

LIGHTHOUSE_MD = """# Skerryvore lighthouse

The Skerryvore lighthouse was completed in 1844 by the engineer Alan Stevenson. It stands on a remote
reef twelve miles south-west of Tiree, in the Inner Hebrides of Scotland. The tower is 48 metres tall
and was built from granite blocks quarried on the island of Mull. Keepers lived in the tower in shifts
of six weeks, and supplies arrived by boat from the shore station at Hynish. The light was automated
in 1994 and is now monitored remotely.
"""

SCRIPT_TXT = """The Zanzibar release protocol <script>alert(1)</script> requires two signatures before any payment
is released. Each signature must come from a different department, and the finance office keeps the
signed forms for seven years. Requests above ten thousand euros also need the approval of the board.
The protocol was introduced after an audit in 2019 found that single approvals had let errors through.
"""

GARDEN_MD = """# Quince orchard

The old quince orchard behind the mill was planted by the miller Tobias Renn in 1902. Its twelve trees
still fruit every October, and the village makes a dark quince paste from the harvest each year. The
orchard is watered from the mill race, which was restored by volunteers in 2011.
"""


def write_docs(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    lighthouse = folder / "lighthouse.md"
    lighthouse.write_text(LIGHTHOUSE_MD, encoding="utf-8")
    script = folder / "protocol.txt"
    script.write_text(SCRIPT_TXT, encoding="utf-8")
    return [lighthouse, script]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No RAG_APP_*/OPENAI_* setting of the developer's shell leaks in; models stay offline."""
    for name in list(os.environ):
        if name.startswith(("RAG_APP_", "OPENAI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield
    import streamlit as st

    st.cache_resource.clear()  # the next test gets a fresh pipeline for its own data dir


@pytest.fixture
def texts() -> dict[str, str]:
    """The sample document texts, by file name."""
    return {"lighthouse.md": LIGHTHOUSE_MD, "protocol.txt": SCRIPT_TXT, "quince.md": GARDEN_MD}


@pytest.fixture
def app_path() -> Path:
    return APP_PATH


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir holding lighthouse.md and protocol.txt; the page is pointed at it with the fake LLM."""
    from rag_app.pipeline import PipelineConfig, RagPipeline

    data = tmp_path / "data"
    pipeline = RagPipeline(PipelineConfig(data_dir=data), use_embedded_llm=False)
    try:
        report = pipeline.ingest(write_docs(tmp_path / "docs"))
    finally:
        pipeline.close()
    assert report.documents_added == 2, report
    monkeypatch.setenv("RAG_APP_DATA_DIR", str(data))
    monkeypatch.setenv("RAG_APP_UI_FAKE_LLM", "1")
    return data
