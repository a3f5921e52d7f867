"""A set of judgements to look through: records (and people's labels, matched by video) as one
table to filter, sort, slice and export. Pure Python and pandas: no torch, no Gradio.

The table is built once per load (`Collection`); a filter or a sort is a few vectorised pandas
operations over it, so 10,000 records stay quick; the page shows at most MAX_SHOWN rows of the
result and says how many matched.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import DIMENSION_SHORT, DIMENSIONS
from .errors import UserInputError
from .metrics import Label, Pair, compute, counted, video_key
from .records_io import records_to_jsonl, results_to_csv
from .results import ERROR_CELL_CHARS, PROMPT_CELL_CHARS, ScoreResult, score_cells, text_cell

MAX_SHOWN = 250
MAX_RECORDS = 100_000  # one page's set: a public Space must not build a table of millions for a stranger
SHORT = DIMENSION_SHORT
# key -> (what the reader sees, the table's column, largest first)
SORTS = {
    "video": ("Video name", "video", False),
    "disagreement": ("Disagreement with people (largest first)", "disagreement", True),
    "min_confidence": ("Lowest confidence first", "min_confidence", False),
    "overall": ("Overall (highest first)", "overall", True),
    "overall_low": ("Overall (lowest first)", "overall", False),
    **{f"{key}_{end}": (f"{SHORT[key]} expected ({'highest' if high else 'lowest'} first)", f"{key}_expected", high)
       for key in DIMENSIONS for end, high in (("high", True), ("low", False))},
    "prompt": ("Prompt", "prompt", False),
}
STATUSES = ("all", "scored", "failed")
AGREEMENTS = ("all", "labelled", "agrees", "disagrees", "unlabelled")
# Records of "Ask again K times" (their `samples`): all of them, those unstable in some dimension
# (results.UNSTABLE_*), those stable in all.
SAMPLINGS = ("all", "asked", "unstable", "stable")
DISAGREE_AT = 1.0  # a label and the expected value this far apart (or more) in some dimension: they disagree


def run_name(record: ScoreResult) -> str:
    """The model and the settings that change its answer, in one line: records of different runs
    must never be mixed silently."""
    s = record.settings or {}
    parts = [record.model or "unknown model"]
    if s.get("quant"):
        parts.append(str(s["quant"]))
    if s.get("template"):
        parts.append(f"template {s['template']}")
    if s.get("do_sample"):
        parts.append(f"sampled at {s.get('temperature')}" + (f", seed {s['seed']}" if s.get("seed") is not None else ""))
    elif s:
        parts.append("greedy")
    if s.get("max_frames"):
        parts.append(f"≤{s['max_frames']} frames")
    if s.get("reading") == "authors":
        parts.append("read as the authors' script")
    # The frames check's scorings saw other frames: a run of their own, never mixed with the original.
    check = s.get("check") if isinstance(s.get("check"), dict) else {}
    if check.get("kind") in ("top-frames", "random-frames"):
        parts.append(f"check: {'most-attended' if check['kind'] == 'top-frames' else 'random'} frames replaced")
    elif s.get("replace_frames"):
        parts.append(f"{len(s['replace_frames'])} frames replaced")
    return " · ".join(parts)


@dataclass
class Collection:
    """Records, the labels they matched, and the table over both (one row a record, its position
    in `records` as the index and in the `#` column)."""

    records: list[ScoreResult]
    labels: dict[str, Label]  # by video_key
    frame: pd.DataFrame
    unmatched_labels: list[str] = field(default_factory=list)
    label_columns: list[str] = field(default_factory=list)  # the labels file's other columns (slices)

    @property
    def labelled(self) -> int:
        return int(self.frame["labelled"].sum()) if len(self.frame) else 0

    def record(self, number: int) -> ScoreResult:
        return self.records[number]

    def label_of(self, record: ScoreResult) -> Label | None:
        return self.labels.get(video_key(record.video))


def build_collection(records: list[ScoreResult], labels: list[Label] | None = None,
                     runs: list[str] | None = None) -> Collection:
    """`runs`: each record's run where run_name alone would not tell them apart (runs.run_labels)."""
    labels = labels or []
    by_video = {video_key(label.video): label for label in labels}
    extra = sorted({column for label in labels for column in label.extra})
    rows = []
    for number, record in enumerate(records):
        label = by_video.get(video_key(record.video))
        row = {"#": number, "video": record.video, "prompt": record.prompt, "run": runs[number] if runs else run_name(record),
               "error": record.error or "", "failed": record.error is not None,
               "overall": record.overall, "labelled": label is not None, "checks": ",".join(record.checks),
               "samples": len(record.samples), "unstable": any(summary.unstable for summary in record.agreement.values()),
               "search": f"{record.video}\n{record.prompt}\n{record.rationale or record.text}".lower()}
        gaps, confidences = [], []
        for key in DIMENSIONS:
            dim = record.scores[key]
            row[key] = dim.score
            row[f"{key}_expected"] = dim.expected
            row[f"{key}_confidence"] = dim.confidence
            if dim.confidence is not None:
                confidences.append(dim.confidence)
            human = label.scores.get(key) if label else None
            row[f"label_{key}"] = human
            if human is not None and dim.expected is not None:
                gaps.append(abs(dim.expected - human))
        row["min_confidence"] = min(confidences) if confidences else None
        row["disagreement"] = max(gaps) if gaps else None
        for column in extra:
            row[f"label:{column}"] = label.extra.get(column, "") if label else ""
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["#", "video", "prompt", "run", "error", "failed", "overall", "labelled", "checks",
                                      "samples", "unstable", "search", "min_confidence", "disagreement"])
    else:
        frame = frame.set_index("#", drop=False)
    matched_keys = {video_key(record.video) for record in records}
    unmatched = sorted(label.video for key, label in by_video.items() if key not in matched_keys)
    return Collection(records, by_video, frame, unmatched, extra)


