"""Would the model say the same again? K sampled answers to one input, and how far they agree.

VideoScore2's users report the same video scored 4/4/4, then 3/4/1. "Ask again K times" samples K
answers at a temperature (one prefill, see backends.transformers.shared_prefill); this module reads
them: per dimension, how many samples wrote each score, the agreement rate (the share that wrote
the most common one), the mean and spread of the expected values, and whether the dimension is
unstable. Their combined scores are the record's. Pure Python.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

from . import DIMENSION_LABELS, DIMENSIONS
from .results import SCORE_LEVELS, DimensionScore, Sample

# A dimension is unstable when its samples' scores lie this far apart or more (4 and 2, 4 and 1),
# or when fewer than this share of them agree on one score.
UNSTABLE_SPREAD = 2
UNSTABLE_AGREEMENT = 0.5


@dataclass(frozen=True)
class DimensionAgreement:
    """How K samples scored one dimension."""

    counts: tuple[int, ...]  # how many samples wrote 1, 2, 3, 4, 5
    answered: int  # samples that gave this dimension a score
    samples: int
    mode: int | None  # the score most samples wrote (ties: the lower)
    agreement: float | None  # the share of the answered samples that wrote it
    expected_mean: float | None
    expected_sd: float | None  # population standard deviation of the expected values
    unstable: bool

    @property
    def spread(self) -> int:
        written = [level for level, count in zip(SCORE_LEVELS, self.counts) if count]
        return max(written) - min(written) if written else 0

    def to_dict(self) -> dict:
        return {"counts": list(self.counts), "answered": self.answered, "samples": self.samples, "mode": self.mode,
                "agreement": None if self.agreement is None else round(self.agreement, 4),
                "expected_mean": None if self.expected_mean is None else round(self.expected_mean, 4),
                "expected_sd": None if self.expected_sd is None else round(self.expected_sd, 4),
                "unstable": self.unstable}


def dimension_agreement(samples: list[Sample], key: str) -> DimensionAgreement:
    scores = [s.scores[key].score for s in samples if s.scores.get(key) and s.scores[key].score in SCORE_LEVELS]
    counts = Counter(scores)
    expected = [s.scores[key].expected for s in samples if s.scores.get(key) and s.scores[key].expected is not None]
    mode = min(counts, key=lambda level: (-counts[level], level)) if counts else None
    agreement = counts[mode] / len(scores) if scores else None
    spread = max(scores) - min(scores) if scores else 0
    return DimensionAgreement(
        counts=tuple(counts.get(level, 0) for level in SCORE_LEVELS), answered=len(scores), samples=len(samples),
        mode=mode, agreement=agreement,
        expected_mean=statistics.fmean(expected) if expected else None,
        expected_sd=statistics.pstdev(expected) if len(expected) > 1 else (0.0 if expected else None),
        unstable=bool(scores) and (spread >= UNSTABLE_SPREAD or agreement < UNSTABLE_AGREEMENT),
    )


def agreement(samples: list[Sample]) -> dict[str, DimensionAgreement]:
    return {key: dimension_agreement(samples, key) for key in DIMENSIONS}


def combined_scores(samples: list[Sample]) -> dict[str, DimensionScore]:
    """The samples' verdict per dimension: the score most of them wrote, with p(1..5) the mean of
    theirs (the distribution of a score drawn from a random sample), so the expected value is the
    mean of their expected values."""
    combined = {}
    for key, summary in agreement(samples).items():
        probs = [s.scores[key].probs for s in samples if s.scores.get(key) and s.scores[key].probs is not None]
        mean_probs = tuple(sum(column) / len(probs) for column in zip(*probs)) if probs else None
        combined[key] = DimensionScore.from_probs(summary.mode, mean_probs) if summary.mode is not None else \
            DimensionScore(None)
    return combined


def representative(samples: list[Sample]) -> int:
    """The sample whose scores agree with the most common ones in the most dimensions (the first
    among equals): the one whose text the record shows."""
    modes = {key: summary.mode for key, summary in agreement(samples).items()}

    def agreeing(sample: Sample) -> int:
        return sum(1 for key, mode in modes.items() if mode is not None and sample.scores[key].score == mode)

    return max(range(len(samples)), key=lambda i: (agreeing(samples[i]), -i)) if samples else 0


def unstable_dimensions(samples: list[Sample]) -> list[str]:
    return [DIMENSION_LABELS[key] for key, summary in agreement(samples).items() if summary.unstable]


def summary_sentence(samples: list[Sample]) -> str:
    """One line a reader takes in at once: "4 samples: visual quality 4 in 4 of 4; …; unstable: …"."""
    parts = []
    for key, summary in agreement(samples).items():
        if summary.mode is None:
            parts.append(f"{DIMENSION_LABELS[key]} never scored")
        else:
            parts.append(f"{DIMENSION_LABELS[key]} {summary.mode} in {summary.counts[summary.mode - 1]} of "
                         f"{summary.answered}")
    unstable = unstable_dimensions(samples)
    tail = f". Unstable: {', '.join(unstable)}." if unstable else ". Stable in every dimension."
    return f"{len(samples)} samples: " + "; ".join(parts) + tail
