"""The output parser: the forms the model writes, and streaming safety on every prefix."""

from __future__ import annotations

import random
import time
import unicodedata

import pytest

from vs2demo import DIMENSIONS
from vs2demo.parsing import ParsedOutput, parse

RATIONALE = (
    "The video shows a red fox running through a snowy forest. The fur is mostly sharp, but the legs "
    "blur during fast motion and a tree trunk flickers near the end. The prompt asks for a fox at "
    "sunset; the lighting is flat daylight, so the sunset is missing. The paws slide over the snow "
    "without leaving prints, which is physically implausible."
)
TRAINED = (
    f"<think>{RATIONALE}</think>\n\n"
    "(1) visual quality: 3\n(2) text-to-video alignment: 3\n(3) physical/common-sense consistency: 2"
)


def scores_of(text: str, final: bool = True) -> tuple[int | None, ...]:
    parsed = parse(text, final=final)
    return tuple(parsed.scores[key] for key in DIMENSIONS)


def assert_spans_point_at_digits(text: str, parsed: ParsedOutput) -> None:
    for key in DIMENSIONS:
        span = parsed.spans[key]
        if parsed.scores[key] is None:
            assert span is None, key
        else:
            digit = text[span[0]:span[1]]  # the model's own character: "4", or a full-width "４"
            assert len(digit) == 1 and unicodedata.digit(digit) == parsed.scores[key], key


# ---- the trained form, field by field --------------------------------------------------------------

def test_trained_form():
    parsed = parse(TRAINED)
    assert parsed.scores == {"visual_quality": 3, "text_alignment": 3, "physical_consistency": 2}
    assert parsed.rationale == RATIONALE
    assert parsed.answer.startswith("(1) visual quality: 3") and parsed.answer.endswith("consistency: 2")
    assert parsed.thinking_done and parsed.complete
    assert_spans_point_at_digits(TRAINED, parsed)
    # The spans are the digits in the score block, not the "(1)" numbering.
    assert parsed.spans["visual_quality"][0] == TRAINED.index("quality: 3") + len("quality: ")


# ---- score blocks the model writes after </think> -----------------------------------------------------

