"""A person's path through the app in a real browser (Playwright driving Debian's chromium), on the
toy model. Screenshots go to $VS2DEMO_SCREENSHOTS when it is set (none are taken otherwise)."""

import json
import shutil
import re
from pathlib import Path

import pytest
from browser_kit import (  # noqa: F401 (fixtures)
    PROMPT, browser, expect, laptop, open_tab, page, ready_to_evaluate, screenshots, tap_a_row_and_see_no_editor,
)

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
def avi_clip(tmp_path_factory):
    """The clean clip's scene as MPEG-4 Part 2 in an .avi: PyAV reads it, chromium cannot play it."""
    from conftest import _clip

    from tools.clips import SceneSpec

    return _clip(tmp_path_factory, "clean.avi", SceneSpec("red", "studio", "clean", "smooth"))


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
    # The reasoning is still open with the scores in, and folds when the reader asks.
    thinking = page.locator("#evaluate-thinking")
    expect(thinking).to_contain_text("written in")
    expect(thinking.locator(".answer")).to_contain_text("(1) visual quality:")
    screenshots(page, "evaluate.png", full_page=True, settle_ms=500)
    page.locator("#evaluate-reasoning").get_by_text("The model's reasoning").first.click()
    expect(thinking).to_be_hidden()


# Boxes of a plotly figure's parts, as the page lays them out: titles, subplot titles, the legend,
# the axes' labels and titles, the toolbar (modebar) and the written values.
FIGURE_PARTS_JS = """
(root) => {
  const parts = {title: '.gtitle', subtitle: '.annotation-text', legend: '.legend .bg', xtick: '.xtick text',
                 ytick: '.ytick text', xtitle: '.xtitle', ytitle: '.ytitle', toolbar: '.modebar', value: '.bartext, .textpoint'};
  const frame = root.querySelector('.main-svg').getBoundingClientRect();
  const found = [];
  for (const [kind, selector] of Object.entries(parts)) {
    root.querySelectorAll(selector).forEach(e => {
      const r = e.getBoundingClientRect();
      if (r.width > 0 && r.height > 0 && (e.textContent || kind === 'legend' || kind === 'toolbar'))
        found.push({kind, text: (e.textContent || '').slice(0, 30), box: [r.left - frame.left, r.top - frame.top,
                    r.right - frame.left, r.bottom - frame.top]});
    });
  }
  return {width: frame.width, parts: found};
}
"""
# The pairs of parts that must not touch (the issue: subplot titles run together, x labels into the
# legend, the toolbar over the title).
APART = {("title", "toolbar"), ("subtitle", "subtitle"), ("subtitle", "toolbar"), ("title", "subtitle"),
         ("legend", "xtick"), ("legend", "xtitle"), ("legend", "subtitle"), ("xtick", "xtick"), ("xtitle", "xtick"),
         ("value", "value"), ("value", "subtitle"), ("title", "legend"), ("legend", "toolbar")}


def figure_problems(layout: dict) -> list[str]:
    """What a reader would see wrong in a laid-out figure: text past its right edge, parts on top of each other."""
    def touch(a, b):
        return a[0] < b[2] - 1 and b[0] < a[2] - 1 and a[1] < b[3] - 1 and b[1] < a[3] - 1

    parts = layout["parts"]
    problems = [f"{p['kind']} {p['text']!r} runs past the edge" for p in parts
                if p["kind"] != "toolbar" and (p["box"][2] > layout["width"] + 1 or p["box"][0] < -1)]
    for i, a in enumerate(parts):
        for b in parts[i + 1:]:
            if ((a["kind"], b["kind"]) in APART or (b["kind"], a["kind"]) in APART) and touch(a["box"], b["box"]):
                problems.append(f"{a['kind']} {a['text']!r} on {b['kind']} {b['text']!r}")
    return problems


@pytest.mark.slow  # 4 s; the default run stays under 3 minutes
def test_every_figure_fits_a_phone_and_a_laptop(browser):
    """Every figure of plots.py drawn by plotly.js as gr.Plot draws it (responsive, the top margin of
    a labelled plot, the toolbar shown) in a box a phone gives it and in one a laptop gives it."""
    import plotly

    from vs2demo import DIMENSIONS, plots
    from vs2demo.results import DimensionScore, ScoreResult

    def record(probs, written):
        return ScoreResult("a.mp4", "p", "m", scores={key: DimensionScore.from_probs(score, p) for key, p, score
                                                       in zip(DIMENSIONS, probs, written)})

    spread = record([(0.02, 0.1, 0.45, 0.38, 0.05), (0, 0.05, 0.15, 0.6, 0.2), (0.3, 0.3, 0.2, 0.1, 0.1)], (3, 4, 1))
    others = [record([(0, 0, 0, 1, 0)] * 3, (4, 4, 4)), record([(0, 0, 0.5, 0.5, 0)] * 3, (3, 3, 3)),
              record([(0, 0.2, 0.3, 0.3, 0.2)] * 3, (3, 3, 3))]
    confusion = [[3, 1, 0, 0, 0], [2, 12, 4, 0, 0], [0, 5, 30, 6, 1], [0, 0, 8, 25, 3], [0, 0, 1, 4, 9]]
    bins = [{"n": 5, "confidence": 0.35, "accuracy": 0.3}, {"n": 40, "confidence": 0.85, "accuracy": 0.8}]
    report = {"dimensions": {key: {"confusion": confusion, "calibration": {"bins": bins}, "ece": 0.041}
                             for key in DIMENSIONS}}
    figures = {"scores": plots.scores_figure(spread), "probabilities": plots.probabilities_figure(spread),
               "comparison": plots.comparison_figure([spread, *others], [f"Video {n}" for n in range(1, 5)]),
               "ranking": plots.ranking_figure([spread, *others], ["a_very_long_generated_video_seed_1234.mp4", "b.mp4",
                                                                   "c.mp4", "d.mp4"]),
               "reliability": plots.reliability_figure(report), "confusion": plots.confusion_figure(report)}
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.set_content("<div id='figure'></div>")
    page.add_script_tag(path=str(Path(plotly.__file__).parent / "package_data" / "plotly.min.js"))
    problems = []
    for name, figure in figures.items():
        for width in (330, 1200):  # a phone's plot box (390 px screen), a laptop's whole row
            page.evaluate("""([figure, width]) => {
                const box = document.getElementById('figure');
                Plotly.purge(box);
                box.style.width = width + 'px';
                const {data, layout} = JSON.parse(figure);
                layout.autosize = true;  // as gr.Plot: responsive, and a labelled plot's top margin
                if (layout.title) layout.margin.t = Math.max(100, layout.margin.t || 0);
                return Plotly.newPlot(box, data, layout, {responsive: true, displayModeBar: true});
            }""", [figure.to_json(), width])
            problems += [f"{name} at {width} px: {problem}"
                         for problem in figure_problems(page.locator("#figure").evaluate(FIGURE_PARTS_JS))]
    page.close()
    assert not problems, "\n".join(problems)


