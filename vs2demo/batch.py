"""Scoring a list of rows (a video and its prompt each) into a resumable JSONL file: in this process,
or as a Ray Data job over as many workers as the machine or cluster has.

    rows (CSV) -> frame sampling, CPU tasks -> a pool of actors, each with the backend loaded once
    (`num_gpus` per actor: 0.5 packs two 4-bit models on one GPU) -> records, appended as they come

Both paths score through `scoring.Scorer.score` (the Ray one with frames sampled ahead by
`scoring.sample_video`, the call the Scorer itself makes), so the records are those of the CLI's
`score --out`: the same keys, so `--resume` and the Explore tab read either. A row that cannot be
scored is a failed record; a worker that dies is restarted by Ray and its row tried again; a job that
dies is finished by running it again with `--resume`.

The batch files themselves (`read_batch_csv`: a CSV of video,prompt rows; `plan_batch`: uploads matched
to its rows, as the Batch tab and the API do) are read here too. The `--out` file is a
`records_io.JsonlRecords`: a resume finds a row's record there by its key (`row_key`), as the
Scorer finds one in the results store.
"""

from __future__ import annotations

import csv
import io
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .errors import UserInputError
from .records_io import FORMULA_STARTS, record_from_json, resume_key
from .results import ScoreResult
from .settings import Settings

# How often Ray restarts a dead actor, and tries a row again whose actor died. Ray Data's own default
# is without end, and a row that kills its worker each time (the GPU's memory) would never finish.
# Ray 2.60 takes these only as extra arguments, which it says are deprecated (for 2.64) while it has
# no named replacement for them: its warning is silenced where they are passed.
RESTARTS = {"max_restarts": 3, "max_task_retries": 3}

