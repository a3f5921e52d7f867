"""Do those frames matter? (issue #26) The video of a record with attention, scored again twice
through the same path and options: once with its most-attended frames replaced by their nearest
unreplaced neighbours, once with as many random frames replaced; and how each score's expected value
moved in both.

Which frames: the top 3 temporal patches (2 frames each, as the model merges them) by their share
averaged over the scored dimensions. One set for all three scores, not one per dimension: per
dimension would take six scorings instead of two, and the dimensions mostly look at the same
frames. The random frames are whole patches too, drawn (with a fixed, recorded seed) from the
patches outside the top ones, so the control never replaces a top frame and replaces frames the way
the model groups them. Pure Python: no torch, no Gradio; `score` is scoring.Scorer.score's stream.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

from . import DIMENSION_TITLES, DIMENSIONS
from .errors import UserInputError
from .prompt_sensitivity import expected_value
from .results import ScoreResult
from .settings import CheckMark, ScoreOptions

TOP_PATCHES = 3
SEED = 26  # the random draw's seed: the same record always gets the same control
KINDS = ("top-frames", "random-frames")


@dataclass(frozen=True)
class CheckPlan:
    """Which frames each scoring replaces (positions in the sampled frame list, ascending), the
    patches they make up, and the seed of the random draw."""

    top: tuple[int, ...]
    random: tuple[int, ...]
    top_patches: tuple[int, ...]
    random_patches: tuple[int, ...]
    seed: int

    def replaced(self, kind: str) -> tuple[int, ...]:
        return self.top if kind == "top-frames" else self.random


def mean_patch_shares(attention: dict) -> list[float]:
    """Each patch's share averaged over the dimensions that have one (each sums to 1, so this does too)."""
    rows = [dim["patches"] for dim in attention["dimensions"].values() if dim.get("patches")]
    if not rows:
        return []
    return [sum(row[i] for row in rows) / len(rows) for i in range(len(attention["patches"]))]


def plan_check(attention: dict, seed: int = SEED) -> CheckPlan:
    """The frames to replace; UserInputError when there are too few patches for a top set and an
    equal, separate random set (each takes at most half of them)."""
    patches = attention["patches"]
    shares = mean_patch_shares(attention)
    count = min(TOP_PATCHES, len(patches) // 2)
    if count < 1 or not shares:
        raise UserInputError("Too few frames for this check: it needs at least 4 (2 patches). Evaluate with more "
                             "frames (a longer video, or a higher fps in Scoring options).")
    top_patches = sorted(sorted(range(len(shares)), key=lambda i: (-shares[i], i))[:count])
    others = [i for i in range(len(patches)) if i not in top_patches]
    top = sorted(i for p in top_patches for i in patches[p])
    # Random patches of the same sizes as the top ones' total, drawn from the rest.
    random_patches = sorted(random.Random(seed).sample(others, count))
    randoms = sorted(i for p in random_patches for i in patches[p])[:len(top)]
    return CheckPlan(tuple(top), tuple(randoms), tuple(top_patches), tuple(random_patches), seed)


def check_options(options: ScoreOptions, original_key: str, kind: str, plan: CheckPlan) -> ScoreOptions:
    """The original's options with the frames of `kind` replaced, marked as a check of `original_key`."""
    replaced = plan.replaced(kind)
    mark = CheckMark(of=original_key, kind=kind, replaced=replaced, seed=plan.seed if kind == "random-frames" else None)
    return options.with_changes(replace_frames=replaced, check=mark).validated()


@dataclass(frozen=True)
class DimensionMove:
    """One dimension's expected value before, with the top frames replaced and with random ones."""

    dimension: str
    before: float | None
    top: float | None
    random: float | None

    @staticmethod
    def _shift(after: float | None, before: float | None) -> float | None:
        return None if after is None or before is None else round(after - before, 4)

    @property
    def top_shift(self) -> float | None:
        return self._shift(self.top, self.before)

    @property
    def random_shift(self) -> float | None:
        return self._shift(self.random, self.before)


def signed(change: float) -> str:
    """+0.80 / −0.80 (a real minus) / 0.00 (never −0.00)."""
    if round(change, 2) == 0:
        return "0.00"
    return f"{change:+.2f}".replace("-", "−")


@dataclass(frozen=True)
class FramesCheck:
    """The finished check: the original, its two check records, and the plan that made them."""

    original: ScoreResult
    top: ScoreResult
    random: ScoreResult
    plan: CheckPlan

    @property
    def moves(self) -> tuple[DimensionMove, ...]:
        return tuple(DimensionMove(d, expected_value(self.original.scores.get(d)), expected_value(self.top.scores.get(d)),
                                   expected_value(self.random.scores.get(d))) for d in DIMENSIONS)

    def sentence(self, move: DimensionMove) -> str:
        name = DIMENSION_TITLES[move.dimension].lower()
        if move.top_shift is None or move.random_shift is None:
            missing = "the first scoring" if move.before is None else "a check's scoring"
            return f"No comparison for {name}: {missing} has no {name} score."
        return (f"Replacing the most-attended frames moved {name} by {signed(move.top_shift)}; replacing random "
                f"ones by {signed(move.random_shift)}.")

    @property
    def sentences(self) -> list[str]:
        return [self.sentence(move) for move in self.moves]


@dataclass(frozen=True)
class CheckStep:
    """Progress: which scoring runs (1 or 2 of 2, its kind) and its latest update (None: starting)."""

    step: int
    kind: str
    update: object | None = None


def run_check(score, original: ScoreResult, video, options: ScoreOptions) -> Iterator[CheckStep | FramesCheck | ScoreResult]:
    """CheckSteps while the two scorings run, then the FramesCheck; or, when one fails, its failed
    record (the last item). `score(video, prompt, options)` is scoring.Scorer.score's stream;
    `original` must have attention and a key (UserInputError otherwise, before anything runs)."""
    attention = getattr(original, "attention", None)
    if not attention:
        raise UserInputError("This result has no attention to pick frames by: evaluate with “Show where it looked” on.")
    if not original.key:
        raise UserInputError("This result has no key to mark its checks with: evaluate the video again.")
    plan = plan_check(attention)
    done = {}
    for step, kind in enumerate(KINDS, start=1):
        yield CheckStep(step, kind)
        result = None
        for update in score(video, original.prompt, check_options(options, original.key, kind, plan)):
            if isinstance(update, ScoreResult):
                result = update
            else:
                yield CheckStep(step, kind, update)
        if result is None or (result.error and not result.text):
            yield result if result is not None else ScoreResult(video=original.video, prompt=original.prompt,
                                                                model=original.model, error="The check gave no record.")
            return
        done[kind] = result
    yield FramesCheck(original, done["top-frames"], done["random-frames"], plan)
