"""The search panel served by `lab panel`, driven in a real browser (Debian's Chromium + Playwright)."""

import shutil
import sys
from pathlib import Path

import pytest

from lab import Collection

from .conftest import varied_copies

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser_collection(tmp_path_factory, photo_folder):
    folder = tmp_path_factory.mktemp("browser_photos")
    for path in photo_folder.iterdir():
        shutil.copy(path, folder / path.name)
    varied_copies(photo_folder, folder / "crops", 54)  # two crops of each photo: several cats
    col = Collection.open(tmp_path_factory.mktemp("browser") / "col", create=True)
    col.add(folder, progress=False)
    return col


def test_search_judge_reorder_and_upload_in_chromium(browser_collection, photo_folder):
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Chromium is not installed (Debian packages chromium, chromium-driver); .ci/run installs it")
    playwright_api = pytest.importorskip("playwright.sync_api")
    from panel_driver import launch, open_panel, search, serial, served_panel, shown_files, wait_for_new_results

    ARTIFACTS.mkdir(exist_ok=True)
    with served_panel(browser_collection.root) as url, playwright_api.sync_playwright() as playwright:
        browser = launch(playwright)
        page = open_panel(browser, url)
        first = search(page, "cat")
        assert len(first) >= 3, first
        assert page.locator(".lab-result:visible img").count() == len(first)

        # mark the third result relevant, search again: it comes first
        chosen = first[2]
        page.locator(".lab-result:visible").nth(2).locator(".lab-relevant").click()
        page.wait_for_function("() => document.querySelector('.lab-status').innerText.includes('recorded')", timeout=30_000)
        again = search(page, "cat")
        assert again[0] == chosen, (chosen, again)

        # a second browser session judges at the same time; nothing is lost
        other = open_panel(browser, url)
        search(other, "cat")
        other.locator(".lab-result:visible").nth(1).locator(".lab-not-relevant").click()
        other.wait_for_function("() => document.querySelector('.lab-status').innerText.includes('recorded')", timeout=30_000)
        page.locator(".lab-result:visible").nth(3).locator(".lab-relevant").click()
        page.wait_for_function("() => document.querySelector('.lab-status').innerText.includes('recorded')", timeout=30_000)

        # upload an image: a reverse image query
        before = serial(page)
        with page.expect_file_chooser() as chooser:  # ipywidgets makes the file input on click
            page.locator(".lab-upload").click()
        chooser.value.set_files(str(photo_folder / "coffee__coffee.jpg"))
        wait_for_new_results(page, before)
        assert "similar to" in page.locator(".lab-status").inner_text()
        similar = shown_files(page)
        assert similar and similar[0].startswith(("coffee", "00")), similar
        page.screenshot(path=str(ARTIFACTS / "panel.png"), full_page=True)
        browser.close()

    judgments = Collection.open(browser_collection.root).judgments("cat")
    assert len(judgments) == 3
    assert judgments["user"].nunique() == 2
