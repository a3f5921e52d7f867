"""The Explore tab's table, filters, metrics, slices and exports, on constructed and synthetic sets."""

from __future__ import annotations

import dataclasses
import json
import zipfile

import pytest

from tools.bench import synthetic_judgements
from vs2demo import DIMENSIONS
from vs2demo.explore import Query, build_collection, export_dataset, metrics_for, select, slices, table
from vs2demo.metrics import compute


def test_filters_and_sorts_find_what_a_reader_asks_for():
    records, labels = synthetic_judgements(500, seed=3)
    collection = build_collection(records, labels)
    assert len(collection.frame) == 500 and collection.labelled == 500
    failed = select(collection, Query(status="failed"))
    assert len(failed) == 6 and all(records[n].error for n in failed["#"])  # every 97th
    found = select(collection, Query(text="DOG scene"))
    assert len(found) and all("dog scene" in records[n].prompt.lower() for n in found["#"])
    low = select(collection, Query(dimension="text_alignment", low=1.0, high=2.0))
    assert all(1.0 <= records[n].scores["text_alignment"].expected <= 2.0 for n in low["#"])
    unsure = select(collection, Query(max_confidence=0.5, sort="min_confidence"))
    values = [min(records[n].scores[k].confidence for k in DIMENSIONS) for n in unsure["#"]]
    assert values == sorted(values) and max(values) <= 0.5
    worst = select(collection, Query(agreement="disagrees", sort="disagreement"))
    gaps = list(worst["disagreement"])
    assert gaps == sorted(gaps, reverse=True) and min(gaps) >= 1.0
    by_alignment = [records[n].scores["text_alignment"].expected
                    for n in select(collection, Query(status="scored", sort="text_alignment_high"))["#"]]
    assert by_alignment == sorted(by_alignment, reverse=True)
    agrees = select(collection, Query(agreement="agrees"))
    assert len(agrees) + len(worst) == 500 - 6  # the failed have no scores: neither
    shown = table(collection, select(collection, Query()), limit=20)
    assert len(shown) == 20 and shown.iloc[0]["Video"] == "video_00000.mp4"
    assert shown.iloc[1]["People (V/A/P)"].count("/") == 2


def test_the_tab_measures_exactly_what_the_command_line_measures():
    records, labels = synthetic_judgements(300, seed=5)
    collection = build_collection(records, labels)
    for kind in ("expected", "int", "normed"):
        assert metrics_for(collection, select(collection, Query()), kind) == compute(records, labels, kind)
    subset = select(collection, Query(text="robot"))
    chosen = [records[n] for n in subset["#"]]
    tab = metrics_for(collection, subset, "expected")
    cli = compute(chosen, labels, "expected")
    assert tab["dimensions"] == cli["dimensions"] and tab["n"] == cli["n"] == len(chosen) - sum(1 for r in chosen if r.error)


def test_over_very_many_rows_the_tab_leaves_the_intervals_out_and_says_so(monkeypatch):
    """They would hold up every filter change by seconds; the figures themselves stay the command line's."""
    from vs2demo import explore
    from vs2demo.ui.explore import metrics_note

    records, labels = synthetic_judgements(60, seed=5)
    collection = build_collection(records, labels)
    monkeypatch.setattr(explore, "MAX_INTERVAL_ROWS", 59)
    report = metrics_for(collection, select(collection, Query()), "expected")
    assert report["ci"] == {} and all(m["ci"] == {} for m in report["dimensions"].values())
    full = compute(records, labels, "expected")
    assert report["dimensions"]["visual_quality"]["srcc"] == full["dimensions"]["visual_quality"]["srcc"]
    assert "95% intervals are worked out here over at most" in metrics_note(report, False)


def test_slices_by_a_label_column_give_each_group_its_own_metrics():
    records, labels = synthetic_judgements(200, seed=7)
    collection = build_collection(records, labels)
    rows = select(collection, Query())
    grouped = slices(collection, rows, "label:generator", "int")
    assert sorted(grouped["Group"]) == [f"gen-{i}" for i in range(5)] and grouped["Videos"].sum() == 200
    gen0 = [records[n] for n in rows["#"] if n % 5 == 0]
    exact = compute(gen0, labels, "int")["dimensions"]["visual_quality"]["exact_acc"]
    assert grouped.set_index("Group").loc["gen-0", "Visual exact %"] == f"{exact:.1f}"


