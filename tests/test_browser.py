"""A person's path through the app in a real browser (Playwright driving Debian's chromium), on the
toy model. Screenshots go to $VS2DEMO_SCREENSHOTS (default: the test's tmp folder)."""

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

# Every change to an element's text, as the page saw it: proof the reasoning grew while streaming.
WATCH_TEXT_JS = """
(selector) => {
  window.__lengths = [];
  const target = document.querySelector(selector);
  new MutationObserver(() => window.__lengths.push(target.innerText.length))
    .observe(target, {subtree: true, childList: true, characterData: true});
}
"""


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.goto(app_url)
    expect(page.locator("#model-status")).to_contain_text("ready", timeout=60_000)
    yield page
    context.close()


@pytest.fixture
def screenshots(tmp_path):
    folder = Path(os.environ.get("VS2DEMO_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_evaluate_streams_reasoning_then_cards_and_plots(page, clean_clip, screenshots):
    expect(page.locator("#toy-banner")).to_contain_text("Toy model")
    page.locator("#evaluate-video input[type=file]").set_input_files(str(clean_clip))
    page.locator("#evaluate-prompt textarea").fill(PROMPT)
    page.evaluate(WATCH_TEXT_JS, "#evaluate-thinking")
    page.locator("#evaluate-run").click()

    cards = page.locator("#evaluate-cards")
    expect(cards).to_contain_text("confidence", timeout=120_000)
    expect(page.locator("#evaluate-scores-plot .js-plotly-plot")).to_be_visible(timeout=30_000)
    expect(page.locator("#evaluate-probs-plot .js-plotly-plot")).to_be_visible()
    expect(page.locator("#evaluate-stats")).to_contain_text("visual tokens")
    expect(page.locator("#evaluate-frames img").first).to_be_visible()
    lengths = [n for n in page.evaluate("window.__lengths") if n > 0]
    assert len(set(lengths)) >= 3, f"the reasoning should grow in steps, saw lengths {lengths[:20]}"
    assert "Overall" in cards.inner_text()
    page.wait_for_timeout(500)  # let plotly finish its transition before the picture
    page.screenshot(path=str(screenshots / "evaluate.png"), full_page=True)


def test_compare_two_videos_side_by_side(page, clean_clip, noisy_clip, screenshots):
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-video-0 input[type=file]").set_input_files(str(clean_clip))
    page.locator("#compare-video-1 input[type=file]").set_input_files(str(noisy_clip))
    page.locator("#compare-prompt textarea").fill(PROMPT)
    page.locator("#compare-run").click()

    expect(page.locator("#compare-verdict")).to_contain_text("Verdict", timeout=180_000)
    expect(page.locator("#compare-chart .js-plotly-plot")).to_be_visible()
    expect(page.locator("#compare-cards-0")).to_contain_text("confidence")
    expect(page.locator("#compare-cards-1")).to_contain_text("confidence")
    page.wait_for_timeout(500)
    page.screenshot(path=str(screenshots / "compare.png"), full_page=True)


def test_a_bad_file_shows_a_clear_message_and_keeps_the_prompt(page, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video at all\n")
    page.locator("#evaluate-video input[type=file]").set_input_files(str(bad))
    page.locator("#evaluate-prompt textarea").fill(PROMPT)
    page.locator("#evaluate-run").click()
    expect(page.locator("#evaluate-status")).to_contain_text("could not be read as a video", timeout=30_000)
    expect(page.locator("#evaluate-prompt textarea")).to_have_value(PROMPT)