@pytest.mark.slow  # 16 s: the verdict, the ties and Stop's view are tested in test_compare_best_of_n.py, the page here
def test_compare_three_videos_ranks_each_dimension_and_marks_its_winner(page, clean_clip, noisy_clip, dark_clip,
                                                                       avi_clip, slow_reading, screenshots):
    page.get_by_role("tab", name="Compare").click()
    for slot, clip in enumerate((clean_clip, noisy_clip, dark_clip)):
        page.locator(f"#compare-video-{slot} input[type=file]").set_input_files(str(clip))
    page.locator("#compare-prompt textarea").fill(PROMPT)
    page.locator("#compare-run").click()

    verdict = page.locator("#compare-verdict")
    expect(verdict).to_contain_text("Verdict: Video 1 is the best video", timeout=180_000)
    expect(page.locator("#compare-chart .js-plotly-plot")).to_be_visible()
    # The toy: visual quality 4 clean, 2 noisy, 1 dark; the dark clip is too dark to check the colour.
    lines = {line.split(":")[0]: line for line in verdict.inner_text().splitlines()}
    assert "Video 1 (4.00), ahead of Video 2 (2.00, 2.00 behind); Video 3 (1.00, 3.00 behind)" in lines["Visual quality"]
    assert "Videos 1 and 2 tie at 4.00, ahead of Video 3" in lines["Text alignment"]
    expect(page.locator("#compare-cards-0 .vs2-card.best")).to_contain_text("Visual quality")
    assert page.locator("#compare-cards-1 .vs2-card.best, #compare-cards-2 .vs2-card.best").count() == 0
    expect(page.locator("#compare-cards-3")).to_have_text("")  # the unused slot shows nothing
    # The status line sits just under the buttons, above the players.
    status_box, run_box = page.locator("#compare-status").bounding_box(), page.locator("#compare-run").bounding_box()
    assert 0 <= status_box["y"] - (run_box["y"] + run_box["height"]) < 120
    assert status_box["y"] < page.locator("#compare-video-0").bounding_box()["y"]
    for slot in range(3):
        expect(page.locator(f"#compare-cards-{slot}")).to_contain_text("confidence")
    screenshots(page, "compare.png", full_page=True, settle_ms=500)

    # Again, stopped while the second video is read (slowly, so that the Stop lands there): the last
    # comparison is gone at once, and what stays is this run's.
    slow_reading(0.1)
    page.locator("#compare-run").click()
    expect(verdict).to_have_text("")
    expect(page.locator("#compare-status")).to_contain_text("Scoring 2 of 3")
    page.locator("#compare-stop").click()
    expect(page.locator("#compare-status")).to_contain_text("Stopped")
    expect(page.locator("#compare-cards-2")).to_contain_text("stopped")
    expect(page.locator("#compare-chart")).to_be_hidden()
    assert verdict.inner_text() == "" and "confidence" in page.locator("#compare-cards-0").inner_text()

    # A file this browser cannot play (MPEG-4 Part 2 in an .avi) is said in its own player, not in a
    # toast over another one.
    page.locator("#compare-video-3 input[type=file]").set_input_files(str(avi_clip))
    expect(page.locator("#compare-video-3")).to_have_attribute("data-unplayable", re.compile("cannot play this file"))
    page.wait_for_timeout(500)
    assert page.locator(".toast-body").filter(has_text="not playable").count() == 0


@pytest.mark.slow  # 8 s
def test_compare_at_phone_width_keeps_the_status_in_view_and_lays_out_the_chart_for_it(browser, app_url, clean_clip,
                                                                                      noisy_clip, screenshots):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(app_url)
    expect(page.locator("#model-status")).to_contain_text("ready", timeout=60_000)
    open_tab(page, "Compare")
    page.locator("#compare-video-0 input[type=file]").set_input_files(str(clean_clip))
    page.locator("#compare-video-1 input[type=file]").set_input_files(str(noisy_clip))
    page.locator("#compare-prompt textarea").fill(PROMPT)
    page.locator("#compare-run").click()
    expect(page.locator("#compare-status")).to_be_in_viewport()
    verdict = page.locator("#compare-verdict")
    expect(verdict).to_contain_text("Verdict", timeout=180_000)
    assert verdict.bounding_box()["width"] >= 300  # not squeezed beside the chart, one word a line
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing off-screen to the right
    chart = page.locator("#compare-chart .js-plotly-plot")
    expect(chart).to_be_visible()
    chart.hover()  # the toolbar shows: it must not cover the title
    page.wait_for_timeout(300)
    layout = chart.evaluate(FIGURE_PARTS_JS)
    assert layout["width"] <= 360 and not figure_problems(layout), figure_problems(layout)
    screenshots(page, "compare-phone.png", full_page=True, settle_ms=500)
    context.close()


# ---- what a public Space must hold up to ----------------------------------------------------------

HOSTILE = ('<img src="{pixel}" alt="pixel"> <form><input type="password" name="pw"></form> '
           '![tracker]({pixel}) ')


@pytest.fixture
def requests_to(page):
    """Every URL the page asks for that contains a marker: proof an injected image did not load."""
    seen = []
    page.on("request", lambda request: seen.append(request.url) if "vs2-pixel" in request.url else None)
    return seen


