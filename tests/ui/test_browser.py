"""End to end in a real browser: `streamlit run` as a subprocess, driven by Playwright on Debian chromium.

Upload a document through the file input, ask about it, open a citation and check the passage and
its per-stage scores are visible; a second test checks that a passage holding a <script> tag is
shown as text and never runs. Screenshots go to the pytest tmp dir (their paths are printed).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
APP = REPO / "rag_app" / "ui" / "app.py"
SHARED_DOCS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "docs"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HEALTH_TIMEOUT_S = 60
FIRST_ANSWER_TIMEOUT_MS = 120_000  # models load on first use
STEP_TIMEOUT_MS = 30_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install -y chromium)"),
]

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = playwright_api.expect

FALLBACK_DOC = """CHAPTER I

"Well, Prince, so Genoa and Lucca are now just family estates of the Buonapartes," said the hostess.

It was in July, 1805, and the speaker was the well-known Anna Pavlovna Scherer, maid of honor and
favorite of the Empress Marya Fedorovna. With these words she greeted Prince Vasili Kuragin, a man of
high rank and importance, who was the first to arrive at her reception in St. Petersburg. Anna Pavlovna
had had a cough for some days; she said she was suffering from la grippe.
"""

XSS_DOC = """The Zanzibar release protocol <script>alert(1)</script> requires two signatures before any payment
is released. Each signature must come from a different department, and the finance office keeps the
signed forms for seven years. Requests above ten thousand euros also need the approval of the board.
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def war_and_peace(tmp: Path) -> Path:
    """The shared sample chapter, else the copy shipped in data/sample, else a generated stand-in."""
    for candidate in (SHARED_DOCS / "war_and_peace_ch1.txt", REPO / "data" / "sample" / "war_and_peace_ch1.txt"):
        if candidate.is_file():
            return candidate
    path = tmp / "war_and_peace_ch1.txt"
    path.write_text(FALLBACK_DOC, encoding="utf-8")
    return path


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"streamlit not healthy after {HEALTH_TIMEOUT_S} s:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`streamlit run` on a free port over an empty data dir, with the fake chat model; always stopped."""
    root = tmp_path_factory.mktemp("ui_server")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_APP_", "OPENAI_"))}
    env.update(RAG_APP_DATA_DIR=str(root / "data"), RAG_APP_UI_FAKE_LLM="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "streamlit.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
        try:
            wait_healthy(url, proc, log)
            print(f"streamlit log: {log}")
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def page(server: str) -> Iterator[Any]:
    """A fresh browser (default temporary profile) and page per test, i.e. a new Streamlit session."""
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1300})
            context.set_default_timeout(STEP_TIMEOUT_MS)
            page = context.new_page()
            page.goto(server)
            yield page
        finally:
            browser.close()


def upload(page: Any, path: Path) -> None:
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(path))
    page.get_by_text(re.compile(r"(Added|Updated) \d+ document")).wait_for(timeout=FIRST_ANSWER_TIMEOUT_MS)


def ask_and_open_citation(page: Any, question: str) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    box.press("Enter")
    chip = page.get_by_role("radiogroup", name="Sources").get_by_role("radio", name="[1]")
    chip.wait_for(timeout=FIRST_ANSWER_TIMEOUT_MS)
    chip.click()
    page.get_by_text("BM25 score").wait_for()


def test_upload_ask_and_inspect_a_citation(page: Any, tmp_path: Path) -> None:
    doc = war_and_peace(tmp_path)
    upload(page, doc)
    expect(page.get_by_test_id("stSidebar").locator("strong", has_text=doc.name)).to_be_visible()  # listed

    ask_and_open_citation(page, "Who is Anna Pavlovna?")
    assistant = page.get_by_test_id("stChatMessage").last
    expect(assistant).to_contain_text("[1]")
    expect(assistant.get_by_text(re.compile("Answered by fake-quote-llm"))).to_be_visible()
    expect(assistant.get_by_text(f"[1] {doc.name}")).to_be_visible()  # the opened passage names its document
    expect(assistant.get_by_text(re.compile("Anna Pavlovna Scherer")).first).to_be_visible()  # and shows its text
    for label in ("BM25 score", "Dense score", "Fused score", "Rerank score"):
        expect(assistant.get_by_text(label, exact=True)).to_be_visible()
    expect(assistant.get_by_text(re.compile(r"^rank \d+$")).first).to_be_visible()

    shot = tmp_path / "ui_answer.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")

    page.get_by_text(re.compile(r"^Cost per stage")).click()
    chart = page.get_by_test_id("stVegaLiteChart")
    chart.scroll_into_view_if_needed()
    chart.locator("canvas, svg").first.wait_for()
    page.wait_for_timeout(1000)  # let the chart finish drawing
    costs = tmp_path / "ui_costs.png"
    chart.screenshot(path=str(costs))
    print(f"screenshot: {costs}")


def test_script_in_a_passage_is_shown_as_text(page: Any, tmp_path: Path) -> None:
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    doc = tmp_path / "zanzibar_protocol.txt"
    doc.write_text(XSS_DOC, encoding="utf-8")
    upload(page, doc)

    ask_and_open_citation(page, "What does the Zanzibar release protocol require?")
    shown = page.get_by_test_id("stChatMessage").last.get_by_text("<script>alert(1)</script>", exact=False)
    expect(shown).to_have_count(2)  # in the quoted answer and in the opened passage
    expect(shown.first).to_be_visible()
    expect(shown.last).to_be_visible()
    assert page.locator("script", has_text="alert(1)").count() == 0
    assert dialogs == []
    shot = tmp_path / "ui_escaped.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
