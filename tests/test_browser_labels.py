"""Label as you look, in chromium: five videos labelled with the keyboard in Explore, the metrics
against people following, the labels kept over a restart of the app, and exported as the CSV the
metrics read; a reload of the page shows the browser its own labels again. Slow: two apps on the toy
model, about a minute on two cores."""

import re
import socket
from dataclasses import replace

import pytest
from browser_kit import browser, expect, screenshots  # noqa: F401  (fixtures)

from vs2demo import DIMENSIONS
from vs2demo.metrics import read_labels
from vs2demo.ui.labelling import BROWSER_KEY

pytestmark = pytest.mark.slow


def served(toy_model_dir, store_path, videos_dir):
    """The app on the toy model with a results store at `store_path`, the videos of `videos_dir` and
    labelling on, on a free port of this machine; (url, demo, scorer)."""
    from vs2demo.scoring import Scorer
    from vs2demo.settings import Settings
    from vs2demo.store import ResultStore
    from vs2demo.ui.app import build_app, launch

    scorer = Scorer(Settings(model=str(toy_model_dir), quant="none", device="cpu"), store=ResultStore(store_path))
    scorer.start_loading(background=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = build_app(scorer, videos_dir=str(videos_dir), labelling_allowed=True)
    launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True, videos_dir=str(videos_dir))
    scorer.backend(timeout=120)
    return f"http://127.0.0.1:{port}/", demo, scorer


@pytest.fixture
def videos_of_twelve(tmp_path, clean_clip, noisy_clip):
    """A folder with the videos the twelve judgements name (the test clips, under those names)."""
    import shutil

    folder = tmp_path / "videos"
    folder.mkdir()
    for number in range(12):
        shutil.copy((clean_clip, noisy_clip)[number % 2], folder / f"video_{number:05d}.mp4")
    return folder


@pytest.fixture
def store_of_twelve(tmp_path):
    """A results store holding twelve judgements (synthetic, with p(1..5)) and no label."""
    from tools.bench import synthetic_judgements
    from vs2demo.store import ResultStore

    path = tmp_path / "results.sqlite3"
    records, _ = synthetic_judgements(12, seed=3)
    store = ResultStore(path)
    for number, record in enumerate(records):
        store.put(replace(record, key=f"key-{number}"))
    store.close()
    return path, records


def load_the_store(page, url):
    page.goto(url)
    expect(page.locator("#model-status")).to_contain_text("ready", timeout=60_000)
    page.get_by_role("tab", name="Explore").click()
    page.locator("#explore-load-store").click()
    expect(page.locator("#explore-summary")).to_contain_text("12 records")


def label_with_keys(page, scores: list[int]) -> None:
    """The three dimensions' keys pressed one after another, as a person types them (no wait
    between); then each button chosen shows its mark."""
    for score in scores:
        page.keyboard.press(str(score))
    for key, score in zip(DIMENSIONS, scores):
        expect(page.locator(f"#explore-label-{key}-{score}")).to_contain_text("✔")
    expect(page.locator("#explore-label-head .vs2-label-saved")).to_be_visible()


def model_cells_shown(page) -> bool:
    """Whether the table shows the model's scores (its Visual column's cells) beside the videos' names."""
    expect(page.locator("#explore-table .virtual-row [data-col='1'] > .cell-wrap").first).to_be_visible()
    return page.locator("#explore-table .virtual-row [data-col='3'] > .cell-wrap").first.is_visible()


def a_click_locks_the_keys(page, row: int) -> bool:
    """A row of the table clicked and, before it has opened, a key pressed in the panel: whether the
    keys were locked meanwhile. (One script: no answer of the app can come in between.)"""
    return page.evaluate("""(row) => {
        const cell = document.querySelector(`#explore-table .virtual-row[data-index="${row}"] [data-col="1"]`);
        for (const kind of ["pointerdown", "mousedown", "pointerup", "mouseup", "click"]) {
            cell.dispatchEvent(new MouseEvent(kind, {bubbles: true, cancelable: true}));
        }
        const locked = window.vs2LabelMoving("explore-labelling");
        const panel = document.getElementById("explore-labelling");
        panel.focus();
        panel.dispatchEvent(new KeyboardEvent("keydown", {key: "4", bubbles: true, cancelable: true}));
        return locked;
    }""", row)


