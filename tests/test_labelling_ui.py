"""The labelling panel's logic without a browser: on only where the store is shared (or the operator
says so), a score kept for the open row and put into the loaded set, the arrows' next row in the
table's order, quick keys' answers kept apart, and A/B/tie only for two videos judged against one
prompt. Milliseconds each."""

import pytest

from vs2demo import DIMENSIONS
from vs2demo.explore import LoadedSets, Query, build_collection, select
from vs2demo.metrics import Label
from vs2demo.results import DimensionScore, ScoreResult
from vs2demo.settings import ScoreOptions, Settings, labelling_on, settings_from_env
from vs2demo.store import ResultStore
from vs2demo.ui.labelling import LabelDesk, arrival, browser_state, compared_pair, desk_for, give_score, next_number, only_dimension, panel_view
from vs2demo.ui.explore import ExploreContext

PROMPT = "A red ball rolls and bounces across a grey studio floor."


def judged(video: str, score: int) -> ScoreResult:
    probs = [1.0 if n == score else 0.0 for n in range(1, 6)]
    return ScoreResult(video=video, prompt=PROMPT, model="toy",
                       scores={key: DimensionScore.from_probs(score, probs) for key in DIMENSIONS})


def test_labelling_is_on_where_the_store_is_shared_unless_the_operator_says_otherwise(tmp_path):
    assert labelling_on("auto", "127.0.0.1", environ={}) is True
    assert labelling_on("auto", "0.0.0.0", environ={}) is False
    assert labelling_on("auto", "127.0.0.1", environ={"SPACE_ID": "me/app"}) is False  # a public Space
    assert labelling_on("auto", "127.0.0.1", share_link=True, environ={}) is False
    assert labelling_on("on", "0.0.0.0", environ={"SPACE_ID": "me/app"}) is True
    assert labelling_on("off", "127.0.0.1", environ={}) is False
    assert settings_from_env({"VS2_LABELLING": "on", "VS2_MAX_LABELS": "50"}).max_labels == 50
    with pytest.raises(Exception, match="labelling must be one of auto, on, off"):
        Settings(labelling="maybe")
    store = ResultStore(tmp_path / "r.sqlite3")
    assert desk_for(store, True, 10, enabled=False) is None  # off: no panel, no event to call
    assert desk_for(None, True, 10, enabled=True) is None  # no store to keep labels in
    assert desk_for(store, False, 10, enabled=True).shared is False


@pytest.fixture
def explore(tmp_path):
    """Three records loaded for session s1, as the Explore tab holds them, with a desk to label them."""
    desk = LabelDesk(ResultStore(tmp_path / "r.sqlite3"), shared=True, most=100)
    ctx = ExploreContext(LoadedSets(10**6), {}, ScoreOptions(), 10**6, None, desk)
    current = build_collection([judged("c.mp4", 4), judged("a.mp4", 2), judged("b.mp4", 5)],
                               [Label("a", {"visual_quality": 2.0})])
    return ctx, ctx.sets.put("s1", current, 100), current


def test_a_score_is_kept_and_reaches_the_loaded_set(explore):
    ctx, handle, current = explore
    view, changed = give_score(ctx, "s1", handle, 0, "", "text_alignment", 3)
    assert changed and "saved: Text alignment 3" in view["label_head"]
    view, changed = give_score(ctx, "s1", handle, 0, "", "visual_quality", 4)
    [kept] = ctx.desk.visible("s1")
    assert (kept.video, kept.scores, kept.who) == ("c", {"text_alignment": 3, "visual_quality": 4},
                                                   view["label_head"].split("as <b>")[1].split("</b>")[0])
    assert current.frame.loc[0, "labelled"] and current.frame.loc[0, "label_visual_quality"] == 4.0
    # The model said 4 everywhere: a gap of 1 in text alignment.
    assert current.frame.loc[0, "disagreement"] == pytest.approx(1.0)
    assert view["label_visual_quality_4"]["variant"] == "primary"
    # A bad score, or no open row, keeps nothing and says why.
    view, changed = give_score(ctx, "s1", handle, 0, "", "visual_quality", 7)
    assert not changed and "whole number from 1 to 5" in view["label_head"]
    assert give_score(ctx, "s1", handle, None, "", "visual_quality", 3)[1] is False
    assert give_score(ctx, "s1", "let-go", 0, "", "visual_quality", 3)[1] is False
    assert len(ctx.desk.visible("s1")) == 1