ANSWER_FORMS = {
    "card template": ("visual quality: 4;\ntext-to-video alignment: 3,\nphysical/common-sense consistency: 4", (4, 3, 4)),
    "descriptor, en dash": (
        "(1) visual quality – clarity, smoothness, artifacts: 3\n"
        "(2) text-to-video alignment – fidelity to the prompt: 4\n"
        "(3) physical/common-sense consistency – naturalness and physics plausibility: 2",
        (3, 4, 2),
    ),
    "descriptor, hyphen": (
        "(1) visual quality - clarity, smoothness, artifacts: 5\n"
        "(2) text-to-video alignment - fidelity to the prompt: 4\n"
        "(3) physical/common-sense consistency - naturalness and physics plausibility: 3",
        (5, 4, 3),
    ),
    "descriptor, em dash": (
        "(1) visual quality — clarity, smoothness, artifacts: 2\n"
        "(2) text-to-video alignment — fidelity to the prompt: 1\n"
        "(3) physical/common-sense consistency — naturalness and physics plausibility: 2",
        (2, 1, 2),
    ),
    "out of five, one line": (
        "Visual quality: 3/5; Text-to-video alignment: 3/5; Physical consistency: 4/5", (3, 3, 4),
    ),
    "out of five, words": (
        "Visual quality: 3 out of 5\nText alignment: 4 out of 5\nCommon-sense consistency: 2 out of 5", (3, 4, 2),
    ),
    "physical/commonsense, T2V": (
        "visual quality: 4\nT2V alignment: 5\nphysical/commonsense consistency: 3", (4, 5, 3),
    ),
    "text-video alignment, physical and common sense": (
        "Visual quality: 2\nText-video alignment: 2\nPhysical and common-sense consistency: 1", (2, 2, 1),
    ),
    "floats": ("Visual Quality: 4.0\nText-to-Video Alignment: 3.0\nPhysical/Common-Sense Consistency: 5.0", (4, 3, 5)),
    "markdown bold": (
        "**Visual quality**: 4\n**Text-to-video alignment**: 3\n**Physical/common-sense consistency**: 4", (4, 3, 4),
    ),
    "markdown bold with colon inside": (
        "- **Visual quality:** 4\n- **Text-to-video alignment:** 2\n- **Physical consistency:** 3", (4, 2, 3),
    ),
    "list with equals": (
        "- visual quality = 4\n- text-to-video alignment = 4\n- physical/common-sense consistency = 5", (4, 4, 5),
    ),
    "score word": (
        "visual quality score: 4\ntext-to-video alignment score: 3\nphysical consistency score: 3", (4, 3, 3),
    ),
    "range note is not the score": (
        "Visual quality (1-5): 4\nText-to-video alignment (1-5): 2\nPhysical/common-sense consistency (1–5): 3",
        (4, 2, 3),
    ),
    "placeholders echoed": (
        "visual quality: <v_score>;\ntext-to-video alignment: <t_score>,\nphysical/common-sense consistency: <p_score>",
        (None, None, None),
    ),
    "answer tags": (
        "<answer>\nvisual quality: 3;\ntext-to-video alignment: 4,\nphysical/common-sense consistency: 3\n</answer>",
        (3, 4, 3),
    ),
    "answer tags, one line": (
        "<answer>visual quality: 2, text-to-video alignment: 2, physical/common-sense consistency: 1</answer>",
        (2, 2, 1),
    ),
    "different order": (
        "(3) physical/common-sense consistency: 2\n(1) visual quality: 4\n(2) text-to-video alignment: 5", (4, 5, 2),
    ),
    "one dimension missing": ("(1) visual quality: 3\n(3) physical/common-sense consistency: 2", (3, None, 2)),
    "upper case": (
        "VISUAL QUALITY: 3\nTEXT-TO-VIDEO ALIGNMENT: 4\nPHYSICAL/COMMON-SENSE CONSISTENCY: 4", (3, 4, 4),
    ),
    "off the scale": ("visual quality: 10/10\ntext-to-video alignment: 0\nphysical consistency: 6", (None, None, None)),
    "ten-point scale": ("visual quality: 8/10\ntext alignment: 3/10\nphysical consistency: 4 out of 10", (None, None, None)),
    "half points round up": ("visual quality: 3.5\ntext alignment: 4.5\nphysical consistency: 2.4", (4, 5, 2)),
    "markdown table": (
        "| Dimension | Score |\n|---|---|\n| Visual quality | 4 |\n| Text-to-video alignment | 3 |\n"
        "| Physical consistency | 3 |",
        (4, 3, 3),
    ),
    "json": ('{"visual_quality": 4, "text_alignment": 3, "physical_consistency": "2"}', (4, 3, 2)),
    "score on the next line": (
        "**Visual quality**\nScore: 3\n\n**Text-to-video alignment**\nScore: 4\n\n"
        "**Physical/common-sense consistency**\n- Score: 2",
        (3, 4, 2),
    ),
    "sentence": (
        "Visual quality is 3/5, text-to-video alignment is 2 and physical consistency is a 4.", (3, 2, 4),
    ),
    "bare numbers": ("Final scores: visual quality 3, text alignment 4, physical consistency 2", (3, 4, 2)),
    "intro sentence names the dimensions first": (
        "Scores for visual quality, text-to-video alignment and physical/common-sense consistency:\n"
        "visual quality: 3\ntext-to-video alignment: 4\nphysical/common-sense consistency: 2",
        (3, 4, 2),
    ),
    "first score counts in the block": ("visual quality: 3\nvisual quality: 5\ntext alignment: 4", (3, 4, None)),
    "numbered markdown with a missing score": ("1. Visual quality:\n2. Text alignment: 4\n3. Physical consistency: 2", (None, 4, 2)),
}


@pytest.mark.parametrize("name", ANSWER_FORMS)
def test_answer_forms(name):
    block, expected = ANSWER_FORMS[name]
    text = f"<think>{RATIONALE}</think>\n\n{block}"
    parsed = parse(text)
    assert scores_of(text) == expected
    assert parsed.rationale == RATIONALE
    assert "<answer>" not in parsed.answer and "</answer>" not in parsed.answer
    if name != "half points round up":  # 3.5 -> 4: the span is the "3" (next test)
        assert_spans_point_at_digits(text, parsed)


def test_half_points_span_the_units_digit():
    text = "</think>visual quality: 3.5"
    parsed = parse(text)
    assert parsed.scores["visual_quality"] == 4
    assert text[slice(*parsed.spans["visual_quality"])] == "3"


