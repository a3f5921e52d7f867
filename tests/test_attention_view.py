"""Where it looked, shown (ui/attention_view.py), and "Do these frames matter?" (frames_check.py),
without a browser or a model: records with hand-made attention, a fake scorer standing in for
Scorer.score, every number checked against one worked out by hand."""

import re

import pytest

from vs2demo.errors import UserInputError
from vs2demo.frames_check import FramesCheck, CheckStep, plan_check, run_check, mean_patch_shares
from vs2demo.results import DimensionScore, ScoreResult
from vs2demo.settings import CheckMark, ScoreOptions
from vs2demo.ui import attention_view
from vs2demo.ui.attention_view import attention_html, check_table_html, prompt_html, top_indices, word_tier

# 6 temporal patches of 2 frames, frames sampled at 2 fps from 0.25 s.
PATCHES = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
TIMES = [0.25 + 0.5 * i for i in range(12)]
FRAMES = {"count": 12, "indices": [6 + 12 * i for i in range(12)], "timestamps": TIMES, "source_frames": 144,
          "source_fps": 24.0, "sampled_fps": 2.0, "model_fps": 2.0, "width": 448, "height": 252, "source_width": 640,
          "source_height": 360, "duration": 6.0, "backend": "pyav"}
WORDS = ["A", "red", "<img", "src=x", "onerror=alert(1)>", "ball"]
ATTENTION = {
    "version": 1,
    "aggregation": {"heads": "mean", "layers": [20, 27], "of_layers": 28, "query": "score digit", "backend": "transformers"},
    "patches": PATCHES,
    "words": WORDS,
    "dimensions": {
        "visual_quality": {"visual": 0.61, "prompt": 0.05, "patches": [0.05, 0.40, 0.05, 0.30, 0.10, 0.10],
                           "words": [0.1, 0.1, 0.1, 0.1, 0.1, 0.5]},
        "text_alignment": {"visual": 0.40, "prompt": 0.30, "patches": [0.10, 0.10, 0.50, 0.10, 0.10, 0.10],
                           "words": [0.02, 0.40, 0.20, 0.05, 0.03, 0.30]},
        "physical_consistency": {"visual": 0.55, "prompt": 0.02, "patches": [0.30, 0.10, 0.05, 0.05, 0.20, 0.30],
                                 "words": [0.2, 0.2, 0.2, 0.2, 0.1, 0.1]},
    },
}


def scores(visual, alignment, physical):
    return {key: DimensionScore(score=round(value), expected=value)
            for key, value in zip(("visual_quality", "text_alignment", "physical_consistency"), (visual, alignment, physical))}


def record(attention=ATTENTION, **changes):
    fields = {"video": "clip.mp4", "prompt": " ".join(WORDS), "model": "toy", "scores": scores(4.0, 3.0, 2.5),
              "frames": FRAMES, "settings": {"backend": "transformers"}, "key": "k" * 64,
              "attention": attention}
    return ScoreResult(**{**fields, **changes})


def cells(html_text, dimension):
    block = re.search(rf"data-dimension='{dimension}'.*?</div></div>", html_text, re.S).group(0)
    return re.findall(r"<button[^>]*>.*?</button>", block, re.S)


def test_each_strip_has_a_cell_per_patch_with_its_share_time_and_seek():
    shown = attention_html(record())
    visual = cells(shown, "visual_quality")
    assert len(visual) == 6
    # Patch 1 (frames 2, 3 at 1.25 and 1.75 s) holds 40% of visual quality's frame attention.
    assert "40.0%" in visual[1] and "1.2–1.8 s" in visual[1]
    assert "data-vs2-seek='1.250'" in visual[1] and "data-vs2-player='evaluate-video'" in visual[1]
    assert "data-vs2-seek='0.250'" in visual[0] and "5.0%" in visual[0]
    # The bar's height is the share against the largest (40 px for the largest).
    assert "height:40px" in visual[1] and "height:30px" in visual[3] and "height:5px" in visual[0]
    assert "61.0% of its attention on the frames, 5.0% on the prompt's words" in shown
    assert attention_view.CAUTION in shown and "2 frames the model merged" in shown


def test_the_top_three_are_outlined_and_ranked_not_by_colour_alone():
    visual = cells(attention_html(record()), "visual_quality")
    # 0.40 (patch 1), 0.30 (patch 3), then 0.10 twice: the earlier (patch 4) ranks third.
    assert [bool(re.search(r"class='cell top'", c)) for c in visual] == [False, True, False, True, True, False]
    assert "top 1" in visual[1] and "top 2" in visual[3] and "top 3" in visual[4]
    assert "rank 1" in visual[1]  # and in the button's accessible name
    assert top_indices([0.0, 0.0, 0.2]) == [2]  # a patch nobody looked at is never "top"
    # Never more than half the patches: of 3, marking all three "top" would say nothing.
    assert [attention_view.top_count(n) for n in (1, 2, 3, 4, 5, 6, 32)] == [1, 1, 1, 2, 2, 3, 3]


