"""Records in files: what `score --out`, `batch`, `export`, Batch, Explore and the API write (JSON
lines, a JSON list, the CSV table), read back by one reader for every caller (`metrics`, Explore,
the CLI), each record checked (record_schema) before it is built.

And the writers of the same three forms (`records_to_jsonl`, `results_to_json`, `results_to_csv`).
Also the bounded readers of a file's text and rows that the labels and pairs readers share. Pure
Python: no torch, no Gradio.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import math
import os
import re
from pathlib import Path

import orjson

from . import DIMENSIONS
from .confidence import TokenConfidence
from .errors import UserInputError
from .record_schema import check_dimension, check_record
from .results import DimensionScore, ScoreResult, table_row

MAX_FILE_BYTES = 200 * 1024 * 1024
# The CSV table's columns (`table_row`): what a spreadsheet shows; it has no probabilities.
CSV_COLUMNS = (
    ["video", "prompt"]
    + [f"{key}{suffix}" for key in DIMENSIONS for suffix in ("", "_expected", "_confidence")]
    + ["overall", "error"]
)


# ---- a file's text and rows, bounded ------------------------------------------------------------------

def checked_path(source) -> Path:
    path = Path(source)
    if not path.is_file():
        raise UserInputError(f"No file at {path}.")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise UserInputError(f"{path.name} is larger than {MAX_FILE_BYTES // 1024 ** 2} MiB.")
    return path


def read_text(source) -> str:
    """A path's text, or the text itself when `source` is bytes (an upload read by the caller)."""
    data = source if isinstance(source, bytes) else checked_path(source).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserInputError("The file is not UTF-8 text.") from None


def byte_lines(source):
    """(number, line as bytes) of a file read as it goes (a large file is never held whole), or of
    bytes; a UTF-8 byte-order mark is left out."""
    if isinstance(source, bytes):
        lines = enumerate(source.splitlines(), start=1)
    else:
        handle = checked_path(source).open("rb")
        lines = enumerate(handle, start=1)
    try:
        for number, line in lines:
            yield number, line[3:] if number == 1 and line.startswith(b"\xef\xbb\xbf") else line
    finally:
        if not isinstance(source, bytes):
            handle.close()


def _first_character(source) -> str:
    for _, line in byte_lines(source):
        if line.strip():
            return chr(line.lstrip()[0])
    return ""


class TooMany(UserInputError):
    """A file of more rows or records than the caller's limit: refused as soon as one too many is read."""


def too_many(limit: int, what: str) -> TooMany:
    return TooMany(f"More than {limit:,} {what}: at most that many are read at once. Split the file, "
                   "or use `python -m vs2demo metrics` for the figures.")


def cell_number(value, where: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        found = float(value)
    except (TypeError, ValueError):
        raise UserInputError(f"{where}: {value!r} is not a number.") from None
    if not math.isfinite(found):
        raise UserInputError(f"{where}: {value!r} is not a finite number.")
    return found


def csv_rows(text: str, limit: int | None = None, columns: int | None = None):
    """The rows of a CSV text as dicts (headers stripped, lower case), read as they go: at most
    `limit` rows (else a refusal before the rest is read) and the first `columns` columns."""
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect=dialect)
    header = next(reader, None)
    if not header:
        raise UserInputError("The CSV file has no header row.")
    header = [name.strip().lower() for name in header][:columns]
    count = 0
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        count += 1
        if limit is not None and count > limit:
            raise too_many(limit, "rows")
        yield dict(zip(header, cells))


# ---- records --------------------------------------------------------------------------------------

def _json_line(line: bytes):
    """A line's JSON (orjson: twice as fast as json on a file of token confidence); what orjson
    refuses is read again by json, which reads NaN (then refused by the check, with its field's
    name). ValueError when it is not JSON, or not UTF-8 (a line cut in a character)."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line.decode("utf-8"))


@contextlib.contextmanager
def _no_cycle_collection():
    """Python's cycle collector paused while records are built: it would otherwise walk every list
    made so far again and again (a file of token confidence makes millions: nearly half the time of
    a read). Nothing read here makes a cycle; reference counting frees what is dropped."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def read_records(source, name: str = "", limit: int | None = None) -> list[ScoreResult]:
    """Records from what `--out`, `export`, Batch and the API write: JSON lines, a JSON list, or the
    CSV table (which has no probabilities: no normed scores or calibration from it). Each one is
    checked (record_schema) before it is built; a file of more than `limit` records is refused as
    soon as the one past it is read."""
    name = name or (str(source) if not isinstance(source, bytes) else "")
    first = _first_character(source)
    if name.lower().endswith(".csv") or (first and first not in "[{"):
        return [_record_from_row(row, number) for number, row in enumerate(csv_rows(read_text(source), limit), start=2)]
    if first == "[":
        try:
            items = json.loads(read_text(source))
        except ValueError as exc:
            raise UserInputError(f"The JSON file cannot be read: {exc}.") from None
        if not isinstance(items, list):
            raise UserInputError("The JSON file must hold a list of records.")
        if limit is not None and len(items) > limit:
            raise too_many(limit, "records")
        return [ScoreResult.from_dict(check_record(item, f"Record {number}")) for number, item in enumerate(items, 1)]
    with _no_cycle_collection():
        return _read_json_lines(source, limit)


