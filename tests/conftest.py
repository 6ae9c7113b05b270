"""Shared fixtures; and under CI=true, a data or browser test that skipped fails the run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
MUST_NOT_SKIP_UNDER_CI = ("shared/data", "shared_data", "chromium", "playwright", "llama", "gguf")

_skipped: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append((report.nodeid, reason))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI", "").lower() != "true":
        return
    bad = [(n, r) for n, r in _skipped if any(key in r.lower() for key in MUST_NOT_SKIP_UNDER_CI)]
    if bad:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("CI=true: these tests must run in CI but were skipped:", red=True)
            for nodeid, reason in bad:
                reporter.write_line(f"  {nodeid}: {reason}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs ../shared/data (looked in {SHARED_DATA})")
    return SHARED_DATA


@pytest.fixture(scope="session")
def encoder() -> Iterator[object]:
    """One loaded packaged MiniLM for the whole session (loading takes seconds)."""
    from rag_app.config import ModelConfig
    from rag_app.encoders import BiEncoder

    enc = BiEncoder(ModelConfig())
    enc.warm_up()
    yield enc
