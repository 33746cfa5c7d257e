"""Drive the served search panel in headless Chromium with Playwright.

Used by the browser test (tests/test_panel_browser.py) and by
scripts/screenshot_panel.py. Uses Debian's Chromium (/usr/bin/chromium); it
never downloads a browser.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served_panel(collection: str | Path, port: int | None = None, timeout: float = 90.0):
    """Run ``lab panel -c collection`` on a free port; yields the URL, stops the server after."""
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "panel", "-c", str(collection), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"lab panel exited: {process.stderr.read().decode()[-2000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    raise TimeoutError(f"lab panel did not answer at {url} within {timeout:.0f} s")
                time.sleep(0.5)
        yield url
    finally:
        import os
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def open_panel(browser, url: str, timeout_ms: int = 120_000):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, timeout=timeout_ms)
    page.wait_for_selector(".lab-query input", timeout=timeout_ms)
    return page


def serial(page) -> str:
    """The panel's results counter (a hidden widget bumped whenever the results change)."""
    return page.evaluate("() => document.querySelector('.lab-serial').innerText")


def wait_for_new_results(page, before: str, timeout_ms: int = 60_000) -> None:
    page.wait_for_function("(b) => document.querySelector('.lab-serial').innerText !== b", arg=before, timeout=timeout_ms)


def search(page, word: str, timeout_ms: int = 60_000) -> list[str]:
    """Type a word, press Search, wait for the new results; returns the shown file names in rank order."""
    before = serial(page)
    page.locator(".lab-query input").fill(word)
    page.locator(".lab-search").click()
    wait_for_new_results(page, before, timeout_ms)
    page.wait_for_selector(".lab-result img", state="visible", timeout=timeout_ms)
    return shown_files(page)


def shown_files(page) -> list[str]:
    return [name.strip() for name in page.locator(".lab-result:visible .lab-filename").all_inner_texts()]
