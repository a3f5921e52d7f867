"""The result record of one scoring, its JSON and CSV forms, and ranking and comparison.

Pure Python: no torch, no Gradio. One record per video, the same in the CLI, the app and the API.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import asdict, dataclass, field

from . import DIMENSIONS
from .confidence import TokenConfidence
from .errors import UserInputError

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

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def overall(self) -> float | None:
        """Mean of the three expected scores; None unless all three were given."""
        return mean_expected(self.scores)

    def to_dict(self) -> dict:
        data = {
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
            from .self_consistency import agreement

            data["samples"] = [sample.to_dict() for sample in self.samples]
            data["agreement"] = {key: value.to_dict() for key, value in agreement(self.samples).items()}
        if self.tokens is not None:
            data["tokens"] = self.tokens.to_dict()
        if self.attention is not None:
            data["attention"] = self.attention
        return data

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)

    @classmethod
    def from_dict(cls, data: dict) -> "ScoreResult":
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


def score_cell(dim: DimensionScore | None) -> str:
    """`4 (3.87)`: the score the model wrote, then its expected value when there are probabilities."""
    if dim is None or dim.score is None:
        return "–"
    if dim.probs is None or dim.expected is None:
        return str(dim.score)
    return f"{dim.score} ({dim.expected:.2f})"


def overall_cell(result: ScoreResult) -> str:
    return "–" if result.overall is None else f"{result.overall:.2f}"


def score_cells(result: ScoreResult) -> list[str]:
    return [score_cell(result.scores.get(key)) for key in DIMENSIONS] + [overall_cell(result)]


# A table's text cells are cut to a few lines, the whole text being one click away (the row's
# record): one long prompt must not make a row taller than the table's view.
PROMPT_CELL_CHARS = 90
ERROR_CELL_CHARS = 120


def text_cell(text: str | None, limit: int) -> str:
    """`text` as a table cell: at most `limit` characters, the last an ellipsis when cut."""
    text = text or ""
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


# A cell starting with one of these is a formula to a spreadsheet (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """A text cell a spreadsheet shows as text: a leading quote before anything it would run as a
    formula (a file named `=HYPERLINK(...)`, a prompt starting with `-`). Numbers stay numbers;
    the JSON records keep the exact text."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def results_to_csv(results) -> str:
    buffer = io.StringIO()
    # RFC 4180's CRLF: the writer quotes a cell holding any character of the line terminator, so a
    # prompt with a carriage return in it stays one cell (with "\n" alone it would split the row).
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for result in results:
        writer.writerow({k: ("" if v is None else spreadsheet_safe(v)) for k, v in table_row(result).items()})
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


def verdict_dict(verdict: Verdict) -> dict:
    return asdict(verdict)


# ---- batch files ----------------------------------------------------------------------------------

# Header names accepted for the two columns (case-insensitive); any other column is ignored, so a
# results CSV written by this app (video, prompt, scores...) can be fed back in as it is.
BATCH_VIDEO_COLUMNS = ("video", "video_path", "file", "filename", "file_name", "path")
BATCH_PROMPT_COLUMNS = ("prompt", "text", "caption", "description")


def text_of(cell: str) -> str:
    """The text a spreadsheet-safe cell stands for: this app's CSVs put a quote before a leading
    =, +, -, @ (see `spreadsheet_safe`), so one fed back in names the same file and prompt."""
    if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS):
        return cell[1:]
    return cell


# A batch file is a line per video: a few hundred lines of prompts at most. Refused above this size
# before it is decoded or parsed.
MAX_BATCH_CSV_BYTES = 256 * 1024