def test_the_arrows_follow_the_tables_order(explore):
    _, _, current = explore
    by_name = Query(sort="video")  # a.mp4 (#1), b.mp4 (#2), c.mp4 (#0)
    assert [next_number(current, by_name, 1, 1), next_number(current, by_name, 2, 1)] == [2, 0]
    assert next_number(current, by_name, 0, 1) is None  # past the last row
    assert next_number(current, by_name, 1, -1) is None
    assert next_number(current, by_name, 0, -1) == 2
    only_a = Query(agreement="labelled")
    assert next_number(current, only_a, 2, 1) == 1  # the open row is filtered out: the first shown
    assert list(select(current, only_a)["#"]) == [1]


def test_a_quick_keys_answer_sets_only_its_own_dimension():
    view = panel_view(judged("a.mp4", 3), None, "ann", saved="saved")
    only = only_dimension(view, "text_alignment")
    assert set(only) == {"label_head", "label_text_alignment_model", *(f"label_text_alignment_{n}" for n in range(1, 6))}


def test_a_preference_needs_two_finished_videos_judged_against_one_prompt():
    from vs2demo.ui.compare import CompareView

    done = CompareView("", slots=(0, 2), names=("a.mp4", "b.mp4"))
    assert compared_pair(done, ["", "", "", ""], PROMPT) == ("a.mp4", "b.mp4", PROMPT)
    assert compared_pair(done, [PROMPT, "", "", ""], PROMPT) == ("a.mp4", "b.mp4", PROMPT)  # the same prompt
    assert compared_pair(done, ["A blue ball", "", "", ""], PROMPT) is None  # two prompts: no preference
    assert compared_pair(CompareView("", slots=(0, 1, 2), names=("a", "b", "c")), [""] * 4, PROMPT) is None
    assert compared_pair(CompareView("", slots=(0, 1), names=("a", "b"), running=True), [""] * 4, PROMPT) is None
    assert compared_pair(None, [""] * 4, PROMPT) is None


def test_a_browser_sees_its_own_labels_after_a_reload_and_no_other_browsers_unless_shared(tmp_path):
    """A session's labels are its browser's (what the page's BrowserState keeps): a new session of
    the same browser (a reload) sees them; another browser does not, unless the store is shared."""
    for shared in (False, True):
        desk = LabelDesk(ResultStore(tmp_path / f"r{shared}.sqlite3"), shared=shared, most=100)
        mine, new = arrival(None)  # a first visit: an id made for the browser to keep
        assert new and arrival(mine) == (mine, False)  # kept: the same, nothing to tell the browser
        theirs, _ = arrival({"id": "not hex", "name": "Eve"})  # not this app's: a new one
        assert theirs["id"] != mine["id"]
        desk.met("before-reload", mine)
        who = desk.labeller("", "before-reload")[0]
        desk.set_score("before-reload", judged("a.mp4", 3), who, "visual_quality", 4)
        desk.left("before-reload")  # the page closed
        desk.met("after-reload", mine)
        assert [(label.video, label.who) for label in desk.visible("after-reload")] == [("a", who)]
        assert desk.label_of("after-reload", "a.mp4", PROMPT, desk.labeller("", "after-reload")[0]) is not None
        desk.met("another-browser", theirs)
        assert len(desk.visible("another-browser")) == (1 if shared else 0)
        assert desk.visible("a-session-not-met") == ([] if not shared else desk.visible("after-reload"))


def test_a_browsers_keeping_outlives_a_restart():
    """Gradio's BrowserState makes a random key and secret per start unless given: fixed here."""
    first, second = browser_state(), browser_state()
    assert (first.storage_key, first.secret) == (second.storage_key, second.secret)


def test_label_blind_blanks_the_tables_model_columns_only():
    """style.css blanks Explore's table cells by column number while "Label blind" is ticked: those
    numbers must be the model's columns of explore.TABLE_HEADERS (and no other)."""
    import re
    from pathlib import Path

    from vs2demo.explore import SHORT, TABLE_HEADERS

    css = (Path(__file__).parent.parent / "vs2demo" / "ui" / "style.css").read_text()
    [rule] = re.findall(r"#explore-label-blind input:checked\) #explore-table[^{]*\{", css)
    blanked = {TABLE_HEADERS[int(n)] for n in re.findall(r'data-col="(\d+)"', rule)}
    assert blanked == {*(SHORT[key] for key in DIMENSIONS), "Overall", "Least sure", "Gap"}
    assert not blanked & {"#", "Video", "Prompt", "People (V/A/P)", "Error"}
