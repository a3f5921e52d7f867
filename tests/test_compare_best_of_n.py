"""Compare and Best of N as plain functions, no browser: what each run shows from its first update
to its last, what a Stop leaves, and one rule for ties in both tabs (ranking.ranked_groups)."""

from __future__ import annotations

import re
import time

import pytest

from vs2demo import DIMENSIONS
from vs2demo.parsing import parse
from vs2demo.batch import BatchItem
from vs2demo.results import DimensionScore, ScoreResult
from vs2demo.scoring import ListUpdate, ScoreUpdate, Stage
from vs2demo.settings import ScoreOptions
from vs2demo.ui import best_of_n, compare
from vs2demo.ui.render import UpdatePacer

ANSWER = ("<think>The ball is sharp and red.</think>\n<answer>(1) visual quality: {0}\n(2) text-to-video alignment: {1}\n"
          "(3) physical/common-sense consistency: {2}</answer>")


@pytest.fixture(autouse=True)
def downloads(tmp_path, monkeypatch):
    """The records to download are written where the test can look, not in the app's folder."""
    from vs2demo.ui import files

    monkeypatch.setattr(files, "download_path", lambda name, suffix: str(tmp_path / f"{name}{suffix}"))


def record(name: str, expected=(4.0, 4.0, 4.0), error: str | None = None) -> ScoreResult:
    """A record as the scorer makes it: scores with their probabilities, the text they were read from."""
    if error:
        return ScoreResult(video=name, prompt="p", model="toy", error=error)
    scores = {}
    for key, value in zip(DIMENSIONS, expected):
        low = int(value)  # p split between two neighbouring scores, so the expected value is `value`
        probs = [0.0] * 5
        probs[low - 1] = 1 - (value - low)
        if value > low:
            probs[low] = value - low
        scores[key] = DimensionScore.from_probs(round(value), probs)
    text = ANSWER.format(*(round(value) for value in expected))
    return ScoreResult(video=name, prompt="p", model="toy", scores=scores, text=text, rationale="The ball is sharp and red.")