def test_a_dataset_export_is_a_folder_the_hub_viewer_reads(tmp_path):
    records, labels = synthetic_judgements(4, seed=1)
    records.append(records[1])  # two records of one video: its file is stored once
    clip = tmp_path / "video_00001.mp4"
    clip.write_bytes(b"not really a video" * 1000)
    collection = build_collection(records, labels)
    target = tmp_path / "export.zip"
    export_dataset(collection, select(collection, Query()),
                   lambda record: str(clip) if record.video == clip.name else None, target)
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
        lines = [json.loads(line) for line in archive.read("metadata.jsonl").decode().splitlines()]
        readme = archive.read("README.md").decode()
    assert sorted(names) == ["README.md", "metadata.jsonl", "videos/video_00001.mp4"]
    assert target.stat().st_size < 2 * clip.stat().st_size
    assert [line.get("file_name") for line in lines] == [None, "videos/video_00001.mp4", "videos/video_00001.mp4",
                                                         None, None]  # sorted by video name
    assert lines[1]["human_visual_quality"] == labels[1].scores["visual_quality"] and len(lines[1]["visual_quality_probs"]) == 5
    assert "data_files: metadata.jsonl" in readme


def test_the_videos_folder_is_indexed_by_name_and_keeps_to_itself(tmp_path):
    from vs2demo.ui.explore import video_index

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "clip_a.mp4").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not a video")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.mp4"
    outside.write_bytes(b"x")
    (tmp_path / "escape.mp4").symlink_to(outside)  # a link out of the folder is not the folder's
    index = video_index(tmp_path)
    assert index == {"clip_a": str((tmp_path / "sub" / "clip_a.mp4").resolve())}
    assert video_index(None) == {}


def test_records_asked_k_times_are_found_and_the_unstable_ones_apart():
    """A reader looks for the judgements the model would not repeat: records of "Ask again K times"
    whose answers lie two points apart (unstable) against those whose answers agree."""
    from vs2demo.results import DimensionScore, ScoreResult, Sample

    def sample(visual: int) -> Sample:
        return Sample(text="", scores={key: DimensionScore(visual if key == "visual_quality" else 4, float(visual))
                                       for key in DIMENSIONS})

    agreeing = ScoreResult("steady.mp4", "a prompt", "toy", samples=[sample(4), sample(4), sample(4), sample(4)])
    split = ScoreResult("shaky.mp4", "a prompt", "toy", samples=[sample(4), sample(2), sample(4), sample(1)])
    once = ScoreResult("once.mp4", "a prompt", "toy")
    collection = build_collection([agreeing, split, once])

    def videos(sampling: str) -> list[str]:
        return sorted(collection.records[n].video for n in select(collection, Query(sampling=sampling))["#"])

    assert videos("all") == ["once.mp4", "shaky.mp4", "steady.mp4"]
    assert videos("asked") == ["shaky.mp4", "steady.mp4"]
    assert videos("unstable") == ["shaky.mp4"]
    assert videos("stable") == ["steady.mp4"]


def test_the_tab_holds_its_sets_within_a_budget_and_lets_a_session_s_go():
    from vs2demo.errors import UserInputError
    from vs2demo.explore import LoadedSets

    now = [0.0]
    sets = LoadedSets(budget_bytes=100, idle_s=60, clock=lambda: now[0])
    small = build_collection(*synthetic_judgements(3, seed=1))
    a = sets.put("alice", small, 40)
    b = sets.put("bob", small, 40)
    assert sets.get(a) is small and sets.held_bytes == 80
    c = sets.put("carol", small, 40)  # past the budget: the least recently used (bob's) goes
    assert sets.get(b) is None and sets.get(a) is small and sets.get(c) is small and sets.held_bytes == 80
    a2 = sets.put("alice", small, 10)  # a session's new set replaces its old one
    assert sets.get(a) is None and sets.get(a2) is small and len(sets) == 2
    sets.end_session("carol")
    assert sets.get(c) is None and len(sets) == 1
    now[0] = 61.0  # idle past its time
    assert sets.get(a2) is None and len(sets) == 0
    with pytest.raises(UserInputError, match="at most 0 MiB"):
        sets.put("dave", small, 101)


