"""The one path from a video to a record (scoring.Scorer), which the CLI, every tab and every
endpoint go through: its naming, its failure policy, the results store, lists, cancels, and the
values that cross to a ZeroGPU worker."""

import contextvars
import re
import pickle
import time

import pytest

from vs2demo import DIMENSIONS, jobs, scoring
from vs2demo.batch import BatchItem
from vs2demo.results import ScoreResult
from vs2demo.scoring import Scorer
from vs2demo.settings import ScoreOptions, Settings
from vs2demo.store import ResultStore

PROMPT = "A red ball rolls and bounces across a grey studio floor."


@pytest.fixture(scope="module")
def backend(toy_model_dir):
    from vs2demo.backends.transformers import TransformersBackend

    return TransformersBackend.load(Settings(model=str(toy_model_dir), quant="none", device="cpu"))


@pytest.fixture
def scorer(backend, tmp_path):
    """A scorer on the loaded toy with a fresh store of its own."""
    return Scorer(backend.settings, store=ResultStore(tmp_path / "results.sqlite3"), backend=backend)


def test_a_scored_video_is_named_by_its_file_name_and_keyed_by_its_bytes(scorer, clean_clip):
    *streamed, record = scorer.score(str(clean_clip), PROMPT)
    assert [u.stage for u in streamed][:2] == ["sampled", "generating"]
    assert record.error is None and record.overall is not None
    assert record.video == clean_clip.name  # not the folder Gradio keeps uploads in, not the CLI's path
    assert record.video_sha256 == scoring.file_sha256(clean_clip) and len(record.key) == 64
    assert record.settings["revision"] == scorer.info.revision and not record.stored
    assert scorer.score_to_result(str(clean_clip), PROMPT, name="mine.mp4").video == "mine.mp4"


def test_the_same_request_comes_from_the_store_at_once_and_identical(scorer, clean_clip, tmp_path, monkeypatch):
    first = scorer.score_to_result(str(clean_clip), PROMPT)
    copy = tmp_path / "renamed.mp4"
    copy.write_bytes(clean_clip.read_bytes())  # the same bytes under another name
    sampled = []
    with monkeypatch.context() as patched:
        patched.setattr(scorer, "sample", lambda *args, **kwargs: sampled.append(args))  # a spy: never reached
        [second] = list(scorer.score(str(copy), PROMPT))  # one item: no waiting for the model, no stage
    assert sampled == [] and scorer.slot.in_line() == 0
    assert second.stored and second.video == "renamed.mp4"
    assert {**second.to_dict(), "stored": False, "video": first.video} == first.to_dict()
    assert len(scorer.store) == 1

    again = scorer.score_to_result(str(clean_clip), PROMPT, refresh=True)  # "score again"
    assert not again.stored and again.text == first.text and len(scorer.store) == 2
    # Anything that changes the output is another key: the prompt, an option.
    assert not scorer.score_to_result(str(clean_clip), PROMPT + " Slowly.").stored
    assert not scorer.score_to_result(str(clean_clip), PROMPT, ScoreOptions(max_frames=8)).stored


def test_unseeded_sampling_is_kept_but_never_served(scorer, clean_clip):
    options = ScoreOptions(do_sample=True, temperature=1.0)
    scorer.score_to_result(str(clean_clip), PROMPT, options)
    assert not scorer.score_to_result(str(clean_clip), PROMPT, options).stored
    seeded = ScoreOptions(do_sample=True, temperature=1.0, seed=3)
    scorer.score_to_result(str(clean_clip), PROMPT, seeded)
    assert scorer.score_to_result(str(clean_clip), PROMPT, seeded).stored
    assert len(scorer.store) == 3


