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
        score = cell_number(row.get(key), f"row {line}, {key}")
        expected = cell_number(row.get(f"{key}_expected"), f"row {line}, {key}_expected")
        confidence = cell_number(row.get(f"{key}_confidence"), f"row {line}, {key}_confidence")
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
