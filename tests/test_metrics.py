"""The paper's metrics on constructed sets whose values are known by hand, each rule as the authors'
evaluation code (TIGER-AI-Lab/VideoScore2 eval/get_acc_corr.py, get_pairwise_acc.py; KwaiVGI/VideoAlign
calc_accuracy.py) applies it; the label and record formats; the command line."""

from __future__ import annotations

import json

import pytest
from scipy import stats

from vs2demo import DIMENSIONS
from vs2demo.__main__ import main
from vs2demo.errors import UserInputError
from vs2demo.metrics import (
    Label, Pair, accuracy_value, calibration, compute, format_report, model_value, read_labels, read_pairs,
    ties_matter, video_key,
)
from vs2demo.records_io import read_records
from vs2demo.results import DimensionScore, ScoreResult


def dim(score: int | None, expected: float | None = None, probs=None) -> DimensionScore:
    return DimensionScore(score, expected if expected is not None else None if score is None else float(score),
                          None if probs is None else max(probs), probs)


def record(video: str, visual: DimensionScore, alignment: DimensionScore | None = None,
           physical: DimensionScore | None = None, settings: dict | None = None) -> ScoreResult:
    scores = {"visual_quality": visual, "text_alignment": alignment or dim(3), "physical_consistency": physical or dim(3)}
    return ScoreResult(video=video, prompt="p", model="m", scores=scores, settings=settings or {})


def labels_for(values: dict[str, tuple[float, float, float]]) -> list[Label]:
    return [Label(video, dict(zip(DIMENSIONS, scores))) for video, scores in values.items()]


def test_soft_scores_round_halves_to_even_and_clip_for_accuracy_and_stay_raw_for_correlation():
    assert [accuracy_value(v, "expected") for v in (2.5, 1.5, 3.5, 4.5, 0.4, 5.4)] == [2, 2, 4, 4, 1, 5]
    assert accuracy_value(2.5, "int") == 2.5  # integer scores are used as they are
    records = [record("a.mp4", dim(3, 2.5)), record("b.mp4", dim(2, 1.5)), record("c.mp4", dim(4, 3.5)),
               record("d.mp4", dim(3, 3.4))]
    labels = labels_for({name: (2, 3, 3) for name in ("a", "b", "c", "d")})
    visual = compute(records, labels, "expected")["dimensions"]["visual_quality"]
    # 2.5 -> 2 and 1.5 -> 2 are exact; 3.5 -> 4 is 2 away; 3.4 -> 3 is within one.
    assert (visual["n"], visual["exact_acc"], visual["relaxed_acc"]) == (4, 50.0, 75.0)
    raw = [2.5, 1.5, 3.5, 3.4]
    assert visual["srcc"] is None  # the labels are constant: undefined, not a number
    assert visual["confusion"][1] == [0, 2, 1, 1, 0]  # label 2: rounded scores 2, 2, 4, 3
    varied = compute(records, labels_for({"a": (2, 3, 3), "b": (1, 3, 3), "c": (5, 3, 3), "d": (3, 3, 3)}), "expected")
    human = [2, 1, 5, 3]
    assert varied["dimensions"]["visual_quality"]["plcc"] == round(stats.pearsonr(raw, human)[0] * 100, 3)
    assert varied["dimensions"]["visual_quality"]["srcc"] == round(stats.spearmanr(raw, human)[0] * 100, 3)


def test_an_item_missing_a_score_in_one_dimension_leaves_every_dimension():
    records = [record("a.mp4", dim(4)), record("b.mp4", dim(2), alignment=dim(None)), record("c.mp4", dim(3))]
    report = compute(records, labels_for({"a": (4, 3, 3), "b": (2, 3, 3), "c": (1, 3, 3)}), "int")
    assert report["n"] == 2 and report["dropped_missing_score"] == 1
    assert all(report["dimensions"][key]["n"] == 2 for key in DIMENSIONS)
    assert report["dimensions"]["visual_quality"]["exact_acc"] == 50.0
    assert report["all_exact_acc"] == 50.0  # a: 4/3/3 all right; c: visual wrong


def test_the_normed_score_is_the_first_argmax_times_its_probability():
    assert model_value(dim(4, probs=(0.1, 0.2, 0.3, 0.4, 0.0)), "normed") == pytest.approx(1.6)
    assert model_value(dim(1, probs=(0.4, 0.4, 0.2, 0.0, 0.0)), "normed") == pytest.approx(0.4)  # ties: the first
    assert model_value(dim(4), "normed") is None  # no probabilities, no normed score
    assert accuracy_value(1.6, "normed") == 2 and accuracy_value(0.4, "normed") == 1
    # From the probabilities kept, by the authors' weighted formula.
    assert model_value(dim(4, 3.9, (0, 0, 0.1, 0.9, 0)), "expected") == pytest.approx(3.9)
    assert model_value(dim(4, 3.9, (0, 0, 0.1, 0.9, 0)), "int") == 4.0