def test_model_text_is_shown_as_text(page, clean_clip, app_url, requests_to, monkeypatch):
    # A model can write anything, markup included; the reasoning panel must show it, not run it.
    import dataclasses

    from vs2demo import scoring
    from vs2demo.backends import Generation

    hostile = HOSTILE.format(pixel=app_url + "vs2-pixel.png")
    real_generate = scoring.generate

    def generate_with_markup(*args):
        """The model's stream with markup written into its reasoning (score positions moved along)."""
        for item in real_generate(*args):
            text = item.text.replace("<think>", "<think>" + hostile, 1)
            if isinstance(item, Generation):
                steps = [dataclasses.replace(step, start=step.start + len(hostile)) for step in item.digit_steps]
                yield dataclasses.replace(item, text=text, digit_steps=steps)
            else:
                yield dataclasses.replace(item, text=text)

    monkeypatch.setattr(scoring, "generate", generate_with_markup)
    page.locator("#evaluate-video input[type=file]").set_input_files(str(clean_clip))
    page.locator("#evaluate-prompt textarea").fill(PROMPT)
    page.locator("#evaluate-run").click()
    expect(page.locator("#evaluate-cards")).to_contain_text("confidence", timeout=120_000)
    thinking = page.locator("#evaluate-thinking")
    expect(thinking).to_contain_text('<img src="')
    expect(thinking).to_contain_text('<input type="password"')
    assert thinking.locator("img, input, form").count() == 0
    assert requests_to == []


def test_bad_input_gets_a_clear_message_keeps_what_was_typed_and_shows_text_as_text(page, clean_clip, app_url, tmp_path,
                                                                                      requests_to):
    """One page through two refusals: a file that is no video, a CSV whose header is markup."""
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video at all\n")
    page.locator("#evaluate-video input[type=file]").set_input_files(str(bad))
    page.locator("#evaluate-prompt textarea").fill(PROMPT)
    page.locator("#evaluate-run").click()
    expect(page.locator("#evaluate-status")).to_contain_text("could not be read as a video", timeout=30_000)
    expect(page.locator("#evaluate-prompt textarea")).to_have_value(PROMPT)

    header = f'<img src="{app_url}vs2-pixel.png"><input type=password>,prompt'
    prompts = tmp_path / "prompts.csv"
    prompts.write_text(f"{header}\n{clean_clip.name},{PROMPT}\n")
    page.get_by_role("tab", name="Batch").click()
    page.locator("#batch-videos input[type=file]").set_input_files(str(clean_clip))
    page.locator("#batch-csv input[type=file]").set_input_files(str(prompts))
    page.locator("#batch-run").click()
    toast = page.locator(".toast-body").filter(has_text="no video column")
    expect(toast).to_contain_text("<img src=", timeout=30_000)
    assert toast.locator("img, input").count() == 0
    assert requests_to == []



def test_stop_ends_the_work_on_the_server_and_stop_when_idle_stops_nothing(page, served_app, clean_clip, slow_reading):
    import threading
    import time

    served_scorer = served_app[1]
    cancels = []
    page.on("request", lambda request: cancels.append(request.post_data) if request.url.endswith("/cancel") else None)
    # Stop pressed with nothing running must not stop the run that follows.
    page.locator("#evaluate-stop").click()
    page.locator("#evaluate-video input[type=file]").set_input_files(str(clean_clip))
    page.locator("#evaluate-prompt textarea").fill(PROMPT)
    page.locator("#evaluate-run").click()
    expect(page.locator("#evaluate-cards")).to_contain_text("confidence", timeout=120_000)

    # Stop while the frames are read (a slow read: every packet takes 100 ms, about 6 s for the clip,
    # so that a click delayed by a loaded machine still lands before the read ends; seen once at 50 ms).
    read = slow_reading(0.1)
    page.locator("#evaluate-run").click()
    while not read:
        time.sleep(0.01)
    page.locator("#evaluate-stop").click()
    stopped = time.monotonic()
    expect(page.locator("#evaluate-status")).to_contain_text("Stopped before the model began", timeout=10_000)
    # Nothing of the finished run before it is left to pass for this one's (ui/evaluate.py's tests
    # check every output; this, that the page is wired to them).
    expect(page.locator("#evaluate-cards")).not_to_contain_text("confidence")
    expect(page.locator("#evaluate-download")).to_be_hidden()
    expect(page.locator("#evaluate-scores-plot")).to_be_hidden()
    while any(t.name.startswith(("vs2demo-request", "vs2demo-decode")) for t in threading.enumerate()) or served_scorer.slot.in_line():
        assert time.monotonic() - stopped < 1.0, "the server went on reading the video after Stop"
        time.sleep(0.01)
    assert all('"event_id":null' not in (body or "").replace(" ", "") for body in cancels), cancels


@pytest.mark.slow  # the refusals are tested over HTTP in test_public_space.py; what the page shows here
def test_the_page_says_why_an_upload_or_a_run_was_refused(page, served_app, clean_clip, monkeypatch):
    import threading
    import time

    from vs2demo import jobs
    from vs2demo.settings import ServerLimits
    from vs2demo.ui import files

    served_scorer = served_app[1]
    monkeypatch.setattr(files, "MIN_FREE_DISK_BYTES", shutil.disk_usage(files.upload_folder()).total)
    page.locator("#evaluate-video input[type=file]").set_input_files(str(clean_clip))
    expect(page.locator(".toast-body").filter(has_text="The server's disk is nearly full")).to_be_visible()

    monkeypatch.setattr(files, "MIN_FREE_DISK_BYTES", 0)
    page.locator("#evaluate-video input[type=file]").set_input_files(str(clean_clip))
    expect(page.locator("#evaluate-video video")).to_be_visible()
    page.locator("#evaluate-prompt textarea").fill(PROMPT)
    most = ServerLimits().max_requests_per_client  # the served app's
    with served_scorer.slot.turn(jobs.CancelToken()) as waiting:  # the model is busy: every run waits
        for _ in waiting:
            pass
        for _ in range(most + 1):
            page.locator("#evaluate-run").click()  # each click asks again (PAGE_MODEL_EVENT)
        expect(page.locator(".toast-body").filter(has_text=f"You already have {most} requests waiting or running")
               ).to_be_visible()
    page.locator("#evaluate-stop").click()
    stopped = time.monotonic()
    while any(t.name.startswith("vs2demo-request") for t in threading.enumerate()) or served_scorer.slot.in_line():
        assert time.monotonic() - stopped < 10, "Stop should end the runs that were let in"
        time.sleep(0.05)


