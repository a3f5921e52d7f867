"""Batch CSV files as people write them (header or not, Excel's quirks, unquoted commas), and the
matching of their rows to uploaded files: the mistakes a user must be told about."""

import pytest

from vs2demo.errors import UserInputError
from vs2demo.records_io import results_to_csv
from vs2demo.batch import plan_batch, read_batch_csv
from vs2demo.results import ScoreResult


def test_header_with_video_and_prompt_columns():
    text = "video,prompt\nclip_a.mp4,A red ball rolls.\nclip_b.mp4,\"A cat, asleep on a mat.\"\n"
    assert read_batch_csv(text) == [("clip_a.mp4", "A red ball rolls."), ("clip_b.mp4", "A cat, asleep on a mat.")]


def test_headerless_two_columns():
    assert read_batch_csv("clip_a.mp4,A red ball rolls.\nclip_b.mp4,A dog runs.") == [
        ("clip_a.mp4", "A red ball rolls."), ("clip_b.mp4", "A dog runs.")]


def test_columns_in_any_order_extra_columns_ignored_and_case_insensitive():
    text = "Prompt,id,Video\nA red ball rolls.,1,clip_a.mp4\n"
    assert read_batch_csv(text) == [("clip_a.mp4", "A red ball rolls.")]


def test_a_results_csv_from_this_app_reads_back():
    record = ScoreResult(video="clip_a.mp4", prompt="A red ball, rolling.", model="m")
    assert read_batch_csv(results_to_csv([record])) == [("clip_a.mp4", "A red ball, rolling.")]


def test_excel_bytes_with_bom_crlf_and_blank_lines():
    data = "\ufeffvideo,prompt\r\n\r\nclip_a.mp4,A red ball rolls.\r\n,\r\n".encode("utf-8")
    assert read_batch_csv(data) == [("clip_a.mp4", "A red ball rolls.")]


def test_unquoted_commas_in_a_last_column_prompt_are_kept():
    assert read_batch_csv("clip_a.mp4,A cat, a dog, and a bird play.\n") == [("clip_a.mp4", "A cat, a dog, and a bird play.")]


def test_tab_and_semicolon_separated_files():
    assert read_batch_csv("video\tprompt\nclip_a.mp4\tA cat, asleep.\n") == [("clip_a.mp4", "A cat, asleep.")]
    assert read_batch_csv("clip_a.mp4;Ein Ball rollt.\n") == [("clip_a.mp4", "Ein Ball rollt.")]


def test_quoted_prompt_over_several_lines():
    assert read_batch_csv('video,prompt\nclip_a.mp4,"Line one.\nLine two."\n') == [("clip_a.mp4", "Line one.\nLine two.")]


def test_a_video_without_a_prompt_gives_an_empty_prompt():
    assert read_batch_csv("video,prompt\nclip_a.mp4\nclip_b.mp4,\n") == [("clip_a.mp4", ""), ("clip_b.mp4", "")]


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("\n \n", "empty"),
    ("video,prompt\n", "no rows"),
    ("name,prompt\nclip_a.mp4,A ball.\n", "no video column"),
    ("video,prompt\nclip_a.mp4,\"A ball.\nclip_b.mp4,A dog.\n", "from line 2"),
    ("video,prompt\nclip_a.mp4,A ball.\n,A prompt without its video\n", "Line 3"),
    (b"\xff\xfe\x00v\x00i\x00d\x00e\x00o", "UTF-8"),
    ("video,prompt\x00\n", "binary"),
])
def test_unreadable_files_say_what_is_wrong(text, words):
    with pytest.raises(UserInputError, match=words):
        read_batch_csv(text)


UPLOADS = ["/tmp/gradio/1a2b/clip_a.mp4", "/tmp/gradio/3c4d/clip_b.mp4", "/tmp/gradio/5e6f/Clip C.mp4"]


def test_rows_match_uploads_by_base_name_in_csv_order_then_unlisted_uploads():
    pairs = [("videos/clip_b.mp4", "B prompt"), ("C:\\renders\\clip_a.mp4", "A prompt")]
    items = plan_batch(UPLOADS, pairs, default_prompt="Default.")
    assert [(i.video, i.path, i.prompt, i.problem) for i in items] == [
        ("clip_b.mp4", UPLOADS[1], "B prompt", None),
        ("clip_a.mp4", UPLOADS[0], "A prompt", None),
        ("Clip C.mp4", UPLOADS[2], "Default.", None),  # no row: the default prompt
    ]


def test_loose_match_when_case_or_punctuation_differ():
    items = plan_batch(UPLOADS, [("clip c.MP4", "C prompt")], default_prompt="Default.")
    assert items[0].path == UPLOADS[2] and items[0].prompt == "C prompt"


def test_missing_videos_and_unlisted_uploads_without_a_default_are_problems():
    items = plan_batch(UPLOADS[:2], [("clip_a.mp4", "A prompt"), ("clip_z.mp4", "Z prompt"), ("clip_b.mp4", "")])
    by_name = {i.video: i for i in items}
    assert by_name["clip_a.mp4"].problem is None
    assert by_name["clip_z.mp4"].path is None and "no uploaded file" in by_name["clip_z.mp4"].problem
    assert "No prompt" in by_name["clip_b.mp4"].problem
    unlisted = plan_batch(UPLOADS[:2], [("clip_a.mp4", "A prompt")])
    assert "No row in the CSV" in unlisted[1].problem


def test_without_a_csv_every_upload_gets_the_one_prompt_as_given():
    """As given: the scorer strips it, or sends it as it is under the authors' template."""
    items = plan_batch(UPLOADS, None, default_prompt="  A red ball rolls. ")
    assert [i.prompt for i in items] == ["  A red ball rolls. "] * 3 and not any(i.problem for i in items)
    assert all(i.problem for i in plan_batch(UPLOADS, None, default_prompt="   "))  # blank is no prompt


def test_the_batch_commands_rows_are_read_from_the_csvs_folder(tmp_path):
    from vs2demo.batch import read_rows

    (tmp_path / "a.mp4").write_bytes(b"x")
    rows = tmp_path / "rows.csv"
    rows.write_text("video,prompt\na.mp4,A red ball\nmissing.mp4,Something\na.mp4,\n", encoding="utf-8")
    first, missing, empty = read_rows(rows)
    assert (first.video, first.path, first.prompt, first.problem) == ("a.mp4", str(tmp_path / "a.mp4"), "A red ball", None)
    assert "No such video file" in missing.problem and "No prompt" in empty.problem