def read_batch_csv(text: str | bytes) -> list[tuple[str, str]]:
    """The (video, prompt) pairs of a batch file, in file order.

    Accepts a header with `video` and `prompt` columns (in any order, among others), or no
    header and two columns (video first). Tab- and semicolon-separated files are read too, and a
    prompt written with unquoted commas is put back together. A row with a video and no prompt
    gives "" (the caller may fill in a default prompt). Raises UserInputError saying what is wrong
    when the file cannot be read as such a table.
    """
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8"))
    if size > MAX_BATCH_CSV_BYTES:
        raise UserInputError(f"The CSV file is {size // 1024:,} KiB; a batch file of 'video,prompt' lines is at most "
                             f"{MAX_BATCH_CSV_BYTES // 1024} KiB. Split it, or check that it is the right file.")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise UserInputError("The CSV file is not UTF-8 text: save it as \"CSV UTF-8\" and upload it again.") from None
    text = text.lstrip("\ufeff")  # the byte-order mark Excel writes
    if "\x00" in text:
        raise UserInputError("The CSV file looks like a binary file, not text: upload a .csv with columns video,prompt.")
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    # The separator is the first of these the first line uses; commas inside prompts come later.
    delimiter = next((d for d in (",", "\t", ";") if d in first_line), ",")

    reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)
    rows: list[tuple[int, list[str]]] = []
    line = 1
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                rows.append((line, cells))
            line = reader.line_num + 1  # where the next row starts (a quoted prompt may span lines)
    except csv.Error as exc:
        raise UserInputError(f"The CSV file cannot be read from line {line} on ({exc}): check the quotes "
                             "around the prompt there; a quote inside a quoted prompt is written twice (\"\").") from None
    if not rows:
        raise UserInputError("The CSV file is empty: give one line per video, 'video,prompt'.")

    header = [cell.strip().lower() for cell in rows[0][1]]
    video_column = next((i for i, name in enumerate(header) if name in BATCH_VIDEO_COLUMNS), None)
    prompt_column = next((i for i, name in enumerate(header) if name in BATCH_PROMPT_COLUMNS), None)
    if video_column is None and prompt_column is not None:
        raise UserInputError(f"The CSV header ({', '.join(header)}) has a prompt column but no video column: "
                             "name the column of file names 'video'.")
    if video_column is not None:
        rows = rows[1:]
        if not rows:
            raise UserInputError("The CSV file has a header but no rows: add one line per video under it.")
    else:
        video_column, prompt_column, header = 0, 1, ["video", "prompt"]
    # With the prompt as the last column, cells past it are a prompt's unquoted commas.
    prompt_is_last = prompt_column == len(header) - 1

    pairs = []
    for line, cells in rows:
        cells = [text_of(cell) for cell in cells]
        video = cells[video_column].strip() if video_column < len(cells) else ""
        if prompt_column is None or prompt_column >= len(cells):
            prompt = ""
        elif prompt_is_last:
            prompt = delimiter.join(cells[prompt_column:]).strip()
        else:
            prompt = cells[prompt_column].strip()
        if not video:
            raise UserInputError(f"Line {line} of the CSV has no video file name: "
                                 "each line is 'video,prompt' (the name of an uploaded file, then its prompt).")
        pairs.append((video, prompt))
    return pairs


@dataclass(frozen=True)
class BatchItem:
    """One row of a batch: a video to score against a prompt, or the reason it cannot be."""

    video: str  # the file name, as the user knows it
    path: str | None  # the uploaded file; None when the CSV names a video that was not uploaded
    prompt: str
    problem: str | None = None


def _base_name(name: str) -> str:
    return re.split(r"[\\/]", str(name).strip())[-1]


def _loose_name(name: str) -> str:
    """A file name with case and punctuation dropped: uploads can come back with characters
    stripped from their names, and people type names in another case."""
    return re.sub(r"[^\w.]", "", _base_name(name)).casefold()


def plan_batch(uploads, pairs: list[tuple[str, str]] | None = None, default_prompt: str = "",
               most: int | None = None) -> list[BatchItem]:
    """Match uploaded files to the rows of a batch CSV (by base name: exactly, else ignoring case
    and punctuation), in CSV order, then the uploads no row names.

    Without `pairs` every upload gets the default prompt. A row whose video was not uploaded, and
    an upload with no row and no default prompt, become items with a `problem` to show the user.
    A plan of more than `most` rows is refused: the bound is on what one request asks for (a CSV
    naming one upload a hundred times is a hundred scorings), not on the files uploaded.
    """
    items = _planned(uploads, pairs, default_prompt)
    if most is not None and len(items) > most:
        scorings = sum(1 for item in items if item.problem is None)
        raise UserInputError(f"This batch has {len(items):,} rows ({scorings:,} to score: a video is scored once for "
                             f"each CSV row naming it); one batch here is at most {most}. Split the CSV and score "
                             "the rest in another batch.")
    return items


def _planned(uploads, pairs: list[tuple[str, str]] | None, default_prompt: str) -> list[BatchItem]:
    uploads = [str(path) for path in uploads or []]
    names = [_base_name(path) for path in uploads]
    default_prompt = default_prompt if (default_prompt or "").strip() else ""  # as given (see below)
    no_prompt = "No prompt for this video: its CSV row has none, and no default prompt was given."
    if pairs is None:
        return [BatchItem(name, path, default_prompt, None if default_prompt else no_prompt)
                for name, path in zip(names, uploads)]

    exact: dict[str, list[int]] = {}
    loose: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        exact.setdefault(name, []).append(index)
        loose.setdefault(_loose_name(name), []).append(index)
    matched: set[int] = set()
    items = []
    for video, prompt in pairs:
        # As given: the scorer strips it, or not under the authors' template (prompts.clean_prompt).
        prompt = prompt if (prompt or "").strip() else default_prompt
        indices = exact.get(_base_name(video)) or loose.get(_loose_name(video)) or []
        if not indices:
            items.append(BatchItem(_base_name(video), None, prompt,
                                   f"The CSV names {video!r}, but no uploaded file has that name: "
                                   "upload it, or remove its row."))
        for index in indices:
            matched.add(index)
            items.append(BatchItem(names[index], uploads[index], prompt, None if prompt else no_prompt))
    for index, (name, path) in enumerate(zip(names, uploads)):
        if index not in matched:
            items.append(BatchItem(name, path, default_prompt, None if default_prompt else
                                   "No row in the CSV names this video: add one, or give a default prompt "
                                   "for videos the CSV does not list."))
    return items
