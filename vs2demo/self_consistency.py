"""Would the model say the same again? K sampled answers to one input, and how far they agree.

VideoScore2's users report the same video scored 4/4/4, then 3/4/1. "Ask again K times" samples K
answers at a temperature (one prefill, see backends.transformers.shared_prefill); this module reads
them: per dimension, how many samples wrote each score, the agreement rate (the share that wrote
the most common one), the mean and spread of the expected values, and whether the dimension is
unstable. Their combined scores are the record's. Pure Python.
"""

from __future__ import annotations

from . import DIMENSION_LABELS
from .results import DimensionScore, Sample, agreement

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
