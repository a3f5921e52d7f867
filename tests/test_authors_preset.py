"""The authors' settings: their public inference (TIGER-AI-Lab/VideoScore2 vs2_inference.py) as a
preset: the template as their script writes it, sampling at 0.7 with their stack's top-k, up to 768
frames, and the scores read where their regex finds them, with p(1..5) after temperature as their
`output_scores` gave them."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LogitsProcessorList

from vs2demo import DIMENSIONS
from vs2demo.__main__ import main
from vs2demo.backends.transformers import AUTHORS_DEFAULT_TOP_K, StepRecorder, authors_sampling
from vs2demo.errors import UserInputError
from vs2demo.parsing import authors_reading
from vs2demo.prompts import load_template, render_prompt
from vs2demo.settings import PRESETS, ScoreOptions

PROMPT = "A red ball rolls and bounces across a grey studio floor."


def test_the_inference_template_is_the_scripts_string_byte_for_byte():
    text = load_template("inference")
    # A triple-quoted string inside an indented function: a leading newline, four spaces before every
    # line, trailing spaces after two of the format lines, and four spaces after the last newline.
    assert text.startswith("\n    You are an expert for evaluating AI-generated videos from three dimensions:\n")
    assert "    (1) visual quality \u2013 clarity, smoothness, artifacts;\n" in text
    assert "    visual quality: <v_score>; \n    text-to-video alignment: <t_score>, \n" in text
    assert text.endswith("    physical/common-sense consistency: <p_score>\n    ")
    assert render_prompt("A $5 cat", "inference").count("Video prompt: A $5 cat\n") == 1
    # The words are the model card's; only the whitespace differs.
    def words(template: str) -> list[str]:
        return [line.strip() for line in template.strip().splitlines()]

    assert words(load_template("inference")) == words(load_template("card"))


def test_the_preset_is_checked_like_any_options():
    options = ScoreOptions(**PRESETS["authors"]).validated()
    assert (options.template, options.do_sample, options.temperature, options.max_frames, options.reading) == \
        ("inference", True, 0.7, 768, "authors")
    with pytest.raises(UserInputError, match="reading must be one of answer, authors"):
        ScoreOptions(reading="mine").validated()


def test_the_authors_regex_reads_the_first_scores_anywhere_even_in_the_thinking():
    text = ("<think>At first glance visual quality: 3 seems fair; text-to-video alignment: 4 maybe.</think>\n\n"
            "(1) visual quality: 4\n(2) text-to-video alignment: 5\n(3) physical/common-sense consistency: 2")
    reading = authors_reading(text)
    # Their regex: the first "visual quality:" (thinking), then the next labels after it.
    assert [reading[key][0] for key in DIMENSIONS] == [3, 4, 2]
    starts = [reading[key][1] for key in DIMENSIONS]
    assert [text[s] for s in starts] == ["3", "4", "2"] and starts[0] == text.index("3 seems")
    assert authors_reading("no scores here")["visual_quality"] == (None, None)
    # Any whole number, as their script keeps it (this app reads only 1-5).
    assert authors_reading("visual quality: 10; text-to-video alignment: 3, "
                           "physical/common-sense consistency: 4")["visual_quality"][0] == 10


def test_the_digit_probabilities_are_the_samplers_own_after_temperature_and_top_k():
    class Config:
        top_k, top_p = None, None

    kwargs, warpers = authors_sampling(Config(), 0.7)
    assert kwargs == {"do_sample": True, "temperature": 0.7, "top_k": AUTHORS_DEFAULT_TOP_K, "top_p": 1.0}
    torch.manual_seed(0)
    scores = torch.randn(1, 500) * 3
    digit_ids = [17, 18, 19, 20, 21]
    scores[0, 17] = scores.max() + 1  # "1" is likely; "5" is far outside the top 50
    scores[0, 21] = scores.min() - 1
    kept = StepRecorder(digit_ids, warpers)
    plain = StepRecorder(digit_ids)
    assert torch.equal(kept(None, scores), scores)  # it only reads
    plain(None, scores)
    tempered = torch.log_softmax(scores[0] / 0.7, -1)
    top = torch.topk(scores[0], AUTHORS_DEFAULT_TOP_K).indices
    expected = torch.full((500,), float("-inf"))
    expected[top] = torch.log_softmax((scores[0] / 0.7)[top], -1)
    assert torch.allclose(kept.numbers()["digits"][:, 0][0], expected[digit_ids], equal_nan=True)
    assert kept.numbers()["digits"][:, 0][0, 4] == float("-inf") and plain.numbers()["digits"][:, 0][0, 4] > float("-inf")
    assert not torch.allclose(kept.numbers()["digits"][:, 0][0, :1].exp(), tempered[17:18].exp())  # top-k renormalised
    config = type("C", (), {"top_k": 1, "top_p": 0.001})()
    assert [type(w).__name__ for w in authors_sampling(config, 0.7)[1]] == \
        ["TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper"]
    assert isinstance(warpers, LogitsProcessorList)


def test_the_preset_from_the_command_line_scores_as_the_authors_and_says_so(toy_model_dir, clean_clip, capsys):
    given = f"  {PROMPT}\n"  # the authors send the prompt as given
    code = main(["score", str(clean_clip), "--prompt", given, "--model", str(toy_model_dir), "--device", "cpu",
                 "--quant", "none", "--preset", "authors", "--seed", "1", "--max-frames", "8", "--no-store", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    record = json.loads(out.splitlines()[-1])
    settings = record["settings"]
    assert (settings["reading"], settings["template"], settings["do_sample"], settings["temperature"]) == \
        ("authors", "inference", True, 0.7)
    assert settings["max_frames"] == 8  # a flag given wins over the preset
    assert record["prompt"] == given
    reading = authors_reading(record["text"])
    for key in DIMENSIONS:
        assert record["scores"][key]["score"] == reading[key][0]
        probs = record["scores"][key]["probs"]
        assert probs is not None and abs(sum(probs) - 1) < 1e-3


def test_in_a_real_generation_the_kept_probabilities_equal_the_processed_scores(toy_model_dir, clean_clip):
    """What transformers' `output_scores` gives (the authors' source of probabilities) at every step,
    against what StepRecorder keeps while the same sampled generation runs: equal only if it
    reads before the warpers and applies them itself exactly as the sampler does."""
    from vs2demo.backends.transformers import build_inputs
    from vs2demo.scoring import Scorer
    from vs2demo.settings import Settings
    from vs2demo.video import sample_frames

    scorer = Scorer(Settings(model=str(toy_model_dir), quant="none", device="cpu")).start_loading(background=False)
    backend = scorer.backend()
    info = backend.info
    video = sample_frames(str(clean_clip), fps=2.0, max_frames=8, min_pixels=info.min_pixels,
                          max_pixels=info.max_pixels, total_pixels=info.total_pixels)
    inputs = build_inputs(backend.processor, video, PROMPT, "inference", config=backend.model.config, fps=2.0)
    kwargs, warpers = authors_sampling(backend.model.generation_config, 0.7)
    digits = StepRecorder(backend.digit_ids, warpers)
    torch.manual_seed(3)
    with torch.inference_mode():
        out = backend.model.generate(**inputs, max_new_tokens=40, logits_processor=LogitsProcessorList([digits]),
                                     output_scores=True, return_dict_in_generate=True, **kwargs)
    ids = digits.digit_ids.cpu()
    processed = torch.stack([torch.log_softmax(step[0].float(), -1)[ids] for step in out.scores])
    assert processed.shape == digits.numbers()["digits"][:, 0].shape and processed.shape[0] > 5
    assert torch.allclose(digits.numbers()["digits"][:, 0], processed, atol=1e-5, equal_nan=True)
    # The token chosen at each step, read one step later (and at the end for the last), has the
    # probability the sampler gave it.
    kept = digits.numbers(last_tokens=out.sequences[:, -1])
    chosen = out.sequences[0, inputs["input_ids"].shape[1]:]
    drawn = torch.stack([torch.log_softmax(step[0].float(), -1)[token] for step, token in zip(out.scores, chosen)])
    assert torch.allclose(kept["chosen"][:, 0], drawn, atol=1e-5)


# ---- the authors' reading on constructed generations -------------------------------------------------

def step_probs(position: int) -> tuple[float, ...]:
    """Raw p("1".."5") at a step, different at every position, so a test sees which step was read."""
    weights = [((position * 7 + level * 3) % 11) + 1 for level in range(5)]
    return tuple(w / 100 for w in weights)


def generation_of(text: str, loop=None) -> "Generation":
    """A finished answer as a backend gives it: one token a digit (as Qwen writes them), each with
    its p(1..5); only "1".."5" are score digits."""
    from vs2demo.backends import DigitStep, Generation

    steps = [DigitStep(i, step_probs(i), char in "12345") for i, char in enumerate(text) if char.isdecimal()]
    return Generation(text=text, digit_steps=steps, new_tokens=len(text) // 4, visual_tokens=8, preprocess_s=0.0,
                      first_token_s=0.0, generate_s=0.0, stopped_early=False, loop=loop)


def authors_normed(probs) -> float:
    """vs2_inference.py's ll_based_soft_score_normed on one step's p(1..5), as written there."""
    total_prob, max_prob = sum(probs), max(probs)
    best_score = list(range(1, 6))[list(probs).index(max_prob)]
    return round(best_score * (max_prob / total_prob if total_prob > 0 else 0), 4)


AUTHORS = ScoreOptions(**PRESETS["authors"])


def test_a_first_digit_that_is_not_1_to_5_still_gives_the_authors_soft_score():
    """"0", "8", "04", a full-width digit: the authors' script still reads p(1..5) at that step."""
    from vs2demo.metrics import model_value
    from vs2demo.scoring import read_answer

    text = ("<think>Sharp, on prompt, odd bounce.</think>\n(1) visual quality: 0\n"
            "(2) text-to-video alignment: 8\n(3) physical/common-sense consistency: 04\n")
    for text, scores in ((text, [0, 8, 4]), (text.replace(": 8", ": \uff14"), [0, 4, 4])):
        answer = read_answer(generation_of(text), AUTHORS)
        reading = authors_reading(text)
        assert [answer.scores[key].score for key in DIMENSIONS] == scores
        for key in DIMENSIONS:
            digit = reading[key][1]  # the first digit after the label: "0", "8", "４", the "0" of "04"
            assert model_value(answer.scores[key], "normed") == authors_normed(step_probs(digit))
            assert answer.scores[key].expected == pytest.approx(
                sum(s * p for s, p in zip(range(1, 6), step_probs(digit))) / sum(step_probs(digit)), abs=1e-12)
    # The app's own reading keeps p(1..5) only where a score digit 1-5 was written: "４" has none.
    own = read_answer(generation_of(text.replace(": 8", ": \uff14")), ScoreOptions())
    assert own.scores["text_alignment"].score == 4 and own.scores["text_alignment"].expected is None


