"""The Evaluate tab's logic, without a browser: what each output shows when one run follows another,
when Stop comes at any moment, and what the prompt check and the download then hold. The streams
are the real scorer's on the toy model (example clips, so that the page's path check lets them in)."""

import json
import re
from dataclasses import fields, replace
from pathlib import Path

import pytest

from vs2demo.results import ScoreResult
from vs2demo.scoring import Scorer, Stage
from vs2demo.settings import ScoreOptions, Settings
from vs2demo.ui import evaluate, prompt_check
from vs2demo.ui.controls import ASSETS, DECODING_CHOICES
from vs2demo.ui.evaluate import EvaluateOutputs, EvaluateView, changes, on_result, on_stop, on_update, start

CLIP_A, CLIP_B = str(ASSETS / "red_ball_clean.mp4"), str(ASSETS / "green_ball_sand.mp4")
PROMPT_A = "A red ball rolls and bounces across a grey studio floor."
PROMPT_B = "A green ball bouncing on a sandy floor."
# The Scoring options as the page sends them (controls.SettingsControls.inputs order).
GREEDY = ("card", 2.0, 64, DECODING_CHOICES[0], 0.7, 1, 1024, "answer")


@pytest.fixture(scope="module")
def scorer(toy_model_dir):
    return Scorer(Settings(model=str(toy_model_dir), quant="none", device="cpu")).start_loading(background=False)


@pytest.fixture(scope="module")
def streams(scorer):
    """The whole stream of: clip A, clip B with another prompt, and clip A asked 4 times."""
    def stream(clip, prompt, options):
        return list(scorer.score(clip, prompt, options.validated(), refresh=True))

    return {"a": stream(CLIP_A, PROMPT_A, ScoreOptions()), "b": stream(CLIP_B, PROMPT_B, ScoreOptions()),
            "k": stream(CLIP_A, PROMPT_A, ScoreOptions(do_sample=True, temperature=1.0, seed=3, samples=4))}


def played(view, stream, until=None):
    """The view after feeding it a stream's updates (up to the first for which `until` holds), one
    second apart, and the record when the stream's end was reached."""
    for step, item in enumerate(stream):
        if until is not None and until(item):
            return view
        view = on_result(view, item) if isinstance(item, ScoreResult) else on_update(view, item, float(step))
    return view


def has_text(item) -> bool:
    return not isinstance(item, ScoreResult) and item.stage is Stage.GENERATING and len(item.text) > 40


@pytest.fixture(scope="module")
def finished_a(streams):
    view = played(start(EvaluateView()), streams["a"])
    assert view.state == "done" and view.record.video == "red_ball_clean.mp4"
    return view


def shows_nothing_of(view: EvaluateView, record: ScoreResult) -> None:
    """No output of `view` shows `record`'s scores, reasoning, stats, frames, plots or download."""
    assert record.rationale[:30] not in view.reasoning
    assert "confidence" not in view.cards and re.search(r"class='score'>\d", view.cards) is None
    assert view.stats == "" and view.frames == () and view.samples == ""
    assert view.record is None
    shown = changes(None, view)
    assert shown["scores_plot"]["visible"] is False and shown["probs_plot"]["visible"] is False
    assert shown["download"] == {"__type__": "update", "value": None, "visible": False}
    assert shown["colour"]["visible"] is False and shown["frames"]["value"] == []


def test_a_new_run_clears_every_output_of_the_last_and_the_prompt_check(finished_a):
    begun = start(finished_a)
    shows_nothing_of(begun, finished_a.record)
    assert "busy" in begun.status and begun.run == finished_a.run + 1
    sent = changes(finished_a, begun)  # what the page is told: every output the last run filled
    assert {"cards", "reasoning", "stats", "frames", "scores_plot", "probs_plot", "download", "colour"} <= set(sent)
    assert sent["check_status"] == prompt_check.cleared()[0] and sent["check_table"] == ""


def test_stop_while_the_next_video_is_read_shows_nothing_of_the_last(finished_a, streams):
    reading = played(start(finished_a), streams["b"], until=lambda item: item.stage is Stage.SAMPLED)
    calm = on_stop(reading, now=5.0)
    assert "Stopped before the model began" in calm.status and "What the model had written" not in calm.status
    shows_nothing_of(calm, finished_a.record)
    assert "waiting…" not in calm.cards and "stopped" in calm.cards


