"""The transformers backend and the records it leads to, on the real Qwen2.5-VL classes (the toy
checkpoint) and real clips: 4-bit loading, streaming, repeatable greedy scores with their
probabilities, stop, cancel, bad input."""

import os
import threading
import time

import pytest
import torch

from vs2demo import DIMENSIONS
from vs2demo.backends import Generation, TextUpdate
from vs2demo.backends.transformers import load_model
from vs2demo.errors import ModelLoadError, ModelUnavailableError
from vs2demo.jobs import Cancelled, CancelToken, use_token
from vs2demo.results import ScoreResult
from vs2demo.scoring import ScoreUpdate, Scorer
from vs2demo.settings import ScoreOptions, Settings

PROMPT = "A red ball rolls and bounces across a grey studio floor."  # one colour word: the toy compares it with the ball


@pytest.fixture(scope="module")
def engine(toy_model_dir):
    """A scorer with no store: every call below reaches the model."""
    return Scorer(Settings(model=str(toy_model_dir), quant="none", device="cpu")).start_loading(background=False)


def run(engine, video, prompt=PROMPT, options=None):
    updates = list(engine.score(video, prompt, options))
    assert isinstance(updates[-1], ScoreResult)
    return updates[:-1], updates[-1]


def test_4bit_load_quantizes_the_language_model_but_not_vision_or_lm_head(toy_model_dir):
    import bitsandbytes as bnb

    model, processor = load_model(str(toy_model_dir), quant="4bit", device="cpu")
    language_linears = [m for m in model.model.language_model.modules() if isinstance(m, torch.nn.Linear)]
    assert language_linears and all(isinstance(m, bnb.nn.Linear4bit) for m in language_linears)
    assert {m.weight.quant_state.quant_type for m in language_linears} == {"nf4"}
    assert all(m.weight.quant_state.nested for m in language_linears)  # double quantization
    vision_linears = [m for m in model.model.visual.modules() if isinstance(m, torch.nn.Linear)]
    assert vision_linears and not any(isinstance(m, bnb.nn.Linear4bit) for m in vision_linears)
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit)
    assert model.lm_head.weight.dtype in (torch.float32, torch.bfloat16, torch.float16)


def test_4bit_toy_scores_end_to_end(toy_model_dir, clean_clip):
    engine = Scorer(Settings(model=str(toy_model_dir), quant="4bit", device="cpu")).start_loading(background=False)
    _, result = run(engine, clean_clip, options=ScoreOptions(max_new_tokens=160))
    assert result.text and result.settings["quant"] == "4bit"


def test_score_streams_growing_text_then_a_complete_record(engine, clean_clip):
    updates, result = run(engine, clean_clip)
    texts = [u.text for u in updates if isinstance(u, ScoreUpdate) and u.text]
    assert len(texts) >= 3, "the text should arrive in several pieces"
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:]))
    assert result.error is None, result.error
    assert result.text.startswith("<think>") and "</think>" in result.text
    assert result.rationale and "<think>" not in result.rationale
    record = result.to_dict()
    assert record["frames"]["count"] >= 4 and record["frames"]["count"] % 2 == 0
    assert record["frames"]["width"] % 28 == 0 and record["frames"]["height"] % 28 == 0
    assert record["timings"]["new_tokens"] > 10 and record["timings"]["first_token_s"] > 0
    assert record["settings"]["device"] == "cpu" and record["settings"]["do_sample"] is False
    assert record["checks"] == []  # the toy's trained shape: its words and numbers agree


def test_greedy_is_repeatable_and_each_score_is_its_most_likely_digit(engine, clean_clip):
    _, first = run(engine, clean_clip)
    _, second = run(engine, clean_clip)
    assert first.text == second.text
    for key in DIMENSIONS:
        dim = first.scores[key]
        assert dim.score in (1, 2, 3, 4, 5)
        assert dim.probs is not None and len(dim.probs) == 5
        assert sum(dim.probs) == pytest.approx(1.0, abs=1e-3)
        assert dim.probs.index(max(dim.probs)) + 1 == dim.score
        assert dim.confidence == pytest.approx(max(dim.probs))
        assert 1.0 <= dim.expected <= 5.0
    assert first.overall == pytest.approx(sum(first.scores[k].expected for k in DIMENSIONS) / 3)


def test_a_noisy_clip_scores_lower_on_visual_quality(engine, clean_clip, noisy_clip):
    _, clean = run(engine, clean_clip)
    _, noisy = run(engine, noisy_clip)
    assert noisy.scores["visual_quality"].expected < clean.scores["visual_quality"].expected


def test_sampling_with_a_seed_is_repeatable(engine, clean_clip):
    options = ScoreOptions(do_sample=True, temperature=1.0, seed=7)
    _, first = run(engine, clean_clip, options=options)
    _, second = run(engine, clean_clip, options=options)
    assert first.text == second.text
    assert first.settings["seed"] == 7


