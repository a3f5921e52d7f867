"""The result record: probabilities read the way REFERENCE.md asks, JSON and CSV round trips,
ranking and comparison."""

import csv
import io
import json

import pytest

from vs2demo import DIMENSIONS
from vs2demo.records_io import results_to_csv
from vs2demo.batch import read_batch_csv
from vs2demo.ranking import compare, rank
from vs2demo.results import DimensionScore, ScoreResult, table_row


def result(name, expected=(4.0, 4.0, 4.0), error=None):
    scores = {key: DimensionScore(round(value), expected=value) for key, value in zip(DIMENSIONS, expected)}
    return ScoreResult(video=name, prompt="p", model="m", scores=scores, error=error)


def test_expected_value_and_confidence_from_digit_probabilities():
    dim = DimensionScore.from_probs(3, [0.0, 0.2, 0.6, 0.2, 0.0])
    assert dim.expected == pytest.approx(3.0)
    assert dim.confidence == pytest.approx(0.6)
    # Unnormalized probabilities (the digits' share of the whole vocabulary) are normalized.
    dim = DimensionScore.from_probs(4, [0.0, 0.0, 0.1, 0.3, 0.1])
    assert sum(dim.probs) == pytest.approx(1.0)
    assert dim.expected == pytest.approx((3 * 0.1 + 4 * 0.3 + 5 * 0.1) / 0.5)
    assert dim.confidence == pytest.approx(0.6)


def test_no_probabilities_means_no_soft_score_not_the_integer():
    dim = DimensionScore.from_probs(2, None)
    assert dim.score == 2 and dim.expected is None and dim.confidence is None and dim.probs is None
    assert DimensionScore.from_probs(None, None).expected is None


def test_record_has_the_documented_shape_and_round_trips():
    record = result("a.mp4", (4.2, 3.1, 2.0)).to_dict()
    assert set(record) == {"version", "video", "prompt", "model", "scores", "overall", "rationale", "text", "frames", "timings",
                           "settings", "checks", "key", "video_sha256", "scored_at", "stored"}
    assert set(record["scores"]) == set(DIMENSIONS)
    assert set(record["scores"]["visual_quality"]) == {"score", "expected", "confidence", "probs"}
    assert record["overall"] == pytest.approx((4.2 + 3.1 + 2.0) / 3, abs=1e-4)
    again = ScoreResult.from_dict(json.loads(json.dumps(record)))
    assert again.to_dict() == record


def test_failed_record_carries_its_error_and_no_overall():
    record = ScoreResult(video="x.mp4", prompt="p", model="m", error="The file is empty.").to_dict()
    assert record["error"] == "The file is empty."
    assert record["overall"] is None


def test_csv_has_one_row_per_video_with_errors():
    text = results_to_csv([result("a.mp4"), ScoreResult("b.mp4", "p", "m", error="bad, file")])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["video"] for row in rows] == ["a.mp4", "b.mp4"]
    assert rows[0]["visual_quality"] == "4" and rows[0]["overall"] == "4.0"
    assert rows[1]["error"] == "bad, file" and rows[1]["overall"] == ""


def test_rank_best_first_failed_last_ties_in_input_order():
    results = [result("low", (2, 2, 2)), result("failed", error="x"), result("high", (5, 4, 4)),
               result("tie", (2, 2, 2))]
    assert [r.video for r in rank(results)] == ["high", "low", "tie", "failed"]
    by_physical = rank([result("a", (5, 1, 1)), result("b", (1, 1, 3))], by="physical_consistency")
    assert [r.video for r in by_physical] == ["b", "a"]


def test_compare_names_winners_with_margins_and_ties():
    verdicts = compare([result("a", (4.5, 3.0, 2.0)), result("b", (3.0, 3.01, 4.0))])
    assert verdicts["visual_quality"].winner == 0 and verdicts["visual_quality"].margin == pytest.approx(1.5)
    assert verdicts["text_alignment"].winner is None  # 0.01 apart: a tie
    assert verdicts["physical_consistency"].winner == 1
    assert verdicts["overall"].winner == 1


