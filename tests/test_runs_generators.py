"""Two runs side by side and generators ranked (vs2demo.runs, vs2demo.generators): figures on small
constructed sets against values worked out by hand, and the CLI's --json against the tab's dict."""

import json
from dataclasses import replace

import pytest

from vs2demo import DIMENSIONS
from vs2demo.__main__ import main
from vs2demo.explore import Query, build_collection, select
from vs2demo.generators import (
    DISTINGUISHABLE, NOT_DISTINGUISHABLE, TOO_FEW, Judged, group_letters, judged_videos, rank_generators,
)
from vs2demo.metrics import Label, read_labels
from vs2demo.results import DimensionScore, ScoreResult
from vs2demo.runs import compare_runs, quadratic_kappa, run_labels
from vs2demo.ui.explore import read_record_files
from vs2demo.ui.explore_runs import generators_view, runs_view

SETTINGS = {"quant": "4bit", "template": "card"}


def record(video, visual, expected, others=3, prompt="p", error=None, settings=SETTINGS, model="TIGER-Lab/VideoScore2"):
    """A record whose visual quality is `visual` (expected `expected`); the other two dimensions 3 (3.0)."""
    scores = {key: DimensionScore(others, float(others), 0.9) for key in DIMENSIONS}
    scores["visual_quality"] = DimensionScore(visual, expected, 0.9)
    if error:
        scores = {key: DimensionScore(None) for key in DIMENSIONS}
    return ScoreResult(video=video, prompt=prompt, model=model, scores=scores, error=error, settings=dict(settings),
                       rationale=f"{video} by {model}", text="")


def test_quadratic_kappa_by_hand():
    # A 1,2,3,3 against B 1,3,3,2: observed cells (1,1) (2,3) (3,3) (3,2), n = 4; w = (i-j)²/16.
    # Σ w·observed = (1 + 1)/16 = 0.125. Margins A = B = (1, 1, 2) over 1,2,3; Σ w·expected =
    # Σ r_i c_j (i-j)² / 16 / 4 = (1·1·1 + 1·2·4 + 1·1·1 + 1·2·1 + 2·1·4 + 2·1·1) / 64 = 22/64.
    # kappa = 1 - 0.125 / (22/64) = 1 - 8/22 = 0.636.
    matrix = [[1, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 1, 1, 0, 0], [0] * 5, [0] * 5]
    assert quadratic_kappa(matrix) == 0.636
    assert quadratic_kappa([[2 if i == j else 0 for j in range(5)] for i in range(5)]) == 1.0  # perfect agreement
    # 1 against 5 and 5 against 1: Σ w·observed = 2, Σ w·expected = (16 + 16)/16/2 = 1: kappa -1.
    reversed_ = [[0] * 5 for _ in range(5)]
    reversed_[0][4] = reversed_[4][0] = 1
    assert quadratic_kappa(reversed_) == -1.0
    constant = [[0] * 5 for _ in range(5)]
    constant[2][2] = 7  # both runs gave every video a 3: kappa is undefined, not 1
    assert quadratic_kappa(constant) is None and quadratic_kappa([[0] * 5] * 5) is None


def two_runs():
    a = [record(f"v{n}.mp4", s, e) for n, (s, e) in enumerate([(1, 1.0), (2, 2.0), (3, 3.0), (3, 3.0)], start=1)]
    b = [record(f"clips/v{n}.mp4", s, e, settings={**SETTINGS, "quant": "none"})
         for n, (s, e) in enumerate([(1, 1.5), (3, 3.0), (3, 3.0), (2, 2.0)], start=1)]
    a.append(record("v5.mp4", 4, 4.0))  # only in A
    b.append(record("v6.mp4", 4, 4.0, error="could not be read"))  # failed: left out
    b.append(record("v1.mp4", 1, 1.5, prompt="another prompt"))  # the same video for another prompt: not paired
    return a, b


