"""Does the prompt matter? The comparison of one video scored with its prompt and with another (or
none), on constructed records; an empty prompt accepted only when asked for; and one real scoring
with no prompt on the toy."""

import pytest

from vs2demo import DIMENSIONS
from vs2demo.errors import UserInputError
from vs2demo.prompt_sensitivity import BARELY_MOVED, options_of, sensitivity
from vs2demo.prompts import MAX_PROMPT_CHARS, build_messages, clean_prompt, render_prompt
from vs2demo.results import DimensionScore, ScoreResult
from vs2demo.settings import ScoreOptions, Settings

PROMPT = "A red ball rolls and bounces across a grey studio floor."


def record(prompt: str, vq=(4, 3.9), ta=(4, 3.87), pc=(4, 4.1), error=None, settings=None) -> ScoreResult:
    scores = {dim: DimensionScore(*value) if value else DimensionScore(None)
              for dim, value in zip(DIMENSIONS, (vq, ta, pc))}
    return ScoreResult(video="clip.mp4", prompt=prompt, model="toy", scores=scores, error=error,
                       settings=settings if settings is not None else ScoreOptions().to_dict())


def test_alignment_that_falls_without_the_prompt_says_the_judge_reads_it():
    compared = sensitivity(record(PROMPT), record("", ta=(2, 2.1)))
    assert compared.empty_prompt and compared.other_prompt == "" and compared.original_prompt == PROMPT
    shift = compared.alignment
    assert (shift.before, shift.before_expected, shift.after, shift.after_expected) == (4, 3.87, 2, 2.1)
    assert shift.change == pytest.approx(-1.77) and shift.moved
    assert compared.verdict == ("Without the prompt, text alignment fell from 4 (3.87) to 2 (2.10): "
                                "the judge reads the prompt.")
    assert compared.note == "" and compared.message == compared.verdict
    assert [s.dimension for s in compared.shifts] == list(DIMENSIONS)


def test_alignment_that_barely_moves_says_so():
    compared = sensitivity(record(PROMPT), record("A cat on a sofa.", ta=(4, 3.91)))
    assert not compared.empty_prompt and not compared.alignment.moved
    assert compared.verdict == ("With the other prompt, text alignment moved by only 0.04, from 4 (3.87) to 4 (3.91): "
                                "the judge's alignment score barely depends on the prompt here.")
    assert "does not depend" in sensitivity(record(PROMPT), record("")).verdict  # not moved at all
    # The threshold is inclusive, without float dust: 3.87 + 0.25 moved.
    edge = sensitivity(record(PROMPT), record("", ta=(4, 3.87 + BARELY_MOVED)))
    assert edge.alignment.change == BARELY_MOVED and edge.alignment.moved and "rose" in edge.verdict


def test_other_dimensions_that_move_are_named():
    compared = sensitivity(record(PROMPT), record("", vq=(3, 3.2), ta=(2, 2.0), pc=(4, 4.0)))
    assert compared.shift("visual_quality").moved and not compared.shift("physical_consistency").moved
    assert compared.note.startswith("Other dimensions moved too (visual quality by -0.70)")
    assert compared.message == f"{compared.verdict} {compared.note}"


def test_a_failed_scoring_is_a_clear_sentence():
    failed = record("", vq=None, ta=None, pc=None, error="Scoring failed: boom.")
    compared = sensitivity(record(PROMPT), failed)
    assert compared.verdict == "There is nothing to compare: the scoring without the prompt has no text-alignment score."
    assert compared.alignment.change is None and not compared.alignment.moved and compared.note == ""
    first = sensitivity(record(PROMPT, ta=None), record(""))
    assert first.verdict.startswith("There is nothing to compare: the first scoring")
    same = sensitivity(record(PROMPT), record(PROMPT))
    assert "the one already scored" in same.verdict


def test_unseeded_sampling_is_noted_and_the_records_options_are_read_back():
    sampled = ScoreOptions(do_sample=True, temperature=0.9, max_frames=16).to_dict()
    compared = sensitivity(record(PROMPT, settings=sampled), record("", settings=sampled))
    assert "without a seed" in compared.note
    assert options_of(record(PROMPT, settings=sampled)) == ScoreOptions(do_sample=True, temperature=0.9, max_frames=16)
    assert options_of(record(PROMPT, settings={"quant": "none"})) is None  # a record that does not say them


def test_clean_prompt_allows_an_empty_prompt_only_when_asked():
    with pytest.raises(UserInputError, match="The prompt is empty: give the text the video was generated from."):
        clean_prompt("  \n")
    assert clean_prompt("  \n", allow_empty=True) == "" and clean_prompt(None, allow_empty=True) == ""
    assert clean_prompt("  a ball ", allow_empty=True) == "a ball"
    with pytest.raises(UserInputError, match="characters long"):
        clean_prompt("x" * (MAX_PROMPT_CHARS + 1), allow_empty=True)
    # What the model then sees: the template with nothing after "Video prompt:".
    assert "Video prompt: \n" in render_prompt("", "card")
    assert "Video prompt: \n" in build_messages("", "card")[0]["content"][1]["text"]


def test_the_comparison_table_escapes_the_prompts():
    from vs2demo.ui.prompt_check import comparison_html

    shown = comparison_html(sensitivity(record("<img src=x onerror=alert(1)>"), record("<b>cat</b>", ta=(1, 1.2))))
    assert "<img" not in shown and "<b>cat" not in shown and "&lt;img" in shown
    assert "With the other prompt" in shown and "−2.67" in shown


@pytest.fixture(scope="module")
def scorer(toy_model_dir):
    from vs2demo.backends.transformers import TransformersBackend
    from vs2demo.scoring import Scorer

    backend = TransformersBackend.load(Settings(model=str(toy_model_dir), quant="none", device="cpu"))
    return Scorer(backend.settings, backend=backend)


def test_the_toy_scores_a_video_with_no_prompt_when_asked(scorer, clean_clip):
    refused = scorer.score_to_result(str(clean_clip), "  ")
    assert refused.error == "The prompt is empty: give the text the video was generated from."
    original = scorer.score_to_result(str(clean_clip), PROMPT)
    empty = scorer.score_to_result(str(clean_clip), "  ", allow_empty_prompt=True)
    assert empty.error is None and empty.prompt == "" and empty.key != original.key
    compared = sensitivity(original, empty)
    assert compared.empty_prompt and compared.alignment.change is not None
    assert compared.verdict.startswith("Without the prompt, text alignment")