# `ScoreResult.to_json` writes the token confidence last, as this. Reading its numbers is most of the
# time a large file takes (10,000 records of 100 tokens: 12 million numbers), and only a row opened
# shows them: a line so written is read without them, and they are read and checked when asked for.
TOKENS_LAST = b', "tokens": {'


def _parted(line: bytes) -> tuple[dict, bytes | None]:
    """A JSON line's object, and the text of its token confidence when it came last (then left out
    of the object); ValueError when the line is not JSON."""
    end = line.rstrip()
    at = end.rfind(TOKENS_LAST) if end.endswith(b"}}") else -1
    # Token confidence as written has no object followed by a key ('}, "'): one there means keys after
    # it or in another order (or a piece of text ending in "}, "): the line is read whole then.
    if at > 0 and b'}, "' not in end[at:]:
        with contextlib.suppress(ValueError):
            # A key "tokens" not at the top (in settings, say) leaves braces open: not JSON, read whole.
            return _json_line(end[:at] + b"}"), end[at + len(TOKENS_LAST) - 1:-1]
    return _json_line(line), None


def record_from_json(text: bytes | str, where: str = "The record") -> ScoreResult:
    """One record from its JSON (a line of a file, a row of the results store), checked
    (record_schema: RecordError names `where` and the field); ValueError when it is not JSON."""
    item, tokens = _parted(text if isinstance(text, bytes) else text.encode("utf-8"))
    check_record(item, where)
    if tokens is not None and "tokens" not in item:
        item["tokens"] = TokenConfidence.unread(tokens, f"{where}, tokens")
    return ScoreResult.from_dict(item)


def _read_json_lines(source, limit: int | None) -> list[ScoreResult]:
    records, cut = [], None
    for number, line in byte_lines(source):
        if not line.strip():
            continue
        if cut is not None:  # a line that is not JSON, and not the last one
            raise UserInputError(f"Line {cut} of the records is not JSON.")
        if limit is not None and len(records) >= limit:
            raise too_many(limit, "records")
        try:
            records.append(record_from_json(line, f"Line {number}"))
        except UserInputError:
            raise
        except ValueError:
            cut = number  # a last line cut by a killed run is left out (the CLI's --resume repairs it)
    return records


def _record_from_row(row: dict, line: int) -> ScoreResult:
    if "video" not in row:
        raise UserInputError("The records CSV has no `video` column (it is what Batch and `export` write).")
    scores = {}
    for key in DIMENSIONS:
        score, expected, confidence = (cell_number(row.get(name), f"row {line}, {name}")
                                       for name in (key, f"{key}_expected", f"{key}_confidence"))
        dimension = {"score": None if score is None else (int(score) if score.is_integer() else score),
                     "expected": expected, "confidence": confidence}
        check_dimension(f"Row {line}, {key}", dimension, any_score=True)  # a table may hold the authors' reading
        scores[key] = DimensionScore(dimension["score"], expected, confidence)
    return ScoreResult(video=row.get("video") or "", prompt=row.get("prompt") or "", model="", scores=scores,
                       error=row.get("error") or None)


# A cell starting with one of these is a formula to a spreadsheet (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# ---- writing ----------------------------------------------------------------------------------------

def records_to_jsonl(records) -> str:
    """One record a line, as `--out` keeps them and every reader here reads them."""
    return "".join(record.to_json() + "\n" for record in records)


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


# ---- the --out file: records kept as the store keeps them -------------------------------------------

# Less room than this on the disk of --out is a full disk: refused before any work.
MIN_FREE_BYTES = 1 << 20
SHA256 = re.compile(r"[0-9a-f]{64}")


def open_to_write(path: Path, mode: str):
    """`path` opened to write records to, or a UserInputError saying why it cannot be (a folder, no
    permission, a read-only or full disk): found before any work rather than after the model loads."""
    try:
        if path.exists() and not path.is_file():  # looked at first: opening a pipe would wait for a reader
            raise UserInputError(f"Cannot write records to {path}: it is {'a folder' if path.is_dir() else 'not a file'}. "
                                 "Give a file.")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open(mode)
    except OSError as exc:
        raise UserInputError(f"Cannot write records to {path}: {exc.strerror or exc}. Give another file.") from None
    disk = os.statvfs(path.parent)
    if disk.f_bavail * disk.f_frsize < MIN_FREE_BYTES:
        handle.close()
        raise UserInputError(f"Cannot write records to {path}: its disk is full "
                             f"({disk.f_bavail * disk.f_frsize:,} bytes free). Free some space or give another file.")
    return handle


def resume_key(key: str | None, video: str, prompt: str) -> str:
    """What a row's record is found by when a run resumes: the record's key; a row that has none (no
    file to read, so nothing to hash) by its video's name and prompt, as a JSON pair (never a SHA-256)."""
    return key if key is not None else json.dumps([video, prompt], ensure_ascii=False)