def test_the_prompt_is_shaded_by_text_alignment_and_escaped():
    shown = prompt_html(ATTENTION)
    assert "<img" not in shown and "onerror=alert(1)&gt;" in shown and "&lt;img" in shown
    # 0.40 is the largest: tier 3; 0.30/0.40 = 0.75: tier 3; 0.20: 0.5, tier 2; 0.05: 0.125, tier 1; 0.02: none.
    assert word_tier(0.40, 0.40) == 3 and word_tier(0.30, 0.40) == 3 and word_tier(0.20, 0.40) == 2
    assert word_tier(0.05, 0.40) == 1 and word_tier(0.02, 0.40) == 0
    assert "<span class='w3' title='40.0%'>red</span>" in shown and "<span title='2.0%'>A</span>" in shown
    assert "Most attended words: “red” 40.0%; “ball” 30.0%; “&lt;img” 20.0%." in shown


def test_a_record_without_usable_attention_shows_nothing():
    assert attention_html(record(attention=None)) == ""
    broken = {**ATTENTION, "dimensions": {"visual_quality": {"patches": [0.5, 0.5], "words": []}}}  # 2 shares, 6 patches
    assert attention_html(record(attention=broken)) == ""
    assert attention_html(None) == ""
    assert not attention_view.check_offered(record(settings={"backend": "vllm"}))
    assert attention_view.check_offered(record())


def test_explore_s_strip_seeks_explore_s_player():
    shown = attention_html(record(), attention_view.EXPLORE_PLAYER)
    assert "data-vs2-player='explore-video'" in shown and "evaluate-video" not in shown


def test_the_check_replaces_the_top_patches_by_their_mean_share_and_as_many_random_ones():
    # Mean over the three dimensions: [0.15, 0.20, 0.20, 0.15, 0.1333, 0.1667]: patches 1 and 2, then
    # 5 (0.1667). Random: 3 of the other patches (0, 3, 4), i.e. all of them here.
    assert mean_patch_shares(ATTENTION) == pytest.approx([0.15, 0.2, 0.2, 0.15, 0.4 / 3, 0.5 / 3])
    plan = plan_check(ATTENTION)
    assert plan.top_patches == (1, 2, 5) and plan.top == (2, 3, 4, 5, 10, 11)
    assert plan.random_patches == (0, 3, 4) and plan.random == (0, 1, 6, 7, 8, 9)
    assert plan_check(ATTENTION) == plan  # the seed is fixed: the same control every time


def test_a_longer_video_draws_the_random_patches_from_the_rest_with_the_seed():
    many = {**ATTENTION, "patches": [[2 * i, 2 * i + 1] for i in range(10)],
            "dimensions": {"visual_quality": {"patches": [0.3, 0.2, 0.1] + [0.4 / 7] * 7, "words": []}}}
    plan = plan_check(many)
    assert plan.top_patches == (0, 1, 2) and not set(plan.random_patches) & {0, 1, 2}
    assert len(plan.random) == len(plan.top) == 6
    assert plan_check(many).random == plan.random


def test_too_few_patches_are_refused_before_anything_runs():
    one = {**ATTENTION, "patches": [[0, 1]], "dimensions": {"visual_quality": {"patches": [1.0], "words": []}}}
    with pytest.raises(UserInputError, match="Too few frames"):
        plan_check(one)


class FakeScorer:
    """Scorer.score's stream: an update, then a record whose scores depend on which frames went."""

    def __init__(self, by_kind):
        self.by_kind, self.asked = by_kind, []

    def __call__(self, video, prompt, options):
        self.asked.append((video, prompt, options))
        yield "an update"
        kind = options.check.kind
        yield ScoreResult(video="clip.mp4", prompt=prompt, model="toy", scores=self.by_kind[kind], text="...",
                          settings={"check": options.check}, timings={"total_s": 1.5})


