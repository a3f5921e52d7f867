"""Where it looked, in the browser (issue #26): Evaluate with attention on (the toy model) shows a strip
per dimension and the shaded prompt, a click on a strip's cell seeks the video to that patch's start,
and "Do these frames matter?" runs and shows its table; at a laptop's width and at a phone's, with no
sideways overflow on the phone."""

import pytest

from browser_kit import PROMPT, browser, expect, laptop, page, ready_to_evaluate, screenshots  # noqa: F401

# The video's clock, read once it has settled (a seek is asynchronous).
CURRENT_TIME_JS = "id => document.querySelector(`#${id} video`).currentTime"


def evaluate_with_attention(page):
    """Tick "Show where it looked" in Scoring options, evaluate, and wait for the strips."""
    page.get_by_text("Scoring options").first.click()
    page.locator("#evaluate-attention-on input[type=checkbox]").check()
    page.locator("#evaluate-run").click()
    expect(page.locator("#evaluate-cards")).to_contain_text("confidence", timeout=120_000)
    expect(page.locator("#evaluate-attention .strip-block")).to_have_count(3)


def seek_and_check(page, tap: bool = False) -> float:
    """Click (or tap) the visual-quality strip's last cell (a start later than 0 s, so the seek shows);
    the video's time must become that patch's start. Returns it."""
    cell = page.locator("#evaluate-attention [data-dimension=visual_quality] .cell").last
    seconds = float(cell.get_attribute("data-vs2-seek"))
    assert seconds > 0
    cell.tap() if tap else cell.click()
    page.wait_for_function(f"Math.abs(({CURRENT_TIME_JS})('evaluate-video') - {seconds}) < 0.05", timeout=5_000)
    return seconds


def check_strips_and_prompt(page):
    attention = page.locator("#evaluate-attention")
    expect(attention).to_contain_text("Attention shows where the model looked while writing each score, not proof")
    expect(attention).to_contain_text("2 frames the model merged")
    for dimension in ("visual_quality", "text_alignment", "physical_consistency"):
        strip = attention.locator(f"[data-dimension={dimension}]")
        cells = strip.locator(".cell")
        assert cells.count() >= 1
        # Every cell says its share in numbers and its time; the shares of a strip add up to 100%.
        shares = [float(text.rstrip("%")) for text in strip.locator(".pct").all_inner_texts()]
        assert abs(sum(shares) - 100) <= 0.1 * len(shares), shares
        expect(strip.locator(".cell.top .rank").first).to_have_text("top 1")
        assert all(text.endswith(" s") for text in strip.locator(".time").all_inner_texts())
    # The prompt's words are all there, in order, and the most attended are named in text.
    assert attention.locator(".prompt").inner_text().split() == PROMPT.split()
    expect(attention.locator(".top-words")).to_contain_text("Most attended words: “")


def run_frames_check(page):
    page.locator("#frames-check-run").click()
    result = page.locator("#frames-check-result")
    expect(result.locator("tbody tr")).to_have_count(3, timeout=180_000)
    expect(result).to_contain_text("Replacing the most-attended frames moved visual quality by")
    expect(result).to_contain_text("seed 26")
    expect(page.locator("#frames-check-status")).to_contain_text("Scored twice")
    return result


@pytest.mark.slow  # about 60 s on two cores: three toy scorings with attention, in the browser
def test_the_strip_seeks_the_video_and_the_check_shows_its_table(page, clean_clip, screenshots):
    page.locator("#evaluate-video input[type=file]").set_input_files(str(clean_clip))
    page.locator("#evaluate-prompt textarea").fill(PROMPT)
    evaluate_with_attention(page)
    check_strips_and_prompt(page)
    seek_and_check(page)
    page.locator("#evaluate-attention").scroll_into_view_if_needed()
    screenshots(page, "attention.png", settle_ms=300)
    result = run_frames_check(page)
    result.scroll_into_view_if_needed()
    screenshots(page, "frames-check.png", settle_ms=300)
    # A new run clears the strip and the check: what they showed was of the last result.
    page.locator("#evaluate-attention-on input[type=checkbox]").uncheck()
    page.locator("#evaluate-run").click()
    expect(page.locator("#evaluate-cards")).to_contain_text("confidence", timeout=120_000)
    expect(page.locator("#evaluate-attention .strip-block")).to_have_count(0)
    expect(page.locator("#frames-check-result tbody tr")).to_have_count(0)
    expect(page.locator("#frames-check-run")).to_be_hidden()
    expect(page.locator("#frames-check-stop")).to_be_hidden()


@pytest.mark.slow  # about 60 s: the same at a phone's width
def test_at_phone_width_the_strip_fits_and_a_tap_seeks(browser, app_url, clean_clip, screenshots):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = ready_to_evaluate(context.new_page(), app_url, clean_clip)
    evaluate_with_attention(page)
    check_strips_and_prompt(page)
    seek_and_check(page, tap=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.locator("#evaluate-attention").scroll_into_view_if_needed()
    screenshots(page, "attention-phone.png", settle_ms=300)
    run_frames_check(page).scroll_into_view_if_needed()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshots(page, "frames-check-phone.png", settle_ms=300)
    context.close()