@pytest.mark.parametrize("text", ["=1+1", "+cmd", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_csv_cells_a_spreadsheet_would_run_are_quoted_and_read_back_as_they_were(text):
    record = ScoreResult(video=f"{text}.mp4", prompt=text, model="m", error=text)
    [row] = list(csv.DictReader(io.StringIO(results_to_csv([record]))))
    assert row["video"] == f"'{text}.mp4" and row["prompt"] == f"'{text}" and row["error"] == f"'{text}"
    assert json.loads(record.to_json())["prompt"] == text  # the JSON stays exact
    # This app's CSV fed back as a batch file names the same file with the same prompt.
    assert read_batch_csv(results_to_csv([record])) == [(f"{text}.mp4".strip(), text.strip())]


def test_ordinary_text_and_numbers_are_left_alone():
    record = result("clip.mp4", expected=(4.25, 3.5, 2.0))
    [row] = list(csv.DictReader(io.StringIO(results_to_csv([record]))))
    assert row["video"] == "clip.mp4" and row["overall"] == "3.25"


def test_videos_are_ranked_per_dimension_in_groups_that_tie_and_only_a_lone_leader_wins():
    from vs2demo.ranking import dimension_winners, ranked_groups

    # Within 0.05: a tie, its videos in input order (none is ahead of another); None is not ranked.
    assert ranked_groups((4.0, 4.02, 1.0, None)) == [[0, 1], [2]]
    assert ranked_groups((1.0, 3.0, 2.0)) == [[1], [2], [0]]
    # A video joins the group above it within 0.05 of that group's best, not of its last member.
    assert ranked_groups((4.0, 3.96, 3.92)) == [[0, 1], [2]]
    clear, lost_two, other = result("a", (4.0, 4.0, 4.0)), result("b", (4.0, 1.0, 1.0)), result("c", (2.0, 4.0, 1.0))
    assert dimension_winners([clear, lost_two, other]) == [{"physical_consistency"}, set(), set()]


def test_videos_that_tie_share_a_place_and_none_of_them_leads_alone():
    """The one rule for Compare, Best of N and the API's /rank: five equal overall scores are five
    videos in first place, not a winner picked from them."""
    from vs2demo.ranking import leaders, standings

    equal = [result(name, (3.5, 3.5, 3.5)) for name in "abcde"]
    assert [(s.index, s.place, s.tied) for s in standings(equal)] == [(i, 1, True) for i in range(5)]
    assert leaders(equal) == [0, 1, 2, 3, 4]
    assert compare(equal)["overall"].winner is None
    mixed = [result("low", (2, 2, 2)), result("failed", error="x"), result("high", (4.0, 4, 4)),
             result("near", (3.97, 4, 4))]
    assert [(s.index, s.place, s.tied) for s in standings(mixed)] == [(2, 1, True), (3, 1, True), (0, 3, False),
                                                                       (1, None, False)]
    assert [r.video for r in rank(mixed)] == ["high", "near", "low", "failed"]
    # Re-ranked by a dimension, the tie there is a tie too, whatever the overall says.
    assert leaders(mixed, "text_alignment") == [2, 3]
    assert leaders([result("failed", error="x")]) == []


def test_names_read_as_a_sentence():
    from vs2demo.ranking import listed

    assert [listed(words) for words in ([], ["a"], ["a", "b"], ["a", "b", "c"])] == ["", "a", "a and b", "a, b and c"]


def test_probabilities_keep_full_precision_through_json_and_the_store(tmp_path):
    """Rounded to 4 decimals, p = (0, 0, 0.49996, 0.50004, 0) became a tie and the authors' soft score
    1.5 instead of 2.00016: records keep every digit, and round only where they are shown."""
    from vs2demo.metrics import model_value
    from vs2demo.store import ResultStore

    probs = (1e-9, 2e-7, 0.49996, 0.50004, 3.3e-6)
    scores = {key: DimensionScore.from_probs(4, probs) for key in DIMENSIONS}
    made = ScoreResult(video="a.mp4", prompt="p", model="m", scores=scores, key="k")
    store = ResultStore(tmp_path / "r.sqlite3")
    store.put(made)
    for again in (ScoreResult.from_dict(json.loads(made.to_json())), store.get("k")):
        dim = again.scores["visual_quality"]
        assert dim == made.scores["visual_quality"]  # every digit, probs, expected and confidence
        assert dim.probs[3] > dim.probs[2] and model_value(dim, "normed") == round(4 * probs[3] / sum(probs), 4)
        assert model_value(dim, "expected") == dim.expected
    assert made.to_dict()["scores"]["visual_quality"]["probs"] == list(made.scores["visual_quality"].probs)
    assert table_row(made)["visual_quality_expected"] == round(made.scores["visual_quality"].expected, 3)  # shown


def test_records_of_earlier_versions_load_and_their_rounded_probabilities_are_used_as_they_are():
    from vs2demo.metrics import model_value

    old = {"video": "a.mp4", "prompt": "p", "model": "m", "overall": 3.8333,
           "scores": {key: {"score": 4, "expected": 3.87, "confidence": 0.81, "probs": [0.0, 0.01, 0.11, 0.81, 0.07]}
                      for key in DIMENSIONS}}
    dim = ScoreResult.from_dict(old).scores["visual_quality"]
    assert (dim.score, dim.expected, dim.confidence, dim.probs) == (4, 3.87, 0.81, (0.0, 0.01, 0.11, 0.81, 0.07))
    assert model_value(dim, "normed") == round(4 * 0.81 / 1.0, 4)
    assert model_value(dim, "expected") == pytest.approx((2 * 0.01 + 3 * 0.11 + 4 * 0.81 + 5 * 0.07) / 1.0)