def test_compare_runs_on_a_constructed_pair():
    a, b = two_runs()
    report = compare_runs(a, b, ("A run", "B run"))
    assert (report["paired"], report["only_a"], report["only_b"]) == (4, 1, 1)
    assert (report["a"]["failed"], report["b"]["failed"]) == (0, 1)
    visual = report["dimensions"]["visual_quality"]
    assert (visual["n_scores"], visual["exact"], visual["within_one"], visual["kappa"]) == (4, 50.0, 100.0, 0.636)
    # Rows A, columns B: (1,1), (2,3), (3,3), (3,2).
    assert visual["confusion"][0][0] == 1 and visual["confusion"][1][2] == 1 and visual["confusion"][2][2] == 1
    assert visual["confusion"][2][1] == 1 and sum(map(sum, visual["confusion"])) == 4
    # B - A on the expected scores: 0.5, 1, 0, -1: mean 0.125.
    assert (visual["mean_a"], visual["mean_b"], visual["mean_difference"]) == (2.25, 2.375, 0.125)
    low, high = visual["ci"]
    assert -1 <= low <= 0.125 <= high <= 1
    assert compare_runs(a, b)["dimensions"]["visual_quality"]["ci"] == visual["ci"]  # the same seed: the same interval
    # The other dimensions agree everywhere (all 3s): exact 100 %, kappa undefined, no difference.
    other = report["dimensions"]["text_alignment"]
    assert (other["exact"], other["kappa"], other["mean_difference"], other["ci"]) == (100.0, None, 0.0, [0.0, 0.0])
    # Largest gap first (1.0 twice: in A's order), then 0.5; v3 (no gap) is not a disagreement.
    assert [(item["video"], item["gap"]) for item in report["disagreements"]] == [
        ("v2.mp4", 1.0), ("v4.mp4", 1.0), ("v1.mp4", 0.5)]
    assert report["disagreements"][0]["a_record"] == 1 and report["disagreements"][0]["b_record"] == 1
    assert report["kappa_weights"] == "quadratic" and report["seed"] == 0 and report["resamples"] == 2000


def test_the_interval_is_seeded():
    a = [record(f"v{n}.mp4", 3, 3.0 + 0.1 * (n % 7)) for n in range(40)]
    b = [record(f"v{n}.mp4", 3, 3.0 + 0.1 * (n % 5)) for n in range(40)]
    first, again, other = (compare_runs(a, b, seed=s)["dimensions"]["visual_quality"] for s in (0, 0, 1))
    assert first["ci"] == again["ci"] and first["ci"] != other["ci"]
    assert first["ci"][0] <= first["mean_difference"] <= first["ci"][1]


def test_two_files_of_one_run_stay_two_runs():
    a = [record("v1.mp4", 3, 3.0)] * 2
    names = run_labels(a + a + [record("v1.mp4", 3, 3.0, model="other")],
                       [("mine.jsonl", 2), ("theirs.jsonl", 2), ("third.jsonl", 1)])
    assert names[0].endswith("· from mine.jsonl") and names[2].endswith("· from theirs.jsonl")
    assert names[4] == "other · 4bit · template card · greedy"  # alone in its run: no file named
    twice = run_labels(a + a, [("run.jsonl", 2), ("run.jsonl", 2)])
    assert twice[0].endswith("run.jsonl (file 1)") and twice[3].endswith("run.jsonl (file 2)")


def judged(generator, prompt, value, video=""):
    return Judged(generator, prompt, video or f"{generator}-{prompt}-{value}",
                  {"visual_quality": value, "text_alignment": 3.0, "physical_consistency": None})


def constructed_generators():
    # G1 beats G2 on p1..p5 (4 against 3); on p6 G1's two videos (2 and 4) average 3: a tie with G2.
    # G2 also made p7 and p8. G3 equals G2 on p1..p4, p7, p8: against G1, 4 shared prompts, too few.
    videos = [judged("G1", f"p{n}", 4.0) for n in range(1, 6)] + [judged("G1", "p6", 2.0), judged("G1", "p6", 4.0, "x")]
    videos += [judged("G2", f"p{n}", 3.0) for n in range(1, 9)] + [judged("G3", f"p{n}", 3.0) for n in (1, 2, 3, 4, 7, 8)]
    return videos


