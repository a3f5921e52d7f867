"""The runtime's one path from a video to its record, which every list of videos (Compare, Best of
N, Batch, the API) goes through: a failure becomes the record's error, the record names the file."""

import pytest

from vs2demo.results import ScoreResult
from vs2demo.settings import ScoreOptions, Settings
from vs2demo.ui import runtime as rt

PROMPT = "A red ball rolls and bounces across a grey studio floor."


@pytest.fixture(scope="module")
def toy_runtime(toy_model_dir):
    return rt.ModelRuntime(Settings(model=str(toy_model_dir), quant="none", device="cpu")).start_loading(background=False)


def test_a_scored_video_is_named_by_its_file_name(toy_runtime, clean_clip, monkeypatch):
    monkeypatch.setattr(rt, "RUNTIME", toy_runtime)  # the GPU function finds the engine there
    updates = list(rt.score_file_stream(toy_runtime, str(clean_clip), PROMPT, ScoreOptions()))
    *streamed, record = updates
    assert streamed and not any(isinstance(u, ScoreResult) for u in streamed)
    assert record.error is None and record.overall is not None
    assert record.video == clean_clip.name  # not the folder Gradio keeps uploads in


def test_a_bad_file_becomes_a_failed_record_like_the_engines(toy_runtime, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    record = rt.score_to_result(toy_runtime, str(bad), PROMPT, ScoreOptions())
    assert "notes.mp4 could not be read as a video" in record.error
    assert record.video == "notes.mp4" and record.prompt == PROMPT and record.overall is None
    assert record.settings["device"] == "cpu" and record.settings["quant"] == "none"


def test_an_unexpected_failure_is_a_record_too(toy_runtime, clean_clip, monkeypatch):
    def broken(*args):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(toy_runtime, "prepare", broken)
    record = rt.score_to_result(toy_runtime, str(clean_clip), PROMPT, ScoreOptions())
    assert record.error == "Scoring failed: RuntimeError: decoder exploded"
    assert record.video == clean_clip.name


def test_a_model_that_did_not_load_fails_each_video_with_its_reason(tmp_path, clean_clip):
    runtime = rt.ModelRuntime(Settings(model=str(tmp_path / "no-such-model"), quant="none", device="cpu"))
    runtime.start_loading(background=False)
    options = ScoreOptions(fps=1.0)
    [record] = list(rt.score_file_stream(runtime, str(clean_clip), PROMPT, options))
    assert runtime.state == "failed" and "could not be loaded" in record.error
    assert record.video == clean_clip.name and record.settings == options.to_dict()


def test_a_cancel_is_not_a_failed_record_it_ends_the_request(toy_runtime, clean_clip, monkeypatch):
    import contextvars

    from vs2demo import jobs

    monkeypatch.setattr(rt, "RUNTIME", toy_runtime)
    token = jobs.CancelToken()
    request = contextvars.copy_context()  # what the server gives each request
    request.run(jobs.use_token, token)
    stream = request.run(rt.score_file_stream, toy_runtime, str(clean_clip), PROMPT, ScoreOptions())
    stages = []
    with pytest.raises(jobs.Cancelled):
        while True:
            update = request.run(next, stream)
            stages.append(update.stage)
            if update.stage == "generating" and update.new_tokens:
                token.cancel()
    assert "sampled" in stages and not any(isinstance(update, ScoreResult) for update in stages)
    assert toy_runtime.slot.in_line() == 0  # the model passed on