def test_the_check_scores_twice_marked_and_says_how_far_each_moved():
    original = record()
    fake = FakeScorer({"top-frames": scores(3.2, 2.1, 2.5), "random-frames": scores(3.9, 3.0, 2.6)})
    options = ScoreOptions(attention=True).validated()
    steps = list(run_check(fake, original, "/tmp/clip.mp4", options))
    assert [s.step for s in steps if isinstance(s, CheckStep)] == [1, 1, 2, 2]
    check = steps[-1]
    assert isinstance(check, FramesCheck)
    (_, prompt, top), (_, _, rand) = fake.asked
    assert prompt == original.prompt
    assert top.replace_frames == (2, 3, 4, 5, 10, 11) and rand.replace_frames == (0, 1, 6, 7, 8, 9)
    assert top.check == CheckMark(of="k" * 64, kind="top-frames", replaced=(2, 3, 4, 5, 10, 11))
    assert rand.check == CheckMark(of="k" * 64, kind="random-frames", replaced=(0, 1, 6, 7, 8, 9), seed=26)
    assert top.attention and top.fps == options.fps  # the same options otherwise
    visual, alignment, physical = check.moves
    assert (visual.top_shift, visual.random_shift) == (-0.8, -0.1)
    assert (alignment.top_shift, alignment.random_shift) == (-0.9, 0.0)
    assert check.sentences[0] == ("Replacing the most-attended frames moved visual quality by −0.80; replacing "
                                  "random ones by −0.10.")
    assert check.sentences[2] == ("Replacing the most-attended frames moved physical consistency by 0.00; "
                                  "replacing random ones by +0.10.")
    table = check_table_html(check)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", table)
    assert cells[:4] == ["Visual", "4.00", "3.20 <b>(−0.80)</b>", "3.90 <b>(−0.10)</b>"]
    assert cells[4:8] == ["Alignment", "3.00", "2.10 <b>(−0.90)</b>", "3.00 <b>(0.00)</b>"]
    assert "the 3 patches most attended" in table and "seed 26" in table
    assert "the frames at 1.2, 1.8, 2.2, 2.8, 5.2, 5.8 s" in table and "at 0.2, 0.8, 3.2, 3.8, 4.2, 4.8 s" in table


def test_a_check_whose_scoring_fails_ends_with_that_record():
    def failing(video, prompt, options):
        yield ScoreResult(video="clip.mp4", prompt=prompt, model="toy", error="The video could not be read.")

    steps = list(run_check(failing, record(), "/tmp/clip.mp4", ScoreOptions(attention=True)))
    assert steps[-1].error == "The video could not be read." and len(steps) == 2


def test_a_record_without_attention_or_key_is_not_checked():
    with pytest.raises(UserInputError, match="no attention"):
        next(run_check(FakeScorer({}), record(attention=None), "/tmp/clip.mp4", ScoreOptions()))
    keyless = record(key=None)
    with pytest.raises(UserInputError, match="no key"):
        next(run_check(FakeScorer({}), keyless, "/tmp/clip.mp4", ScoreOptions()))


def test_a_check_mark_is_kept_in_the_record_settings_and_changes_the_key():
    from vs2demo.backends import LoadInfo
    from vs2demo.scoring import record_key, record_settings

    mark = CheckMark(of="abc", kind="top-frames", replaced=(2, 3))
    marked = ScoreOptions(replace_frames=(2, 3), check=mark).validated()
    settings = record_settings(marked, None)
    assert settings["check"] == {"of": "abc", "kind": "top-frames", "replaced": (2, 3), "seed": None}
    info = LoadInfo("transformers", "toy", "rev", "none", "cpu", "float32", True, 0.0, 0, 0, 1, 2, 3)
    plain = ScoreOptions(replace_frames=(2, 3)).validated()
    assert record_key("sha", "p", marked, info) != record_key("sha", "p", plain, info)
    # Records made before checks existed keep their keys: an unset mark is left out of the key.
    # A record made before checks (and attention) existed keeps its key: this is main's key for it.
    assert record_key("sha", "p", ScoreOptions().validated(), info) == (
        "bd4adb4572612f2f1a4e3243792ff931419a7839b88258acb9bbca0f43dab714")
    with pytest.raises(UserInputError, match="set by the frames check"):
        ScoreOptions(check={"of": "abc"}).validated()
    with pytest.raises(UserInputError, match="check kind"):
        ScoreOptions(check=CheckMark(of="abc", kind="all-frames", replaced=())).validated()
    with pytest.raises(UserInputError, match="must name the frames"):
        ScoreOptions(replace_frames=(4,), check=mark).validated()


