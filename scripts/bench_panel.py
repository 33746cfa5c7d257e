"""Time the served search panel in headless Chromium: click Search -> new thumbnails shown.

    python scripts/bench_panel.py [--collection PATH]

Default: Caltech-101 (9,144 images) from the shared datasets, indexed into a
temp dir. Writes ``results/bench_panel.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from lab.installed import versions_line  # noqa: E402

from panel_driver import launch, open_panel, search, serial, served_panel, wait_for_new_results  # noqa: E402

WORDS = ["dog", "airplane", "piano", "butterfly", "cougar", "chair", "vehicle", "flower", "boat", "bird"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from lab import Collection

    if args.collection:
        col = Collection.open(args.collection)
    else:
        from lab.datasets import indexed_dataset

        col, _ = indexed_dataset("caltech101", tempfile.mkdtemp(prefix="lab-bench-panel-"))
    with served_panel(col.root) as url, sync_playwright() as playwright:
        browser = launch(playwright)
        page = open_panel(browser, url)
        start = time.perf_counter()
        search(page, "cat")
        first = time.perf_counter() - start
        searches = []
        for word in WORDS:
            start = time.perf_counter()
            search(page, word)
            searches.append(time.perf_counter() - start)
        # a word nobody taught and no vocabulary source knows: the page is filled by exploration
        start = time.perf_counter()
        search(page, "garfield")
        exploring_first = time.perf_counter() - start
        start = time.perf_counter()
        search(page, "snoopy")
        exploring = time.perf_counter() - start
        before = serial(page)
        page.locator(".lab-result:visible").nth(0).locator(".lab-select input").check()
        start = time.perf_counter()
        page.locator(".lab-more-like").click()
        wait_for_new_results(page, before)
        more_like = time.perf_counter() - start
        browser.close()
    lines = [
        f"# Search panel response times, {len(col):,} images",
        "",
        f"Command: `python scripts/bench_panel.py {' '.join(sys.argv[1:])}`",
        "",
        versions_line(),
        "",
        "From the click to the new page of 20 thumbnails in headless Chromium (Voila kernel, 2 cores).",
        "",
        "| action | seconds |",
        "|---|---:|",
        f"| first search of a session (loads arrays and vocabulary) | {first:.2f} |",
        f"| keyword search, median of {len(WORDS)} words | {statistics.median(searches):.2f} |",
        f"| keyword search, slowest | {max(searches):.2f} |",
        f"| unknown word, exploration page (first one clusters a sample of the collection) | {exploring_first:.2f} |",
        f"| unknown word, exploration page, afterwards | {exploring:.2f} |",
        f"| more like the selected image (first similar query: builds the index) | {more_like:.2f} |",
        "",
        "Target: under 1 s at 10,000 images.",
    ]
    text = "\n".join(lines) + "\n"
    (ROOT / "results" / "bench_panel.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
