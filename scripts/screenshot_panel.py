"""Screenshot of the search panel for the README: serve it, search, rate, save a PNG.

    python scripts/screenshot_panel.py [--collection demo-collection/collection] [--out results/figures/panel.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from panel_driver import launch, open_panel, search, served_panel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default=str(ROOT / "demo-collection" / "collection"))
    parser.add_argument("--word", default="vehicle")
    parser.add_argument("--out", default=str(ROOT / "results" / "figures" / "panel.png"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with served_panel(args.collection) as url, sync_playwright() as playwright:
        browser = launch(playwright)
        page = open_panel(browser, url)
        search(page, args.word)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print("wrote", args.out)


if __name__ == "__main__":
    main()
