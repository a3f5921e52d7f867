"""The Batch tab's logic without a browser: what each output shows from a run's first update to its
last, driven by the real scorer's stream on the toy model (ui.batch.run_batch is what the page runs)."""

import html
import json
import re
from pathlib import Path

import pytest

from vs2demo.batch import plan_batch
from vs2demo.results import PROMPT_CELL_CHARS, ScoreResult
from vs2demo.scoring import ListUpdate, Scorer, ScoreUpdate
from vs2demo.settings import ScoreOptions, Settings
from vs2demo.ui import files
from vs2demo.ui.batch import (
    ROW_HINT, batch_counts, finish, on_step, on_stop, row_reasoning, run_batch, selected_record, shown, start, table_rows,
)

PROMPT = "A red ball rolls and bounces across a grey studio floor."


@pytest.fixture(scope="module")
def scorer(toy_model_dir):
    from vs2demo.backends.transformers import TransformersBackend

    backend = TransformersBackend.load(Settings(model=str(toy_model_dir), quant="none", device="cpu"))
    return Scorer(backend.settings, store=None, backend=backend)  # no store: each run asks the model


@pytest.fixture(autouse=True)
def downloads_here(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "ROOT", tmp_path / "vs2demo")


def status_text(update: dict) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", update["status"]))


def downloaded(update: dict) -> list[dict]:
    """The records the JSON download button gives, as the reader would save them."""
    return json.loads(Path(update["json"]["value"]).read_text())


def no_progress(*args, **kwargs):
    pass


def plan_with_a_missing_row(clean_clip, noisy_clip):
    # Two uploads; the CSV's second row names a file that was not uploaded.
    return plan_batch([str(clean_clip), str(noisy_clip)],
                      [(noisy_clip.name, PROMPT), ("missing.mp4", PROMPT), (clean_clip.name, "A blue ball bouncing.")])


def test_the_counts_agree_from_the_first_message_to_the_last_when_a_csv_row_names_no_upload(scorer, clean_clip,
                                                                                           noisy_clip):
    items = plan_with_a_missing_row(clean_clip, noisy_clip)
    updates = list(run_batch(scorer.score_many, items, ScoreOptions(max_frames=8), no_progress))
    said = [status_text(update) for update in updates]
    assert said[0] == "Scoring 2 videos… 1 row of the CSV names no uploaded file: see the error column."
    progress = [text for text in said[1:-1] if text != said[0]]
    assert progress and all(re.match(r"Scoring [12] of 2: (noisy|clean)\.mp4\. ", text) for text in progress), progress
    assert said[-1] == "Scored 2 of 2 videos. 1 row of the CSV names no uploaded file: see the error column."
    assert not any(re.search(r"\b1 tokens\b", text) for text in said)
    last = updates[-1]
    assert list(last["table"]["Video"]) == ["noisy.mp4", "missing.mp4", "clean.mp4"]
    assert "no uploaded file has that name" in last["table"]["Error"][1]
    assert [record["video"] for record in downloaded(last)] == ["noisy.mp4", "missing.mp4", "clean.mp4"]
    # One token is one token, in the words of the one function that reads progress.
    view = start(batch_counts(items))
    step = ListUpdate(1, 3, "noisy.mp4", ScoreUpdate("generating", text="<think>The", new_tokens=1), [])
    assert on_step(view, step, started=0.0).message == "Scoring 1 of 2: noisy.mp4. The model is writing… 1 token"
    step = ListUpdate(3, 3, "clean.mp4", ScoreUpdate("generating", text="<think>The", new_tokens=2), [])
    assert on_step(view, step, started=0.0).message.startswith("Scoring 2 of 2: clean.mp4.")


def test_a_new_batch_after_a_finished_one_clears_its_table_downloads_and_reasoning_at_once(scorer, clean_clip,
                                                                                          noisy_clip):
    items = plan_with_a_missing_row(clean_clip, noisy_clip)
    records = [ScoreResult(item.video, item.prompt, "toy", error=item.problem) for item in items]
    finished = finish(on_step(start(batch_counts(items)), ListUpdate(3, 3, "clean.mp4", None, records), 0.0))
    before = shown(finished)
    assert len(before["table"]) == 3 and before["csv"]["visible"] and finished.state == "done"
    second = plan_batch([str(clean_clip)], None, PROMPT)
    first = next(run_batch(scorer.score_many, second, ScoreOptions(max_frames=8), no_progress))
    assert status_text(first) == "Scoring 1 video…"
    assert first["table"].empty and first["view"].results == ()
    assert first["csv"]["visible"] is False and first["json"]["visible"] is False
    assert first["reasoning"] == ROW_HINT  # a row of the last batch may have been open there


def test_a_stop_mid_batch_leaves_one_run_s_view_and_a_stop_when_idle_changes_nothing(scorer, clean_clip, noisy_clip):
    items = plan_with_a_missing_row(clean_clip, noisy_clip)
    run = run_batch(scorer.score_many, items, ScoreOptions(max_frames=8), no_progress)
    update = next(run)
    for update in run:  # the Stop comes while the second video is read or written
        if len(update["view"].results) == 2 and "clean.mp4" in status_text(update):
            break
    run.close()  # what the page's cancel does to the handler
    after = on_stop(update["view"])
    page = shown(after)
    assert status_text(page) == ("Stopped after 1 of 2 videos: the table and the downloads hold this batch's rows so "
                                 "far. 1 row of the CSV names no uploaded file: see the error column.")
    assert list(page["table"]["Video"]) == ["noisy.mp4", "missing.mp4"]
    assert [record["video"] for record in downloaded(page)] == ["noisy.mp4", "missing.mp4"]
    assert page["view"].state == "idle"
    assert on_stop(after) is None  # a second Stop: nothing runs, nothing changes

    finished = list(run_batch(scorer.score_many, items[:1], ScoreOptions(max_frames=8), no_progress))[-1]["view"]
    assert finished.state == "done" and on_stop(finished) is None
    assert status_text(shown(on_stop(start(batch_counts(items))))) == "Stopped before any video was scored."


def test_a_long_prompt_takes_a_few_lines_of_its_row_and_the_whole_of_it_is_one_click_away():
    prompt = "A red ball rolls and bounces across a grey studio floor, then stops by the wall. " * 6
    results = [ScoreResult("long.mp4", prompt, "toy"), ScoreResult("short.mp4", PROMPT, "toy")]
    rows = table_rows(results)
    assert len(rows["Prompt"][0]) == PROMPT_CELL_CHARS and rows["Prompt"][0].endswith("…")
    assert rows["Prompt"][1] == PROMPT
    clicked = selected_record(results, 0, rows.values.tolist()[0])
    assert clicked is results[0] and html.escape(prompt) in row_reasoning(clicked)
