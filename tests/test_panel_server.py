"""`lab panel` as a server (issue 9): idle kernels culled, nothing left after a stop, any path, large uploads.

Servers bind 127.0.0.1 only and are stopped, with their children, inside each test.
"""

import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from panel_driver import free_port  # noqa: E402

pytestmark = pytest.mark.slow


def start_panel(collection, *extra):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "panel", "-c", str(collection), "--port", str(port), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while True:
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode()[-2000:])
        try:
            urllib.request.urlopen(url, timeout=60).read()
            return process, port, url
        except OSError:
            assert time.time() < deadline, "lab panel did not answer"
            time.sleep(0.5)


def family(pid):
    """``pid`` and its live descendants (Voila, kernels)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kernels(process):
    """The kernels still running under the server (a culled kernel may linger a moment as a zombie: not counted)."""
    running = []
    for p in family(process.pid):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "ipykernel" in " ".join(p.cmdline()):
                running.append(p)
        except psutil.Error:  # gone, or a zombie, between listing and reading it
            continue
    return running


def port_open(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def force_stop(process, everything):
    """Test clean-up whatever happened: the server group and every process seen."""
    with_children = everything + family(process.pid)
    for p in with_children:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def quoted_collection(tmp_path_factory, photo_collection):
    """The photo collection at a path with a double quote, a single quote, a space and non-ASCII letters."""
    folder = tmp_path_factory.mktemp("panel") / 'my "best" photos' / "l'été"
    shutil.copytree(photo_collection.root, folder)
    return folder


def test_idle_kernels_are_culled(quoted_collection):
    process, port, url = start_panel(quoted_collection, "--cull-idle", "4")
    seen = []
    try:
        most = 0
        for _ in range(9):  # 1 load in start_panel + 9 = the page loaded 10 times
            assert urllib.request.urlopen(url, timeout=60).status == 200
            running = kernels(process)
            seen += running
            most = max(most, len(running))
        assert most >= 1  # every load starts a kernel
        deadline = time.time() + 60
        while len(kernels(process)) > 2 and time.time() < deadline:
            time.sleep(1)
        assert len(kernels(process)) <= 2
        deadline = time.time() + 15  # the check runs every 2 s: the last ones go a few seconds later
        while kernels(process) and time.time() < deadline:
            time.sleep(1)
        assert kernels(process) == []
    finally:
        process.send_signal(signal.SIGTERM)
        force_stop(process, seen)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_stopping_lab_panel_stops_voila_and_every_kernel(quoted_collection, how):
    process, port, url = start_panel(quoted_collection)  # a path with quotes is served (HTTP 200, not 400)
    urllib.request.urlopen(url, timeout=60).read()
    everything = family(process.pid)
    try:
        assert len(kernels(process)) == 2 and len(everything) >= 4  # lab panel, Voila, 2 kernels
        process.send_signal(how)
        assert process.wait(timeout=60) == 0
        deadline = time.time() + 20
        while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in everything) and time.time() < deadline:
            time.sleep(0.5)
        left = [p for p in everything if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert left == [], left
        assert not port_open(port)
    finally:
        force_stop(process, everything)


def test_a_busy_port_is_a_one_line_error(quoted_collection):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "lab.cli", "panel", "-c", str(quoted_collection), "--port", str(port)],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )
    assert result.returncode == 2 and f"127.0.0.1:{port}" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr


def noise_png(path, side):
    """A PNG of random pixels: it does not compress, so its size is about 3 * side**2 bytes."""
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, compress_level=1)
    return path


@pytest.mark.browser
def test_large_uploads_in_chromium_at_a_quoted_path(quoted_collection, tmp_path, photo_folder):
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Chromium is not installed (Debian packages chromium, chromium-driver)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    from panel_driver import launch, open_panel, served_panel, serial, shown_files, wait_for_new_results

    from lab.panel import MAX_UPLOAD_MB

    big = noise_png(tmp_path / "big.png", 4200)  # 50.5 MiB: over tornado's default 10 MiB message limit
    huge = tmp_path / "huge.png"  # over the panel's limit: refused by its size, so its bytes do not matter
    with open(huge, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.truncate(77 * 2**20)
    assert 50 * 2**20 < big.stat().st_size < MAX_UPLOAD_MB * 2**20 < huge.stat().st_size

    def upload(page, path):
        with page.expect_file_chooser() as chooser:
            page.locator(".lab-upload").click()
        chooser.value.set_files(str(path))

    with served_panel(quoted_collection) as url, playwright_api.sync_playwright() as playwright:
        browser = launch(playwright)
        page = open_panel(browser, url)
        assert "l'été" in page.locator(".lab-panel h3").inner_text()

        before = serial(page)
        upload(page, big)
        wait_for_new_results(page, before, timeout_ms=120_000)
        assert "similar to uploaded image" in page.locator(".lab-status").inner_text()

        upload(page, huge)
        page.wait_for_function("() => document.querySelector('.lab-status').innerText.includes('takes images up to')", timeout=60_000)
        assert "huge.png is 77.0 MB" in page.locator(".lab-status").inner_text()

        # the session still works: another upload, then a search
        before = serial(page)
        upload(page, photo_folder / "coffee__coffee.jpg")
        wait_for_new_results(page, before)
        assert shown_files(page)[0].startswith("coffee")
        page.locator(".lab-query input").fill("cat")
        before = serial(page)
        page.locator(".lab-search").click()
        wait_for_new_results(page, before)
        assert shown_files(page)[0].startswith("cat")
        browser.close()