def test_stop_ends_generation_for_real_and_the_next_request_runs(engine, clean_clip):
    _, full = run(engine, clean_clip)
    stream = engine.score(clean_clip, PROMPT)
    stopped = None
    for update in stream:
        if isinstance(update, ScoreUpdate) and update.text:
            engine.backend().stop()  # what every stop comes to: the generations in progress end
        if isinstance(update, ScoreResult):
            stopped = update
    assert stopped is not None
    assert stopped.timings["new_tokens"] < full.timings["new_tokens"]
    assert stopped.error and "Stopped" in stopped.error

    # Closing the stream (what Gradio does on Stop or a closed tab) also ends generate().
    stream = engine.score(clean_clip, PROMPT)
    for update in stream:
        if isinstance(update, ScoreUpdate) and update.text:
            break
    stream.close()
    assert not any(t.name == "vs2demo-generate" and t.is_alive() for t in threading.enumerate())
    _, again = run(engine, clean_clip)
    assert again.text == full.text


def test_a_cancelled_request_ends_generation_and_leaves_no_record(engine, clean_clip):
    import contextvars

    _, full = run(engine, clean_clip)
    token = CancelToken()
    request = contextvars.copy_context()  # what the server gives each request
    request.run(use_token, token)
    stream = request.run(engine.score, clean_clip, PROMPT)
    written = []
    with pytest.raises(Cancelled):
        while True:
            update = request.run(next, stream)
            assert not isinstance(update, ScoreResult)
            if update.new_tokens:
                written.append(update.new_tokens)
                token.cancel()
    assert written and max(written) < full.timings["new_tokens"]
    assert not any(t.name == "vs2demo-generate" and t.is_alive() for t in threading.enumerate())
    assert engine.slot.in_line() == 0  # the model passed on
    _, again = run(engine, clean_clip)  # the model is free and answers as before
    assert again.text == full.text


def test_bad_inputs_become_records_that_say_why_and_the_next_video_scores(engine, clean_clip, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cases = [(tmp_path / "missing.mp4", PROMPT, "not found"), (empty, PROMPT, "empty"), (clean_clip, "", "prompt is empty"),
             (clean_clip, "x" * 10_000, "characters")]
    for video, prompt, reason in cases:
        updates, result = run(engine, video, prompt)
        assert not updates and reason in result.error.lower() and result.overall is None
    _, ok = run(engine, clean_clip)
    assert ok.error is None


def test_the_backend_streams_text_then_digit_probabilities_where_the_scores_are(engine, clean_clip):
    from vs2demo.parsing import parse

    backend = engine.backend()
    sampled = engine.sample(clean_clip, ScoreOptions(), backend.info, CancelToken())
    items = list(backend.generate(sampled, PROMPT, ScoreOptions()))
    *updates, generation = items
    assert all(isinstance(u, TextUpdate) for u in updates) and isinstance(generation, Generation)
    assert updates[0].text == "" and updates[0].visual_tokens > 0  # the input is built before any text
    assert updates[-1].text == generation.text
    parsed = parse(generation.text, final=True)
    for span in parsed.spans.values():
        probs = generation.probs_at(span[0])
        assert probs is not None and generation.text[span[0]] in "12345"
        assert max(range(5), key=probs.__getitem__) + 1 == int(generation.text[span[0]])


def test_the_real_model_without_a_gpu_says_what_is_needed(tmp_path, monkeypatch):
    from transformers import Qwen2_5_VLConfig

    # A config like the real checkpoint's, not marked as the toy; no weights are needed to fail early.
    Qwen2_5_VLConfig().save_pretrained(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelLoadError, match="CUDA GPU"):
        load_model(str(tmp_path), quant="4bit", device="auto")
    with pytest.raises(ModelLoadError, match="no CUDA"):
        load_model(str(tmp_path), quant="4bit", device="cuda")


NOT_DOWNLOADED = "vs2demo-tests/not-downloaded"  # a hub id no cache holds


@pytest.fixture
def hub_must_not_be_asked(monkeypatch):
    from vs2demo.backends import transformers as engine

    def refuse(*args, **kwargs):
        raise AssertionError("the Hub was asked for a model this machine cannot run")

    monkeypatch.setattr(engine, "hub_reachable", refuse)
    monkeypatch.setattr(engine.AutoConfig, "from_pretrained", _cache_only(engine.AutoConfig.from_pretrained))


def _cache_only(from_pretrained):
    def read(name, *args, **kwargs):
        assert kwargs.get("local_files_only") or os.path.isdir(name), f"a download of {name} was tried"
        return from_pretrained(name, *args, **kwargs)
    return read


def test_no_gpu_and_a_model_not_downloaded_is_decided_at_once_without_the_hub(monkeypatch, hub_must_not_be_asked):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    started = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as refused:
        load_model(NOT_DOWNLOADED, quant="4bit", device="auto")
    assert time.perf_counter() - started < 2.0
    message = str(refused.value)
    assert "no CUDA GPU" in message and "--device cpu" in message and message.count(". ") <= 1


def test_offline_and_not_downloaded_says_so_at_once(monkeypatch):
    from huggingface_hub import constants

    from vs2demo.backends import transformers as engine

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets
    started = time.perf_counter()
    assert engine.hub_reachable() is False
    with pytest.raises(ModelUnavailableError, match="cannot be reached.*--model FOLDER"):
        load_model(NOT_DOWNLOADED, quant="none", device="cpu")
    assert time.perf_counter() - started < 2.0


def test_a_missing_model_is_a_clear_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="No model folder"):
        load_model(str(tmp_path / "nowhere"), quant="none", device="cpu")
