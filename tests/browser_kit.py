"""What the browser tests share: Debian's chromium driven by Playwright, a laptop's context, a page
with the model ready, screenshots for docs/, and a person's moves (open a tab, tap a row). A test
file imports what it uses; pytest finds the imported fixtures there."""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PROMPT = "A red ball rolls and bounces across a grey studio floor."  # one colour word: the toy compares it with the ball

if not Path(CHROMIUM).exists():
    # CI installs chromium, so there a missing browser is a failure, not a skip.
    if os.environ.get("CI"):
        raise RuntimeError("Debian's chromium is needed for the browser tests: apt-get install chromium")
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

# A busy two-core machine takes seconds to render a plot or a gallery: no check waits less than this
# (a check that passes returns at once; only a failing one waits the whole time).
expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def laptop(browser):
    """One browser context for the module's pages: each test gets a page (and a Gradio session) of
    its own, and the app's scripts come from the context's cache after the first (2.5 s a page
    without it on two cores, 1.7 s with)."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    yield context
    context.close()


@pytest.fixture
def page(laptop, app_url):
    page = laptop.new_page()
    page.goto(app_url)
    expect(page.locator("#model-status")).to_contain_text("ready", timeout=60_000)
    yield page
    page.close()


class Screenshots:
    """`shoot(page, name)` saves a picture when $VS2DEMO_SCREENSHOTS names a folder (docs/ is made
    that way); the default run takes none, as no check depends on them."""

    def __init__(self, folder: str | None):
        self.folder = Path(folder) if folder else None

    def __call__(self, page, name: str, full_page: bool = False, settle_ms: int = 0) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if settle_ms:
            page.wait_for_timeout(settle_ms)  # let plotly finish its transition before the picture
        page.screenshot(path=str(self.folder / name), full_page=full_page)


@pytest.fixture
def screenshots():
    return Screenshots(os.environ.get("VS2DEMO_SCREENSHOTS"))


def open_tab(page, name: str) -> None:
    """A tab by its name, from the tab bar or, where the screen is too narrow for them all, its menu."""
    tab = page.get_by_role("tab", name=name)
    if not (tab.count() and tab.is_visible()):
        page.locator("button[aria-label='More tabs']").click()
        tab = page.locator(".overflow-dropdown button, .overflow-menu button").filter(has_text=name).first
    tab.click()


def tap_a_row_and_see_no_editor(page, table_id: str, row: int) -> None:
    """A tap on a row of a read-only table marks that row; no cell is boxed, raised or editable."""
    cell = page.locator(f"#{table_id} .virtual-row").nth(row).locator("[role=gridcell]").nth(1)
    cell.tap()
    expect(page.locator(f"#{table_id} .cell-selected")).to_have_count(1)
    looks = page.locator(f"#{table_id} .cell-selected").evaluate("""cell => ({
        editors: cell.closest('table, .table-wrap, [id]').querySelectorAll('textarea, input:not([type=file])').length,
        handles: [...cell.querySelectorAll('.selection-button')].filter(button => button.offsetParent).length,
        raised: getComputedStyle(cell.querySelector('.cell-wrap > span')).boxShadow,
        position: getComputedStyle(cell.querySelector('.cell-wrap > span')).position,
        row: getComputedStyle(cell.closest('.virtual-row')).backgroundColor})""")
    assert looks["editors"] == 0 and looks["handles"] == 0, looks
    assert looks["raised"] == "none" and looks["position"] != "absolute", looks
    assert looks["row"] not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)"), looks  # the open row is marked


def ready_to_evaluate(page, url: str, clip):
    """`page` at `url`, the model ready, `clip` uploaded and the prompt written in the Evaluate tab."""
    page.goto(url)
    expect(page.locator("#model-status")).to_contain_text("ready", timeout=60_000)
    page.locator("#evaluate-video input[type=file]").set_input_files(str(clip))
    page.locator("#evaluate-prompt textarea").fill(PROMPT)
    return page
