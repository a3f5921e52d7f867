"""The result record of one scoring (versioned), its parts, its samples' agreement and its table row.

Pure Python: no torch, no Gradio. One record per video, the same in the CLI, the app and the API.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field

from . import DIMENSIONS
from .confidence import TokenConfidence
from .record_schema import RECORD_VERSION

SCORE_LEVELS = (1, 2, 3, 4, 5)


def weighted_soft_score(probs) -> float | None:
    """The expected value of p(1..5), as the authors' `ll_based_soft_score_weighted`
    (eval/eval_methods/vs2_float_weighted.py) computes it: each p over their sum, then sum(s * p),
    added in the same order (so to the same last bit), written out: the metrics call it per item."""
    p1, p2, p3, p4, p5 = probs
    total = sum(probs)
    if not math.isfinite(total) or total <= 0:
        return None
    return 1 * (p1 / total) + 2 * (p2 / total) + 3 * (p3 / total) + 4 * (p4 / total) + 5 * (p5 / total)


def normed_soft_score(probs) -> float:
    """The authors' soft score, as `ll_based_soft_score_normed` (vs2_inference.py) computes it: the first
    most likely digit times its probability over the five's sum, rounded to 4 decimals as there
    (0 when the five have no mass, as there)."""
    probs = list(probs)
    total, best = sum(probs), max(probs)
    normalized = best / total if total > 0 else 0
    return round(SCORE_LEVELS[probs.index(best)] * normalized, 4)


@dataclass(frozen=True)
class DimensionScore:
    """One dimension's verdict. `probs` are p("1".."5") at the step where the model wrote the score
    digit, normalized over the five digits, at full precision (rounded only where shown);
    `expected` is their weighted mean and `confidence` max p_s. Without probabilities (the digit
    could not be traced to a token) there is no soft score: expected and confidence are None."""

    score: int | None
    expected: float | None = None
    confidence: float | None = None
    probs: tuple[float, ...] | None = None

    @classmethod
    def from_probs(cls, score: int | None, probs) -> "DimensionScore":
        if probs is None:
            return cls(score=score)
        probs = tuple(float(p) for p in probs)
        total = sum(probs)
        if not math.isfinite(total) or total <= 0:
            # No digit had any mass (after the authors' top-k, say): kept as read, for their normed
            # score (0 there); no expected value can be made of it.
            return cls(score=score, probs=probs if math.isfinite(total) else None)
        normalized = tuple(p / total for p in probs)
        return cls(score=score, expected=weighted_soft_score(normalized), confidence=max(normalized),
                   probs=normalized)

    def to_dict(self) -> dict:
        # Full precision: soft scores, ties and rounding halves are computed from these numbers.
        return {
            "score": self.score,
            "expected": self.expected,
            "confidence": self.confidence,
            "probs": None if self.probs is None else list(self.probs),
        }

    @classmethod
    def from_dict(cls, data: dict | None) -> "DimensionScore":
        data = data or {}
        probs = data.get("probs")
        return cls(data.get("score"), data.get("expected"), data.get("confidence"),
                   None if probs is None else tuple(probs))


def empty_scores() -> dict[str, DimensionScore]:
    return {key: DimensionScore(None) for key in DIMENSIONS}


def scores_to_dict(scores: dict[str, DimensionScore]) -> dict:
    return {key: scores.get(key, DimensionScore(None)).to_dict() for key in DIMENSIONS}


def scores_from_dict(data: dict | None) -> dict[str, DimensionScore]:
    return {key: DimensionScore.from_dict((data or {}).get(key)) for key in DIMENSIONS}


def mean_expected(scores: dict[str, DimensionScore]) -> float | None:
    """Mean of the three expected scores; None unless all three were given."""
    values = [scores[key].expected for key in DIMENSIONS if key in scores]
    if len(values) != len(DIMENSIONS) or any(v is None for v in values):
        return None
    return sum(values) / len(values)


@dataclass(frozen=True)
class Sample:
    """One of K answers to the same input ("ask again K times"): its text, scores and checks."""

    text: str
    rationale: str = ""
    scores: dict[str, DimensionScore] = field(default_factory=empty_scores)
    checks: list[str] = field(default_factory=list)
    error: str | None = None
    new_tokens: int = 0

    @property
    def overall(self) -> float | None:
        return mean_expected(self.scores)

    def to_dict(self) -> dict:
        data = {"text": self.text, "rationale": self.rationale, "scores": scores_to_dict(self.scores),
                "overall": None if self.overall is None else round(self.overall, 4), "checks": list(self.checks),
                "new_tokens": self.new_tokens}
        if self.error is not None:
            data["error"] = self.error
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Sample":
        return cls(text=data.get("text", ""), rationale=data.get("rationale", ""),
                   scores=scores_from_dict(data.get("scores")), checks=list(data.get("checks") or []),
                   error=data.get("error"), new_tokens=int(data.get("new_tokens") or 0))


# How a record of each older version becomes one of the next: version 1 (no `version`) had every
# field version 2 has.
MIGRATIONS = {1: lambda data: data}


# ---- K answers to one input: how they agree -------------------------------------------------------

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
    checks: list[str] = field(default_factory=list)  # consistency.CHECKS that hold for the text
    tokens: TokenConfidence | None = None  # how sure the model was of each token of `text`
    # "Ask again K times": the K answers; then `scores` are theirs combined (self_consistency) and
    # `text`, `rationale`, `checks` and `tokens` are those of the answer most in agreement.
    samples: list[Sample] = field(default_factory=list)
    # "Where it looked" (options.attention): each score's attention over the frames and the prompt's
    # words, in the form record_schema.check_attention describes (vs2demo.attention makes it).
    attention: dict | None = None
    # What the record is of, exactly (see scoring.record_key), and when it was scored. `stored` is
    # True when this record was served from the results store instead of being scored again.
    key: str | None = None
    video_sha256: str | None = None
    scored_at: str | None = None
    stored: bool = False
    # Set when the record could not be kept in the results store (a full disk, a broken file): the
    # person is told, and nothing is lost but the keeping.
    store_error: str | None = None
    # How the samples agree, per dimension (empty without samples): made once, with the record.
    agreement: dict[str, DimensionAgreement] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "agreement", agreement(self.samples) if self.samples else {})

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def overall(self) -> float | None:
        """Mean of the three expected scores; None unless all three were given."""
        return mean_expected(self.scores)

    def to_dict(self) -> dict:
        data = {
            "version": RECORD_VERSION,
            "video": self.video,
            "prompt": self.prompt,
            "model": self.model,
            "scores": scores_to_dict(self.scores),
            "overall": None if self.overall is None else round(self.overall, 4),
            "rationale": self.rationale,
            "text": self.text,
            "frames": dict(self.frames),
            "timings": dict(self.timings),
            "settings": dict(self.settings),
            "key": self.key,
            "video_sha256": self.video_sha256,
            "scored_at": self.scored_at,
            "stored": self.stored,
        }
        if self.error is not None:
            data["error"] = self.error
        if self.store_error is not None:
            data["store_error"] = self.store_error
        data["checks"] = list(self.checks)
        if self.samples:
            data["samples"] = [sample.to_dict() for sample in self.samples]
            data["agreement"] = {key: value.to_dict() for key, value in self.agreement.items()}
        if self.attention is not None:
            data["attention"] = self.attention
        if self.tokens is not None:  # last: records_io reads a record's tokens lazily, as its tail
            data["tokens"] = self.tokens.to_dict()
        return data

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)

    @classmethod
    def from_dict(cls, data: dict) -> "ScoreResult":
        """A record from its dict (checked by record_schema where it came from a file), of any
        version up to RECORD_VERSION: an older one is brought up to this one first (MIGRATIONS)."""
        for version in range(data.get("version", 1), RECORD_VERSION):
            data = MIGRATIONS[version](data)
        scores = scores_from_dict(data.get("scores"))
        return cls(
            video=data.get("video", ""), prompt=data.get("prompt", ""), model=data.get("model", ""),
            scores=scores, rationale=data.get("rationale", ""), text=data.get("text", ""),
            frames=data.get("frames") or {}, timings=data.get("timings") or {},
            settings=data.get("settings") or {}, error=data.get("error"), checks=list(data.get("checks") or []),
            tokens=TokenConfidence.from_dict(data.get("tokens")),
            attention=data.get("attention"),
            samples=[Sample.from_dict(sample) for sample in data.get("samples") or [] if isinstance(sample, dict)],
            key=data.get("key"),
            video_sha256=data.get("video_sha256"), scored_at=data.get("scored_at"), stored=bool(data.get("stored")),
            store_error=data.get("store_error"),
        )


# ---- tables -------------------------------------------------------------------------------------

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


def score_cell(dim: DimensionScore | None) -> str:
    """`4 (3.87)`: the score the model wrote, then its expected value when there are probabilities."""
    if dim is None or dim.score is None:
        return "–"
    if dim.probs is None or dim.expected is None:
        return str(dim.score)
    return f"{dim.score} ({dim.expected:.2f})"


def score_cells(result: ScoreResult) -> list[str]:
    overall = "–" if result.overall is None else f"{result.overall:.2f}"
    return [score_cell(result.scores.get(key)) for key in DIMENSIONS] + [overall]


# A table's text cells are cut to a few lines, the whole text being one click away (the row's
# record): one long prompt must not make a row taller than the table's view.
PROMPT_CELL_CHARS = 90
ERROR_CELL_CHARS = 120


def text_cell(text: str | None, limit: int) -> str:
    """`text` as a table cell: at most `limit` characters, the last an ellipsis when cut."""
    text = text or ""
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"
