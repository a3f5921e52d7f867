"""Ranking and comparing videos by their records: the one rule for ties (`ranked_groups`), each
video's standing, the winner of each dimension. Compare, Best of N, the API's /rank and the plots
use it. Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import DIMENSIONS
from .results import ScoreResult

RANK_KEYS = ("overall",) + DIMENSIONS


def ranking_value(result: ScoreResult, by: str = "overall") -> float | None:
    if result.error is not None:
        return None
    if by == "overall":
        return result.overall
    if by not in DIMENSIONS:
        raise ValueError(f"rank by one of {', '.join(RANK_KEYS)}, not {by!r}")
    return result.scores[by].expected


TIE_MARGIN = 0.05  # expected-score gap below which two videos tie


def ranked_groups(values: tuple[float | None, ...], tie_margin: float = TIE_MARGIN) -> list[list[int]]:
    """THE tie rule, for Compare, Best of N and the API's /rank: the scored videos (indexes into
    `values`) best first, in groups that tie. A video joins the group above it when it is within
    `tie_margin` of that group's best; inside a group the videos keep their input order, as none
    of them is ahead of another. Videos without a value (failed, unscored) are in no group."""
    order = sorted((i for i, v in enumerate(values) if v is not None), key=lambda i: (-values[i], i))
    groups: list[list[int]] = []
    for i in order:
        if groups and values[groups[-1][0]] - values[i] < tie_margin:
            groups[-1].append(i)
        else:
            groups.append([i])
    return [sorted(group) for group in groups]


@dataclass(frozen=True)
class Standing:
    """One video's place in a ranking: `index` into the list ranked, its `value`, its `place` (1 is
    the best; videos that tie share one, as in 1, 1, 3) and `tied` when it shares it. A video with
    no value has neither place nor tie."""

    index: int
    value: float | None
    place: int | None
    tied: bool = False


def standings(results, by: str = "overall", tie_margin: float = TIE_MARGIN) -> list[Standing]:
    """Every video's standing, best first (ranked_groups), then those without a value in input order."""
    values = tuple(ranking_value(result, by) for result in results)
    placed: list[Standing] = []
    for group in ranked_groups(values, tie_margin):
        place = len(placed) + 1
        placed += [Standing(i, values[i], place, len(group) > 1) for i in group]
    return placed + [Standing(i, None, None) for i, value in enumerate(values) if value is None]


def rank(results, by: str = "overall") -> list[ScoreResult]:
    """Best first (videos that tie in their input order); failed or unscored videos last."""
    results = list(results)
    return [results[standing.index] for standing in standings(results, by)]


def leaders(results, by: str = "overall") -> list[int]:
    """The videos (indexes) in first place: one, several that tie, or none when none was scored."""
    return [standing.index for standing in standings(results, by) if standing.place == 1]


def listed(words: list[str]) -> str:
    """"a", "a and b", "a, b and c": names in a sentence."""
    if len(words) < 2:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


@dataclass(frozen=True)
class Verdict:
    """The winner of one dimension (or overall) among compared videos, with its margin in expected
    score over the runner-up. `winner` is None on a tie (margin below `tie_margin`)."""

    key: str
    winner: int | None
    margin: float | None
    values: tuple[float | None, ...]


def compare(results, tie_margin: float = TIE_MARGIN) -> dict[str, Verdict]:
    """Per dimension and overall: which video (index into `results`) wins, and by how much (over
    the runner-up; None when only one was scored). No winner when the best ones tie (ranked_groups)."""
    verdicts = {}
    for key in DIMENSIONS + ("overall",):
        values = tuple(ranking_value(r, key) for r in results)
        groups = ranked_groups(values, tie_margin)
        scored = sorted((v for v in values if v is not None), reverse=True)
        margin = scored[0] - scored[1] if len(scored) > 1 else None  # the best over the runner-up
        winner = groups[0][0] if groups and len(groups[0]) == 1 else None
        verdicts[key] = Verdict(key, winner, margin, values)
    return verdicts


def dimension_winners(results: list[ScoreResult]) -> list[set[str]]:
    """For each video, the dimensions it wins over another scored one (ties win nothing): what its card marks."""
    winners: list[set[str]] = [set() for _ in results]
    for key, verdict in compare(results).items():
        if key != "overall" and verdict.winner is not None and verdict.margin is not None:
            winners[verdict.winner].add(key)
    return winners