@pytest.mark.slow  # 6 s: Stop itself is tested in the default run (test_stop_ends_the_work...)
def test_the_reasoning_stays_open_and_a_stop_while_it_is_written_leaves_a_calm_page(page, clean_clip, monkeypatch,
                                                                                  screenshots):
    import time

    from vs2demo.backends.transformers import TokenStreamer

    real_put = TokenStreamer.put

    def slow_put(self, value):
        """The toy writes in well under a second; a person reads slower. 0.15 s a token here (the
        page, reading as fast as it can, would catch up with a slow reader of the stream)."""
        time.sleep(0.15)
        real_put(self, value)

    monkeypatch.setattr(TokenStreamer, "put", slow_put)
    page.locator("#evaluate-video input[type=file]").set_input_files(str(clean_clip))
    page.locator("#evaluate-prompt textarea").fill(PROMPT)
    page.locator("#evaluate-run").click()
    thinking = page.locator("#evaluate-thinking")
    expect(thinking).to_contain_text("Writing…", timeout=60_000)
    expect(thinking.locator(".text")).to_contain_text("The", timeout=30_000)
    # Body type, dark text: the product's headline is readable.
    size, colour = thinking.locator(".text").evaluate(
        "el => [parseFloat(getComputedStyle(el).fontSize), getComputedStyle(el).color]")
    assert size >= 15, size
    assert max(int(c) for c in colour[colour.index("(") + 1:colour.index(")")].split(",")[:3]) < 110, colour
    screenshots(page, "reasoning-streaming.png")
    page.locator("#evaluate-stop").click()
    expect(page.locator("#evaluate-status")).to_contain_text("Stopped", timeout=10_000)
    expect(thinking).to_contain_text("Stopped after")
    expect(thinking).not_to_contain_text("Writing…")
    expect(page.locator("#evaluate-cards")).not_to_contain_text("waiting…")
    assert thinking.locator(".text").inner_text().strip() not in ("", "…")  # what was written is kept
    screenshots(page, "stopped.png")

    # Run again at once after a Stop in the middle of the stream: the page sends it (see
    # server.PAGE_MODEL_EVENT) and it runs to the end.
    monkeypatch.setattr(TokenStreamer, "put", real_put)
    page.locator("#evaluate-run").click()
    expect(page.locator("#evaluate-cards")).to_contain_text("confidence", timeout=120_000)


def test_a_model_that_loops_is_stopped_early_and_said_plainly(page, served_app, looping_model, clean_clip, screenshots):
    looping_model(served_app[1].backend().processor.tokenizer, ("<",))
    page.locator("#evaluate-video input[type=file]").set_input_files(str(clean_clip))
    page.locator("#evaluate-prompt textarea").fill(PROMPT)
    page.locator("#evaluate-run").click()
    status = page.locator("#evaluate-status")
    expect(status).to_contain_text("The model started repeating itself after", timeout=120_000)
    for wrong in ("Done", "max new tokens", "visual_quality", "text_alignment"):
        expect(status).not_to_contain_text(wrong)
    expect(page.locator("#evaluate-cards")).not_to_contain_text("confidence")  # no score from the loop
    expect(page.locator("#evaluate-scores-plot")).to_be_hidden()  # and no empty axes that read as zeros
    expect(page.locator("#evaluate-thinking .note")).to_contain_text("repeating itself")
    expect(page.locator("#evaluate-cards .vs2-check")).to_contain_text("the model repeated itself")  # its badge
    screenshots(page, "loop-stopped.png", full_page=True, settle_ms=300)