def test_evaluate_shows_the_strip_with_a_result_and_a_new_run_clears_it_and_the_check():
    from vs2demo.ui.evaluate import EvaluateView, changes, on_result, start

    shown = on_result(start(EvaluateView()), record(text="..."))
    page = changes(None, shown)
    assert "strip-block" in page["attention"] and page["frames_check_offer"]["visible"] is True
    assert "Scores the video again twice" in page["frames_check_status"]
    cleared = changes(shown, start(shown))
    assert cleared["attention"] == "" and cleared["frames_check_offer"]["visible"] is False
    assert cleared["frames_check_status"] == cleared["frames_check_table"] == ""
    plain = changes(None, on_result(start(EvaluateView()), record(text="...", attention=None)))
    assert plain["attention"] == "" and plain["frames_check_offer"]["visible"] is False


def test_explore_s_row_view_shows_the_strip_seeking_its_own_player():
    from vs2demo.explore import LoadedSets, Query, build_collection
    from vs2demo.ui.explore import ExploreContext, detail_shown, loaded_view, row_detail

    ctx = ExploreContext(LoadedSets(budget_bytes=10**6), {}, ScoreOptions(), 10**6)
    rows = loaded_view(ctx.sets, "alice", build_collection([record(), record(video="b.mp4", attention=None)]), 1000,
                       None, {}, Query())
    opened = [row_detail(ctx, ctx.sets.get(rows.handle), n, {}) for n in (0, 1)]
    with_attention = next(view for view in opened if "clip.mp4" in view.head)
    assert "data-vs2-player='explore-video'" in detail_shown(with_attention)["attention"]
    assert next(view for view in opened if "b.mp4" in view.head).attention == ""


@pytest.mark.slow  # about 5 s on two cores: the toy loads, then scores three times with attention
def test_the_check_s_records_go_to_the_store_marked_and_a_second_check_is_served_from_it(toy_model_dir, tmp_path):
    from vs2demo.scoring import Scorer
    from vs2demo.settings import Settings
    from vs2demo.store import ResultStore
    from vs2demo.ui.controls import ASSETS

    clip = str(ASSETS / "red_ball_clean.mp4")
    store = ResultStore(tmp_path / "results.sqlite")
    scorer = Scorer(Settings(model=str(toy_model_dir), quant="none", device="cpu"), store=store)
    scorer.start_loading(background=False)
    options = ScoreOptions(attention=True).validated()
    original = scorer.score_to_result(clip, " ".join(WORDS), options)
    assert original.attention is not None and len(original.attention["patches"]) == 3
    *_, check = run_check(scorer.score, original, clip, options)
    # 3 patches: the top one (by mean share) and one other, drawn with the seed.
    assert len(check.plan.top) == len(check.plan.random) == 2 and not set(check.plan.top) & set(check.plan.random)
    for kept, kind in ((check.top, "top-frames"), (check.random, "random-frames")):
        stored = store.get(kept.key)
        assert stored.settings["check"]["of"] == original.key and stored.settings["check"]["kind"] == kind
        assert stored.settings["replace_frames"] == list(check.plan.replaced(kind))
        assert stored.settings["attention"] is True and stored.prompt == original.prompt
    assert len({original.key, check.top.key, check.random.key}) == 3
    *_, again = run_check(scorer.score, original, clip, options)
    assert again.top.stored and again.random.stored and again.moves == check.moves


def test_the_check_s_page_refuses_another_video_and_says_stop_only_when_running():
    from vs2demo.ui.controls import ASSETS

    from vs2demo.ui.controls import DECODING_CHOICES

    other = str(ASSETS / "red_ball_clean.mp4")  # an example clip: the page's path check lets it in
    settings = ("card", 2.0, 64, DECODING_CHOICES[0], 0.7, 1, 1024, "answer")  # the Scoring options as sent
    (view,) = attention_view.frames_check_views(FakeScorer({}), record(), other, settings)
    assert view.refusal[1] == "The video in the box is not clip.mp4, the one last evaluated: press Evaluate first."
    (view,) = attention_view.frames_check_views(FakeScorer({}), record(attention=None), other, settings)
    assert "Show where it looked" in view.refusal[1]
    busy = attention_view.check_progress(CheckStep(2, "random-frames"))
    assert "Scoring 2 of 2, with random frames replaced" in busy
    assert "did not finish" in attention_view.stopped_check(busy)
    assert not isinstance(attention_view.stopped_check("<div class='vs2-status done'>Scored twice</div>"), str)


def test_attention_asked_for_but_missing_says_so_and_not_asked_for_shows_nothing():
    # The probe failed (a kernel it cannot wrap): the answer is kept without the block.
    asked = record(attention=None, settings={"backend": "transformers", "attention": True})
    assert "not available for this result" in attention_html(asked)
    assert attention_html(record(attention=None)) == ""
    failed = record(attention=None, settings={"attention": True}, error="The video could not be read.")
    assert attention_html(failed) == ""