def test_generators_means_win_rates_and_groups():
    report = rank_generators(constructed_generators(), "generator")
    visual = report["dimensions"]["visual_quality"]
    # G1: (5·4 + 2 + 4) / 7 = 3.714 over its videos; G2 and G3 tie at 3.0 (by name then).
    assert [(r["generator"], r["videos"], r["mean"], r["rank"]) for r in visual["ranking"]] == [
        ("G1", 7, 3.714, 1), ("G2", 8, 3.0, 2), ("G3", 6, 3.0, 3)]
    for row in visual["ranking"]:
        assert row["ci"][0] <= row["mean"] <= row["ci"][1]
    pairs = {(p["a"], p["b"]): p for p in visual["pairs"]}
    g1_g2 = pairs[("G1", "G2")]
    # 5 wins and a tie on 6 shared prompts: (5 + 0.5) / 6 = 0.917; differences 1,1,1,1,1,0: mean 0.833.
    assert (g1_g2["shared_prompts"], g1_g2["a_wins"], g1_g2["ties"], g1_g2["b_wins"]) == (6, 5, 1, 0)
    assert (g1_g2["win_rate"], g1_g2["mean_difference"], g1_g2["verdict"]) == (0.917, 0.833, DISTINGUISHABLE)
    assert 0 < g1_g2["ci"][0] <= 0.833 <= g1_g2["ci"][1] <= 1
    assert pairs[("G1", "G3")]["shared_prompts"] == 4 and pairs[("G1", "G3")]["verdict"] == TOO_FEW
    g2_g3 = pairs[("G2", "G3")]  # 6 shared prompts, all ties: 0.5, and an interval of [0, 0] holds 0
    assert (g2_g3["win_rate"], g2_g3["ci"], g2_g3["verdict"]) == (0.5, [0.0, 0.0], NOT_DISTINGUISHABLE)
    # G1 and G2 apart; G3 told apart from neither.
    assert [r["group"] for r in visual["ranking"]] == ["a", "b", "ab"]
    assert report["dimensions"]["physical_consistency"]["ranking"] == []  # no value: nothing ranked
    assert rank_generators(constructed_generators(), "generator", seed=0) == report  # repeatable


def test_group_letters_share_a_letter_exactly_when_not_apart():
    apart = {frozenset(p) for p in (("a", "c"), ("a", "d"), ("b", "d"))}
    letters = group_letters(["a", "b", "c", "d"], apart)
    assert letters == {"a": "a", "b": "ab", "c": "bc", "d": "c"}
    for x in letters:
        for y in letters:
            if x != y:
                assert bool(set(letters[x]) & set(letters[y])) == (frozenset((x, y)) not in apart)


def test_judged_videos_from_records_and_a_groups_file():
    records = [record("a.mp4", 4, 4.0), record("b.mp4", 3, 3.0), record("c.mp4", 3, 3.0, error="bad"),
               record("d.mp4", 2, 2.0)]
    groups = {"a": Label("a.mp4", {}, extra={"generator": "G1"}), "b": Label("b.mp4", {"visual_quality": 1.0},
                                                                           extra={"generator": "G2"})}
    videos, left = judged_videos(records, groups, "generator")
    assert [(v.generator, v.values["visual_quality"]) for v in videos] == [("G1", 4.0), ("G2", 3.0)]
    assert left == {"failed": 1, "no_group": 1, "no_score": 0, "repeated": 0}
    by_people, left = judged_videos(records, groups, "generator", "people")
    assert [(v.generator, v.values["visual_quality"]) for v in by_people] == [("G2", 1.0)] and left["no_score"] == 1
    with pytest.raises(Exception, match="2 runs"):
        judged_videos(records + [record("e.mp4", 3, 3.0, model="other")], groups, "generator")


def write(path, records):
    path.write_text("".join(r.to_json() + "\n" for r in records))
    return str(path)