@dataclass(frozen=True)
class Query:
    """What the table shows: every condition must hold."""

    text: str = ""
    status: str = "all"
    agreement: str = "all"
    dimension: str = "visual_quality"
    low: float = 1.0  # the dimension's expected value within [low, high]
    high: float = 5.0
    max_confidence: float = 1.0  # the least sure dimension at most this sure
    run: str = ""  # one run (run_name), or every run
    check: str = ""  # "any" (a consistency check holds), "none", one consistency.CHECKS key, or "" (all)
    sort: str = "video"
    sampling: str = "all"  # one of SAMPLINGS


def select(collection: Collection, query: Query) -> pd.DataFrame:
    """The rows that meet the query, sorted; all of them (the caller shows the first MAX_SHOWN)."""
    frame = collection.frame
    if frame.empty:
        return frame
    keep = pd.Series(True, index=frame.index)
    text = query.text.strip().lower()
    if text:
        keep &= frame["search"].str.contains(text, regex=False)
    if query.status == "scored":
        keep &= ~frame["failed"]
    elif query.status == "failed":
        keep &= frame["failed"]
    if query.agreement == "labelled":
        keep &= frame["labelled"]
    elif query.agreement == "unlabelled":
        keep &= ~frame["labelled"]
    elif query.agreement == "agrees":
        keep &= frame["disagreement"].notna() & (frame["disagreement"] < DISAGREE_AT)
    elif query.agreement == "disagrees":
        keep &= frame["disagreement"].notna() & (frame["disagreement"] >= DISAGREE_AT)
    if query.low > 1.0 or query.high < 5.0:
        expected = frame[f"{query.dimension}_expected"]
        keep &= expected.notna() & (expected >= query.low) & (expected <= query.high)
    if query.max_confidence < 1.0:
        keep &= frame["min_confidence"].notna() & (frame["min_confidence"] <= query.max_confidence)
    if query.run:
        keep &= frame["run"] == query.run
    if query.check == "any":
        keep &= frame["checks"] != ""
    elif query.check == "none":
        keep &= frame["checks"] == ""
    elif query.check:
        keep &= frame["checks"].str.split(",").apply(lambda found: query.check in found)
    if query.sampling == "asked":
        keep &= frame["samples"] > 0
    elif query.sampling == "unstable":
        keep &= (frame["samples"] > 0) & frame["unstable"].astype(bool)
    elif query.sampling == "stable":
        keep &= (frame["samples"] > 0) & ~frame["unstable"].astype(bool)
    chosen = frame[keep]
    _, column, descending = SORTS.get(query.sort, SORTS["video"])
    return chosen.sort_values(column, ascending=not descending, na_position="last", kind="stable")


