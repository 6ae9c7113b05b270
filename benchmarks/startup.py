"""Start-up benchmark: `rag-app ui` from launch to the first cited answer, as a user sees it in a browser.

The bundled sample corpus (data/sample) is ingested into a temporary data dir with `rag-app ingest`
(timed apart as ingest_s, not part of start-up; it includes the one-time ONNX export; an index already
in --data-dir is reused). Then `rag-app --data-dir D ui --port P` is launched and driven with Playwright
on Debian chromium (headless, the browser tests' flags, a fresh profile). The browser is started before
the app, as a user's would be. Every *_s figure except second_* is seconds from just before the app's
Popen:

- server_up_s: the Streamlit server answers /_stcore/health;
- chat_ready_s: the page shows an enabled chat input (the pipeline is open: index and encoder loaded);
- first_token_s: the first question is typed as soon as the input is ready; its answer's first text shows;
- first_answer_s: that answer is rendered in full ("Answered by …", citation chips, candidates). The
  default generator (the embedded llama.cpp SmolLM2 server, started by the app) starts within this;
- second_answer_s / second_first_token_s: a second question, warm, from its submission.

Page events are timestamped in the page (Date.now(), polled every 20 ms) against the wall clock taken
before Popen, so they do not include the benchmark's own reaction time. Peak RSS sums the resident sets of
the app's process group (rag-app launcher, streamlit, llama.cpp server), sampled from /proc every 0.2 s.
RAG_APP_* and OPENAI_* variables are not passed to the app unless --keep-env, so the defaults are measured.

Usage:
    python benchmarks/startup.py [--data-dir DIR] [--port P] [--question Q] [--second-question Q]
        [--timeout-s 600] [--keep-env] [--chromium /usr/bin/chromium] [--screenshot PNG] [--out FILE]

Linux only (/proc). Prints one JSON document; on a failure it still does, with "error" and the app's
log tail, and exits 1. The app's whole process group is always stopped and temporary folders removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
CHROMIUM = Path("/usr/bin/chromium")
# The same flags as tests/ui/test_browser.py.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Both answered by the sample corpus (data/sample/README.md): the DOCX handbook, the HTML address.
QUESTION = "What does the United States Trustee supervise?"
SECOND_QUESTION = "What did Lincoln say about a new birth of freedom?"
POLL_MS = 20
WAIT_SLICE_MS = 2000  # page waits are cut into slices to notice an app that died
RSS_INTERVAL_S = 0.2
STOP_TIMEOUT_S = 10.0
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# A Streamlit exception box on the page: returned as an error instead of waiting for the timeout.
_JS_EXCEPTION = """
    const exc = document.querySelector('[data-testid="stException"]');
    if (exc) return {error: exc.innerText.trim().slice(0, 1000)};
"""

# The chat input is shown, enabled and current (not a stale element of an earlier script run).
JS_CHAT_READY = "() => {" + _JS_EXCEPTION + """
    const box = document.querySelector('[data-testid="stChatInputTextArea"]');
    if (!box || box.disabled || box.closest('[data-stale="true"]')) return false;
    const rect = box.getBoundingClientRect();
    return rect.width > 0 && rect.height > 0 ? {t: Date.now()} : false;
}"""

# The n-th assistant message: records when its first text shows (in window state, so it survives
# wait slices), returns once it is complete: the "Answered by" caption, the citation chips (the pills
# keyed cite-<id>, drawn with at least one chip) when the answer has any, and the "Cost per stage"
# expander, which render_answer draws last.
JS_ANSWER = "({n, key}) => {" + _JS_EXCEPTION + """
    const live = (el) => !el.closest('[data-stale="true"]');
    const state = (window.__startupBench = window.__startupBench || {});
    const messages = [...document.querySelectorAll('[data-testid="stChatMessage"]')]
        .filter((m) => m.querySelector('[data-testid="stChatMessageAvatarAssistant"]'));
    if (messages.length < n) return false;
    const msg = messages[n - 1];
    const texts = [...msg.querySelectorAll('[data-testid="stMarkdownContainer"], [data-testid="stCaptionContainer"]')]
        .filter(live).map((el) => el.innerText.trim()).filter((t) => t.length > 0);
    if (texts.length > 0 && !state[key]) state[key] = Date.now();
    const failed = texts.find((t) => t.startsWith('Could not answer'));
    if (failed) return {error: failed.slice(0, 1000)};
    const caption = texts.find((t) => t.startsWith('Answered by '));
    const costs = [...msg.querySelectorAll('[data-testid="stExpander"]')]
        .some((el) => live(el) && el.innerText.includes('Cost per stage'));  // after an icon's ligature text
    if (!caption || !costs) return false;
    const chips = [...msg.querySelectorAll('[class*="st-key-cite-"]')].filter(live);
    const citations = chips.flatMap((el) => [...el.querySelectorAll('[role="radio"]')])
        .map((el) => el.innerText.trim());
    if (chips.length > 0 && citations.length === 0) return false;  // the chips are still being drawn
    const notes = [...new Set(texts.filter((t) => t.startsWith('Note:')))];
    const answer = texts.find((t) => !t.startsWith('Answered by ')) || '';
    return {first: state[key], done: Date.now(), caption, citations, notes, text: answer.slice(0, 400)};
}"""

# The run has finished rendering: the sidebar's "Generator:" caption (written last) is current.
JS_PAGE_DONE = "() => {" + _JS_EXCEPTION + """
    const side = document.querySelector('[data-testid="stSidebar"]');
    if (!side) return false;
    const el = [...side.querySelectorAll('[data-testid="stCaptionContainer"], [data-testid="stMarkdownContainer"]')]
        .find((e) => !e.closest('[data-stale="true"]') && e.innerText.trim().startsWith('Generator:'));
    return el ? {t: Date.now(), text: el.innerText.trim()} : false;
}"""


class BenchmarkError(Exception):
    """A step failed or timed out; the JSON report gets the message."""


def log(message: str) -> None:
    print(f"[startup] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rag_app_command() -> list[str]:
    """The venv's `rag-app` script (what `make run` uses), else the same entry point via -m."""
    script = Path(sys.executable).parent / "rag-app"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "rag_app.cli"]