def read_rows(path: Path) -> list[BatchItem]:
    """The rows of a batch CSV (`video,prompt`, as the Batch tab reads it), each video's path taken
    from the CSV's own folder when it is not absolute; a row naming no file, or giving no prompt,
    is an item with its problem (a failed record, the rest goes on)."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise UserInputError(f"Cannot read the rows file {path}: {exc.strerror or exc}.") from None
    items = []
    for video, prompt in read_batch_csv(text):
        file = Path(video).expanduser()
        file = file if file.is_absolute() else path.parent / file
        problem = None
        if not prompt.strip():
            problem = "No prompt for this video in the rows file."
        elif not file.is_file():
            problem = f"No such video file: {file}."
        items.append(BatchItem(video, str(file), prompt.strip(), problem))
    return items


def row_key(scorer, path, video: str, prompt: str, options) -> str:
    """The key a row's record is found by when a run resumes (`records_io.resume_key`): the one check
    `score --resume`, `batch --resume` and the Ray workers make, before anything else."""
    try:
        _, key = scorer.key_for(path, prompt, options)
    except UserInputError:
        key = None  # no file, or not a readable one: its failed record has no key
    return resume_key(key, video, prompt)


def score_rows(scorer, items: list[BatchItem], options, done=None,
               refresh: bool = False) -> Iterator[tuple[BatchItem, ScoreResult | None, Iterator]]:
    """THE loop of `score` and `batch` in this process: for each row in order, (the row, its record
    found in `done` or None, its scoring's updates then its record). `done` holds the records a
    resume passes over, with the results store's `get(key)`: the --out file (`JsonlRecords`, opened
    to resume). A row found there has no updates; a row with a problem, its failed record alone."""
    for item in items:
        found = done.get(row_key(scorer, item.path, item.video, item.prompt, options)) if done else None
        if found is not None:
            yield item, found, iter(())
        elif item.problem:
            yield item, None, iter([scorer.failed(item.video, item.prompt, item.problem, options)])
        else:
            yield item, None, scorer.score(item.path, item.prompt, options, name=item.video, refresh=refresh)


def score_here(items: list[BatchItem], settings: Settings, done=None,
               store=None) -> Iterator[tuple[ScoreResult, bool]]:
    """(record, was it in `done` already) for each row, in order, scored in this process."""
    from .scoring import Scorer

    scorer = Scorer(settings, store=store).start_loading(background=False)
    for _, found, updates in score_rows(scorer, items, settings.options, done):
        yield (found, True) if found is not None else (list(updates)[-1], False)


# ---- batch files: which videos with which prompts ----------------------------------------------------------------------------------

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


# ---- Ray ------------------------------------------------------------------------------------------

def sample_row(row: dict, settings: Settings, min_pixels: int, max_pixels: int) -> dict:
    """The CPU stage: a row's frames, sampled as the model will want them (pickled: a row's columns
    are Arrow's), or the row's problem."""
    from .scoring import sample_video

    row["frames"] = b""
    if row["problem"] is None:
        try:
            row["frames"] = pickle.dumps(sample_video(row["path"], settings.options, min_pixels, max_pixels,
                                                      settings.total_pixels))
        except UserInputError as exc:  # the model is not asked about a file it cannot read
            row["problem"] = str(exc)
    return row


class ScoreRows:
    """The model stage: one actor holds one loaded backend and scores the rows it is given, each
    through `Scorer.score` with the frames sampled for it; a row whose key (`row_key`) is `held`
    already is not scored again. Records are kept in the results store at `store_path` (None: none), and what the store
    could not do comes back with the row (`notes`), for the driver to say."""

    def __init__(self, settings: Settings, held: frozenset[str], store_path: str | None = None):
        from .scoring import Scorer
        from .store import ResultStore

        self.settings = settings
        self.held = held
        self.notes: list[str] = []
        store = WatchedStore(ResultStore(store_path), self.notes.append) if store_path else None
        self.scorer = Scorer(settings, store=store).start_loading(background=False)

    def __call__(self, row: dict) -> dict:
        options = self.settings.options
        done = bool(self.held) and row_key(self.scorer, row["path"], row["video"], row["prompt"], options) in self.held
        record = "" if done else self.record(row, options).to_json()
        notes, self.notes[:] = "\n".join(self.notes), []
        return {"position": row["position"], "record": record, "done": done, "notes": notes}

    def record(self, row: dict, options) -> ScoreResult:
        if row["problem"] is None:
            return self.scorer.score_to_result(row["path"], row["prompt"], options, name=row["video"],
                                               presampled=pickle.loads(row["frames"]) if row["frames"] else None)
        sha = key = None
        if Path(row["path"]).is_file():  # a file that is not a video: keyed, as the CLI keys it
            try:
                sha, key = self.scorer.key_for(row["path"], row["prompt"], options)
            except UserInputError:
                pass
        return self.scorer.failed(row["video"], row["prompt"], row["problem"], options, sha, key)


# CPUs a frame-sampling task takes. Half: with a whole one Ray fuses this stage into the model's actors,
# and the frames of the next rows would no longer be read while the model works on this one.
SAMPLER_CPUS = 0.5


def score_with_ray(items: list[BatchItem], settings: Settings, done=None,
                   address: str | None = None, workers: int = 1, gpus_per_worker: float = 0.0,
                   cpus_per_worker: float = 1.0, store_path: str | None = None,
                   on_start: Callable[[str], None] | None = None,
                   on_note: Callable[[str], None] | None = None) -> Iterator[tuple[ScoreResult | None, bool]]:
    """(record, was it recorded already) for each row as its actor finishes it (in no set order):
    Ray Data over a local cluster (`address` None: one is started on this machine) or the one at
    `address` ("auto" for the cluster this machine belongs to). A row in `done` already (the --out
    file opened to resume: its workers get only its keys) gives (None, True). The workers keep their records in the results store at `store_path` (on a cluster, the
    path on each worker's node); what it could not do is given to `on_note`."""
    import ray
    from ray.data import ActorPoolStrategy

    from .backends import frame_budget

    min_pixels, max_pixels = frame_budget(settings)
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    resources = ray.cluster_resources()
    # Ray waits, without a word, for resources a cluster does not have: say so instead. The frames
    # are read beside the workers (SAMPLER_CPUS a task).
    if resources.get("CPU", 0) < workers * cpus_per_worker + SAMPLER_CPUS:
        raise UserInputError(f"{workers} workers of {cpus_per_worker:g} CPU each leave no CPU for reading frames on a "
                             f"cluster of {resources.get('CPU', 0):g} CPUs: ask fewer --workers or less --cpus-per-worker.")
    if resources.get("GPU", 0) < workers * gpus_per_worker:
        raise UserInputError(f"{workers} workers of {gpus_per_worker:g} GPU each need {workers * gpus_per_worker:g} GPUs; "
                             f"the cluster has {resources.get('GPU', 0):g}: ask fewer --workers or less --gpus-per-worker.")
    if on_start:
        on_start(f"Ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; {workers} model "
                 f"worker{'s' if workers != 1 else ''} ({gpus_per_worker:g} GPU, {cpus_per_worker:g} CPU each)")
    ray.data.DataContext.get_current().enable_progress_bars = False
    rows = [{"position": i, "video": item.video, "path": item.path, "prompt": item.prompt, "problem": item.problem}
            for i, item in enumerate(items)]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        dataset = (
            ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))
            .map(sample_row, fn_kwargs={"settings": settings, "min_pixels": min_pixels, "max_pixels": max_pixels},
                 num_cpus=SAMPLER_CPUS)
            .map(ScoreRows, fn_constructor_args=(settings, done.keys() if done else frozenset(), store_path), compute=ActorPoolStrategy(size=workers),
                 num_gpus=gpus_per_worker or None, num_cpus=cpus_per_worker, **RESTARTS)
        )
    for row in dataset.iter_rows():
        if on_note and row["notes"]:
            for note in row["notes"].split("\n"):
                on_note(note)
        if row["done"]:
            yield None, True
        else:
            yield record_from_json(row["record"], "A worker's record"), False


class WatchedStore:
    """The results store as a batch or CLI run uses it: what it cannot do (a full disk, a damaged
    file) is said once for each cause, through `say`, and the run goes on (a record the store could
    not keep still goes to --out)."""

    def __init__(self, store, say: Callable[[str], None]):
        self.store, self.say = store, say
        self.path = store.path
        self._said: set[str] = set()

    # Said here, then raised on: the scorer goes on without the store, and marks a record it could
    # not keep (`store_error`), which --out keeps.
    def get(self, key: str, **kwargs):
        try:
            return self.store.get(key, **kwargs)
        except Exception as exc:  # a damaged store costs a scoring, not the run
            self._tell(f"the results store {self.path} cannot be read ({exc}): videos are scored again")
            raise

    def put(self, record, **kwargs) -> None:
        try:
            self.store.put(record, **kwargs)
        except Exception as exc:
            self._tell(f"the results store {self.path} cannot keep records ({exc}): they are not kept there")
            raise

    def _tell(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            self.say(f"warning: {message}")
