"""Words against numbers (#14, item 3): each check on constructed answers, in the record, and as a filter."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vs2demo.consistency import CHECKS, check_output
from vs2demo.explore import Query, build_collection, select
from vs2demo.results import ScoreResult
from vs2demo.ui.render import checks_html

BLOCK = "(1) visual quality: 4\n(2) text-to-video alignment: 4\n(3) physical/common-sense consistency: 3"
CLEAN = f"<think>Sharp frames. The ball is red and rolls smoothly.</think>\n\n{BLOCK}"


@pytest.mark.parametrize("text, looped, expected", [
    (CLEAN, False, []),
    ("<think>Overall visual quality: 2, text-to-video alignment: 4.</think>\n\n" + BLOCK, False, ["thinking_disagrees"]),
    ("<think>The frames are clean. visual quality: 4, text-to-video alignment: 4, "
     "physical/common-sense consistency: 3", False, ["scores_only_in_thinking"]),
    (CLEAN.replace("</think>", "</think></think>"), False, ["think_closed_twice"]),
    (CLEAN.replace("quality: 4", "quality: 7"), False, ["score_out_of_range"]),
    (CLEAN.replace("quality: 4", "quality: 8/10"), False, ["score_out_of_range"]),
    (f"<think>Let me write the answer.\n{BLOCK}\n</think>\n\n{BLOCK}", False, ["answer_inside_thinking"]),
    (CLEAN, True, ["loop"]),
    # Two at once, in CHECKS' order.
    ("<think>visual quality: 2 at most.</think></think>\n\n" + BLOCK, False, ["thinking_disagrees", "think_closed_twice"]),
])
def test_each_check_holds_exactly_where_the_words_and_the_numbers_part(text, looped, expected):
    assert check_output(text, looped=looped) == expected


def test_a_score_in_range_with_a_decimal_or_out_of_five_is_no_warning():
    assert check_output(CLEAN.replace("quality: 4", "quality: 4.0")) == []
    assert check_output(CLEAN.replace("quality: 4", "quality: 4/5")) == []


def test_the_record_keeps_its_checks_and_the_page_and_explore_show_them():
    record = ScoreResult(video="a.mp4", prompt="p", model="m", text=CLEAN, checks=["thinking_disagrees"])
    again = ScoreResult.from_dict(record.to_dict())
    assert again.checks == ["thinking_disagrees"]
    assert ScoreResult.from_dict({k: v for k, v in record.to_dict().items() if k != "checks"}).checks == []  # older records
    badges = checks_html(again.checks)
    assert CHECKS["thinking_disagrees"] in badges and checks_html([]) == ""
    collection = build_collection([record, replace(record, video="b.mp4", checks=[]),
                                   replace(record, video="c.mp4", checks=["loop", "score_out_of_range"])])
    assert list(select(collection, Query(check="any"))["video"]) == ["a.mp4", "c.mp4"]
    assert list(select(collection, Query(check="none"))["video"]) == ["b.mp4"]
    assert list(select(collection, Query(check="loop"))["video"]) == ["c.mp4"]
