"""Records read from a file are checked before anything shows or computes with them: a hostile or
broken file is refused with its line and field, never run as script, never a crash in the metrics."""

from __future__ import annotations

import json

import pytest

from tools.bench import synthetic_judgements
from vs2demo.errors import UserInputError
from vs2demo.metrics import compute, read_labels
from vs2demo.records_io import read_records
from vs2demo.record_schema import check_record

XSS = "<img src=x onerror=alert(1)>"


def good_record() -> dict:
    records, _ = synthetic_judgements(1, seed=1)
    return records[0].to_dict()


def with_change(path: str, value) -> dict:
    """A good record with one field (a dotted path) set to `value`."""
    data = json.loads(json.dumps(good_record()))
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return data


# (field, a wrong value): every field the page shows or the metrics compute with.
WRONG = [
    ("video", 5), ("video", ["a.mp4"]), ("prompt", {"x": 1}), ("model", 3.5), ("rationale", 7),
    ("text", None), ("error", 404), ("key", ["k"]), ("scored_at", 20261207), ("frames", "24 frames"),
    ("settings", [1, 2]), ("timings", 3), ("checks", "loop"), ("checks", [1]), ("stored", "yes"), ("overall", "4"),
    ("overall", 9.5), ("scores", "5/5/5"), ("scores.visual_quality", 3), ("scores.visual_quality.score", XSS),
    ("scores.visual_quality.score", 3.5), ("scores.visual_quality.score", 0), ("scores.visual_quality.score", True),
    ("scores.text_alignment.expected", float("nan")), ("scores.text_alignment.expected", float("inf")),
    ("scores.text_alignment.expected", 7.0), ("scores.physical_consistency.confidence", 1.5),
    ("scores.physical_consistency.probs", [0.2, 0.2, 0.2, 0.2]), ("scores.physical_consistency.probs", [0.5, 0.5, 0.5, 0.5, 0.5]),
    ("scores.physical_consistency.probs", [-0.5, 0.5, 0.5, 0.25, 0.25]),
    ("scores.physical_consistency.probs", [float("nan"), 0, 0, 0, 1]), ("scores.physical_consistency.probs", "0.2"),
]


@pytest.mark.parametrize("field,value", WRONG, ids=[f"{f}={v!r}"[:40] for f, v in WRONG])
def test_a_wrong_field_is_refused_with_its_line_and_name(tmp_path, field, value):
    path = tmp_path / "records.jsonl"
    lines = [json.dumps(good_record()), json.dumps(with_change(field, value))]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserInputError) as refused:
        read_records(path)
    message = str(refused.value)
    assert message.startswith("Line 2") and field.split(".")[-1] in message


def test_what_this_app_writes_passes_and_old_rounded_records_still_load(tmp_path):
    records, labels = synthetic_judgements(50, seed=2)
    path = tmp_path / "records.jsonl"
    path.write_text("".join(record.to_json() + "\n" for record in records))
    assert [r.to_dict() for r in read_records(path)] == [r.to_dict() for r in records]
    # Earlier versions kept p(1..5) at 4 decimals: their sum may pass 1 by a rounding.
    old = with_change("scores.visual_quality.probs", [0.0001, 0.0001, 0.3333, 0.3333, 0.3334])
    assert check_record(old) is old


def test_read_as_the_authors_read_a_score_is_any_whole_number_their_regex_found():
    authors = with_change("settings", {"reading": "authors"})
    authors["scores"]["visual_quality"]["score"] = 8
    assert check_record(authors) is authors
    authors["scores"]["visual_quality"]["score"] = "8"
    with pytest.raises(UserInputError, match="a whole number or null"):
        check_record(authors)


def test_tokens_and_samples_are_checked_too():
    for field, value in [("tokens", "abc"), ("tokens", {"piece": ["a", "b"], "p": [0.5]}),
                         ("tokens", {"piece": ["a"], "p": [float("nan")]}), ("tokens", {"piece": [1], "p": [0.5]}),
                         ("samples", {"text": "x"}), ("samples", [{"text": 5}]),
                         ("samples", [{"text": "", "scores": {"visual_quality": {"score": XSS}}}])]:
        with pytest.raises(UserInputError):
            check_record(with_change(field, value), "Line 1")


def test_json_lists_and_csv_tables_are_checked_and_a_cut_last_line_is_left_out(tmp_path):
    listed = tmp_path / "records.json"
    listed.write_text(json.dumps([good_record(), with_change("scores.visual_quality.score", XSS)]))
    with pytest.raises(UserInputError, match="Record 2"):
        read_records(listed)
    table = tmp_path / "records.csv"
    table.write_text(f"video,visual_quality\na.mp4,3\nb.mp4,{XSS}\n")
    with pytest.raises(UserInputError, match="row 3"):
        read_records(table)
    table.write_text("video,visual_quality\na.mp4,3\nb.mp4,2.5\n")
    with pytest.raises(UserInputError, match="Row 3"):
        read_records(table)
    cut = tmp_path / "cut.jsonl"
    cut.write_text(json.dumps(good_record()) + "\n" + json.dumps(good_record())[:40])
    assert len(read_records(cut)) == 1
    cut.write_text(json.dumps(good_record())[:40] + "\n" + json.dumps(good_record()) + "\n")
    with pytest.raises(UserInputError, match="Line 1 of the records is not JSON"):
        read_records(cut)


def test_a_file_past_the_limit_is_refused_as_soon_as_the_limit_is_passed(tmp_path):
    path = tmp_path / "many.jsonl"
    with path.open("w") as handle:
        handle.write(json.dumps(good_record()) + "\n")
        handle.write("{}\n" * 20_000)
        handle.write("not json\n" * 5)  # never reached: the limit refuses first
    with pytest.raises(UserInputError, match="More than 100 records"):
        read_records(path, limit=100)
    few = tmp_path / "few.jsonl"
    few.write_text("{}\n{}\n")
    assert len(read_records(few, limit=2)) == 2


def test_the_metrics_never_crash_on_what_a_file_can_hold(tmp_path):
    """NaN, inf, wrong-length and negative probabilities used to crash the metrics or give ECE 2.0:
    they are refused on reading now, so what reaches compute() is always well formed."""
    records, labels = synthetic_judgements(40, seed=4)
    path = tmp_path / "records.jsonl"
    path.write_text("".join(record.to_json() + "\n" for record in records))
    report = compute(read_records(path), labels, "expected")
    for key, metrics in report["dimensions"].items():
        assert metrics["ece"] is None or 0 <= metrics["ece"] <= 1


def test_a_labels_file_keeps_only_the_columns_slices_use(tmp_path):
    header = "video,visual_quality," + ",".join(f"extra{i}" for i in range(1000))
    rows = [f"v{n}.mp4,{1 + n % 5}," + ",".join("x" * 300 for _ in range(1000)) for n in range(20)]
    path = tmp_path / "labels.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    labels = read_labels(path)
    assert len(labels) == 20 and all(len(label.extra) == 16 for label in labels)
    assert all(len(value) == 200 for value in labels[0].extra.values())
    with pytest.raises(UserInputError, match="More than 10 rows"):
        read_labels(path, limit=10)
