"""Does the prompt matter? One video scored with its own prompt and again with another (or none),
side by side, and a sentence saying how text-to-video alignment moved.

VideoScore v1's users found its alignment score hardly depended on the prompt; this puts the
question to VideoScore2 for one video. Pure Python: no torch, no Gradio.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import DIMENSION_TITLES, DIMENSIONS
from .errors import UserInputError
from .results import DimensionScore, ScoreResult
from .settings import ScoreOptions, request_options

# A change of the expected score (sum of s * p(s) over 1-5) smaller than this "barely" moved: a
# quarter of one score level, well above the jitter of a re-read and well below a change of the
# written score.
BARELY_MOVED = 0.25

DIMENSION_NAMES = {key: title.lower() for key, title in DIMENSION_TITLES.items()}


@dataclass(frozen=True)
class DimensionShift:
    """One dimension with the video's own prompt (`before`) and with the other one (`after`): the
    written scores, their expected values, and `change` = after - before in expected value (None
    when either has no score)."""

    dimension: str
    before: int | None
    before_expected: float | None
    after: int | None
    after_expected: float | None

    @property
    def change(self) -> float | None:
        if self.before_expected is None or self.after_expected is None:
            return None
        return round(self.after_expected - self.before_expected, 4)  # no float dust at the threshold

    @property
    def moved(self) -> bool:
        """Moved by BARELY_MOVED or more in expected value."""
        return self.change is not None and abs(self.change) >= BARELY_MOVED


@dataclass(frozen=True)
class PromptSensitivity:
    """The two scorings of one video compared. `other_prompt` is the prompt of the second ("" when
    it was scored with no prompt); `shifts` one DimensionShift per dimension, in DIMENSIONS order;
    `verdict` one sentence on text alignment; `note` a sentence on the other dimensions (or on
    unseeded sampling), "" when there is nothing to add."""

    original_prompt: str
    other_prompt: str
    shifts: tuple[DimensionShift, ...]
    verdict: str
    note: str = ""

    @property
    def empty_prompt(self) -> bool:
        return self.other_prompt == ""

    @property
    def alignment(self) -> DimensionShift:
        return self.shift("text_alignment")

    def shift(self, dimension: str) -> DimensionShift:
        return next(s for s in self.shifts if s.dimension == dimension)

    @property
    def message(self) -> str:
        """The verdict and the note, as shown."""
        return f"{self.verdict} {self.note}".strip()


def expected_value(score: DimensionScore | None) -> float | None:
    """A dimension's expected score, or its whole score where it has no probabilities."""
    if score is None:
        return None
    if score.expected is not None:
        return float(score.expected)
    return None if score.score is None else float(score.score)


def _shift(dimension: str, original: ScoreResult, other: ScoreResult) -> DimensionShift:
    before, after = original.scores.get(dimension), other.scores.get(dimension)
    return DimensionShift(dimension, before.score if before else None, expected_value(before),
                          after.score if after else None, expected_value(after))


def _shown(score: int | None, expected: float | None) -> str:
    return f"{score} ({expected:.2f})" if score is not None else f"{expected:.2f}"


def with_other(other_prompt: str) -> str:
    """How the second scoring is named in a sentence: "without the prompt", "with the other prompt"."""
    return "without the prompt" if other_prompt == "" else "with the other prompt"


def sensitivity(original: ScoreResult, other: ScoreResult) -> PromptSensitivity:
    """`original` (the video with its own prompt) against `other` (the same video, another prompt
    or none), with the sentences that say what moved."""
    shifts = tuple(_shift(dim, original, other) for dim in DIMENSIONS)
    other_prompt = other.prompt or ""
    lead = with_other(other_prompt)
    alignment = next(s for s in shifts if s.dimension == "text_alignment")
    if alignment.before_expected is None:
        verdict = "There is nothing to compare: the first scoring, with your prompt, has no text-alignment score."
    elif alignment.after_expected is None:
        # The record's own error (shown beside this) says why.
        verdict = f"There is nothing to compare: the scoring {lead} has no text-alignment score."
    elif other_prompt == (original.prompt or ""):
        verdict = ("The other prompt is the one already scored, so nothing can move: write a different one, "
                   "or leave it empty to score with no prompt.")
    else:
        before = _shown(alignment.before, alignment.before_expected)
        after = _shown(alignment.after, alignment.after_expected)
        change = alignment.change
        Lead = lead[0].upper() + lead[1:]
        if alignment.moved:
            verb = "fell" if change < 0 else "rose"
            verdict = f"{Lead}, text alignment {verb} from {before} to {after}: the judge reads the prompt."
        elif round(change, 2) == 0:  # as shown: not "moved by only 0.00"
            verdict = (f"{Lead}, text alignment stayed at {before}: the judge's alignment score does not depend on "
                       "the prompt here.")
        else:
            verdict = (f"{Lead}, text alignment moved by only {abs(change):.2f}, from {before} to {after}: the judge's "
                       "alignment score barely depends on the prompt here.")
    return PromptSensitivity(original.prompt or "", other_prompt, shifts, verdict, _note(original, other, shifts))


def _note(original: ScoreResult, other: ScoreResult, shifts: tuple[DimensionShift, ...]) -> str:
    notes = []
    moved = [s for s in shifts if s.dimension != "text_alignment" and s.moved]
    if moved:
        named = " and ".join(f"{DIMENSION_NAMES[s.dimension]} by {s.change:+.2f}" for s in moved)
        notes.append(f"Other dimensions moved too ({named}), though the prompt should matter to alignment only.")
    if any(_unseeded(record) for record in (original, other)):
        notes.append("These were sampled without a seed, so part of any change is chance.")
    return " ".join(notes)


def _unseeded(record: ScoreResult) -> bool:
    return bool(record.settings.get("do_sample")) and record.settings.get("seed") is None


# The options every record's settings carry; any other option a record has is used too, and one it
# lacks (an option newer than the record) keeps its default.
RECORDED_OPTIONS = ("fps", "max_frames", "template", "do_sample", "temperature", "max_new_tokens")


def options_of(record: ScoreResult) -> ScoreOptions | None:
    """The options a record was scored with (its `settings`), checked; None when the record does not
    say them (a record from elsewhere), so the caller uses its own."""
    settings = record.settings or {}
    if any(name not in settings for name in RECORDED_OPTIONS):
        return None
    try:
        return request_options(ScoreOptions(), **{name: settings.get(name) for name in ScoreOptions.__dataclass_fields__})
    except UserInputError:
        return None