@pytest.mark.slow
def test_at_phone_width_the_cards_and_frames_fit_the_screen(browser, app_url, clean_clip, noisy_clip,
                                                                   screenshots):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = ready_to_evaluate(context.new_page(), app_url, noisy_clip)
    page.locator("#evaluate-run").click()
    expect(page.locator("#evaluate-cards")).to_contain_text("confidence", timeout=120_000)
    expect(page.locator("#evaluate-frames img").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing off-screen to the right
    columns = page.locator("#evaluate-cards .vs2-cards").evaluate("el => getComputedStyle(el).gridTemplateColumns")
    assert len(columns.split()) == 2, columns  # the four cards two by two
    strip = page.locator("#evaluate-frames .grid-container").first.evaluate(
        "el => [el.scrollWidth, el.clientWidth]")
    assert strip[0] <= strip[1] + 1, strip  # the frames wrap instead of running off to the side
    screenshots(page, "phone-evaluate.png", full_page=True, settle_ms=500)
    context.close()


@pytest.mark.slow  # 10-20 s; the layout of the read-only tables on a phone, no logic
def test_at_phone_width_a_tap_on_a_table_row_opens_it_and_edits_nothing(browser, app_url, clean_clip, tmp_path,
                                                                       screenshots):
    from tools.bench import synthetic_judgements

    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(app_url)
    expect(page.locator("#model-status")).to_contain_text("ready", timeout=60_000)
    open_tab(page, "Batch")
    prompts = tmp_path / "prompts.csv"
    prompts.write_text(f"video,prompt\n{clean_clip.name},\"{PROMPT * 4}\"\nmissing.mp4,{PROMPT}\n")
    page.locator("#batch-videos input[type=file]").set_input_files(str(clean_clip))
    page.locator("#batch-csv input[type=file]").set_input_files(str(prompts))
    page.locator("#batch-run").click()
    expect(page.locator("#batch-status")).to_contain_text("Scored 1 of 1 video.", timeout=120_000)
    # The long prompt takes a few lines: both rows are in the table's view at once.
    heights = page.locator("#batch-table .virtual-row").evaluate_all("rows => rows.map(row => row.offsetHeight)")
    assert len(heights) == 2 and max(heights) < 160, heights
    tap_a_row_and_see_no_editor(page, "batch-table", 0)
    expect(page.locator("#batch-row-reasoning")).to_contain_text(PROMPT * 2)  # the whole prompt, below
    screenshots(page, "phone-batch.png", full_page=True, settle_ms=500)

    records, _ = synthetic_judgements(12, seed=2)
    results = tmp_path / "results.jsonl"
    results.write_text("".join(record.to_json() + "\n" for record in records))
    open_tab(page, "Explore")
    page.locator("#explore-records input[type=file]").set_input_files(str(results))
    page.locator("#explore-load").click()
    expect(page.locator("#explore-count")).to_contain_text("Showing 12 of 12 records")
    tap_a_row_and_see_no_editor(page, "explore-table", 2)
    expect(page.locator("#explore-detail")).to_contain_text(records[2].video)
    screenshots(page, "phone-explore.png", full_page=True, settle_ms=500)
    context.close()


@pytest.mark.slow  # 8 s: the scroll on a phone; the logic of a run is tested in test_evaluate.py
def test_on_a_phone_a_run_brings_its_status_and_result_into_view(browser, app_url, clean_clip, screenshots):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = ready_to_evaluate(context.new_page(), app_url, clean_clip)
    in_view = "id => { const box = document.getElementById(id).getBoundingClientRect(); " \
              "return box.top >= 0 && box.top < window.innerHeight - 120; }"
    assert not page.evaluate(in_view, "evaluate-status")  # far below the button, as the issue found it
    page.locator("#evaluate-run").tap()
    page.wait_for_function(f"({in_view})('evaluate-status')", timeout=10_000)
    expect(page.locator("#evaluate-cards")).to_contain_text("confidence", timeout=120_000)
    # The toy answers before the smooth scroll ends: waited for, not read mid-scroll (CI caught
    # the status half-way up the screen).
    page.wait_for_function(f"({in_view})('evaluate-cards')", timeout=5_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshots(page, "evaluate-phone.png", settle_ms=500)
    context.close()


@pytest.fixture(scope="module")
def long_answer_url(toy_model_dir):
    """The app with tools.bench.ReplayBackend in place of the model: a long answer in VideoScore2's
    shape (900 tokens of the toy's tokenizer at 60 a second), through the app's whole path."""
    import socket

    from transformers import AutoTokenizer

    from tools.bench import ReplayBackend
    from vs2demo.scoring import Scorer
    from vs2demo.settings import Settings
    from vs2demo.ui.app import build_app, launch

    backend = ReplayBackend(AutoTokenizer.from_pretrained(toy_model_dir), 900, 60.0)
    demo = build_app(Scorer(Settings(model="replay", quant="none", device="cpu"), backend=backend))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.mark.slow  # 15 s: a long answer written at a model's pace
def test_the_page_follows_the_newest_line_unless_the_reader_scrolls_up(laptop, long_answer_url, clean_clip):
    page = ready_to_evaluate(laptop.new_page(), long_answer_url, clean_clip)
    page.locator("#evaluate-run").click()
    newest = page.locator("#evaluate-thinking .vs2-reasoning.writing .text")
    expect(newest).to_be_visible(timeout=60_000)
    where = "el => [el.getBoundingClientRect().bottom - window.innerHeight, window.scrollY, el.innerText.length]"
    seen = []
    while newest.count() and (not seen or seen[-1][2] < 1500):  # until the text is well past the first fold
        seen.append(newest.evaluate(where))
        page.wait_for_timeout(100)
    assert seen[-1][2] >= 1500, f"the answer ended before it outgrew the screen: {seen[-5:]}"
    behind = [below for below, _, _ in seen if below > 2]
    assert len(behind) <= len(seen) // 10, f"the newest line was below the screen in {len(behind)} of {len(seen)}: {seen}"

    page.mouse.wheel(0, -2000)  # the reader goes back up to read: the page stays there
    page.wait_for_timeout(300)
    below, scrolled, length = newest.evaluate(where)
    page.wait_for_timeout(1500)
    assert newest.count(), "the answer ended before the test could see the page stay"
    later = newest.evaluate(where)
    assert later[2] > length and later[1] == scrolled, (scrolled, later)
    expect(page.locator("#evaluate-status")).to_contain_text("Done", timeout=60_000)
    page.close()


# ---- the list tabs, the results store, a model that did not load -----------------------------------

@pytest.mark.slow  # 9 s: the ranking and the row-to-candidate lookup are tested in test_app.py, the page here
def test_best_of_n_ranks_the_candidates_with_thumbnails_and_a_click_plays_one(page, clean_clip, noisy_clip, dark_clip,
                                                                             screenshots):
    page.get_by_role("tab", name="Best of N").click()
    page.locator("#best-of-n-files input[type=file]").set_input_files([str(dark_clip), str(clean_clip), str(noisy_clip)])
    page.locator("#best-of-n-prompt textarea").fill(PROMPT)
    page.locator("#best-of-n-run").click()
    expect(page.locator("#best-of-n-status")).to_contain_text("Ranked 3 videos", timeout=180_000)
    table = page.locator("#best-of-n-table")
    expect(table).to_contain_text("dark.mp4")
    # The toy judges the clean clip best and the dark one worst (visual quality; the rest is alike).
    text = table.inner_text()
    assert text.index("clean.mp4") < text.index("noisy.mp4") < text.index("dark.mp4"), text
    expect(page.locator("#best-of-n-best")).to_contain_text("By overall, the best is clean.mp4")
    expect(page.locator("#best-of-n-chart .js-plotly-plot")).to_be_visible(timeout=30_000)
    expect(page.locator("#best-of-n-csv")).to_be_visible()
    # A picture on every row, from the frames the model saw.
    thumbnails = table.locator("img[src^='data:image/jpeg']").filter(visible=True)
    expect(thumbnails).to_have_count(3)
    assert all(box["height"] >= 40 for box in (t.bounding_box() for t in thumbnails.all()))
    screenshots(page, "best-of-n.png", full_page=True, settle_ms=500)
    # A click on the worst one's row plays it, and the player is brought into view; the table stays
    # read-only (no cell to edit, no buttons to select a row or a column).
    table.get_by_text("dark.mp4").filter(visible=True).click()
    player = page.locator("#best-of-n-best")
    expect(player).to_contain_text("Playing dark.mp4, #3 by overall")
    assert table.locator("[data-editable='true'], textarea").count() == 0
    expect(table.locator(".selection-button").first).to_be_hidden()
    expect(player.locator("video")).to_have_attribute("src", re.compile(r"dark\.mp4"))
    expect(player).to_be_in_viewport()
    page.wait_for_function("document.querySelector('#best-of-n-best video').currentTime > 0")
    # Another ranking key: the status line follows the table.
    page.locator("#best-of-n-rank-by input").click()
    page.get_by_role("option", name="Visual quality").click()
    expect(page.locator("#best-of-n-status")).to_contain_text("Ranked 3 videos by visual quality: the best is clean.mp4")


def test_batch_scores_the_csv_rows_into_a_table_with_downloads(page, clean_clip, noisy_clip, tmp_path, slow_reading):
    """First a batch over the limit (refused in a toast), then one with a CSV of prompts, then the
    same again, stopped while its first video is read (one page: a page costs 2 s of the default run)."""
    from conftest import TEST_MAX_BATCH

    copies = []
    for number in range(TEST_MAX_BATCH + 1):
        copy = tmp_path / f"clip{number}.mp4"
        shutil.copy(clean_clip, copy)
        copies.append(str(copy))
    page.get_by_role("tab", name="Batch").click()
    page.locator("#batch-videos input[type=file]").set_input_files(copies)
    page.locator("#batch-prompt textarea").fill(PROMPT)
    page.locator("#batch-run").click()
    # The upload box says how many it holds (it shows only the first few), and the toast says what
    # happened first, at the bottom of the screen rather than over the title.
    expect(page.locator("#batch-videos")).to_contain_text(f"Videos: {TEST_MAX_BATCH + 1} files")
    toast = page.locator(".toast-body").filter(has_text="Remove 1 of them")
    expect(toast).to_contain_text(f"a batch here is at most {TEST_MAX_BATCH}", timeout=30_000)
    expect(toast.locator("strong")).to_have_text("Cannot start the batch")
    assert toast.bounding_box()["y"] > page.viewport_size["height"] / 2
    page.locator("#batch-prompt textarea").fill("")
    page.locator("#batch-videos button[aria-label='Clear']").first.click()  # a new upload adds to the old

    prompts = tmp_path / "prompts.csv"
    prompts.write_text(f"video,prompt\n{noisy_clip.name},{PROMPT}\nmissing.mp4,{PROMPT}\n{clean_clip.name},"
                       "A blue ball bouncing on the floor.\n")
    page.locator("#batch-videos input[type=file]").set_input_files([str(clean_clip), str(noisy_clip)])
    expect(page.locator("#batch-videos")).to_contain_text("Videos: 2 files")
    page.locator("#batch-csv input[type=file]").set_input_files(str(prompts))
    page.locator("#batch-run").click()
    # Two videos were uploaded: the row naming a third is not counted as a video, it is said apart.
    expect(page.locator("#batch-status")).to_contain_text("Scored 2 of 2 videos", timeout=180_000)
    expect(page.locator("#batch-status")).to_contain_text("1 row of the CSV names no uploaded file")
    table = page.locator("#batch-table")
    expect(table).to_contain_text("no uploaded file has that name")
    text = table.inner_text()
    # In the CSV's order, each video with its own prompt.
    assert text.index("noisy.mp4") < text.index("missing.mp4") < text.index("clean.mp4") < text.index("A blue ball"), text
    expect(page.locator("#batch-csv-download")).to_be_visible()
    expect(page.locator("#batch-json-download")).to_be_visible()
    # A row's reasoning is one click away, under the table.
    reasoning = page.locator("#batch-row-reasoning")
    expect(reasoning).to_contain_text("Click a row")
    table.get_by_text("noisy.mp4").filter(visible=True).click()
    expect(reasoning).to_contain_text("noisy.mp4")
    expect(reasoning).to_contain_text("noise", ignore_case=True)
    expect(reasoning.locator(".answer")).to_contain_text("(1) visual quality: 2")
    # The template is a CSV the Batch tab itself reads.
    with page.expect_download() as download:
        page.locator("#batch-template").click()
    from vs2demo.batch import read_batch_csv

    template = Path(download.value.path()).read_bytes()
    assert template.startswith(b"video,prompt\n") and len(read_batch_csv(template)) == 2

    # The same batch again, stopped while its first video is read: the last batch's rows, downloads
    # and opened row went with the new run's first update, and the Stop says what is left.
    page.locator("#batch-stop").click()  # with nothing running: it stops nothing, says nothing
    expect(page.locator("#batch-status")).to_contain_text("Scored 2 of 2 videos")
    read = slow_reading(0.1)
    page.locator("#batch-run").click()
    expect(page.locator("#batch-status")).to_contain_text("Scoring 2 videos…", timeout=30_000)
    while not read:
        page.wait_for_timeout(10)
    page.locator("#batch-stop").click()
    expect(page.locator("#batch-status")).to_have_text("Stopped before any video was scored.", timeout=10_000)
    expect(table.locator(".virtual-row")).to_have_count(0)
    expect(reasoning).to_contain_text("Click a row")
    expect(page.locator("#batch-json-download")).to_be_hidden()


@pytest.mark.slow
def test_the_same_video_again_comes_from_the_store_and_score_again_asks_the_model(page, served_app, clean_clip,
                                                                                   tmp_path, monkeypatch):
    from vs2demo.store import ResultStore

    scorer = served_app[1]
    monkeypatch.setattr(scorer, "store", ResultStore(tmp_path / "results.sqlite3"))
    page.locator("#evaluate-video input[type=file]").set_input_files(str(clean_clip))
    page.locator("#evaluate-prompt textarea").fill(PROMPT)
    status = page.locator("#evaluate-status")
    page.locator("#evaluate-run").click()
    expect(status).to_contain_text("Done in", timeout=120_000)
    expect(page.locator("#evaluate-again")).to_be_hidden()
    first_cards = page.locator("#evaluate-cards").inner_text()

    page.locator("#evaluate-run").click()
    expect(status).to_contain_text("From the results store", timeout=30_000)
    assert page.locator("#evaluate-cards").inner_text() == first_cards
    page.locator("#evaluate-again").click()
    expect(status).to_contain_text("Done in", timeout=120_000)
    expect(page.locator("#evaluate-again")).to_be_hidden()
    assert len(scorer.store) == 2


@pytest.fixture(scope="module")
def broken_app_url():
    """The app with a model that cannot be loaded (a folder that does not exist)."""
    import socket

    from vs2demo.scoring import Scorer
    from vs2demo.settings import Settings
    from vs2demo.ui.app import build_app, launch

    scorer = Scorer(Settings(model="/nonexistent/model-folder", quant="none", device="cpu"))
    scorer.start_loading(background=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = build_app(scorer)
    launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.mark.slow
def test_a_model_that_did_not_load_is_said_plainly_and_nothing_hangs(browser, broken_app_url, clean_clip):
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.goto(broken_app_url)
    expect(page.locator("#model-status")).to_contain_text("could not be loaded", timeout=30_000)
    expect(page.locator("#model-status")).to_contain_text("No model folder")
    page.locator("#evaluate-video input[type=file]").set_input_files(str(clean_clip))
    page.locator("#evaluate-prompt textarea").fill(PROMPT)
    page.locator("#evaluate-run").click()
    expect(page.locator("#evaluate-status")).to_contain_text("could not be loaded", timeout=30_000)
    page.get_by_role("tab", name="Batch").click()
    page.locator("#batch-videos input[type=file]").set_input_files(str(clean_clip))
    page.locator("#batch-prompt textarea").fill(PROMPT)
    page.locator("#batch-run").click()
    # Batch refuses the list with an error toast (Evaluate's warning toast may still be showing).
    expect(page.locator(".toast-body.error").filter(has_text="could not be loaded")).to_be_visible(timeout=30_000)
    page.close()


@pytest.mark.slow  # 10 s; the tab's logic is tested in test_explore.py, its wiring here
def test_explore_loads_records_and_labels_filters_opens_a_row_and_exports(page, clean_clip, tmp_path, screenshots):
    """A set of judgements with people's labels: the paper's metrics, a filter, one row in depth
    (its video, the frames, the rationale, the labels), and the shown rows exported."""
    from dataclasses import replace

    from tools.bench import synthetic_judgements

    records, labels = synthetic_judgements(60, seed=2)
    records[1] = replace(records[1], video=clean_clip.name, settings={"fps": 2.0, "max_frames": 8, "quant": "4bit"})
    labels[1].video = clean_clip.name
    results = tmp_path / "results.jsonl"
    results.write_text("".join(r.to_json() + "\n" for r in records))
    people = tmp_path / "labels.csv"
    people.write_text("video,visual_quality,text_alignment,physical_consistency,generator\n" + "".join(
        f"{label.video},{label.scores['visual_quality']:g},{label.scores['text_alignment']:g},"
        f"{label.scores['physical_consistency']:g},{label.extra['generator']}\n" for label in labels)
        + "nobody.mp4,3,3,3,gen-9\n")

    page.get_by_role("tab", name="Explore").click()
    page.locator("#explore-records input[type=file]").set_input_files(str(results))
    page.locator("#explore-labels input[type=file]").set_input_files(str(people))
    page.locator("#explore-videos input[type=file]").set_input_files(str(clean_clip))
    expect(page.locator("#explore-videos")).to_contain_text(clean_clip.name)
    page.locator("#explore-load").click()
    summary = page.locator("#explore-summary")
    expect(summary).to_contain_text("60 records (1 failed); 60 matched a label", timeout=30_000)
    expect(summary).to_contain_text("1 label matched no record (nobody.mp4)")
    expect(page.locator("#explore-count")).to_contain_text("Showing 60 of 60 records")
    from vs2demo.metrics import compute

    expected = compute(records, labels, "expected")["dimensions"]["visual_quality"]
    low, high = expected["ci"]["exact_acc"]  # each figure with its 95% interval
    expect(page.locator("#explore-metrics-table")).to_contain_text(f"{expected['exact_acc']:g} [{low:g}, {high:g}]")
    expect(page.locator("#explore-metrics-note")).to_contain_text("95% bootstrap interval")
    expect(page.locator("#explore-reliability .js-plotly-plot")).to_be_visible()
    expect(page.locator("#explore-confusion .js-plotly-plot")).to_be_visible()

    # A filter: only what disagrees with people, the worst first.
    page.locator("#explore-agreement input").click()
    page.get_by_role("option", name="Disagrees with people (gap ≥ 1)").click()
    expect(page.locator("#explore-count")).not_to_contain_text("Showing 60 of 60")
    page.locator("#explore-agreement input").click()
    page.get_by_role("option", name="All", exact=True).click()
    expect(page.locator("#explore-count")).to_contain_text("Showing 60 of 60 records")

    # One row in depth: the clip at hand plays, with the frames the model saw and the labels.
    page.locator("#explore-table").get_by_text(clean_clip.name).filter(visible=True).click()
    detail = page.locator("#explore-detail")
    expect(detail).to_contain_text(clean_clip.name)
    expect(detail).to_contain_text("People: Visual quality")
    expect(page.locator("#explore-reasoning")).to_contain_text(records[1].rationale)
    expect(page.locator("#explore-cards")).to_contain_text("Visual quality")
    expect(page.locator("#explore-video video")).to_have_attribute("src", re.compile(re.escape(clean_clip.name)))
    expect(page.locator("#explore-frames img").first).to_be_visible()
    expect(page.locator("#explore-probs .js-plotly-plot")).to_be_visible()
    screenshots(page, "explore.png", full_page=True, settle_ms=500)

    # Search, then export what is shown.
    page.locator("#explore-search textarea").fill("robot")
    robots = sum("robot" in f"{r.video} {r.prompt} {r.rationale}".lower() for r in records)
    expect(page.locator("#explore-count")).to_contain_text(f"Showing {robots} of 60 records")
    page.locator("#explore-export-jsonl").click()
    with page.expect_download() as download:
        page.locator("#explore-exported a").first.click()
    exported = Path(download.value.path()).read_text().splitlines()
    assert len(exported) == robots and all("robot" in json.loads(line)["prompt"].lower() + json.loads(line)["rationale"]
                                           for line in exported)

    # Another set: nothing of the row opened in the first is left.
    page.locator("#explore-search textarea").fill("")
    second = tmp_path / "second.jsonl"
    second.write_text("".join(replace(r, video=f"second_{n}.mp4").to_json() + "\n" for n, r in enumerate(records[:3])))
    page.locator("#explore-records button[aria-label='Clear']").first.click()
    page.locator("#explore-records input[type=file]").set_input_files(str(second))
    page.locator("#explore-load").click()
    expect(page.locator("#explore-count")).to_contain_text("Showing 3 of 3 records")
    expect(detail).to_contain_text("Click a row of the table")
    expect(page.locator("#explore-cards")).to_have_text("")
    expect(page.locator("#explore-reasoning")).to_have_text("")
    expect(page.locator("#explore-video video")).to_have_count(0)
    expect(page.locator("#explore-frames img")).to_have_count(0)
    expect(page.locator("#explore-probs")).to_be_hidden()
    expect(page.locator("#explore-settings")).to_be_hidden()


@pytest.mark.slow
def test_the_authors_settings_in_one_click_and_the_record_says_so(page, clean_clip, screenshots):
    page.locator("#evaluate-video input[type=file]").set_input_files(str(clean_clip))
    page.locator("#evaluate-prompt textarea").fill(PROMPT)
    page.get_by_text("Scoring options").first.click()
    page.get_by_role("button", name="Use the authors' settings").first.click()
    expect(page.get_by_role("radio", name="inference").first).to_be_checked()
    expect(page.get_by_role("radio", name="sampling").first).to_be_checked()
    expect(page.get_by_role("radio", name=re.compile("as the authors' script")).first).to_be_checked()
    screenshots(page, "authors-settings.png", settle_ms=300)
    page.locator("#evaluate-run").click()
    expect(page.locator("#evaluate-cards")).to_contain_text("confidence", timeout=120_000)
    with page.expect_download() as download:
        page.locator("#evaluate-download").click()
    record = json.loads(Path(download.value.path()).read_text())
    settings = record["settings"]
    assert (settings["reading"], settings["template"], settings["do_sample"], settings["max_frames"]) == \
        ("authors", "inference", True, 768)
    page.get_by_role("button", name="Back to this app's defaults").first.click()
    expect(page.get_by_role("radio", name="card").first).to_be_checked()


@pytest.mark.slow  # 9 s: the numbers behind both views are tested in test_token_confidence and test_self_consistency
def test_the_reasoning_coloured_by_confidence_and_k_answers_side_by_side(page, screenshots, monkeypatch):
    """Sampled at 1.5, the toy is unsure in places: the coloured reasoning shades those tokens, a tap
    shows a token's alternatives, and "Ask K times" shows four answers and how far they agree."""
    import time

    from vs2demo.backends.transformers import TokenStreamer
    from vs2demo.ui.controls import ASSETS

    page.locator("#evaluate-video input[type=file]").set_input_files(str(ASSETS / "red_ball_clean.mp4"))
    page.locator("#evaluate-prompt textarea").fill(PROMPT)
    page.get_by_text("Scoring options").first.click()
    page.get_by_role("radio", name="sampling").first.check()
    temperature = page.locator("input[aria-label='number input for Temperature (sampling)']")
    temperature.fill("1.5")
    temperature.press("Enter")
    page.locator("#evaluate-run").click()
    expect(page.locator("#evaluate-cards")).to_contain_text("confidence", timeout=120_000)

    coloured = page.locator("#evaluate-coloured input")
    expect(coloured).to_be_visible()
    coloured.check()
    thinking = page.locator("#evaluate-thinking")
    expect(thinking).to_contain_text("How sure the model was")
    assert thinking.locator(".vs2-tok").count() > 20
    unsure = thinking.locator(".text .vs2-tok.c2, .text .vs2-tok.c3, .text .vs2-tok.c4")
    assert unsure.count() >= 1, "at 1.5 some token should be chosen at p < 0.7"
    unsure.last.click()  # a tap focuses it: its alternatives show
    tip = unsure.last.evaluate("el => getComputedStyle(el, '::after').content")
    assert "p = " in tip and "%" in tip, tip
    expect(thinking.locator(".vs2-least")).to_contain_text("Where it was least sure")
    # Laid out as the plain view: no tags, the score block apart.
    assert "think>" not in thinking.locator(".text").inner_text()
    expect(thinking.locator(".answer")).to_contain_text("(1) visual quality:")
    thinking.scroll_into_view_if_needed()
    screenshots(page, "confidence.png", settle_ms=300)
    coloured.uncheck()
    expect(thinking).to_contain_text("Reasoning, written in")

    # The panel is not on the page until the frames are read: watch the whole page for it.
    page.evaluate("""() => {
      window.__lengths = [];
      new MutationObserver(() => {
        const panel = document.querySelector('#evaluate-samples');
        if (panel) window.__lengths.push(panel.innerText.length);
      }).observe(document.body, {subtree: true, childList: true, characterData: true});
    }""")
    page.locator("#evaluate-samples-k input[type=number]").fill("4")
    page.locator("#evaluate-samples-k input[type=number]").press("Enter")
    real_put = TokenStreamer.put
    # The toy writes four answers in half a second, which the page may take in one update: 40 ms a
    # step, so that they are seen as they are written.
    monkeypatch.setattr(TokenStreamer, "put", lambda self, value: (time.sleep(0.04), real_put(self, value))[1])
    page.locator("#evaluate-ask").click()
    panel = page.locator("#evaluate-samples")
    expect(panel).to_contain_text("4 samples:", timeout=120_000)
    assert panel.locator(".vs2-sample").count() == 4
    assert panel.locator(".vs2-agreement tr").count() == 4  # a header and three dimensions
    expect(panel).to_contain_text("Agreement")
    expect(page.locator("#evaluate-stats")).to_contain_text("4 samples")
    lengths = [n for n in page.evaluate("window.__lengths") if n > 0]
    assert len(set(lengths)) >= 2, (f"the four answers should show as they are written, saw {lengths[:20]}; "
                                    f"status {page.locator('#evaluate-status').inner_text()!r}")
    panel.scroll_into_view_if_needed()
    screenshots(page, "samples.png", settle_ms=300)


@pytest.mark.slow  # 8 s; the records' checks are tested in test_record_schema.py, the page's escaping here
def test_a_records_file_cannot_run_script_in_the_page(page, tmp_path):
    """A hostile records file in Explore: a score that is markup is refused with its line, and
    markup in every text field of a valid record is shown as text when its row is opened."""
    from dataclasses import replace

    from tools.bench import synthetic_judgements

    attack = '<img src=x onerror="window.__xss=(window.__xss||0)+1">'
    page.on("dialog", lambda dialog: pytest.fail(f"a dialog opened: {dialog.message}"))
    records, _ = synthetic_judgements(3, seed=4)
    hostile = records[1].to_dict()
    hostile["scores"]["visual_quality"]["score"] = attack
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in (records[0].to_dict(), hostile)))
    page.get_by_role("tab", name="Explore").click()
    page.locator("#explore-records input[type=file]").set_input_files(str(bad))
    page.locator("#explore-load").click()
    expect(page.locator("#explore-summary")).to_contain_text("bad.jsonl: Line 2, scores.visual_quality.score")

    marked = replace(records[2], video=f"{attack}.mp4", prompt=attack, model=attack, rationale=attack,
                     text=f"<think>{attack}</think>", checks=[attack], settings={"quant": attack, "fps": attack},
                     scored_at=attack, tokens=None)
    good = tmp_path / "good.jsonl"
    good.write_text(marked.to_json() + "\n")
    page.reload()  # the upload box keeps adding files: start again with the good one alone
    expect(page.locator("#model-status")).to_contain_text("ready")
    page.get_by_role("tab", name="Explore").click()
    page.locator("#explore-records input[type=file]").set_input_files(str(good))
    page.locator("#explore-load").click()
    expect(page.locator("#explore-count")).to_contain_text("Showing 1 of 1 record.")
    page.locator("#explore-table").get_by_text(f"{attack}.mp4").filter(visible=True).click()
    expect(page.locator("#explore-detail")).to_contain_text(attack)
    expect(page.locator("#explore-cards")).to_contain_text("Visual quality")
    expect(page.locator("#explore-reasoning")).to_contain_text("onerror")
    page.wait_for_timeout(500)
    assert page.evaluate("window.__xss") is None
