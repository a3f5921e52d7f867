"""People's own labels: kept in the results store (and a version-2 store migrated with every record),
one per video, prompt and name, seen by whom the store's owner rules allow, bounded per visitor,
validated, exported as the CSVs the metrics read, and put into an Explore set so that its figures
follow. Each test takes milliseconds."""

import sqlite3
import time

import pytest

from vs2demo import DIMENSIONS
from vs2demo.errors import UserInputError
from vs2demo.explore import Query, build_collection, metrics_for, select
from vs2demo.labels import (
    export_labels, labels_csv, metrics_labels, pairs_csv, person_label, preference, relabel, session_name, with_stored,
)
from vs2demo.metrics import Label, read_labels, read_pairs
from vs2demo.results import DimensionScore, ScoreResult
from vs2demo.store import SCHEMA_VERSION, ResultStore, TooManyLabels

PROMPT = "A red ball rolls and bounces across a grey studio floor."


def judged(video: str, expected: float) -> ScoreResult:
    """A record whose three dimensions all put p = 1 on `expected` (a whole number)."""
    probs = [1.0 if n == expected else 0.0 for n in range(1, 6)]
    return ScoreResult(video=video, prompt=PROMPT, model="toy",
                       scores={key: DimensionScore.from_probs(int(expected), probs) for key in DIMENSIONS})


def label(video="clips/a.mp4", scores=None, who="ann", prompt=PROMPT):
    return person_label(video, prompt, scores or {"visual_quality": 3}, who)


def test_labels_and_preferences_survive_reopening_the_store(tmp_path):
    path = tmp_path / "r.sqlite3"
    store = ResultStore(path)
    store.put_label(label(scores={"visual_quality": 4, "physical_consistency": 2}), owner="s1")
    store.put_preference(preference("a.mp4", "b.mp4", PROMPT, "tie", "ann"), owner="s1")
    store.close()
    again = ResultStore(path)
    [kept] = again.labels()
    assert (kept.video, kept.prompt, kept.who, kept.scores) == ("a", PROMPT, "ann",
                                                                {"visual_quality": 4, "physical_consistency": 2})
    [pair] = again.preferences()
    assert (pair.video_a, pair.video_b, pair.preference) == ("a", "b", "tie")


