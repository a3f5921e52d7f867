"""Explore's two runs side by side and generators ranked, in chromium: the wiring and what a person
sees (the figures are tested in test_runs_generators.py)."""

import re

import pytest
from browser_kit import browser, expect, laptop, open_tab, page, screenshots  # noqa: F401  (fixtures)

GENERATORS = ("Veo-3", "Sora", "Wan-2.1", "CogVideoX")


def two_runs_and_labels(tmp_path, clip_name: str):
    """96 videos over 12 prompts judged twice (4-bit, then a rerun as bf16), and people's labels
    with a generator column: per prompt, the two videos people liked best are Veo-3's, the next two
    Sora's, and so on. The video where the runs differ most is `clip_name`, at hand to watch."""
    from dataclasses import replace

    from tools.bench import rerun_judgements, synthetic_judgements
    from vs2demo.runs import compare_runs

    records, labels = synthetic_judgements(96, seed=4, prompts=12)
    again = rerun_judgements(records, seed=5)
    top = compare_runs(records, again)["disagreements"][0]["a_record"]
    records[top], again[top] = (replace(r, video=clip_name) for r in (records[top], again[top]))
    labels[top].video = clip_name
    for prompt in range(12):
        ours = sorted(range(prompt, 96, 12), key=lambda i: -sum(labels[i].scores.values()))
        for place, i in enumerate(ours):
            labels[i].extra["generator"] = GENERATORS[place // 2]
    paths = []
    for name, run in (("bnb-4bit.jsonl", records), ("bf16.jsonl", again)):
        paths.append(tmp_path / name)
        paths[-1].write_text("".join(r.to_json() + "\n" for r in run))
    people = tmp_path / "labels.csv"
    people.write_text("video,visual_quality,text_alignment,physical_consistency,generator\n" + "".join(
        f"{label.video},{label.scores['visual_quality']:g},{label.scores['text_alignment']:g},"
        f"{label.scores['physical_consistency']:g},{label.extra['generator']}\n" for label in labels))
    return records, again, paths, people, compare_runs(records, again)


def load(page, paths, people, clip):
    open_tab(page, "Explore")
    page.locator("#explore-records input[type=file]").set_input_files([str(p) for p in paths])
    page.locator("#explore-labels input[type=file]").set_input_files(str(people))
    page.locator("#explore-videos input[type=file]").set_input_files(str(clip))
    # By the cell's accessible name: its text may be "clean .mp4" (the name and the ending in two
    # parts, as a phone's width lays them out).
    expect(page.locator("#explore-videos").get_by_role("cell", name=clip.name)).to_be_visible()
    page.locator("#explore-load").click()
    expect(page.locator("#explore-count")).to_contain_text("Showing 192 of 192 records", timeout=30_000)


def compare(page, report):
    page.locator("#explore-runs").get_by_text("Two runs side by side").click()
    expect(page.locator("#explore-run-a input")).to_have_value(re.compile("4bit"))
    expect(page.locator("#explore-run-b input")).to_have_value(re.compile("none"))
    page.locator("#explore-compare-runs").click()
    note = page.locator("#explore-runs-note")
    expect(note).to_contain_text(f"{report['paired']} videos paired (same video and prompt)", timeout=30_000)
    expect(note).to_contain_text("quadratic")
    visual = report["dimensions"]["visual_quality"]
    row = page.locator("#explore-runs-table").get_by_role("row").filter(has_text="Visual quality")
    expect(row).to_contain_text(f"{visual['kappa']:g}")
    expect(row).to_contain_text(f"{visual['exact']:g}")
    expect(page.locator("#explore-runs-confusion .js-plotly-plot")).to_be_visible()
    expect(page.locator("#explore-runs-disagreements")).to_contain_text(report["disagreements"][0]["video"])


@pytest.mark.slow  # 20-40 s on two cores: two records files, labels and a clip through the page
def test_two_runs_side_by_side_and_generators_ranked(page, clean_clip, tmp_path, screenshots):  # noqa: F811
    records, again, paths, people, report = two_runs_and_labels(tmp_path, clean_clip.name)
    load(page, paths, people, clean_clip)
    compare(page, report)
    page.locator("#explore-runs-note").scroll_into_view_if_needed()
    screenshots(page, "compare-runs.png", settle_ms=600)
    # The disagreement at the top, opened: both rationales side by side, and the video.
    page.locator("#explore-runs-disagreements").get_by_text(clean_clip.name).filter(visible=True).first.click()
    top = next(n for n, r in enumerate(records) if r.video == clean_clip.name)
    expect(page.locator("#explore-runs-a")).to_contain_text(records[top].rationale)
    expect(page.locator("#explore-runs-b")).to_contain_text(again[top].rationale)
    expect(page.locator("#explore-runs-b")).to_contain_text("none")  # B's run named above its judgement
    expect(page.locator("#explore-runs-video video")).to_have_attribute("src", re.compile(re.escape(clean_clip.name)))
    page.locator("#explore-runs-video").evaluate("element => element.scrollIntoView({block: 'start'})")
    screenshots(page, "compare-runs-open.png", settle_ms=600)

    # Generators: the rows shown hold two runs, which are never mixed; one run, then people's labels.
    page.locator("#explore-generators").get_by_text("Rank generators").click()
    expect(page.locator("#explore-generator-by input")).to_have_value("generator")
    page.locator("#explore-rank-generators").click()
    expect(page.locator("#explore-generators-note")).to_contain_text("2 runs", timeout=30_000)
    page.locator("#explore-run input").click()
    page.get_by_role("option", name=re.compile("4bit")).click()
    expect(page.locator("#explore-count")).to_contain_text("Showing 96 of 192 records")
    page.locator("#explore-rank-generators").click()
    note = page.locator("#explore-generators-note")
    # synthetic_judgements' first record failed: left out, and said so.
    expect(note).to_contain_text("95 videos of 4 generators", timeout=30_000)
    expect(note).to_contain_text("left out: 1 record failed")
    expect(note).to_contain_text("not told apart")
    expect(page.locator("#explore-generators-plot .js-plotly-plot")).to_be_visible()
    ranking = page.locator("#explore-generators-ranking")
    expect(ranking.get_by_role("row").nth(1)).to_contain_text("Veo-3")  # people liked its videos best; so did the judge
    page.locator("#explore-generator-source").get_by_text("People's labels").click()
    page.locator("#explore-rank-generators").click()
    expect(note).to_contain_text("96 videos of 4 generators (column 'generator') over 12 prompts, by people's labels")
    expect(ranking.get_by_role("row").nth(1)).to_contain_text("Veo-3")
    page.locator("#explore-generators-plot").scroll_into_view_if_needed()
    screenshots(page, "generators.png", settle_ms=600)


@pytest.mark.slow  # 20-30 s: the same at a phone's width
def test_two_runs_at_phone_width(browser, app_url, clean_clip, tmp_path, screenshots):  # noqa: F811
    records, again, paths, people, report = two_runs_and_labels(tmp_path, clean_clip.name)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(app_url)
    expect(page.locator("#model-status")).to_contain_text("ready", timeout=60_000)
    load(page, paths, people, clean_clip)
    compare(page, report)
    page.locator("#explore-runs-note").evaluate("element => element.scrollIntoView({block: 'start'})")
    screenshots(page, "compare-runs-phone.png", settle_ms=600)
    page.locator("#explore-runs-disagreements").get_by_text(clean_clip.name).filter(visible=True).first.tap()
    top = next(n for n, r in enumerate(records) if r.video == clean_clip.name)
    expect(page.locator("#explore-runs-b")).to_contain_text(again[top].rationale)
    page.locator("#explore-runs-a").scroll_into_view_if_needed()
    screenshots(page, "compare-runs-open-phone.png", settle_ms=600)
    page.locator("#explore-run input").click()
    page.get_by_role("option", name=re.compile("4bit")).click()
    page.locator("#explore-generators").get_by_text("Rank generators").click()
    page.locator("#explore-rank-generators").click()
    expect(page.locator("#explore-generators-note")).to_contain_text("95 videos of 4 generators", timeout=30_000)
    page.locator("#explore-generators-plot").scroll_into_view_if_needed()
    screenshots(page, "generators-phone.png", settle_ms=600)
    context.close()