def test_a_bad_file_becomes_a_failed_record(scorer, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    record = scorer.score_to_result(str(bad), PROMPT)
    assert "notes.mp4 could not be read as a video" in record.error
    assert record.video == "notes.mp4" and record.prompt == PROMPT and record.overall is None
    assert record.settings["device"] == "cpu" and record.settings["quant"] == "none"
    assert record.key is not None  # the file was read: a resumed list does not try it again
    assert len(scorer.store) == 0  # only what the model answered is kept


def test_an_unexpected_failure_is_a_record_and_a_list_goes_on(scorer, clean_clip, noisy_clip, monkeypatch):
    real = scorer.sample

    def sample(video, *args):
        if str(video) == str(noisy_clip):
            raise RuntimeError("decoder exploded")
        return real(video, *args)

    monkeypatch.setattr(scorer, "sample", sample)
    items = [BatchItem(p.name, str(p), PROMPT) for p in (noisy_clip, clean_clip)]
    items.insert(1, BatchItem("gone.mp4", None, PROMPT, "The CSV names 'gone.mp4', but no uploaded file has that name."))
    steps = list(scorer.score_many(items))
    results = steps[-1].results
    assert [r.video for r in results] == [noisy_clip.name, "gone.mp4", clean_clip.name]
    assert results[0].error == "Scoring failed: RuntimeError: decoder exploded"
    assert "no uploaded file" in results[1].error and results[2].error is None
    # A step after each record, the records so far in list order; progress steps between.
    done = [s for s in steps if s.update is None]
    assert [len(s.results) for s in done] == [1, 2, 3] and [s.position for s in done] == [1, 2, 3]
    assert any(s.update is not None and s.update.stage == "generating" for s in steps)


def test_a_model_that_did_not_load_fails_each_video_with_its_reason(tmp_path, clean_clip):
    scorer = Scorer(Settings(model=str(tmp_path / "no-such-model"), quant="none", device="cpu"))
    scorer.start_loading(background=False)
    options = ScoreOptions(fps=1.0)
    [record] = list(scorer.score(str(clean_clip), PROMPT, options))
    assert scorer.state == "failed" and "could not be loaded" in record.error
    assert record.video == clean_clip.name and record.settings == options.to_dict()


def test_a_model_that_cannot_run_here_falls_back_to_the_toy_and_says_why(toy_model_dir, clean_clip, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    wanted = Settings(model="vs2demo-tests/not-downloaded")  # 4bit on a GPU, as the app's default
    toy = Settings(model=str(toy_model_dir), quant="none", device="cpu")
    scorer = Scorer(wanted, fallback=toy).start_loading(background=False)
    assert scorer.state == "ready" and scorer.is_toy
    assert "no CUDA GPU" in scorer.fallback_reason and scorer.status().fallback_reason == scorer.fallback_reason
    [*_, record] = scorer.score(str(clean_clip), PROMPT, ScoreOptions(fps=1.0))
    assert record.error is None and record.model == str(toy_model_dir)
    # Without a fallback (the CLI), the same reason is the error.
    alone = Scorer(wanted).start_loading(background=False)
    assert alone.state == "failed" and alone.error == scorer.fallback_reason


def test_a_cancel_is_not_a_failed_record_it_ends_the_list(scorer, clean_clip):
    token = jobs.CancelToken()
    request = contextvars.copy_context()  # what the server gives each request
    request.run(jobs.use_token, token)
    items = [BatchItem(clean_clip.name, str(clean_clip), PROMPT)] * 3
    stream = request.run(scorer.score_many, items)
    seen = []
    with pytest.raises(jobs.Cancelled):
        while True:
            step = request.run(next, stream)
            seen.append(step)
            if step.update is not None and step.update.new_tokens:
                token.cancel()
    assert not any(step.results for step in seen)  # nothing recorded for the cancelled video
    assert scorer.slot.in_line() == 0 and len(scorer.store) == 0


def test_what_crosses_to_a_zero_gpu_worker_pickles(scorer, clean_clip):
    """spaces.GPU pickles the GPU function's arguments and what it yields."""
    options = ScoreOptions()
    sampled = scorer.sample(clean_clip, options, scorer.info, jobs.CancelToken())
    arguments = pickle.loads(pickle.dumps((scorer.backend_id, sampled, PROMPT, options)))
    assert (arguments[1].frames == sampled.frames).all() and arguments[3] == options
    items = list(scoring.generate(*arguments))
    assert pickle.loads(pickle.dumps(items)) == items
    record = scorer.score_to_result(str(clean_clip), PROMPT)
    assert pickle.loads(pickle.dumps(record)) == record
    assert ScoreResult.from_dict(record.to_dict()) == record  # read back from JSON: the same record


@pytest.mark.parametrize("banned,answered", [((), True), (("<",), False)])
def test_a_model_that_loops_is_stopped_when_certain_and_no_score_comes_from_the_loop(
        scorer, backend, looping_model, clean_clip, banned, answered):
    looping_model(backend.processor.tokenizer, banned)
    max_new_tokens = 1024
    updates = list(scorer.score(str(clean_clip), PROMPT, ScoreOptions(max_new_tokens=max_new_tokens, fps=1.0)))
    record = updates[-1]
    written = [u.new_tokens for u in updates[:-1] if u.stage == "generating"]
    # Stopped within a few tokens of the third copy, far from the limit; what it wrote is kept.
    assert record.timings["new_tokens"] < 200 < max_new_tokens and record.text.startswith(updates[-2].text[:50])
    match = re.search(r"The model started repeating itself after (\d+) tokens", record.error)
    assert match and 0 < int(match.group(1)) < record.timings["new_tokens"] <= written[-1] + 1
    assert "max new tokens" not in record.error and "Done" not in record.error
    assert "loop" in record.checks  # and its badge says so
    scores = {dim: record.scores[dim].score for dim in DIMENSIONS}
    if answered:  # the answer was complete before the loop: its scores, with their probabilities
        assert all(scores.values()) and record.scores["visual_quality"].probs is not None
        assert "complete before the loop" in record.error
    else:  # it never closed its thinking: the score lines in the loop are not read
        assert scores == dict.fromkeys(DIMENSIONS) and record.overall is None
        assert "No scores are read from a loop" in record.error and "sampling" in record.error