def test_a_version_2_store_gains_the_labels_tables_and_keeps_every_record(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # the version-2 schema, as the store wrote it before labels
        db.executescript("""CREATE TABLE records (id INTEGER PRIMARY KEY, key TEXT NOT NULL, video_sha256 TEXT,
            video TEXT, prompt TEXT, model TEXT, overall REAL, error TEXT, scored_at TEXT, record TEXT NOT NULL,
            owner TEXT); CREATE INDEX records_by_key ON records (key, id); PRAGMA user_version=2;""")
        for n in range(3):
            db.execute("INSERT INTO records (key, video, record, owner) VALUES (?, ?, ?, ?)",
                       (f"k{n}", f"v{n}.mp4", judged(f"v{n}.mp4", 3).to_json(), None if n else "s1"))
    store = ResultStore(path)
    assert [r.video for r in store.records()] == ["v0.mp4", "v1.mp4", "v2.mp4"]
    assert store.labels() == [] and store.preferences() == []
    store.put_label(label())
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert db.execute("SELECT owner FROM records ORDER BY id").fetchall() == [("s1",), (None,), (None,)]


def test_one_label_per_video_prompt_and_name_the_newest_replacing_it(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite3")
    store.put_label(label("a.mp4", {"visual_quality": 2}), owner="s1")
    store.put_label(label("clips/a.mp4", {"visual_quality": 5}), owner="s2")  # the same video, by name
    store.put_label(label("a.mp4", {"visual_quality": 1}, who="bo"), owner="s1")  # another person
    store.put_label(label("a.mp4", {"visual_quality": 1}, prompt="Another prompt"), owner="s1")
    assert sorted((k.who, k.prompt[:7], k.scores["visual_quality"]) for k in store.labels()) == [
        ("ann", "A red b", 5), ("ann", "Another", 1), ("bo", "A red b", 1)]
    store.put_preference(preference("a.mp4", "b.mp4", PROMPT, "a", "ann"))
    store.put_preference(preference("b.mp4", "a.mp4", PROMPT, "a", "ann"))  # the same pair the other way round
    assert [(p.video_a, p.preference) for p in store.preferences()] == [("b", "a")]


def test_a_store_not_shared_keeps_each_sessions_labels_to_itself(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite3")
    store.put_label(label(scores={"visual_quality": 2}), owner="s1", shared=False)
    # Another visitor by the same name neither replaces nor sees the first one's label.
    store.put_label(label(scores={"visual_quality": 5}), owner="s2", shared=False)
    assert [k.scores["visual_quality"] for k in store.labels("s1", shared=False)] == [2]
    assert [k.scores["visual_quality"] for k in store.labels("s2", shared=False)] == [5]
    assert len(store.labels("s3", shared=False)) == 0
    assert len(store.labels(None, shared=False)) == 2  # the operator (the CLI) sees all
    assert len(store.labels("s3", shared=True)) == 2  # one person's app: everyone sees all


def test_a_visitor_keeps_at_most_the_limit_and_may_still_change_a_label(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite3")
    store.put_label(label("a.mp4"), owner="s1", most=2)
    store.put_preference(preference("a.mp4", "b.mp4", PROMPT, "b", "ann"), owner="s1", most=2)
    with pytest.raises(TooManyLabels, match="kept 2 labels"):
        store.put_label(label("c.mp4"), owner="s1", most=2)
    store.put_label(label("a.mp4", {"visual_quality": 1}), owner="s1", most=2)  # a replacement goes in
    store.put_label(label("c.mp4"), owner="s2", most=2)  # another visitor has their own count
    store.put_label(label("d.mp4"), owner=None, most=2)  # the operator has none
    assert sorted(k.video for k in store.labels()) == ["a", "c", "d"]


@pytest.mark.parametrize("scores, says", [
    ({"visual_quality": 0}, "whole number from 1 to 5"), ({"visual_quality": 4.5}, "whole number"),
    ({"visual_quality": "4"}, "whole number"), ({"visual_quality": True}, "whole number"),
    ({}, "at least one"), ({"beauty": 3}, "Unknown dimension")])
def test_a_score_that_is_not_a_whole_number_from_1_to_5_is_refused(scores, says):
    with pytest.raises(UserInputError, match=says):
        person_label("a.mp4", PROMPT, scores, "ann")


def test_texts_are_bounded_and_a_name_defaults_to_the_sessions():
    assert person_label("a.mp4", PROMPT, {"visual_quality": 4.0}, "ann").scores == {"visual_quality": 4}
    for video, prompt, who, says in (("", PROMPT, "ann", "video's name is missing"), ("a" * 301, PROMPT, "ann", "300"),
                                     ("a.mp4", "p" * 4001, "ann", "4,000"), ("a.mp4", PROMPT, "x" * 61, "60"),
                                     ("a.mp4", PROMPT, "an\x00n", "cannot be shown")):
        with pytest.raises(UserInputError, match=says):
            person_label(video, prompt, {"visual_quality": 3}, who)
    with pytest.raises(UserInputError, match="a, b or tie"):
        preference("a.mp4", "b.mp4", PROMPT, "both", "ann")
    with pytest.raises(UserInputError, match="two different videos"):
        preference("a.mp4", "clips/a.mp4", PROMPT, "a", "ann")
    from vs2demo.labels import labeller
    assert labeller("  ", None, "abc")[0] == session_name("abc") == session_name("abc") != session_name("abd")
    assert session_name("abc").startswith("tab-") and "abc" not in session_name("abc")
    assert labeller(" Ann ", None, "abc")[0] == "Ann"


def test_a_browser_keeps_its_name_and_owns_its_labels_over_reloads():
    """labels.labeller: (who, owner) from the typed name, what the browser keeps, the session."""
    from vs2demo.labels import browser_name, kept_browser, labeller, new_browser_id

    mine, theirs = new_browser_id(), new_browser_id()
    assert len(mine) == 32 and mine != theirs
    kept = {"id": mine, "name": ""}
    # A reload is a new session of the same browser: the same name and owner.
    assert labeller("", kept, "session-1") == labeller("", kept, "session-2") == (browser_name(mine), f"browser:{mine}")
    assert browser_name(mine).startswith("browser-") and mine not in browser_name(mine)
    assert labeller("", {"id": theirs, "name": ""}, "session-1") != labeller("", kept, "session-1")
    # A typed name is who; the owner is still the browser.
    assert labeller(" Ann ", kept, "session-1") == ("Ann", f"browser:{mine}")
    # What the browser hands back is checked: not this app's, nothing kept (the session then owns).
    for bad in (None, "x", {"id": "../../etc"}, {"id": mine.upper()}, {"id": 5}, {"name": "Ann"}, [mine]):
        assert kept_browser(bad) is None
        assert labeller("", bad, "session-1") == (session_name("session-1"), "session-1")
    assert kept_browser({"id": mine, "name": "x" * 61}) == {"id": mine, "name": ""}  # a bad name dropped
    assert kept_browser({"id": mine, "name": " Bo "}) == {"id": mine, "name": "Bo"}
    with pytest.raises(UserInputError, match="one line"):
        labeller("An\nn", kept, "session-1")


def test_the_export_reads_back_with_the_metrics_readers(tmp_path):
    kept = [person_label("a.mp4", "A prompt, with a comma\nand a line", {"visual_quality": 4, "text_alignment": 2},
                         "ann"), person_label("=b.mp4", PROMPT, {"physical_consistency": 5}, "-bo")]
    path = tmp_path / "labels.csv"
    path.write_text(labels_csv(kept))
    first, second = read_labels(path)
    assert (first.video, first.prompt, first.scores, first.extra) == (
        "a", "A prompt, with a comma\nand a line", {"visual_quality": 4.0, "text_alignment": 2.0}, {"who": "ann"})
    # What a spreadsheet would run as a formula is written as text.
    assert (second.video, second.scores, second.extra["who"]) == ("'=b", {"physical_consistency": 5.0}, "'-bo")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(pairs_csv([preference("a.mp4", "b.mp4", PROMPT, "a", "ann"),
                                preference("c.mp4", "d.mp4", PROMPT, "tie", "ann")]))
    assert [(p.video_a, p.video_b, p.preference) for p in read_pairs(pairs)] == [("a", "b", 1), ("c", "d", 0)]


def test_the_command_line_exports_a_stores_labels(tmp_path, capsys):
    from vs2demo.__main__ import main

    store_file = tmp_path / "r.sqlite3"
    store = ResultStore(store_file)
    store.put_label(label("a.mp4", {"visual_quality": 4}), owner="s1")
    store.put_preference(preference("a.mp4", "b.mp4", PROMPT, "b", "ann"), owner="s2")
    store.close()
    assert main(["export-labels", "--store", str(store_file), str(tmp_path / "out.csv")]) == 0
    assert "1 label written" in capsys.readouterr().out
    assert [(k.video, k.scores) for k in read_labels(tmp_path / "out.csv")] == [("a", {"visual_quality": 4.0})]
    assert main(["export-labels", "--store", str(store_file), str(tmp_path / "out.csv"), "--pairs",
                 str(tmp_path / "pairs.csv")]) == 0
    assert [p.preference for p in read_pairs(tmp_path / "pairs.csv")] == [-1]
    assert main(["export-labels", "--store", str(tmp_path / "none.sqlite3"), str(tmp_path / "x.csv")]) == 2
    assert export_labels(store_file, tmp_path / "o.csv").endswith("(1 A/B preferences are kept too: --pairs FILE.csv "
                                                                   "writes them).")


def test_stored_labels_load_beside_a_labels_file_whose_label_wins_for_the_same_video():
    older = person_label("a.mp4", PROMPT, {"visual_quality": 2, "text_alignment": 2}, "ann")
    newer = person_label("a.mp4", PROMPT, {"visual_quality": 5}, "bo")
    object.__setattr__(newer, "labelled_at", "9999-01-01T00:00:00+00:00")
    both = metrics_labels([newer, older, person_label("b.mp4", PROMPT, {"visual_quality": 1}, "ann")])
    # Where two people labelled a video, each dimension's newest label stands.
    assert [(k.video, k.scores) for k in both] == [("a", {"visual_quality": 5.0, "text_alignment": 2.0}),
                                                   ("b", {"visual_quality": 1.0})]
    given = [Label("clips/b.mp4", {"visual_quality": 3.0})]
    labels, note = with_stored(given, [older, person_label("b.mp4", PROMPT, {"visual_quality": 1}, "ann")])
    assert [(k.video, k.scores["visual_quality"]) for k in labels] == [("clips/b.mp4", 3.0), ("a", 2.0)]
    assert note == "1 video labelled in this app (1 also in the labels file, whose labels were taken for it)"
    assert with_stored(given, []) == (given, "")


def test_a_new_label_changes_the_agreement_figures_as_a_reload_would():
    # Model: a 4, b 2, c 5 in every dimension (p = 1). People, first: a 4 and b 3 (visual quality).
    records = [judged("a.mp4", 4), judged("b.mp4", 2), judged("c.mp4", 5)]
    current = build_collection(records, [Label("a", {"visual_quality": 4.0}), Label("b", {"visual_quality": 3.0})])
    before = metrics_for(current, select(current, Query()), "expected", intervals=False)["dimensions"]["visual_quality"]
    assert (before["n"], before["exact_acc"]) == (2, 50.0)  # a right, b wrong
    assert select(current, Query(agreement="disagrees"))["video"].tolist() == ["b.mp4"]
    # Someone labels c a 5 and b a 2: three items, all exact; nothing disagrees; c is labelled.
    relabel(current, Label("c", {"visual_quality": 5.0}))
    relabel(current, Label("b", {"visual_quality": 2.0}))
    after = metrics_for(current, select(current, Query()), "expected", intervals=False)["dimensions"]["visual_quality"]
    assert (after["n"], after["exact_acc"], after["relaxed_acc"]) == (3, 100.0, 100.0)
    assert select(current, Query(agreement="disagrees")).empty
    assert select(current, Query(agreement="unlabelled")).empty
    # The set is as one built with those labels from the start.
    rebuilt = build_collection(records, [Label("a", {"visual_quality": 4.0}), Label("b", {"visual_quality": 2.0}),
                                         Label("c", {"visual_quality": 5.0})])
    columns = ["labelled", "disagreement", *(f"label_{key}" for key in DIMENSIONS)]
    assert current.frame[columns].astype(str).equals(rebuilt.frame[columns].astype(str))


# Slow: building 10,000 synthetic records takes a few seconds on two cores; the label itself is quick.
@pytest.mark.slow
def test_a_label_reaches_the_figures_of_10000_records_within_a_second():
    from tools.bench import synthetic_judgements

    records, labels = synthetic_judgements(10_000, seed=4)
    current = build_collection(records, labels[:5000])
    before = metrics_for(current, select(current, Query()), "expected", intervals=False)["n"]
    started = time.perf_counter()
    relabel(current, Label(records[6000].video, {"visual_quality": 3.0}))
    report = metrics_for(current, select(current, Query()), "expected", intervals=False)
    took = time.perf_counter() - started
    assert report["n"] == before + 1
    assert took < 1.0, took