def stream(records: list[ScoreResult], stop_after: int | None = None):
    """What Scorer.score_many yields for these records, video by video (sampled, two steps of writing,
    the record); with `stop_after`, it ends while that video (1-based) is being written."""
    def score_many(items: list[BatchItem], options):
        results: list[ScoreResult] = []
        for position, (item, made) in enumerate(zip(items, records), start=1):
            def step(update):
                return ListUpdate(position, len(items), item.video, update, list(results))
            yield step(ScoreUpdate(Stage.SAMPLED))
            half = made.text[: len(made.text) // 2]
            time.sleep(UpdatePacer().interval)  # as a model does: the page is sent text a few times a second
            yield step(ScoreUpdate(Stage.GENERATING, text=half, parsed=parse(half, final=False), new_tokens=10))
            if position == stop_after:
                return
            results.append(made)
            yield step(None)
    return score_many


def items(count: int) -> list[BatchItem]:
    return [BatchItem(f"clip{i}.mp4", f"/videos/clip{i}.mp4", "A red ball.") for i in range(1, count + 1)]


# ---- ties: one rule in both tabs ------------------------------------------------------------------

def test_compare_says_who_ties_as_a_sentence():
    equal = [record(f"v{i}", (3.5, 3.5, 3.5)) for i in range(3)]
    assert compare.verdict_markdown(equal, [1, 2, 3]).startswith("### Verdict: Videos 1, 2 and 3 tie\n")
    # The reading, "Video 3 and Video 1 and Video 2 tie", gone: in page order, one "and".
    three = [record("a", (4.0, 4.0, 4.0)), record("b", (4.0, 1.0, 1.0)), record("c", (2.0, 4.0, 1.0))]
    text = compare.verdict_markdown(three, [1, 2, 3])
    assert "**Text alignment**: Videos 1 and 3 tie at 4.00, ahead of Video 2 (1.00, 3.00 behind)" in text
    assert "**Physical consistency**: **Video 1 (4.00)**, ahead of Videos 2 and 3 (tied at 1.00, 3.00 behind)" in text
    assert "**Visual quality**: Videos 1 and 2 tie at 4.00, ahead of Video 3 (2.00, 2.00 behind)" in text
    assert text.startswith("### Verdict: Video 1 is the best video")
    two_of_three = [record("a", (4.0, 4.0, 4.0)), record("b", (1.0, 1.0, 1.0)), record("c", (4.0, 4.0, 3.98))]
    assert compare.verdict_heading(two_of_three, [1, 2, 4]) == "Videos 1 and 4 tie for the best"
    assert compare.verdict_heading([record("a"), record("b", error="unreadable")], [1, 2]) == "Only Video 1 could be scored"


def test_best_of_n_names_no_best_when_the_top_scores_tie():
    """Five equal overall scores: Compare says they tie, and so does Best of N, in its status, its
    table, its chart and its player (which picks none of them)."""
    five = [record(f"clip{i}.mp4", (3.5, 3.5, 3.5)) for i in range(1, 6)]
    assert compare.verdict_heading(five, [1, 2, 3, 4, 5]) == "Videos 1, 2, 3, 4 and 5 tie"
    views = list(best_of_n.rank_views(stream(five), [f"/videos/clip{i}.mp4" for i in range(1, 6)], "A red ball.",
                                      ScoreOptions(), "overall"))
    last = views[-1]
    assert "Ranked 5 videos by overall: all 5 tie at 3.50." in last.status and "best" not in last.status
    table = best_of_n.ranked_table(last.candidates, "overall")
    assert list(table["Rank"]) == ["1 (tie)"] * 5
    player = best_of_n.player_update(last.candidates, "overall")
    assert player["value"] is None and "all 5 tie" in player["label"]
    from vs2demo.plots import EXPECTED_COLOR, ranking_figure

    chart = ranking_figure([c.result for c in last.candidates], [c.label for c in last.candidates])
    assert list(chart.data[0].marker.color) == [EXPECTED_COLOR] * 5  # all five first, none singled out


def test_best_of_n_rerank_by_a_dimension_picks_none_of_a_tie():
    candidates = tuple(best_of_n.Candidate(f"/videos/{name}", name, record(name, values)) for name, values in
                       (("a.mp4", (3.0, 4.0, 2.0)), ("b.mp4", (4.0, 2.0, 4.0)), ("c.mp4", (4.02, 3.0, 1.0))))
    view = best_of_n.RankView(best_of_n.status_html("done", "Ranked"), candidates, by="overall", total=3)
    overall = best_of_n.reranked(view, "text_alignment")
    assert "the best is a.mp4 (4.00)" in overall.status
    by_visual = best_of_n.reranked(view, "visual_quality")
    assert "b.mp4 and c.mp4 tie for first at 4.02" in by_visual.status and "the best" not in by_visual.status
    assert best_of_n.player_update(by_visual.candidates, "visual_quality")["value"] is None
    assert list(best_of_n.ranked_table(candidates, "visual_quality")["Rank"]) == ["1 (tie)", "1 (tie)", "3"]
    # A click on a row of the tie plays it, said as a tie.
    row = best_of_n.ranked_table(candidates, "visual_quality").values.tolist()[1]
    played = best_of_n.candidate_to_play(candidates, "visual_quality", 1, row)
    assert played["label"] == "Playing c.mp4, tied #1 by visual quality (4.02)"
    assert best_of_n.reranked(view, "overall") is None  # the same key: nothing to do


# ---- a run owns the whole view ----------------------------------------------------------------------

def test_a_new_compare_run_clears_the_last_runs_results_in_its_first_view():
    first = list(compare.compare_views(stream([record("a", (4, 4, 4)), record("b", (2, 2, 2))]), (0, 1), items(2),
                                       ScoreOptions()))[-1]
    assert first.chart is not None and "Verdict" in first.verdict and first.download
    second = compare.compare_views(stream([record("c"), record("d"), record("e")]), (1, 2, 3), items(3), ScoreOptions())
    view = next(second)
    assert view.chart is None and view.verdict == "" and view.download is None and view.running
    assert view.cards[0] == "" and all("waiting…" in card for card in view.cards[1:])
    assert view.reasoning == ("",) * compare.SLOTS


def test_a_stop_in_compare_leaves_only_what_the_stopped_run_made():
    old = list(compare.compare_views(stream([record("a"), record("b")]), (0, 1), items(2), ScoreOptions()))[-1]
    views = list(compare.compare_views(stream([record("c", (2, 2, 2)), record("d"), record("e")], stop_after=2),
                                       (0, 1, 2), items(3), ScoreOptions()))
    # The stream ended while video 2 was written: the view the page shows then is the last one with a
    # run going on (the Stop cancels the run before its finishing view).
    shown = [view for view in views if view.running][-1]
    # Once a video's record is in, the status names the next one, not the one just scored.
    after_first = next(view for view in views if "confidence" in view.cards[0])
    assert "Scoring 2 of 3: clip2.mp4. Reading the video…" in after_first.status
    calm = compare.stopped(shown)
    assert "Stopped" in calm.status and not calm.running
    assert "expected 2.00" in calm.cards[0]  # video 1's result, from this run
    assert "waiting…" not in "".join(calm.cards) and "stopped" in calm.cards[1] and "stopped" in calm.cards[2]
    assert "Stopped after" in calm.reasoning[1] and "Writing" not in calm.reasoning[1]
    assert calm.chart is None and calm.verdict == "" and calm.download is None  # none of the old run's
    assert old.download and old.download != calm.download
    assert compare.stopped(calm) is None and compare.stopped(old) is None  # nothing running: nothing to stop


def test_compare_shows_a_view_whole_and_then_only_what_changed():
    import gradio as gr

    outputs = compare.CompareOutputs(gr.HTML(), [gr.HTML() for _ in range(4)], [gr.HTML() for _ in range(4)],
                                     gr.Plot(), gr.Markdown(), gr.DownloadButton(), gr.State())
    views = list(compare.compare_views(stream([record("a"), record("b")]), (0, 1), items(2), ScoreOptions()))
    first = outputs.updates(views[0])
    assert set(first) == set(outputs.components())  # the first update of a run sets every output
    assert first[outputs.chart]["visible"] is False and first[outputs.download]["visible"] is False
    step = outputs.updates(views[1], views[0])
    assert outputs.chart not in step and outputs.cards[3] not in step and outputs.view in step


def test_a_stop_in_best_of_n_keeps_the_candidates_of_its_run_and_says_so():
    five = [record(f"clip{i}.mp4", (i, 3.0, 3.0)) for i in range(1, 6)]
    paths = [f"/videos/clip{i}.mp4" for i in range(1, 6)]
    views = list(best_of_n.rank_views(stream(five, stop_after=3), paths, "A red ball.", ScoreOptions(), "overall"))
    first, shown = views[0], [view for view in views if view.running][-1]
    assert first.candidates == () and first.running  # a new run starts with no ranking
    calm = best_of_n.stopped(shown)
    assert re.search(r"Stopped after 2 of 5 videos: the ranking shows the 2 scored\.", calm.status)
    assert [c.label for c in calm.candidates] == ["clip1.mp4", "clip2.mp4"]
    assert best_of_n.stopped(calm) is None  # a second Stop, or one after the end, changes nothing
    finished = views[-1]
    assert best_of_n.stopped(finished) is None
    nothing = best_of_n.stopped(best_of_n.started(["a.mp4", "b.mp4"], "overall"))
    assert "Stopped before any video was scored." in nothing.status


def test_best_of_n_draws_table_chart_player_and_downloads_from_one_view():
    import gradio as gr

    outputs = best_of_n.RankOutputs(gr.HTML(), gr.Dataframe(), gr.Plot(), gr.Video(), gr.DownloadButton(),
                                    gr.DownloadButton(), gr.State())
    empty = outputs.updates(best_of_n.started(["a.mp4"], "overall"))
    assert len(empty[outputs.table]) == 0 and empty[outputs.player]["value"] is None
    assert empty[outputs.chart]["visible"] is False and empty[outputs.csv]["visible"] is False
    one = best_of_n.scored(best_of_n.started(["a.mp4", "b.mp4"], "overall"),
                           best_of_n.Candidate("/videos/a.mp4", "a.mp4", record("a.mp4")), "b.mp4")
    shown = outputs.updates(one, best_of_n.started(["a.mp4", "b.mp4"], "overall"))
    assert list(shown[outputs.table]["Video"]) == ["a.mp4"] and shown[outputs.player]["value"] == "/videos/a.mp4"
    assert shown[outputs.csv]["visible"] and shown[outputs.chart]["visible"]
    only_status = outputs.updates(best_of_n.stopped(one), one)
    assert set(only_status) == {outputs.status, outputs.view}


@pytest.mark.parametrize("values, heading", [((None, None), "None of the videos could be scored"),
                                              ((4.0, 1.0), "Video 1 is the better video")])
def test_compare_heading_without_a_tie(values, heading):
    results = [record(f"v{i}", (v, v, v)) if v is not None else record(f"v{i}", error="unreadable")
               for i, v in enumerate(values)]
    assert compare.verdict_heading(results, [1, 2]) == heading