def app_env(keep_env: bool) -> dict[str, str]:
    """The environment for rag-app: without the user's RAG_APP_*/OPENAI_* (unless kept), offline hubs."""
    env = dict(os.environ)
    if not keep_env:
        env = {k: v for k, v in env.items() if not k.startswith(("RAG_APP_", "OPENAI_"))}
    env.pop("RAG_APP_UI_FAKE_LLM", None)  # the real generator is the point
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def has_index(data_dir: Path) -> bool:
    return (data_dir / "index" / "CURRENT").is_file()


def index_summary(data_dir: Path) -> dict[str, Any]:
    """A few facts from the live index manifest (best effort: its layout belongs to rag_app)."""
    try:
        version = (data_dir / "index" / "CURRENT").read_text().strip()
        manifest = json.loads((data_dir / "index" / version / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    keys = ("embed_model", "dim", "index_type", "dense_count", "bm25_count")
    return {"version": version, **{k: manifest[k] for k in keys if k in manifest}}


def ingest(data_dir: Path, env: dict[str, str], timeout_s: float) -> dict[str, Any]:
    cmd = [*rag_app_command(), "--data-dir", str(data_dir), "ingest", str(SAMPLE), "--json"]
    log(f"ingesting: {' '.join(cmd)}")
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode != 0 or not has_index(data_dir):
        raise BenchmarkError(f"ingest failed with exit code {done.returncode}: {done.stderr[-2000:]}")
    try:
        report = json.loads(done.stdout)
    except ValueError:
        report = {}
    return {"seconds": round(seconds, 2), "documents": report.get("documents_added"),
            "passages": report.get("passages_added"), "rejected": report.get("rejected", [])}


# ---- the app's process group, from /proc ------------------------------------------------------
def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # state, ppid, pgrp, ... (the name may hold spaces)
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def rss_bytes(pid: int) -> int:
    try:
        return int((Path("/proc") / str(pid) / "statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def process_label(pid: int) -> str:
    try:
        cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    if "llama_cpp.server" in cmdline:
        return "llm_server"
    if "streamlit" in cmdline:
        return "streamlit"
    if "rag-app" in cmdline or "rag_app.cli" in cmdline:
        return "rag-app"
    return "other"


class RssSampler:
    """Samples the summed RSS of a process group in a thread; keeps the peak and its split by process."""

    def __init__(self, pgid: int, interval_s: float = RSS_INTERVAL_S) -> None:
        self.pgid = pgid
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.peak_split: dict[str, int] = {}
        self.peak_by_process: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        labels: dict[int, str] = {}
        while not self._stop.is_set():
            split: dict[str, int] = {}
            for pid in group_members(self.pgid):
                label = labels.setdefault(pid, process_label(pid))
                split[label] = split.get(label, 0) + rss_bytes(pid)
            for label, value in split.items():
                self.peak_by_process[label] = max(self.peak_by_process.get(label, 0), value)
            total = sum(split.values())
            if total > self.peak_bytes:
                self.peak_bytes, self.peak_split = total, split
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def stop_group(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the app's own process group (rag-app started it with start_new_session), SIGKILL
    whatever is left after the timeout. `rag-app ui` does not forward signals to its streamlit child,
    so terminating the launcher alone would leave streamlit and the llama.cpp server running."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout_s)
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if group_members(pgid) or proc.poll() is None:
        log("app did not stop after SIGTERM; sending SIGKILL to its process group")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)


# ---- the page ---------------------------------------------------------------------------------
def wait_page(page: Page, expression: str, arg: Any, deadline: float, proc: subprocess.Popen[bytes],
              what: str) -> dict[str, Any]:
    """Polls `expression` in the page until it returns an object; fails early if the app exits."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    while True:
        remaining_ms = (deadline - time.monotonic()) * 1000
        if remaining_ms <= 0:
            raise BenchmarkError(f"timed out waiting for {what}")
        if proc.poll() is not None:
            raise BenchmarkError(f"the app exited with code {proc.returncode} while waiting for {what}")
        try:
            handle = page.wait_for_function(expression, arg=arg, polling=POLL_MS,
                                            timeout=min(WAIT_SLICE_MS, remaining_ms))
        except PlaywrightTimeoutError:
            continue
        value = handle.json_value()
        if not isinstance(value, dict):
            raise BenchmarkError(f"unexpected page value while waiting for {what}: {value!r}")
        if "error" in value:
            raise BenchmarkError(f"the page shows an error while waiting for {what}: {value['error']}")
        return value


def wait_server(url: str, deadline: float, proc: subprocess.Popen[bytes]) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchmarkError(f"the app exited with code {proc.returncode} before its server answered")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise BenchmarkError("timed out waiting for the server's /_stcore/health")


def submit(page: Page, question: str) -> float:
    """Types the question into the chat input and presses Enter; returns the wall-clock time of Enter."""
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    pressed = time.time()
    box.press("Enter")
    return pressed


def generator_of(caption: str) -> str | None:
    """'Answered by embedded:SmolLM2-135M · hybrid retrieval · 1,234 ms' -> 'embedded:SmolLM2-135M'."""
    match = re.match(r"Answered by (.+?) · ", caption)
    return match.group(1) if match else None


# ---- report -----------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    cpu = platform.processor()
    memory_mb: float | None = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mb = round(int(line.split()[1]) / 1024, 1)
                break
    versions = {}
    for package in ("streamlit", "llama_cpp_python", "playwright", "onnxruntime"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "cpu": cpu, "memory_mb": memory_mb, "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "versions": versions}


def mb(n_bytes: int) -> float:
    return round(n_bytes / (1024 * 1024), 1)


def log_tail(path: Path, n_chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n_chars:]
    except OSError:
        return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="data dir to use (ingested into if it has no index; "
                                                       "default: a temporary one)")
    parser.add_argument("--port", type=int, default=0, help="UI port (default: a free one)")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--second-question", default=SECOND_QUESTION)
    parser.add_argument("--timeout-s", type=float, default=600.0, help="limit for each step (default 600)")
    parser.add_argument("--keep-env", action="store_true", help="pass the caller's RAG_APP_*/OPENAI_* to the app")
    parser.add_argument("--chromium", type=Path, default=CHROMIUM)
    parser.add_argument("--screenshot", type=Path, help="save a full-page screenshot at the end")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    if not args.chromium.exists():
        print(f"error: {args.chromium} is missing (apt-get install -y chromium)", file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("error: the playwright package is not installed (pip install -e '.[dev]')", file=sys.stderr)
        return 2

    env = app_env(args.keep_env)
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {
        "benchmark": "startup: `rag-app ui` to the first cited answer in a browser",
        "machine": machine_info(),
        "settings": {
            "command": None, "data_dir": str(args.data_dir) if args.data_dir else "(temporary)",
            "index_reused": False, "corpus": str(SAMPLE.relative_to(ROOT)), "port": port,
            "question": args.question, "second_question": args.second_question,
            "rag_app_env_passed": sorted(k for k in env if k.startswith(("RAG_APP_", "OPENAI_"))),
            "dotenv_present": (ROOT / ".env").is_file(), "chromium": str(args.chromium),
            "chromium_args": CHROMIUM_ARGS, "headless": True, "page_poll_ms": POLL_MS,
            "timeout_s": args.timeout_s,
        },
        "ingest_s": None, "server_up_s": None, "chat_ready_s": None, "first_token_s": None,
        "first_answer_s": None, "second_answer_s": None, "generator": None, "peak_rss_mb": None,
    }
    details: dict[str, Any] = {}
    status = 0
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rag_startup_",
                                                                    ignore_cleanup_errors=True)))
        app_log = tmp / "app.log"
        proc: subprocess.Popen[bytes] | None = None
        sampler: RssSampler | None = None
        try:
            # (1) the data dir, ingested unless it already holds an index
            data_dir = args.data_dir or tmp / "data"
            if has_index(data_dir):
                out["settings"]["index_reused"] = True
                log(f"reusing the index in {data_dir}")
            else:
                data_dir.mkdir(parents=True, exist_ok=True)
                details["ingest"] = ingest(data_dir, env, args.timeout_s)
                out["ingest_s"] = details["ingest"]["seconds"]
            out["settings"]["index"] = index_summary(data_dir)

            # the browser first: a user's is already open
            t_browser = time.perf_counter()
            playwright = stack.enter_context(sync_playwright())
            context = playwright.chromium.launch_persistent_context(
                str(tmp / "chromium-profile"), executable_path=str(args.chromium), headless=True,
                args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1300},
            )
            stack.callback(context.close)
            context.set_default_timeout(args.timeout_s * 1000)
            page = context.pages[0] if context.pages else context.new_page()
            out["machine"]["browser"] = page.evaluate("navigator.userAgent")
            details["browser_launch_s"] = round(time.perf_counter() - t_browser, 2)

            # (2) the app, in its own process group so that all of it can be stopped
            cmd = [*rag_app_command(), "--data-dir", str(data_dir), "ui", "--port", str(port)]
            out["settings"]["command"] = " ".join(cmd)
            log(f"starting: {out['settings']['command']}")
            log_file = stack.enter_context(app_log.open("wb"))
            t0_wall = time.time()
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            sampler = RssSampler(proc.pid)
            sampler.start()

            def since_t0(epoch_ms: float) -> float:
                return round(epoch_ms / 1000 - t0_wall, 3)

            # (3) server, page, chat input
            wait_server(url, time.monotonic() + args.timeout_s, proc)
            out["server_up_s"] = round(time.perf_counter() - t0, 3)
            log(f"server up at {out['server_up_s']} s")
            page.goto(url)
            details["page_loaded_s"] = round(time.perf_counter() - t0, 3)
            ready = wait_page(page, JS_CHAT_READY, None, time.monotonic() + args.timeout_s, proc, "the chat input")
            out["chat_ready_s"] = since_t0(ready["t"])
            log(f"chat input ready at {out['chat_ready_s']} s")

            # the first question, at once: the generator may still be starting
            sent = submit(page, args.question)
            details["first_submitted_s"] = round(sent - t0_wall, 3)
            first = wait_page(page, JS_ANSWER, {"n": 1, "key": "q1"}, time.monotonic() + args.timeout_s, proc,
                              "the first answer")
            out["first_token_s"] = since_t0(first["first"])
            out["first_answer_s"] = since_t0(first["done"])
            out["generator"] = generator_of(first["caption"])
            details["first"] = {key: first[key] for key in ("text", "citations", "notes", "caption")}
            log(f"first answer at {out['first_answer_s']} s ({out['generator']})")
            done = wait_page(page, JS_PAGE_DONE, None, time.monotonic() + args.timeout_s, proc, "the page to settle")
            details["first_run_done_s"] = since_t0(done["t"])
            page.wait_for_timeout(300)

            # the second question, warm
            sent = submit(page, args.second_question)
            second = wait_page(page, JS_ANSWER, {"n": 2, "key": "q2"}, time.monotonic() + args.timeout_s, proc,
                               "the second answer")
            out["second_first_token_s"] = round(second["first"] / 1000 - sent, 3)
            out["second_answer_s"] = round(second["done"] / 1000 - sent, 3)
            details["second"] = {key: second[key] for key in ("text", "citations", "notes", "caption")}
            log(f"second answer in {out['second_answer_s']} s")
            done = wait_page(page, JS_PAGE_DONE, None, time.monotonic() + args.timeout_s, proc, "the page to settle")
            details["generator_sidebar"] = done["text"]
            if args.screenshot:
                page.screenshot(path=str(args.screenshot), full_page=True)
                details["screenshot"] = str(args.screenshot)
        except (BenchmarkError, PlaywrightError, OSError, subprocess.SubprocessError) as exc:
            status = 1
            out["error"] = f"{type(exc).__name__}: {exc}"
            out["app_log_tail"] = log_tail(app_log)
            log(out["error"])
        finally:
            if sampler is not None:
                sampler.stop()
                out["peak_rss_mb"] = mb(sampler.peak_bytes)
                details["peak_rss_split_mb"] = {k: mb(v) for k, v in sorted(sampler.peak_split.items())}
                details["peak_rss_by_process_mb"] = {k: mb(v) for k, v in sorted(sampler.peak_by_process.items())}
            if proc is not None:
                stop_group(proc)
    out["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out["details"] = details
    out["notes"] = [
        "Times are wall-clock on a possibly shared machine (see loadavg); first_* include model loading "
        "(encoder, index, and the embedded LLM server's start when it is the generator).",
        "second_first_token_s and second_answer_s are measured from pressing Enter on the second question.",
        "peak_rss_mb sums the resident sets of the app's processes (shared pages counted in each).",
    ]
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