def reloaded_shows_my_labels(page, url, who: str, scores: list[int]) -> None:
    """The page again (a new session of the same browser), video_00003 opened: the panel shows the
    labels this browser gave it, under the same name; and a name typed is kept for the next reload."""
    load_the_store(page, url)
    page.locator("#explore-table .virtual-row").nth(3).locator("[role=gridcell]").nth(1).click()
    expect(page.locator("#explore-label-head")).to_contain_text(f"video_00003.mp4 as {who}")
    for key, score in zip(DIMENSIONS, scores):
        expect(page.locator(f"#explore-label-{key}-{score}")).to_contain_text("✔")
    kept = f"localStorage.getItem('{BROWSER_KEY}')"
    before = page.evaluate(kept)
    page.locator("#explore-label-who textarea").fill("Ann")
    page.locator("#explore-label-who textarea").press("Enter")
    expect(page.locator("#explore-label-head")).to_contain_text("video_00003.mp4 as Ann")
    page.wait_for_function(f"before => {kept} !== before", arg=before)  # the name is in the browser's storage
    page.reload()
    expect(page.locator("#evaluate-label-who textarea")).to_have_value("Ann")  # every panel's name
    page.get_by_role("tab", name="Explore").click()
    expect(page.locator("#explore-label-who textarea")).to_have_value("Ann")


def test_five_videos_labelled_with_the_keyboard_are_measured_kept_over_a_restart_and_exported(
        browser, toy_model_dir, store_of_twelve, videos_of_twelve, screenshots, tmp_path):  # noqa: F811
    path, records = store_of_twelve
    url, demo, scorer = served(toy_model_dir, path, videos_of_twelve)
    context = browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
    page = context.new_page()
    try:
        load_the_store(page, url)
        expect(page.locator("#explore-metrics-note")).to_contain_text("No shown row has people's labels")
        # The table is sorted by video name: row 0 is video_00000 (which failed: it has no scores).
        page.locator("#explore-table .virtual-row").nth(1).locator("[role=gridcell]").nth(1).click()
        expect(page.locator("#explore-label-head")).to_contain_text("video_00001")
        # The panel has the keyboard, its first dimension marked.
        expect(page.locator("#explore-labelling").first).to_be_focused()
        expect(page.locator("#explore-label-visual_quality")).to_have_class(re.compile("vs2-label-focused"))
        # Blind by default: the model's scores are not beside the buttons, nor its cards above.
        expect(page.locator("#explore-labelling .vs2-model-says").first).to_be_hidden()
        given = {}
        for row in range(1, 6):
            scores = [(row + k) % 5 + 1 for k in range(3)]
            label_with_keys(page, scores)
            given[f"video_{row:05d}"] = scores
            if row == 5:
                break
            page.keyboard.press("ArrowDown")
            expect(page.locator("#explore-label-head")).to_contain_text(f"video_{row + 1:05d}")
            expect(page.locator("#explore-labelling").first).to_be_focused()
        expect(page.locator("#explore-metrics-note")).to_contain_text("5 labelled items")
        expect(page.locator("#explore-count")).to_contain_text("12")
        who = page.locator("#explore-label-head b").nth(2).inner_text()
        assert re.fullmatch(r"browser-[0-9a-f]{6}", who)  # this browser's name
        # Blind: the table's model columns are blank too (the names and people's labels are not).
        assert not model_cells_shown(page)
        page.locator("#explore-video").evaluate("video => video.scrollIntoView({block: 'start'})")
        screenshots(page, "labelling.png", settle_ms=500)
        # A click on a row locks the keys until it has opened: a "4" then labels neither row.
        assert a_click_locks_the_keys(page, 6)
        expect(page.locator("#explore-label-head")).to_contain_text("video_00006")
        page.wait_for_timeout(500)  # time for a label the key might have given
        assert [len(scorer.store.labels()), scorer.store.labels()[-1].video] == [5, "video_00005"]
        assert scorer.store.labels()[-1].scores == dict(zip(DIMENSIONS, given["video_00005"]))
        page.locator("#explore-label-blind input").uncheck()
        expect(page.locator("#explore-labelling .vs2-model-says").first).to_be_visible()
        expect(page.locator("#explore-cards")).to_be_visible()
        assert model_cells_shown(page)
        reloaded_shows_my_labels(page, url, who, given["video_00003"])
    finally:
        page.close()
        demo.close()

    context.close()

    # The app again on the same store, read on a phone: the labels are there, as if a labels file had
    # been given, and the panel shows them on their videos.
    url, demo, _ = served(toy_model_dir, path, videos_of_twelve)
    context = browser.new_context(viewport={"width": 390, "height": 844}, accept_downloads=True,
                                  has_touch=True, is_mobile=True)
    page = context.new_page()
    try:
        load_the_store(page, url)
        expect(page.locator("#explore-summary")).to_contain_text("5 videos labelled in this app")
        expect(page.locator("#explore-metrics-note")).to_contain_text("5 labelled items")
        page.locator("#explore-table .virtual-row").nth(2).locator("[role=gridcell]").nth(1).click()
        expect(page.locator("#explore-label-head")).to_contain_text("video_00002")
        # People's labels beside the video (the panel is this browser's own: another has another name).
        vq, ta, pc = given["video_00002"]
        expect(page.locator("#explore-detail")).to_contain_text(
            f"People: Visual quality {vq} · Text alignment {ta} · Physical consistency {pc}")
        expect(page.locator("#explore-label-visual_quality-1")).to_have_text("1")
        # A phone has no keys: the buttons are tapped; this browser labels the video as another person.
        for key, score in zip(DIMENSIONS, given["video_00002"]):
            page.locator(f"#explore-label-{key}-{score}").tap()
            expect(page.locator(f"#explore-label-{key}-{score}")).to_contain_text("✔")
        page.locator("#explore-video").evaluate("video => video.scrollIntoView({block: 'start'})")
        screenshots(page, "labelling-phone.png", settle_ms=500)
        with page.expect_download() as download:
            page.locator("#explore-export-labels").click()
            page.locator("#explore-labels-file a[download]").first.click()
        exported = tmp_path / "exported.csv"
        download.value.save_as(exported)
        rows = read_labels(exported)
        assert len(rows) == 6 and len({label.extra["who"] for label in rows}) == 2  # two browsers, two names
        assert all(label.extra["who"].startswith("browser-") for label in rows)
        labels = {label.video: label for label in rows}
        assert set(labels) == set(given)
        for video, scores in given.items():
            assert [labels[video].scores[key] for key in DIMENSIONS] == scores
    finally:
        page.close()
        context.close()
        demo.close()


