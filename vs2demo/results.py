"""The result record of one scoring, its JSON and CSV forms, and ranking and comparison.

Pure Python: no torch, no Gradio. One record per video, the same in the CLI, the app and the API.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field

from . import DIMENSIONS

SCORE_LEVELS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class DimensionScore:
    """One dimension's verdict. `probs` are p("1".."5") at the step where the model wrote the score
    digit, normalized over the five digits; `expected` is sum(s * p_s) and `confidence` max p_s.
    Without probabilities (the digit could not be traced to a token) expected is the score itself."""

    score: int | None
    expected: float | None = None
    confidence: float | None = None
    probs: tuple[float, ...] | None = None

    @classmethod
    def from_probs(cls, score: int | None, probs) -> "DimensionScore":
        if probs is None:
            return cls(score=score, expected=None if score is None else float(score))
        total = float(sum(probs))
        if not math.isfinite(total) or total <= 0:
            return cls(score=score, expected=None if score is None else float(score))
        normalized = tuple(float(p) / total for p in probs)
        expected = sum(level * p for level, p in zip(SCORE_LEVELS, normalized))
        return cls(score=score, expected=expected, confidence=max(normalized), probs=normalized)

    def to_dict(self) -> dict:
        return {
            "score": self.score,
            "expected": None if self.expected is None else round(self.expected, 4),
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "probs": None if self.probs is None else [round(p, 4) for p in self.probs],
        }

    @classmethod
    def from_dict(cls, data: dict | None) -> "DimensionScore":
        data = data or {}
        probs = data.get("probs")
        return cls(data.get("score"), data.get("expected"), data.get("confidence"),
                   None if probs is None else tuple(probs))


def empty_scores() -> dict[str, DimensionScore]:
    return {key: DimensionScore(None) for key in DIMENSIONS}


@dataclass(frozen=True)
class ScoreResult:
    """One video's record; `error` is set (and scores empty) when it could not be scored."""

    video: str
    prompt: str
    model: str
    scores: dict[str, DimensionScore] = field(default_factory=empty_scores)
    rationale: str = ""
    text: str = ""
    frames: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def overall(self) -> float | None:
        """Mean of the three expected scores; None unless all three were given."""
        values = [self.scores[key].expected for key in DIMENSIONS if key in self.scores]
        if len(values) != len(DIMENSIONS) or any(v is None for v in values):
            return None
        return sum(values) / len(values)

    def to_dict(self) -> dict:
        data = {
            "video": self.video,
            "prompt": self.prompt,
            "model": self.model,
            "scores": {key: self.scores.get(key, DimensionScore(None)).to_dict() for key in DIMENSIONS},
            "overall": None if self.overall is None else round(self.overall, 4),
            "rationale": self.rationale,
            "text": self.text,
            "frames": dict(self.frames),
            "timings": dict(self.timings),
            "settings": dict(self.settings),
        }
        if self.error is not None:
            data["error"] = self.error
        return data

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)

    @classmethod
    def from_dict(cls, data: dict) -> "ScoreResult":
        scores = {key: DimensionScore.from_dict((data.get("scores") or {}).get(key)) for key in DIMENSIONS}
        return cls(
            video=data.get("video", ""), prompt=data.get("prompt", ""), model=data.get("model", ""),
            scores=scores, rationale=data.get("rationale", ""), text=data.get("text", ""),
            frames=data.get("frames") or {}, timings=data.get("timings") or {},
            settings=data.get("settings") or {}, error=data.get("error"),
        )


# ---- tables -------------------------------------------------------------------------------------

CSV_COLUMNS = (
    ["video", "prompt"]
    + [f"{key}{suffix}" for key in DIMENSIONS for suffix in ("", "_expected", "_confidence")]
    + ["overall", "error"]
)


def table_row(result: ScoreResult) -> dict:
    """The flat row of a record used by CSV files and UI tables."""
    row = {"video": result.video, "prompt": result.prompt}
    for key in DIMENSIONS:
        dim = result.scores.get(key, DimensionScore(None))
        row[key] = dim.score
        row[f"{key}_expected"] = None if dim.expected is None else round(dim.expected, 3)
        row[f"{key}_confidence"] = None if dim.confidence is None else round(dim.confidence, 3)
    row["overall"] = None if result.overall is None else round(result.overall, 3)
    row["error"] = result.error or ""
    return row


def results_to_csv(results) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow({k: ("" if v is None else v) for k, v in table_row(result).items()})
    return buffer.getvalue()


def results_to_json(results) -> str:
    return json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=2)


# ---- ranking and comparison -----------------------------------------------------------------------

RANK_KEYS = ("overall",) + DIMENSIONS


def ranking_value(result: ScoreResult, by: str = "overall") -> float | None:
    if result.error is not None:
        return None
    if by == "overall":
        return result.overall
    if by not in DIMENSIONS:
        raise ValueError(f"rank by one of {', '.join(RANK_KEYS)}, not {by!r}")
    return result.scores[by].expected


def rank(results, by: str = "overall") -> list[ScoreResult]:
    """Best first; ties keep input order; failed or unscored videos last."""
    indexed = list(enumerate(results))
    indexed.sort(key=lambda item: (ranking_value(item[1], by) is None, -(ranking_value(item[1], by) or 0.0), item[0]))
    return [result for _, result in indexed]


@dataclass(frozen=True)
class Verdict:
    """The winner of one dimension (or overall) among compared videos, with its margin in expected
    score over the runner-up. `winner` is None on a tie (margin below `tie_margin`)."""

    key: str
    winner: int | None
    margin: float | None
    values: tuple[float | None, ...]


def compare(results, tie_margin: float = 0.05) -> dict[str, Verdict]:
    """Per dimension and overall: which video (index into `results`) wins, and by how much."""
    verdicts = {}
    for key in DIMENSIONS + ("overall",):
        values = tuple(ranking_value(r, key) for r in results)
        scored = sorted(((v, i) for i, v in enumerate(values) if v is not None), key=lambda t: -t[0])
        if not scored:
            verdicts[key] = Verdict(key, None, None, values)
            continue
        if len(scored) == 1:
            verdicts[key] = Verdict(key, scored[0][1], None, values)
            continue
        margin = scored[0][0] - scored[1][0]
        winner = scored[0][1] if margin >= tie_margin else None
        verdicts[key] = Verdict(key, winner, margin, values)
    return verdicts


def verdict_dict(verdict: Verdict) -> dict:
    return asdict(verdict)