def test_a_row_view_samples_within_the_app_s_option_ranges():
    from vs2demo.settings import ScoreOptions
    from vs2demo.ui.explore import row_options

    records, _ = synthetic_judgements(1, seed=1)
    defaults = ScoreOptions()
    for settings, expected in [({"fps": 30, "max_frames": 100000}, (defaults.fps, defaults.max_frames)),
                               ({"fps": "2; rm -rf", "max_frames": 8}, (defaults.fps, defaults.max_frames)),
                               ({"fps": 1.0, "max_frames": 16}, (1.0, 16)), ({}, (defaults.fps, defaults.max_frames))]:
        options = row_options(dataclasses.replace(records[0], settings=settings), defaults)
        assert (options.fps, options.max_frames) == expected


def test_loading_a_second_set_clears_the_row_opened_in_the_first():
    """The reader opened a row of one set, then loads another: nothing of the first set's row (its
    player, frames, cards, reasoning, plot, settings), table, metrics or export is left on the page."""
    from vs2demo.explore import LoadedSets
    from vs2demo.settings import ScoreOptions
    from vs2demo.ui.explore import (
        CLOSED_ROW, EMPTY_DETAIL, ExploreContext, load_shown, loaded_view, row_detail, row_number,
    )

    ctx = ExploreContext(LoadedSets(budget_bytes=10**6), {}, ScoreOptions(), 10**6)
    first_records, first_labels = synthetic_judgements(20, seed=2)
    first = loaded_view(ctx.sets, "alice", build_collection(first_records, first_labels), 1000, None, {}, Query())
    clicked = first.rows.table.values.tolist()[3]
    opened = row_detail(ctx, ctx.sets.get(first.handle), row_number(clicked), {})
    assert first_records[3].video in opened.head and "People:" in opened.head
    assert opened.cards and opened.reasoning and opened.probs is not None and opened.settings

    second_records = [dataclasses.replace(record, video=f"second_{n}.mp4")
                      for n, record in enumerate(synthetic_judgements(5, seed=9)[0])]
    # The reader had picked a run of the first set: the second set's list of runs starts again from all.
    second = loaded_view(ctx.sets, "alice", build_collection(second_records), 500, None, {},
                         Query(run=first_records[0].model))
    assert second.detail == CLOSED_ROW
    page = load_shown(second)
    assert page["head"] == EMPTY_DETAIL and page["cards"] == page["reasoning"] == "" and page["frames"] == []
    assert page["player"]["value"] is None and page["player"]["label"] == "The video"
    assert page["probs"]["visible"] is False and page["settings"]["visible"] is False
    assert page["reliability"]["visible"] is False and page["confusion"]["visible"] is False
    assert page["slices"].empty and page["metrics"].empty and page["exported"]["visible"] is False
    assert list(page["grid"]["Video"]) == [f"second_{n}.mp4" for n in range(5)]
    assert "Showing 5 of 5 records" in page["count"]
    assert ctx.sets.get(first.handle) is None  # the session's first set is let go


def test_the_frames_check_s_scorings_are_runs_of_their_own():
    from vs2demo.explore import run_name

    records, _ = synthetic_judgements(1, seed=3)
    original = records[0]
    top = dataclasses.replace(original, settings={**original.settings, "replace_frames": [4, 5],
                                                  "check": {"of": "k", "kind": "top-frames", "replaced": [4, 5]}})
    chosen = dataclasses.replace(original, settings={**original.settings, "replace_frames": [0]})
    names = {run_name(original), run_name(top), run_name(chosen)}
    assert len(names) == 3 and run_name(top).endswith("check: most-attended frames replaced")
    collection = build_collection([original, top])
    assert collection.frame["run"].nunique() == 2  # "All runs" then warns that two runs are mixed