def test_an_evaluate_result_is_labelled_with_keys_and_a_compare_of_two_gets_a_preference(
        browser, toy_model_dir, clean_clip, noisy_clip, tmp_path):  # noqa: F811
    """Under an Evaluate result keys 1-5 label it; under a Compare of two videos, B says the second
    is better; both are kept in the store. Slow: two scorings on the toy, about 40 s on two cores."""
    from browser_kit import PROMPT, ready_to_evaluate

    url, demo, scorer = served(toy_model_dir, tmp_path / "results.sqlite3", tmp_path)
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    try:
        ready_to_evaluate(page, url, clean_clip)
        page.locator("#evaluate-run").click()
        expect(page.locator("#evaluate-label-head")).to_contain_text("clean.mp4", timeout=120_000)
        page.locator("#evaluate-labelling").first.click(position={"x": 5, "y": 5})  # the panel takes the keyboard
        for key in "425":
            page.keyboard.press(key)
        expect(page.locator("#evaluate-label-physical_consistency-5")).to_contain_text("✔")
        [label] = scorer.store.labels()
        assert (label.video, label.prompt, label.scores) == (
            "clean", PROMPT, {"visual_quality": 4, "text_alignment": 2, "physical_consistency": 5})
        assert label.video_sha256 and len(label.video_sha256) == 64

        page.get_by_role("tab", name="Compare").click()
        page.locator("#compare-video-0 input[type=file]").set_input_files(str(clean_clip))
        page.locator("#compare-video-1 input[type=file]").set_input_files(str(noisy_clip))
        page.locator("#compare-prompt textarea").fill(PROMPT)
        page.locator("#compare-run").click()
        expect(page.locator("#compare-pair-head")).to_contain_text("B: noisy.mp4", timeout=180_000)
        page.locator("#compare-labelling").first.click(position={"x": 5, "y": 5})
        page.keyboard.press("b")
        expect(page.locator("#compare-prefer-b")).to_contain_text("✔")
        [preferred] = scorer.store.preferences()
        assert (preferred.video_a, preferred.video_b, preferred.preference) == ("clean", "noisy", "b")
    finally:
        page.close()
        demo.close()