def test_pairwise_accuracy_with_the_authors_margins_and_without_ties():
    records = [record(name, dim(v, e)) for name, v, e in
               (("a.mp4", 4, 4.0), ("b.mp4", 4, 4.0004), ("c.mp4", 3, 3.2), ("d.mp4", 2, 2.0))]
    pairs = [Pair("a", "b", 0), Pair("a", "c", 1), Pair("c", "d", -1), Pair("a", "d", 0), Pair("a", "missing", 1)]
    soft = compute(records, [], "expected", pairs)["pairwise"]["overall"]  # compared on the sum of the three
    # a-b differ by 0.0004 <= 0.001: a tie, right. a-c: a wins, right. c-d: c wins but people chose d.
    # a-d: people saw a tie, the model does not. The pair with an unknown video is left out.
    assert (soft["n"], soft["skipped"], soft["acc_with_ties"]) == (4, 1, 50.0)
    assert (soft["n_without_ties"], soft["acc_without_ties"]) == (2, 50.0)
    integer = compute(records, [], "int", pairs)["pairwise"]["overall"]
    assert integer["tie_margin"] == 0.5 and integer["acc_with_ties"] == 50.0  # a-b tie (0 apart), a-c right


def test_ties_matter_as_the_leaderboard_runs_it_and_over_real_thresholds():
    # Two pairs with the same gap: VideoAlign scores a state that is no real threshold, so its figure
    # depends on the pairs' order (checked against its calc_accuracy_with_ties: 1.0 and 0.5).
    assert ties_matter([0, 1], [0.5, 0.5])["accuracy"] == 100.0
    assert ties_matter([1, 0], [0.5, 0.5])["accuracy"] == 50.0
    assert ties_matter([0, 1], [0.5, 0.5], real_thresholds_only=True)["accuracy"] == 50.0
    # Distinct gaps: both agree. Best is tying the 0.1 gap (a human tie) and nothing else: 3 of 3.
    result = ties_matter([0, 1, -1], [0.1, 2.0, -1.0])
    assert result == {"accuracy": 100.0, "threshold": 0.1}
    assert ties_matter([0, 1, -1], [0.1, 2.0, -1.0], real_thresholds_only=True) == result


def test_calibration_reliability_ece_and_brier_by_hand():
    result = calibration([(0, 0, 0, 1, 0), (0.5, 0.5, 0, 0, 0)], [4, 3])
    # Sure and right (gap 0); half sure of "1" and wrong (gap 0.5): ECE = 0.5 x 0 + 0.5 x 0.5.
    assert result["ece"] == 0.25
    # Brier: 0 for the first; (0.5)^2 + (0.5)^2 + 1 for the second; the mean 0.75.
    assert result["brier"] == 0.75
    assert [(b["n"], b["accuracy"]) for b in result["bins"] if b["n"]] == [(1, 0.0), (1, 1.0)]


def test_label_formats_match_records_by_name_and_say_what_matched_nothing(tmp_path):
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text("video,visual_quality,text_alignment,physical_consistency,generator\n"
                          "clips/a.mp4,4,3,3,gen-x\nb.mp4,2,,3,gen-y\nnobody.mp4,1,1,1,gen-y\n")
    csv_labels = read_labels(labels_csv)
    assert csv_labels[0].extra == {"generator": "gen-x"} and "text_alignment" not in csv_labels[1].scores
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps([{"video_name": "a", "prompt": "p", "visual_score": 4, "t2v_score": 3, "phy_score": 3},
                                 {"video_name": "b", "visual_score": 2, "t2v_score": 3, "phy_score": 3}]))
    bench_labels = read_labels(bench)
    assert [(label.video, label.scores["visual_quality"]) for label in bench_labels] == [("a", 4.0), ("b", 2.0)]
    records = [record("a.mp4", dim(4)), record("b.mp4", dim(3)), record("stray.mp4", dim(2))]
    report = compute(records, csv_labels, "int")
    assert report["records_without_label"] == ["stray.mp4"] and report["labels_without_record"] == ["nobody.mp4"]
    assert report["dimensions"]["text_alignment"]["n"] == 1  # b has no alignment label: left out there only
    assert report["dimensions"]["visual_quality"]["n"] == 2
    assert compute(records, bench_labels, "int")["dimensions"]["visual_quality"]["exact_acc"] == 50.0
    assert video_key("C:\\clips\\a.mp4") == video_key("a") == "a"
    with pytest.raises(UserInputError, match="not a number"):
        bad = tmp_path / "bad.csv"
        bad.write_text("video,visual_quality\na.mp4,four\n")
        read_labels(bad)


