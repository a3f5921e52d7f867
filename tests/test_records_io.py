"""records_io: one reader of records files for every caller; token confidence read when asked for."""

import dataclasses
import json

import pytest

from vs2demo.confidence import TokenConfidence
from vs2demo.errors import UserInputError
from vs2demo.records_io import read_records
from vs2demo.results import DimensionScore, ScoreResult
from vs2demo.ui.render import confidence_html


def scored(video: str, tokens: TokenConfidence | None = None, settings: dict | None = None) -> ScoreResult:
    scores = {key: DimensionScore.from_probs(4, [0.05, 0.05, 0.1, 0.6, 0.2])
              for key in ("visual_quality", "text_alignment", "physical_consistency")}
    return ScoreResult(video, "a red ball", "m", scores=scores, text="<think>ok</think>", tokens=tokens,
                       settings=settings or {})


TOKENS = TokenConfidence.build(["<think>", "ok", "</think>"], [0.9, 0.42, 0.99], [0.1, 1.2, 0.0],
                               [[1, 2], [3, 4], [5, 6]], [[0.9, 0.05], [0.42, 0.4], [0.99, 0.01]], decode=lambda t: f"t{t}")


def test_records_as_written_read_back_equal_and_their_tokens_are_built_when_asked(tmp_path):
    records = [scored("a.mp4", TOKENS), scored("b.mp4"), scored("c.mp4", TokenConfidence.build(["x"], [0.5]))]
    path = tmp_path / "out.jsonl"
    path.write_text("".join(record.to_json() + "\n" for record in records))
    read = read_records(path)
    assert read[0].tokens._columns is None  # not built by the reading
    assert [r.to_dict() for r in read] == [r.to_dict() for r in records]
    assert read[0].tokens == TOKENS and read[0].tokens.alternatives_at(1) == [("t3", 0.42), ("t4", 0.4)]
    assert len(read[2].tokens) == 1 and not read[2].tokens.has_alternatives and read[1].tokens is None


def test_bad_token_confidence_last_on_its_line_is_said_when_its_row_is_opened(tmp_path):
    data = scored("a.mp4", TOKENS).to_dict()
    data["tokens"]["p"][1] = 2.5
    data["tokens"]["piece"][0] = "<img src=x onerror=alert(1)>"
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps(data) + "\n")
    [record] = read_records(path)
    assert record.scores["visual_quality"].score == 4  # the rest of the record was checked and read
    html = confidence_html(record)
    assert "Line 1, tokens.p: probabilities from 0 to 1" in html and "<img" not in html
    assert len(record.tokens) == 0 and record.tokens.problem


def test_token_confidence_anywhere_else_on_the_line_is_read_and_checked_at_once(tmp_path):
    data = scored("a.mp4", TOKENS, {"tokens": {"note": "a key of settings"}}).to_dict()
    moved = {"tokens": data.pop("tokens"), **data}  # first, not last
    moved["tokens"]["p"][0] = -1
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps(moved) + "\n")
    with pytest.raises(UserInputError, match="Line 1, tokens.p"):
        read_records(path)
    after = {**data, "tokens": scored("a.mp4", TOKENS).to_dict()["tokens"], "stored": False, "frames": {"n": 2}}
    after = {key: after[key] for key in [k for k in after if k not in ("stored", "frames")] + ["stored", "frames"]}
    path.write_text(json.dumps(after) + "\n")  # tokens followed by other keys: nothing after them is lost
    [record] = read_records(path)
    assert record.frames == {"n": 2} and record.tokens == TOKENS
    assert record.settings == {"tokens": {"note": "a key of settings"}}


def test_records_say_their_version_older_ones_read_as_before_and_newer_ones_are_refused(tmp_path):
    record = scored("a.mp4", TOKENS).to_dict()
    assert next(iter(record)) == "version" and record["version"] == 2
    older = {key: value for key, value in record.items() if key != "version"}  # as written before versions
    newer = {**record, "version": 3}
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps(older) + "\n")
    [read] = read_records(path)
    assert read.to_dict() == record
    path.write_text(json.dumps(older) + "\n" + json.dumps(newer) + "\n")
    with pytest.raises(UserInputError, match="Line 2: a record of version 3, written by a newer vs2demo"):
        read_records(path)


def test_the_results_store_and_the_out_file_are_read_by_the_same_checked_reader(tmp_path):
    import sqlite3

    from vs2demo.store import ResultStore

    store = ResultStore(tmp_path / "results.sqlite3")
    kept = replace_key(scored("a.mp4", TOKENS))
    store.put(kept)
    [back] = store.records()
    assert back.tokens._columns is None and back.tokens == TOKENS and store.get(kept.key).video == "a.mp4"
    with sqlite3.connect(tmp_path / "results.sqlite3") as db:  # a file edited by hand: a score of 9
        db.execute("UPDATE records SET record = replace(record, '\"score\": 4', '\"score\": 9')")
    with pytest.raises(UserInputError, match="Stored record 1, scores.visual_quality.score"):
        list(store.records())


def replace_key(record: ScoreResult) -> ScoreResult:
    from dataclasses import replace

    return replace(record, key="0" * 64, video_sha256="1" * 64)


def test_a_row_opened_in_explore_reads_its_token_confidence_then_and_shows_it_coloured(tmp_path):
    from vs2demo.explore import LoadedSets, Query, build_collection
    from vs2demo.settings import ScoreOptions
    from vs2demo.ui.explore import ExploreContext, loaded_view, read_record_files, row_detail

    path = tmp_path / "out.jsonl"
    path.write_text("".join(scored(f"v{n}.mp4", TOKENS).to_json() + "\n" for n in range(3)))
    records, size = read_record_files([str(path)], 10**6)
    ctx = ExploreContext(LoadedSets(budget_bytes=10**6), {}, ScoreOptions(), 10**6)
    view = loaded_view(ctx.sets, "alice", build_collection(records), size, None, {}, Query())
    assert all(record.tokens._columns is None for record in records)  # listing read none of them
    opened = row_detail(ctx, ctx.sets.get(view.handle), 1, {})
    assert opened.reasoning.count("vs2-tok ") >= 3 and "t3" in opened.reasoning  # an alternative's text
    assert records[1].tokens._columns is not None and records[0].tokens._columns is None


def test_tokens_stay_the_last_key_whatever_else_a_record_carries():
    # records_io reads the tokens lazily only when they are the line's tail.
    record = dataclasses.replace(scored("a.mp4", TOKENS), attention={"version": 1})
    assert list(record.to_dict())[-1] == "tokens"