def test_scores_inside_a_loop_are_read_from_all_the_text_written():
    from vs2demo.backends import Loop
    from vs2demo.scoring import read_answer

    block = "visual quality: 3; text-to-video alignment: 4, physical/common-sense consistency: 2. "
    text = "<think>The ball rolls. " + block * 3
    loop = Loop(start=text.index(block), repeats_from=text.index(block) + len(block), after_tokens=40)
    answer = read_answer(generation_of(text, loop), AUTHORS)
    assert [answer.scores[key].score for key in DIMENSIONS] == [3, 4, 2] and answer.error is None
    first_two = text.index("2", text.index(block))
    assert answer.scores["physical_consistency"].probs == pytest.approx(
        [p / sum(step_probs(first_two)) for p in step_probs(first_two)])


def test_the_backend_keeps_p_at_every_digit_the_authors_may_read(toy_model_dir):
    """On the toy's tokenizer, "４" is three byte tokens: the one that completes it holds its step."""
    from transformers import AutoTokenizer

    from vs2demo.backends.transformers import digit_steps, token_pieces

    tokenizer = AutoTokenizer.from_pretrained(toy_model_dir)
    ids = tokenizer.encode("visual quality: 0; 8 and \uff14 then 3", add_special_tokens=False)
    pieces, text = token_pieces(tokenizer, ids)
    log_probs = torch.log(torch.tensor([step_probs(i) for i in range(len(ids))], dtype=torch.float64))
    steps = digit_steps(pieces, ids, [tokenizer.convert_tokens_to_ids(d) for d in "12345"], log_probs)
    assert [(text[s.start:s.start + s.length], s.score_digit) for s in steps] == \
        [("0", False), ("8", False), ("\uff14", False), ("3", True)]
    completing = [i for i, piece in enumerate(pieces) if piece == "\uff14"]
    assert steps[2].probs == pytest.approx(step_probs(completing[0]))


def test_under_the_authors_template_the_prompt_is_sent_as_given():
    given = "  A red ball rolls.\n"
    assert "Video prompt:   A red ball rolls.\n\n" in render_prompt(given, "inference")
    assert "Video prompt: A red ball rolls.\n" in render_prompt(given, "card")