# ---- the think section ----------------------------------------------------------------------------

def test_no_opening_think_tag():
    text = TRAINED.removeprefix("<think>")
    parsed = parse(text)
    assert scores_of(text) == (3, 3, 2)
    assert parsed.rationale == RATIONALE and parsed.thinking_done


def test_think_closed_twice_reads_after_the_last():
    text = (
        "<think>First look: visual quality: 2.</think>\nWait, the blur is only brief. "
        "</think>\n\n(1) visual quality: 4\n(2) text-to-video alignment: 3\n(3) physical/common-sense consistency: 3"
    )
    parsed = parse(text)
    assert scores_of(text) == (4, 3, 3)
    assert parsed.rationale == "First look: visual quality: 2.\nWait, the blur is only brief."
    assert_spans_point_at_digits(text, parsed)


def test_scores_only_inside_the_thinking_last_one_counts():
    text = (
        "<think>The fox is sharp but blurs; at first I would give visual quality a score of 2. On reflection "
        "the blur is brief, so I would give visual quality a score of 3. The sunset is missing, so "
        "text-to-video alignment deserves a 2. Physical consistency is poor: 2/5.</think>\n\n"
        "Here is my evaluation."
    )
    parsed = parse(text)
    assert scores_of(text) == (3, 2, 2)
    assert parsed.answer == "Here is my evaluation."
    assert_spans_point_at_digits(text, parsed)
    assert parsed.spans["visual_quality"][0] == text.index("score of 3") + len("score of ")


def test_block_with_some_scores_does_not_borrow_from_the_thinking():
    text = "<think>Physical consistency: 4/5.</think>\nvisual quality: 3\ntext-to-video alignment: 3"
    assert scores_of(text) == (3, 3, None)


def test_answer_tag_without_closing_think():
    text = f"<think>{RATIONALE}\n<answer>visual quality: 3, text alignment: 2, physical consistency: 2</answer>"
    parsed = parse(text)
    assert scores_of(text) == (3, 2, 2)
    assert parsed.rationale == RATIONALE and parsed.thinking_done


def test_no_think_section_at_all():
    text = "visual quality: 4\ntext-to-video alignment: 4\nphysical/common-sense consistency: 3"
    parsed = parse(text)
    assert scores_of(text) == (4, 4, 3)
    assert parsed.thinking_done and parsed.rationale == "" and parsed.answer == text
    assert not parse(text, final=False).thinking_done  # a </think> may still come


def test_truncated_inside_the_thinking_reads_what_was_written():
    # Cut off at the token limit: what the thinking had said is all there is (REFERENCE.md: prefer
    # what follows the last </think>, else the whole text).
    text = "<think>The fox is sharp; visual quality: 3 so far. Text-to-video alignment: the sunset"
    parsed = parse(text)
    assert scores_of(text) == (3, None, None)
    assert parsed.rationale == text.removeprefix("<think>")
    assert not parsed.thinking_done and not parsed.complete and parsed.answer == ""
    assert scores_of(text, final=False) == (None, None, None)  # while it streams, it may still close


def test_a_thinking_that_never_closes_gives_its_last_scores_when_final():
    text = ("<think>The fox is sharp, but the blur is brief; I first thought visual quality: 2. Overall, I'd rate "
            "visual quality: 3, text-to-video alignment: 2, and physical/common-sense consistency: 2")
    parsed = parse(text)
    assert scores_of(text) == (3, 2, 2) and parsed.complete and not parsed.thinking_done
    assert parsed.spans["visual_quality"][0] == text.index("visual quality: 3") + len("visual quality: ")
    assert_spans_point_at_digits(text, parsed)


@pytest.mark.parametrize("text, expected", [
    ("<think>x</think>\nvisual quality：4；text-to-video alignment：3，physical consistency：2", (4, 3, 2)),
    ("<think>x</think>\n（1）visual quality：４\n（2）text-to-video alignment：３／５\n（3）physical/common-sense "
     "consistency：２。", (4, 3, 2)),
    ("<think>x</think>\nVisual quality：3／10；text alignment：４．０　physical consistency：2", (None, 4, 2)),
    ("<think>x</think>\n视觉 visual quality：5、text alignment：1、physical consistency：1", (5, 1, 1)),
])
def test_full_width_punctuation_and_digits(text, expected):
    parsed = parse(text)
    assert scores_of(text) == expected
    assert_spans_point_at_digits(text, parsed)  # positions are the model's own text's