def test_stop_while_writing_keeps_what_this_run_wrote_made_calm(finished_a, streams):
    writing = played(start(finished_a), streams["b"], until=has_text)
    assert "Writing…" in writing.reasoning and writing.frames
    calm = on_stop(writing, now=writing.clock + 2.5)
    assert "What the model had written is kept above" in calm.status
    assert "Stopped after" in calm.reasoning and "Writing…" not in calm.reasoning
    assert writing.latest.parsed.rationale[:20] in calm.reasoning
    assert "waiting…" not in calm.cards
    assert calm.record is None and calm.frames is writing.frames  # the frames of this video, no record
    assert changes(None, calm)["download"]["visible"] is False


def test_stop_as_k_answers_end_leaves_one_run_whole(streams):
    """Stop just before the record came: the answers as written, no agreement, plots or record. Stop
    just after: the finished run, untouched. Either way every output belongs to the same moment."""
    before = played(start(EvaluateView(), asked=4), streams["k"], until=lambda item: isinstance(item, ScoreResult))
    calm = on_stop(before, now=99.0)
    assert "What the answers had written is kept below" in calm.status
    assert calm.samples.count("class='vs2-sample'") == 4 and "vs2-agreement" not in calm.samples
    assert calm.record is None and "confidence" not in calm.cards and "Stopped after" in calm.reasoning
    shown = changes(None, calm)
    assert shown["scores_plot"]["visible"] is False and shown["colour"]["visible"] is False

    after = on_result(before, streams["k"][-1], colour=True)
    assert on_stop(after, now=99.0) is after
    assert "vs2-agreement" in after.samples and "4 samples" in after.stats and "vs2-confidence" in after.reasoning
    assert "stopped" not in after.cards


def test_a_stop_that_finds_the_page_behind_sends_the_whole_view_of_the_run(finished_a):
    outputs = EvaluateOutputs(*[field.name for field in fields(EvaluateOutputs)])  # names stand in for components
    page_busy = "<div class='vs2-status busy'>The model is writing… 60 tokens</div>"
    # The run had ended, but its last update had not reached the page: the page gets the whole of it.
    sent = evaluate.stopped(outputs, finished_a, page_busy)
    assert sent["cards"] == finished_a.cards and sent["status"] == finished_a.status
    assert sent["download"]["visible"] is True and sent["scores_plot"]["visible"] is True
    # The page shows the end already: nothing to do.
    assert all(value == {"__type__": "update"} for value in evaluate.stopped(outputs, finished_a, finished_a.status).values())


def test_the_download_is_only_ever_the_shown_runs_record(finished_a, streams):
    b = played(start(finished_a), streams["b"])
    path = changes(finished_a, b)["download"]["value"]
    assert json.loads(Path(path).read_text())["video"] == "green_ball_sand.mp4"


def test_a_refused_request_keeps_the_last_result_and_says_whose_it_is(finished_a):
    views = list(evaluate.evaluation(None, finished_a, CLIP_B, PROMPT_B, ("card", 2.0, 5000, *GREEDY[3:])))
    assert len(views) == 1 and views[0].record is finished_a.record and views[0].toast
    assert "Max frames" in views[0].status or "max_frames" in views[0].status
    assert "still the last one evaluated, of red_ball_clean.mp4" in views[0].status


def test_asking_k_times_samples_whatever_the_decoding_control_says():
    options = evaluate.request_options(GREEDY, asked=4)
    assert options.do_sample and options.samples == 4
    assert not evaluate.request_options(GREEDY).do_sample


def test_one_run_through_the_real_scorer_begins_cleared_and_ends_with_its_own_record(scorer, finished_a):
    views = list(evaluate.evaluation(scorer.score, finished_a, CLIP_B, PROMPT_B, GREEDY))
    assert views[0].record is None and views[0].run == finished_a.run + 1
    assert views[-1].record.video == "green_ball_sand.mp4" and "Done in" in views[-1].status
    assert any("Writing…" in view.reasoning for view in views[1:-1])


def test_the_prompt_check_refuses_while_a_run_has_no_result_and_reads_the_shown_record(finished_a, scorer):
    running = start(finished_a)
    refused = list(prompt_check.check(scorer.score, running.record, CLIP_A, PROMPT_A, "", GREEDY))
    assert len(refused) == 1 and "Nothing to compare with yet" in refused[0].status
    views = list(prompt_check.check(scorer.score, finished_a.record, CLIP_A, PROMPT_A, "", GREEDY))
    assert views[0].table == "" and "busy" in views[0].status
    assert "Without a prompt" in views[-1].table and "red_ball_clean.mp4" in views[-1].table


def test_a_stored_record_says_so_and_offers_score_again(finished_a):
    stored = replace(finished_a.record, stored=True, scored_at="2026-11-26T16:32:00+00:00")
    view = on_result(start(finished_a), stored)
    assert "From the results store" in view.status and "2026-11-26 16:32 UTC" in view.status
    assert view.again and view.frames == () and "not read again" in view.frames_label