def _number(value, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _label_cell(row) -> str:
    values = [row.get(f"label_{key}") for key in DIMENSIONS]
    if all(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return ""
    return "/".join("–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:g}" for v in values)


TABLE_HEADERS = ["#", "Video", "Prompt", *(SHORT[key] for key in DIMENSIONS), "Overall", "Least sure",
                 "People (V/A/P)", "Gap", "Error"]


def table(collection: Collection, rows: pd.DataFrame, limit: int = MAX_SHOWN) -> pd.DataFrame:
    """The page's table for the first `limit` selected rows."""
    shown = rows.head(limit)
    out = []
    for row in shown.to_dict("records"):
        out.append([str(row["#"]), row["video"], text_cell(row["prompt"], PROMPT_CELL_CHARS),
                    *score_cells(collection.records[row["#"]]), _number(row.get("min_confidence")), _label_cell(row),
                    _number(row.get("disagreement")), text_cell(row["error"], ERROR_CELL_CHARS)])
    return pd.DataFrame(out, columns=TABLE_HEADERS)


def _labels_of(collection: Collection, records: list[ScoreResult]) -> list[Label]:
    keys = dict.fromkeys(video_key(record.video) for record in records)
    return [collection.labels[key] for key in keys if key in collection.labels]


# Over more rows than this the 95% intervals would hold up every filter change by seconds: Explore
# leaves them out (and says so); the command line always gives them.
MAX_INTERVAL_ROWS = 10_000


def metrics_for(collection: Collection, rows: pd.DataFrame, kind: str, pairs: list[Pair] | None = None,
                intervals: bool = True) -> dict:
    """The paper's metrics over the selected rows that have labels (`metrics.compute`, as the
    command line computes them), with intervals up to MAX_INTERVAL_ROWS rows (none unless `intervals`:
    a label just given shows in its figures at once, the intervals follow)."""
    records = [collection.records[number] for number in rows["#"]] if len(rows) else []
    return compute(records, _labels_of(collection, records), kind, pairs,
                   intervals=intervals and len(records) <= MAX_INTERVAL_ROWS)


def slice_keys(collection: Collection) -> list[tuple[str, str]]:
    """(label, column) pairs the table can be grouped by."""
    keys = [("Prompt", "prompt"), ("Run (model and settings)", "run")]
    keys += [(f"Labels: {column}", f"label:{column}") for column in collection.label_columns]
    return keys


FLAG_MARK = "⚠"  # before a figure that rests on few items or a nearly constant column (metrics `flags`)


def flagged_number(block: dict, name: str, digits: int = 2) -> str:
    """A figure as a table cell, marked when the metrics flag it."""
    text = _number(block[name], digits)
    return f"{FLAG_MARK} {text}" if name in block.get("flags", {}) else text


def slices(collection: Collection, rows: pd.DataFrame, by: str, kind: str, limit: int = 50) -> pd.DataFrame:
    """Per group of the selected rows: how many, how many labelled, and per dimension the exact
    accuracy and SRCC against people (the largest groups first, at most `limit`), marked where flagged."""
    headers = ["Group", "Videos", "Labelled", *(f"{SHORT[key]} exact %" for key in DIMENSIONS),
               *(f"{SHORT[key]} SRCC" for key in DIMENSIONS)]
    if rows.empty or by not in rows.columns:
        return pd.DataFrame([], columns=headers)
    out = []
    groups = rows.groupby(by, sort=False)
    for name, group in sorted(groups, key=lambda item: -len(item[1]))[:limit]:
        records = [collection.records[n] for n in group["#"]]
        report = compute(records, _labels_of(collection, records), kind, intervals=False)  # a column of figures only
        dims = report["dimensions"]
        out.append([str(name)[:90] or "(empty)", len(group), int(group["labelled"].sum()),
                    *(flagged_number(dims[key], "exact_acc", 1) for key in DIMENSIONS),
                    *(flagged_number(dims[key], "srcc", 1) for key in DIMENSIONS)])
    return pd.DataFrame(out, columns=headers)


# ---- what the app holds for its sessions -------------------------------------------------------------

class LoadedSets:
    """The sets the Explore tab holds, one per session, within a budget of bytes (the size of the
    files they were read from, a stand-in for their memory: 4 to 7 times that, the more for records
    with token confidence): loading one past
    the budget lets go of the least recently used; a set idle for `idle_s`, or whose session ended,
    goes. A public app's memory is then bounded however many visitors load however large files.
    Thread-safe: Gradio runs handlers in several threads."""

    def __init__(self, budget_bytes: int, idle_s: float = 7200.0, clock=time.monotonic):
        self.budget_bytes, self.idle_s, self._clock = budget_bytes, idle_s, clock
        self._lock = threading.Lock()
        self._sets: OrderedDict[str, tuple[str, Collection, int, float]] = OrderedDict()  # handle -> (session, set, size, used)

    def put(self, session: str, collection: Collection, size: int) -> str:
        """Holds `collection` for `session` (replacing the session's earlier set); its handle. A set
        larger than the whole budget is refused (UserInputError)."""
        if size > self.budget_bytes:
            raise UserInputError(f"These files hold {size / 2**20:,.0f} MiB of records; this app holds at most "
                                 f"{self.budget_bytes / 2**20:,.0f} MiB at once. Load fewer or smaller files.")
        handle = uuid.uuid4().hex
        with self._lock:
            self._forget(lambda entry: entry[0] == session)
            self._sets[handle] = (session, collection, size, self._clock())
            while self.held_bytes > self.budget_bytes:
                self._sets.popitem(last=False)
        return handle

    def get(self, handle: str | None) -> Collection | None:
        """The set, or None when it was let go (or never held)."""
        with self._lock:
            self._forget(lambda entry: self._clock() - entry[3] > self.idle_s)
            entry = self._sets.get(handle) if handle else None
            if entry is None:
                return None
            self._sets[handle] = (*entry[:3], self._clock())
            self._sets.move_to_end(handle)
            return entry[1]

    def end_session(self, session: str) -> None:
        with self._lock:
            self._forget(lambda entry: entry[0] == session)

    @property
    def held_bytes(self) -> int:
        return sum(entry[2] for entry in self._sets.values())

    def __len__(self) -> int:
        return len(self._sets)

    def _forget(self, which) -> None:
        for handle in [handle for handle, entry in self._sets.items() if which(entry)]:
            del self._sets[handle]


def export_jsonl(collection: Collection, rows: pd.DataFrame) -> str:
    return records_to_jsonl(collection.records[n] for n in rows["#"])


def export_csv(collection: Collection, rows: pd.DataFrame) -> str:
    return results_to_csv([collection.records[n] for n in rows["#"]])


def export_dataset(collection: Collection, rows: pd.DataFrame, video_for, target) -> None:
    """Writes a Hugging Face dataset folder, zipped, to `target` (a path or a binary file), as it
    goes: `metadata.jsonl` (one line a record: `file_name` for the video where its file is at hand,
    the scores flat, people's labels, the rationale) and the videos beside it, as the Hub's viewer
    reads a video folder. `video_for(record)` is the file of a record's video, or None; a file that
    many records name is stored once (videos are already compressed: stored as they are)."""
    stored: dict[str, str] = {}  # the video's file -> its name in the archive
    # The lines wait on disk past a few MB while the videos go into the archive (one entry is
    # written at a time), then follow them.
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive, \
            tempfile.SpooledTemporaryFile(max_size=8 * 2**20) as lines:
        for number in rows["#"]:
            record = collection.records[number]
            line = {"video": record.video, "prompt": record.prompt, "model": record.model}
            path = video_for(record)
            if path is not None:
                if path not in stored:
                    stored[path] = _archive_name(Path(path).name, set(stored.values()))
                    archive.write(path, stored[path], compress_type=zipfile.ZIP_STORED)
                line["file_name"] = stored[path]
            line.update(_dataset_columns(collection, record))
            lines.write((json.dumps(line, ensure_ascii=False) + "\n").encode())
        lines.seek(0)
        with archive.open("metadata.jsonl", "w") as metadata:
            shutil.copyfileobj(lines, metadata)
        archive.writestr("README.md", "---\nconfigs:\n- config_name: default\n  data_files: metadata.jsonl\n---\n\n"
                         "VideoScore2 judgements exported by vs2demo's Explore tab: one line a video in "
                         "`metadata.jsonl` (scores, p(1..5), people's labels, the rationale), the videos under "
                         "`videos/` where their files were at hand.\n")


def _archive_name(name: str, used: set[str]) -> str:
    """videos/NAME, or videos/STEM-2.EXT and so on when two files share a name."""
    stem, suffix, counter = Path(name).stem, Path(name).suffix, 1
    while f"videos/{name}" in used:
        counter += 1
        name = f"{stem}-{counter}{suffix}"
    return f"videos/{name}"


def _dataset_columns(collection: Collection, record: ScoreResult) -> dict:
    line = {}
    for key in DIMENSIONS:
        dim = record.scores[key]
        line[key] = dim.score
        line[f"{key}_expected"] = dim.expected
        line[f"{key}_probs"] = list(dim.probs) if dim.probs else None
    label = collection.label_of(record)
    for key in DIMENSIONS:
        line[f"human_{key}"] = label.scores.get(key) if label else None
    line.update(overall=record.overall, rationale=record.rationale, error=record.error,
                settings=json.dumps(record.settings, sort_keys=True))
    return line


def matched_summary(collection: Collection) -> str:
    """One sentence on what was loaded and what matched."""
    n = len(collection.records)
    text = counted(n, "record")
    failed = int(collection.frame["failed"].sum()) if n else 0
    if failed:
        text += f" ({failed:,} failed)"
    if collection.labels:
        text += (f"; {collection.labelled:,} matched a label, {n - collection.labelled:,} did not; "
                 f"{counted(len(collection.unmatched_labels), 'label')} matched no record")
        if collection.unmatched_labels:
            shown = ", ".join(collection.unmatched_labels[:3])
            text += f" ({shown}{', …' if len(collection.unmatched_labels) > 3 else ''})"
    runs = collection.frame["run"].nunique() if n else 0
    if runs > 1:
        text += f". {runs} different runs (model or settings): choose one below before reading the metrics"
    return text + "."

