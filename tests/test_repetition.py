"""A looping answer is found as it streams (repetition.find_repetition), and scoring stops the model
there, keeps what it wrote and reads no scores out of the loop (scoring.generate, scored_record)."""

import pytest

from vs2demo.repetition import MIN_SPAN, find_repetition

# Rationales in VideoScore2's style: long, varied, and with the words a judge uses again and again.
RATIONALES = [
    "<think>The video shows a red ball rolling across a grey floor. The ball is sharp and well lit, the "
    "floor is sharp too, and the shadow follows the ball. The ball bounces twice; each bounce is lower "
    "than the last, as it should be. The prompt asks for a red ball that rolls and bounces: the video "
    "shows a red ball that rolls and bounces. Nothing appears or vanishes.</think>\n\n(1) visual quality: 4\n"
    "(2) text-to-video alignment: 4\n(3) physical/common-sense consistency: 4",
    "<think>Frame 1: a cat at a piano. Frame 2: a cat at a piano, paws raised. Frame 3: a cat at a piano, "
    "paws down. Frame 4: a cat at a piano, looking at the camera. The keys do not move when pressed.</think>"
    "\n\n(1) visual quality: 3\n(2) text-to-video alignment: 4\n(3) physical/common-sense consistency: 2",
    "Visual quality: 3. Text-to-video alignment: 3. Physical/common-sense consistency: 3. " * 2,
    "....................................................... " + "=" * 40 + " ha ha ha ha ha",
]


@pytest.mark.parametrize("text", RATIONALES)
def test_a_judgement_that_does_not_loop_is_left_alone_at_every_length(text):
    assert all(find_repetition(text[:end]) is None for end in range(1, len(text) + 1))


@pytest.mark.parametrize("unit", [
    "The ball rolls across the floor and bounces. ",  # a sentence
    "(1) text-to-video alignment: 4\n",  # a score line
    "4 ",  # a short unit, found once the run is MIN_SPAN long
    " ".join(f"word{i}" for i in range(60)) + ". ",  # a long one (about 400 characters)
])
def test_a_loop_is_found_once_certain_and_where_it_began(unit):
    lead = RATIONALES[0][:200]
    text = lead + unit * max(6, 2 * MIN_SPAN // len(unit))
    first_found = next(end for end in range(len(lead), len(text) + 1) if find_repetition(text[:end]))
    loop = find_repetition(text[:first_found])
    # Certain: once three copies of the unit (and MIN_SPAN characters) are written, not sooner.
    assert first_found - len(lead) == max(3 * len(unit), MIN_SPAN)
    assert loop.period == len(unit)
    assert loop.start <= len(lead) + len(unit) and loop.repeats_from == loop.start + loop.period