def test_record_files_jsonl_json_and_csv_read_back_the_same_scores(tmp_path):
    from vs2demo.records_io import results_to_csv, results_to_json

    records = [record("a.mp4", dim(4, 3.8, (0, 0, 0.2, 0.8, 0))), record("b.mp4", dim(2, 2.1, (0.1, 0.7, 0.2, 0, 0)))]
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text("".join(r.to_json() + "\n" for r in records) + '{"video": "cut')  # a run killed mid-line
    as_json, as_csv = tmp_path / "r.json", tmp_path / "r.csv"
    as_json.write_text(results_to_json(records))
    as_csv.write_text(results_to_csv(records))
    labels = labels_for({"a": (4, 3, 3), "b": (3, 3, 3)})
    figures = [compute(read_records(path), labels, "expected")["dimensions"]["visual_quality"]
               for path in (jsonl, as_json, as_csv)]
    assert figures[0]["exact_acc"] == figures[1]["exact_acc"] == figures[2]["exact_acc"] == 50.0
    assert figures[0]["ece"] is not None and figures[2]["ece"] is None  # the CSV has no probabilities


def test_the_command_line_prints_the_same_numbers_as_the_library(tmp_path, capsys):
    records = [record(f"v{i}.mp4", dim(s, e, None)) for i, (s, e) in enumerate([(4, 4.2), (2, 2.4), (3, 2.6), (5, 4.6)])]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(r.to_json() + "\n" for r in records))
    labels = tmp_path / "labels.csv"
    labels.write_text("video,visual_quality,text_alignment,physical_consistency\n"
                      + "".join(f"v{i}.mp4,{h},3,3\n" for i, h in enumerate([4, 2, 2, 5])))
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("video_a,video_b,preference\nv0.mp4,v1.mp4,a\nv2.mp4,v3.mp4,b\nv1.mp4,v2.mp4,tie\n")
    assert main(["metrics", str(results), "--labels", str(labels), "--pairs", str(pairs), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = compute(read_records(results), read_labels(labels), "expected", read_pairs(pairs))
    assert printed["dimensions"]["visual_quality"] == {k: v for k, v in expected["dimensions"]["visual_quality"].items()
                                                       if k not in ("confusion", "calibration")}
    assert set(printed) >= {"n", "score", "dimensions", "all_exact_acc", "pairwise"}
    assert printed["dimensions"]["visual_quality"]["exact_acc"] == 75.0  # 4.2->4, 2.4->2, 2.6->3 (label 2), 4.6->5
    assert main(["metrics", str(results), "--labels", str(labels)]) == 0
    table = capsys.readouterr().out
    assert "exact %" in table and "75" in table and "all three exact" in table
    assert main(["metrics", str(results)]) == 2
    assert "give --labels" in capsys.readouterr().err


def nearly_constant_set(n: int = 40) -> tuple[list[ScoreResult], list[Label]]:
    """Expected values from 2.9999 to 3.0002 against labels that vary: the PLCC of -42 a user met."""
    values = (2.9999, 3.0002, 3.0, 3.0001)
    records = [record(f"v{i}.mp4", dim(3, values[i % 4]), dim(3 + i % 2, 3.0 + i % 2 * 0.9)) for i in range(n)]
    return records, labels_for({f"v{i}": (1 + i * 7 % 5, 3 + i % 2, 3) for i in range(n)})


def test_a_correlation_over_a_nearly_constant_column_is_flagged_in_the_cli_and_in_explore(tmp_path, capsys):
    from vs2demo.ui.explore import metrics_note, metrics_table

    records, labels = nearly_constant_set()
    visual = compute(records, labels, "expected")["dimensions"]["visual_quality"]
    assert visual["plcc"] is not None and "nearly constant" in visual["flags"]["plcc"]
    assert "2.9999 to 3.0002" in visual["flags"]["srcc"] and "exact_acc" not in visual["flags"]
    alignment = compute(records, labels, "expected")["dimensions"]["text_alignment"]
    assert alignment["flags"] == {}  # 40 items, a column that really varies

    results, people = tmp_path / "results.jsonl", tmp_path / "labels.csv"
    results.write_text("".join(r.to_json() + "\n" for r in records))
    people.write_text("video,visual_quality,text_alignment,physical_consistency\n" + "".join(
        f"{label.video},{label.scores['visual_quality']:g},{label.scores['text_alignment']:g},3\n" for label in labels))
    assert main(["metrics", str(results), "--labels", str(people)]) == 0
    table = capsys.readouterr().out
    visual_row = next(line for line in table.splitlines() if line.startswith("visual "))
    assert f"{visual['plcc']:g} !" in visual_row and f"{visual['srcc']:g} !" in visual_row
    assert "! visual PLCC, SRCC: the model's scores span only 0.0003 (2.9999 to 3.0002)" in table

    report = compute(records, labels, "expected")
    shown = metrics_table(report)
    assert shown.loc[0, "PLCC"].startswith("⚠") and not shown.loc[1, "PLCC"].startswith("⚠")
    assert "nearly constant" in metrics_note(report, False)


def test_figures_over_fewer_than_30_items_are_flagged():
    from vs2demo.explore import Query, build_collection, select, slices

    records, labels = nearly_constant_set(12)
    report = compute(records, labels, "expected")
    assert "over 12 items only" in report["dimensions"]["text_alignment"]["flags"]["exact_acc"]
    assert "over 12 items only" in report["flags"]["all_exact_acc"]
    assert "over 12 items only" in format_report(report)
    collection = build_collection(records, labels)
    grouped = slices(collection, select(collection, Query()), "prompt", "expected")  # Explore's slices
    assert grouped.loc[0, "Alignment exact %"].startswith("⚠")


def test_every_figure_has_a_95_percent_interval_that_repeats_run_after_run(tmp_path, capsys):
    from vs2demo.ui.explore import metrics_table

    records, labels = nearly_constant_set()
    pairs = [Pair(f"v{i}.mp4", f"v{i + 1}.mp4", (-1, 0, 1)[i % 3]) for i in range(0, 39, 2)]
    report = compute(records, labels, "expected", pairs)
    again = compute(records, labels, "expected", pairs)
    alignment = report["dimensions"]["text_alignment"]
    assert set(alignment["ci"]) == {"exact_acc", "relaxed_acc", "plcc", "srcc"}  # no probabilities: no ECE, Brier
    for name, (low, high) in alignment["ci"].items():
        assert low <= high and (name != "exact_acc" or 0 <= low <= alignment[name] <= high <= 100)
    assert report["ci"]["all_exact_acc"] is not None
    assert set(report["pairwise"]["overall"]["ci"]) == {"acc_with_ties", "acc_without_ties", "ties_matter",
                                                        "ties_matter_real_thresholds"}
    assert json.dumps(report, sort_keys=True) == json.dumps(again, sort_keys=True)  # seeded: the same every run
    low, high = alignment["ci"]["srcc"]
    assert metrics_table(report).loc[1, "SRCC"] == f"{alignment['srcc']:g} [{low:g}, {high:g}]"

    results, people = tmp_path / "results.jsonl", tmp_path / "labels.csv"
    results.write_text("".join(r.to_json() + "\n" for r in records))
    people.write_text("video,visual_quality,text_alignment,physical_consistency\n" + "".join(
        f"{label.video},{label.scores['visual_quality']:g},{label.scores['text_alignment']:g},3\n" for label in labels))
    assert main(["metrics", str(results), "--labels", str(people), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["dimensions"]["text_alignment"]["ci"]["srcc"] == [low, high]
    assert main(["metrics", str(results), "--labels", str(people)]) == 0
    assert f"[{low:g}, {high:g}]" in capsys.readouterr().out


def test_an_undefined_correlation_says_why_and_a_count_of_one_is_singular():
    records = [record(f"v{i}.mp4", dim(2 + i % 3)) for i in range(4)] + [record("gone.mp4", dim(None))]
    report = compute(records, labels_for({f"v{i}": (2 + i % 2, 3, 3) for i in range(4)} | {"gone": (3, 3, 3),
                                                                                         "extra": (1, 1, 1)}), "int")
    physical = report["dimensions"]["physical_consistency"]
    assert physical["plcc"] is None and physical["srcc"] is None
    assert physical["undefined"]["plcc"] == "the model's scores are all 3 (a constant column)"
    text = format_report(report)
    physical_row = next(line for line in text.splitlines() if line.startswith("physical"))
    assert physical_row.split().count("undefined") == 4  # PLCC, SRCC; ECE, Brier (no probabilities)
    assert "physical PLCC, SRCC undefined: the model's scores are all 3 (a constant column)" in text
    assert "1 matched item had no int score in some dimension and was left out" in text
    assert "1 label matches no record: extra" in text