def test_empty_text():
    parsed = parse("")
    assert scores_of("") == (None, None, None) and parsed.rationale == "" and parsed.answer == ""
    assert scores_of("", final=False) == (None, None, None)


def test_descriptive_numbers_are_not_scores():
    text = (
        "<think>x</think>\nvisual quality: 3D rendering looks fine\ntext alignment has a 2-second gap\n"
        "physical consistency – the first 3 seconds are fine"
    )
    assert scores_of(text) == (None, None, None)


# ---- streaming -------------------------------------------------------------------------------------

STREAMED_OUTPUTS = {
    "trained": (TRAINED, (3, 3, 2)),
    "descriptor": (
        f"<think>{RATIONALE}</think>\n\n(1) visual quality – clarity, smoothness, artifacts: 3\n"
        "(2) text-to-video alignment – fidelity to the prompt: 2\n"
        "(3) physical/common-sense consistency – naturalness and physics plausibility: 2",
        (3, 2, 2),
    ),
    "fractions and floats": (
        f"{RATIONALE}</think>\nVisual quality: 4.0/5.0; Text-to-video alignment: 3/5; Physical consistency: 3 out of 5.",
        (4, 3, 3),
    ),
    "ten-point scale never flashes a score": (
        f"<think>{RATIONALE}</think>\nvisual quality: 10/10\ntext alignment: 1/10\nphysical consistency: 5.5",
        (None, None, None),
    ),
    "answer tags and bold": (
        f"<think>{RATIONALE}</think>\n<answer>\n**Visual quality**: 2\n**Text-to-video alignment**: 1\n"
        "**Physical/common-sense consistency**: 2\n</answer>",
        (2, 1, 2),
    ),
    "scores inside the thinking": (
        "<think>I would give visual quality a score of 3, text-to-video alignment a 2, and physical "
        "consistency 2/5.</think>\nDone.",
        (3, 2, 2),
    ),
    "thinking never closed": (
        "<think>Sharp, but the ball sinks into the floor. Overall, I'd rate visual quality: 4, text-to-video "
        "alignment: 3 and physical/common-sense consistency: 1",
        (4, 3, 1),
    ),
    "full-width punctuation and digits": (
        f"<think>{RATIONALE}</think>\n（1）visual quality：４\n（2）text-to-video alignment：3／5；\n"
        "（3）physical/common-sense consistency：２。",
        (4, 3, 2),
    ),
    "think closed twice in a row": (
        f"<think>{RATIONALE}</think>\n</think>\n\nvisual quality: 4\ntext alignment: 4\nphysical consistency: 4",
        (4, 4, 4),
    ),
}


@pytest.mark.parametrize("name", STREAMED_OUTPUTS)
def test_streaming_every_prefix(name):
    text, expected = STREAMED_OUTPUTS[name]
    reported: dict[str, tuple[int, tuple[int, int]]] = {}
    for end in range(len(text) + 1):
        prefix = text[:end]
        parsed = parse(prefix, final=False)
        if not parsed.thinking_done:
            assert all(score is None for score in parsed.scores.values()), prefix
            assert "</thi" not in parsed.rationale and not parsed.rationale.endswith("<"), prefix
        for key, earlier in reported.items():  # once shown, a score never changes or disappears
            assert (parsed.scores[key], parsed.spans[key]) == earlier, (key, prefix)
        for key in DIMENSIONS:
            if parsed.scores[key] is not None:
                reported[key] = (parsed.scores[key], parsed.spans[key])
        assert_spans_point_at_digits(prefix, parsed)
    final = parse(text)
    assert scores_of(text) == expected
    for key, (score, span) in reported.items():
        assert (final.scores[key], final.spans[key]) == (score, span), key
    assert_spans_point_at_digits(text, final)


def test_streaming_second_think_close_withdraws_what_it_closes():
    # Text between two </think> looks like an answer until the second one arrives and turns it into
    # thinking: the one case where a streamed score is withdrawn (the last </think> wins, as in final).
    first = "<think>Hmm.</think> Check again: visual quality: 2\n"
    assert parse(first, final=False).scores["visual_quality"] == 2
    text = first + "No, the blur is brief.</think>\nvisual quality: 4\ntext alignment: 4"
    assert parse(text[: len(first) + 30], final=False).scores["visual_quality"] is None
    assert scores_of(text) == (4, 4, None)