def resumed_record(line: bytes) -> dict:
    """A line of an --out file as a resume may trust it: the record's JSON object; ValueError says
    what is wrong with it. It must be a record this app could have written (record_schema), and
    what a resume relies on must hold: a key that is a SHA-256, and a record without an error has
    its key and all three scores."""
    try:
        data = json.loads(line)
    except ValueError:
        raise ValueError("it is not JSON (a line cut off by a killed run, or edited)") from None
    try:
        check_record(data, "its record")
    except UserInputError as exc:
        raise ValueError(str(exc).rstrip(".")) from None
    for name in ("key", "video_sha256"):
        if data.get(name) is not None and not SHA256.fullmatch(data[name]):
            raise ValueError(f"its {name} is not a SHA-256 (64 hexadecimal digits)")
    if data.get("error") is None:
        scores = data.get("scores") or {}
        if data.get("key") is None or any((scores.get(dimension) or {}).get("score") is None for dimension in DIMENSIONS):
            raise ValueError("it has neither an error nor a key and three scores")
    return data


class JsonlRecords:
    """`--out FILE.jsonl`, with the results store's interface: `put(record)` appends one a line
    (flushed and synced, so a kill loses at most the video in flight); `get(key)` finds a record the
    file held when it was opened to `resume` (by `resume_key`), a failed one too: a resumed run
    scores neither again (with `retry_failed`, the failed records are taken out first, and scored
    again once).

    Opening it is checked before any work (`open_to_write`) and repairs what a kill can leave: a last
    line cut off is removed. `notes` say what opening it did."""

    def __init__(self, path, resume: bool = False, retry_failed: bool = False):
        self.path = Path(path)
        self.notes: list[str] = []
        self._at: dict[str, int] = {}  # a held record's line offset, by its resume key
        self.handle = open_to_write(self.path, "a+b")
        try:
            self._repair_cut_line()
            if resume:
                self._index(retry_failed)
        except UserInputError:
            self.handle.close()
            raise

    def get(self, key: str) -> ScoreResult | None:
        at = self._at.get(key)
        if at is None:
            return None
        self.handle.seek(at)
        return record_from_json(self.handle.readline(), f"The record at byte {at} of {self.path}")

    def keys(self) -> frozenset[str]:
        """The keys `get` finds: all a Ray worker needs to pass over a row (the records stay here)."""
        return frozenset(self._at)

    def __len__(self) -> int:
        return len(self._at)

    def put(self, record: ScoreResult) -> None:
        """Appends a record (OSError when the disk has filled up since)."""
        self.handle.write(record.to_json().encode("utf-8") + b"\n")
        self._sync()

    def close(self) -> None:
        self.handle.close()

    def _repair_cut_line(self) -> None:
        size = self.handle.seek(0, 2)
        if size == 0 or self._read(size - 1, 1) == b"\n":
            return
        start = self._last_line_start(size)
        try:
            resumed_record(self._read(start, size - start))
            self.handle.write(b"\n")  # a whole record that lacks only its line's end
        except ValueError:
            self.handle.truncate(start)
            self.notes.append(f"The last line of {self.path} was cut off (a run killed while writing it): removed, "
                              "and its video is scored again.")
        self._sync()

    def _last_line_start(self, size: int) -> int:
        end = size
        while end > 0:
            start = max(0, end - 65536)
            block = self._read(start, end - start)
            if b"\n" in block:
                return start + block.rindex(b"\n") + 1
            end = start
        return 0

    def _read(self, offset: int, length: int) -> bytes:
        self.handle.seek(offset)
        return self.handle.read(length)

    def _sync(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def _index(self, retry_failed: bool) -> None:
        """Every line checked (`resumed_record`; one a resume cannot trust is a UserInputError naming
        it) and found by its resume key; with `retry_failed`, the failed ones rewritten out."""
        found, kept, failed, offset, moved = {}, [], 0, 0, 0
        self.handle.seek(0)
        for number, line in enumerate(self.handle, start=1):
            at, offset = offset, offset + len(line)
            if not line.strip():
                continue
            try:
                record = resumed_record(line)
            except ValueError as exc:
                raise UserInputError(f"Line {number} of {self.path} is not a record a resume can trust: {exc}. Fix or "
                                     "remove that line, or give another --out.") from None
            if retry_failed and record.get("error") is not None:
                failed += 1
                continue
            found[resume_key(record.get("key"), record["video"], record["prompt"])] = at, moved
            kept.append(line)
            moved += len(line)
        if failed:  # the lines kept move up in the rewritten file
            self._rewrite(kept)
            self.notes.append(f"{failed} failed record{'s' if failed != 1 else ''} taken out of {self.path}: "
                              "their rows are scored again.")
        self._at = {key: moved if failed else at for key, (at, moved) in found.items()}

    def _rewrite(self, lines: list[bytes]) -> None:
        swap = self.path.with_name(self.path.name + ".swap")
        try:
            with swap.open("wb") as handle:
                handle.writelines(lines)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(swap, self.path)
        except OSError as exc:
            swap.unlink(missing_ok=True)
            raise UserInputError(f"Cannot take the failed records out of {self.path}: {exc.strerror or exc}.") from None
        self.handle.close()
        self.handle = self.path.open("a+b")