def test_the_cli_json_is_what_the_tab_shows(tmp_path, capsys):
    a, b = two_runs()
    b = [replace(r, settings=SETTINGS) for r in b]  # the same run_name: the files name the runs
    paths = [write(tmp_path / "a.jsonl", a), write(tmp_path / "b.jsonl", b)]
    assert main(["compare-runs", *paths, "--json", "--seed", "3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    sources = []
    records, _ = read_record_files(paths, 10**8, sources)
    labels = tmp_path / "labels.csv"
    labels.write_text("video,visual_quality,generator\n" + "".join(
        f"v{n}.mp4,{n % 5 + 1},{'G1' if n % 2 else 'G2'}\n" for n in range(1, 7)))
    current = build_collection(records, read_labels(str(labels)), run_labels(records, sources))
    names = sorted(current.frame["run"].unique())
    assert names == [f"TIGER-Lab/VideoScore2 · 4bit · template card · greedy · from {f}" for f in ("a.jsonl", "b.jsonl")]
    assert runs_view(current, names[0], names[1], 3).report == printed
    assert main(["rank-generators", paths[0], "--by", "generator", "--labels", str(labels), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    only_a = build_collection(records[:len(a)], read_labels(str(labels)))
    assert generators_view(only_a, select(only_a, Query()), "generator", "model", 0).report == printed
    assert main(["compare-runs", paths[0], paths[1]]) == 0 and "Kappa (quadratic)" in capsys.readouterr().out


def test_the_benchmark_times_both_on_a_rerun_of_the_same_videos():
    from tools import bench

    records, _ = bench.synthetic_judgements(5, seed=3)
    again = bench.rerun_judgements(records, seed=4)
    assert [r.video for r in again] == [r.video for r in records] and again[1].settings["quant"] == "none"
    assert f"(1) visual quality: {again[1].scores['visual_quality'].score}" in again[1].text  # its own scores
    report = bench.measure_runs_and_generators(n=200, repeats=1)
    assert report["records"] == 200 and 0 < report["compare_runs_s"] < 5 and 0 < report["rank_generators_s"] < 5
    text = "\n".join(bench.render_explore({"records": 200, "file_bytes": 1, "python_build_s": 0.1,
                                           "python_query_s": 0.01, "runs_generators": report}))
    assert "`runs.compare_runs` against a rerun of the same videos" in text


def test_the_generators_figure_orders_groups_and_escapes_names():
    from vs2demo.plots import generators_figure

    report = rank_generators(constructed_generators() + [judged("<b>G4</b>", f"p{n}", 1.0) for n in range(1, 9)],
                             "generator")
    visual = report["dimensions"]["visual_quality"]
    trace = generators_figure(report).data[0]  # the first dimension's points
    # G4 is told apart from every other: a letter of its own; the tags of its name are shown, not read.
    assert list(trace.y) == ["1. G1 (a)", "2. G2 (b)", "3. G3 (ab)", "4. &lt;b&gt;G4&lt;/b&gt; (c)"]
    assert list(trace.x) == [row["mean"] for row in visual["ranking"]]
    assert list(trace.error_x.array) == pytest.approx([row["ci"][1] - row["mean"] for row in visual["ranking"]])
    assert list(trace.error_x.arrayminus) == pytest.approx([row["mean"] - row["ci"][0] for row in visual["ranking"]])


def test_a_records_only_set_is_grouped_by_a_metadata_file(tmp_path, capsys):
    from vs2demo.errors import UserInputError
    from vs2demo.ui.explore_runs import seed_of

    records = [record(f"v{n}.mp4", 3, 3.0 + n % 3, prompt=f"p{n % 6}") for n in range(24)]
    path = write(tmp_path / "run.jsonl", records)
    metadata = tmp_path / "generators.csv"
    metadata.write_text("video,Generator\n" + "".join(f"clips/v{n}.mp4,{'G1' if n < 12 else 'G2'}\n" for n in range(24)))
    with pytest.raises(UserInputError, match="has no score"):
        read_labels(str(metadata))  # as people's labels it is refused; as groups it is read
    assert main(["rank-generators", path, "--by", "Generator", "--labels", str(metadata), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["by"], report["videos"], report["generators"], report["prompts"]) == ("generator", 24, 2, 6)
    assert main(["rank-generators", path, "--by", "generator", "--labels", str(metadata), "--scores", "people"]) == 2
    assert "nothing to rank" in capsys.readouterr().err  # no video has people's scores in that file
    assert seed_of(None) == 0 and seed_of(7.0) == 7
    for bad in (-1, 2.5, "x", 2**32):
        with pytest.raises(UserInputError, match="whole number"):
            seed_of(bad)