def test_streaming_holds_a_trailing_digit_until_the_next_character():
    head = "<think>ok</think>\nvisual quality: 1"
    assert parse(head, final=False).scores["visual_quality"] is None  # could still become 10
    assert parse(head + "0", final=False).scores["visual_quality"] is None
    assert parse(head + "\n", final=False).scores["visual_quality"] == 1
    assert parse(head + ".", final=False).scores["visual_quality"] is None  # could still become 1.5
    assert parse(head + "/", final=False).scores["visual_quality"] is None  # could still become 1/10
    assert parse(head + "/5;", final=False).scores["visual_quality"] == 1
    assert parse(head, final=True).scores["visual_quality"] == 1


def test_streaming_rationale_grows_without_half_tags():
    assert parse("<thi", final=False).rationale == ""
    assert parse("<think>The fox runs.</th", final=False).rationale == "The fox runs."
    parsed = parse("<think>The fox runs.", final=False)
    assert parsed.rationale == "The fox runs." and not parsed.thinking_done and parsed.answer == ""


def test_streaming_is_fast_on_a_long_output():
    text = "<think>" + RATIONALE * 12 + "</think>\n\n" + TRAINED.split("\n\n", 1)[1]
    started = time.perf_counter()
    for end in range(0, len(text) + 1, 4):  # about one call per token
        parse(text[:end], final=False)
    assert time.perf_counter() - started < 1.0


# Random mixes of the forms above, streamed: the same invariants on outputs nobody wrote by hand.
FUZZ_LABELS = {
    "visual_quality": ("visual quality", "**Visual quality**", "(1) visual quality – clarity, smoothness, artifacts",
                       "Visual quality (1-5)", "visual quality score"),
    "text_alignment": ("text-to-video alignment", "T2V alignment", "**Text-to-video alignment:**",
                       "(2) text-to-video alignment — fidelity to the prompt"),
    "physical_consistency": ("physical/common-sense consistency", "Physical consistency", "commonsense consistency",
                             "physical/common-sense consistency - naturalness and physics plausibility"),
}
FUZZ_HEADS = ("<think>The fox runs.</think>\n\n", "The fox runs.</think>\n", "<think>x</think>\n<answer>", "",
              "<think>visual quality: 2</think>\n</think>\n", "<think>still thinking, visual quality: 3")
FUZZ_SEPARATORS = (": ", ":", " = ", " - ", " is ", ": **", " | ", " deserves a ", ", a score of ", " ", "\nScore: ", "：")
FUZZ_NUMBERS = ("1", "2", "3", "4", "5", "4.0", "10", "0", "3/5", "3/10", "2 out of 5", "<v_score>", "3D", "2-second",
                "３", "４．０", "３／５", "１０")
FUZZ_ENDS = ("\n", ";\n", ",\n", ". ", "** \n", " (blurry)\n", " and ", "", " |\n", "；\n", "。", "，")


def random_output(rng: random.Random) -> str:
    lines = [rng.choice(FUZZ_HEADS)]
    for _ in range(rng.randint(1, 4)):
        key = rng.choice(DIMENSIONS)
        lines.append(rng.choice(FUZZ_LABELS[key]) + rng.choice(FUZZ_SEPARATORS) + rng.choice(FUZZ_NUMBERS)
                     + rng.choice(FUZZ_ENDS))
    return "".join(lines) + rng.choice(("", "</answer>", "\nDone."))


def test_streaming_random_outputs():
    rng = random.Random(7)
    for _ in range(50):
        text = random_output(rng)
        first_seen: dict[str, tuple[int, tuple[int, int]]] = {}
        for end in range(len(text) + 1):
            parsed = parse(text[:end], final=False)
            for key in DIMENSIONS:
                if parsed.scores[key] is not None:
                    assert parsed.thinking_done, text[:end]
                    first_seen.setdefault(key, (parsed.scores[key], parsed.spans[key]))
                    assert (parsed.scores[key], parsed.spans[key]) == first_seen[key], (key, text[:end])
                elif key in first_seen:
                    raise AssertionError(f"{key} disappeared at {text[:end]!r}")
            assert_spans_point_at_digits(text[:end], parsed)
        final = parse(text)
        assert {key: (final.scores[key], final.spans[key]) for key in first_seen} == first_seen, text
