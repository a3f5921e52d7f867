"""Batch: many videos, each with its prompt from a CSV (or one prompt for all), scored one after
another into a table that fills in as they finish; failures are rows with their reason, and a click
on a row shows that video's reasoning.

The tab's logic is plain functions over a `BatchView` (what the tab shows of one run): `start`,
`on_step`, `finish` and `on_stop`; `shown` turns a view into what each output shows, by name, and
`build` only lays the page out and wires it."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import gradio as gr
import pandas as pd

from .. import DIMENSIONS
from ..errors import UserInputError
from ..metrics import counted
from ..plots import SHORT_LABELS
from ..prompts import clean_prompt
from ..batch import MAX_BATCH_CSV_BYTES, BatchItem, plan_batch, read_batch_csv
from ..results import ERROR_CELL_CHARS, PROMPT_CELL_CHARS, ScoreResult, score_cells, text_cell
from ..scoring import ListUpdate
from ..settings import ScoreOptions
from . import files
from .controls import ASSETS, example_rows, options_from, settings_accordion
from .render import (UpdatePacer, check_model, files_label, progress_message, record_downloads, record_reasoning,
                     refusal, status_html, unkept_note)
from .server import PAGE_MODEL_EVENT, cancellable

TABLE_HEADERS = ["Video", "Prompt", *(SHORT_LABELS[key] for key in DIMENSIONS), "Overall", "Error"]
ROW_HINT = "<p class='vs2-status'>Click a row of the table to read the model's reasoning for that video here.</p>"
# The outputs of a run, by the names `shown` gives them.
OUTPUTS = ("status", "table", "csv", "json", "view", "reasoning")

# What a row of the plan is: a video to score, or a row that cannot be scored (its reason in its record).
VIDEO, NO_UPLOAD, NO_PROMPT = "video", "no upload", "no prompt"


@dataclass(frozen=True)
class BatchCounts:
    """What one batch holds, decided once from its plan: every message of the run counts from here."""

    kinds: tuple[str, ...]  # per row of the plan, in order: VIDEO, NO_UPLOAD or NO_PROMPT

    @property
    def videos(self) -> int:
        """The scorings: rows naming an upload, with a prompt."""
        return self.kinds.count(VIDEO)

    def number(self, position: int) -> int | None:
        """Row `position`'s number (both from 1) among the videos to score; None: not a video."""
        if self.kinds[position - 1] != VIDEO:
            return None
        return self.kinds[:position].count(VIDEO)

    def first(self, rows: int) -> BatchCounts:
        """The counts of the first `rows` rows (those a stopped run reached)."""
        return BatchCounts(self.kinds[:rows])


def batch_counts(items: list[BatchItem]) -> BatchCounts:
    return BatchCounts(tuple(VIDEO if not item.problem else NO_UPLOAD if item.path is None else NO_PROMPT
                             for item in items))


def rows_note(counts: BatchCounts) -> str:
    """` 1 row of the CSV names no uploaded file: see the error column.` (nothing when every row is a video)."""
    no_upload, no_prompt = counts.kinds.count(NO_UPLOAD), counts.kinds.count(NO_PROMPT)
    parts = []
    if no_upload:
        parts.append(f"{counted(no_upload, 'row')} of the CSV name{'s' if no_upload == 1 else ''} no uploaded file")
    if no_prompt:
        parts.append(f"{counted(no_prompt, 'upload')} {'has' if no_prompt == 1 else 'have'} no prompt")
    return f" {'; '.join(parts)}: see the error column." if parts else ""


@dataclass(frozen=True)
class BatchView:
    """What the tab shows of one run. `results` are the table's rows, the downloads' records and what
    a click on a row reads, all at once; `state` is the status line's class (busy while it runs)."""

    counts: BatchCounts
    results: tuple[ScoreResult, ...] = ()
    state: str = "busy"
    message: str = ""


def start(counts: BatchCounts) -> BatchView:
    """A new run: nothing of the last one is left (its rows, downloads and reasoning panel go)."""
    says = f"Scoring {counted(counts.videos, 'video')}…" if counts.videos else "Nothing to score here."
    return BatchView(counts, message=says + rows_note(counts))


def on_step(view: BatchView, step: ListUpdate, started: float) -> BatchView:
    """The view after one step of score_many: a record added (`update` None), or a video's progress."""
    if step.update is None:
        return replace(view, results=tuple(step.results))
    counts = view.counts
    number = counts.number(step.position)
    done = [result for result, kind in zip(view.results, counts.kinds) if kind == VIDEO]
    return replace(view, message=progress_message(number or 0, counts.videos, step.name, step.update)
                   + time_left(done, counts.videos, started))


def failed_videos(view: BatchView) -> int:
    return sum(1 for result, kind in zip(view.results, view.counts.kinds) if kind == VIDEO and result.error)


def finish(view: BatchView) -> BatchView:
    """The run's last word: how many of its videos were scored, and why the others were not."""
    counts, failed = view.counts, failed_videos(view)
    if not counts.videos:
        return replace(view, state="failed", message="Nothing was scored." + rows_note(counts))
    if failed == counts.videos:
        says = ("The video could not be scored" if failed == 1 else f"None of the {failed:,} videos could be scored")
        return replace(view, state="failed", message=says + ": see the error column." + rows_note(counts))
    message = f"Scored {counts.videos - failed:,} of {counted(counts.videos, 'video')}."
    stored = sum(1 for result in view.results if result.stored)
    if stored:
        message += f" {stored:,} came from the results store (scored before with the same settings)."
    if failed:
        message += f" {failed:,} failed: see the error column."
    return replace(view, state="done", message=message + rows_note(counts) + unkept_note(view.results))


def on_stop(view: BatchView | None) -> BatchView | None:
    """The view a Stop leaves: the rows this run had when it stopped, said so. None: nothing was
    running (the last run's view stays as it was)."""
    if view is None or view.state != "busy":
        return None
    reached = view.counts.first(len(view.results))
    done = reached.videos
    if not view.results:
        message = "Stopped before any video was scored."
    else:
        message = (f"Stopped after {done:,} of {counted(view.counts.videos, 'video')}: the table and the downloads "
                   "hold this batch's rows so far." + rows_note(reached))
    return replace(view, state="idle", message=message)


def table_rows(results) -> pd.DataFrame:
    """The table: a long prompt or error cut to a few lines (the whole of it is in the row's reasoning
    panel, one click away), so that one row never fills the table's view."""
    rows = [[result.video, text_cell(result.prompt, PROMPT_CELL_CHARS), *score_cells(result),
             text_cell(result.error, ERROR_CELL_CHARS)] for result in results]
    return pd.DataFrame(rows, columns=TABLE_HEADERS)


def shown(view: BatchView, rows: bool = True, fresh: bool = False) -> dict:
    """What each output shows of `view`, by name (OUTPUTS): the status always; the rows and their
    downloads when `rows` (they change only when a record is added); the reasoning panel's hint
    when the run is `fresh` (a row of the last run may be open there)."""
    out = {"status": status_html(view.state, view.message), "view": view}
    if rows:
        out["csv"], out["json"] = record_downloads(view.results, "batch-scores")
        out["table"] = table_rows(view.results)
    if fresh:
        out["reasoning"] = ROW_HINT
    return out


def selected_record(results, row: int, row_value: list | None) -> ScoreResult | None:
    """The record of the clicked row. The row's own cells decide (the reader may have sorted the
    table); its number only breaks a tie between identical rows."""
    results = list(results)
    cells = [str(cell) for cell in row_value] if row_value else None
    matching = [i for i, row_cells in enumerate(table_rows(results).values.tolist())
                if cells is None or [str(cell) for cell in row_cells] == cells]
    if not matching:
        return None
    return results[row if row in matching else matching[0]]


def row_reasoning(result: ScoreResult) -> str:
    """The reasoning panel of one row, headed by the video and its whole prompt."""
    head = (f"<div class='vs2-row-head'><b>{html.escape(result.video)}</b> · "
            f"{html.escape(result.prompt or '(no prompt)')}</div>")
    return head + record_reasoning(result)


def time_left(results: list[ScoreResult], total: int, started: float) -> str:
    """` · about 2 min left`, from the mean time of the videos done so far (none: nothing to say)."""
    done = len(results)
    if not done or done >= total:
        return ""
    seconds = (time.monotonic() - started) / done * (total - done)
    return f" · about {seconds:.0f} s left" if seconds < 90 else f" · about {seconds / 60:.0f} min left"


def plan(paths, csv_path, prompt_text, max_batch: int) -> list[BatchItem]:
    """What to score against what; UserInputError for a batch that cannot start at all."""
    paths = [files.uploaded_path(path) for path in paths or []]
    if not paths:
        raise UserInputError("Upload the videos to score first.")
    if len(paths) > max_batch:
        raise UserInputError(f"{len(paths)} videos were uploaded; a batch here is at most {max_batch}. "
                             f"Remove {len(paths) - max_batch} of them and score the rest in another batch.")
    default = prompt_text if (prompt_text or "").strip() else ""  # as given: the scorer cleans it per template
    clean_prompt(default, allow_empty=True)  # its length checked before any work
    if not csv_path:
        if not default:
            raise UserInputError("Give the prompt for all videos, or a CSV file with each video's prompt.")
        return plan_batch(paths, None, default, most=max_batch)
    csv_file = Path(files.uploaded_path(csv_path))
    if csv_file.stat().st_size > MAX_BATCH_CSV_BYTES:  # refused before it is read into memory
        raise UserInputError(f"The CSV file is {csv_file.stat().st_size // 1024:,} KiB; a batch file of "
                             f"'video,prompt' lines is at most {MAX_BATCH_CSV_BYTES // 1024} KiB.")
    return plan_batch(paths, read_batch_csv(csv_file.read_bytes()), default, most=max_batch)


def run_batch(score_many, items: list[BatchItem], options, progress: Callable) -> Iterator[dict]:
    """One run, as what each output shows (`shown`) after each step: the first clears the last run's
    view, the last carries every value again (it repairs a browser that lost one of the quick
    row-by-row updates when rows fail in a burst)."""
    view = start(batch_counts(items))
    yield shown(view, fresh=True)
    pacer, started = UpdatePacer(), time.monotonic()
    for step in score_many(items, options):
        if step.update is not None and pacer.skip(step.update):
            continue
        number = view.counts.number(step.position)
        if number is not None:  # said again before every update: the browser drops the bar at each streamed value
            progress((number - 1, view.counts.videos), desc=f"{step.name} ({number} of {view.counts.videos})",
                     unit="videos")
        view = on_step(view, step, started)
        yield shown(view, rows=step.update is None)
    yield shown(finish(view))


def build(score_many, model_status, defaults: ScoreOptions, max_batch: int) -> None:
    """`score_many(items, options)`: scoring.Scorer.score_many's stream; `model_status()`: the model's
    (scoring.ModelStatus); `max_batch`: the most videos one request may hold."""
    with gr.Tab("Batch", id="batch"):
        gr.Markdown(f"Score up to {max_batch} videos at once. Give each its prompt in a CSV file with columns "
                    "`video,prompt` (the video's file name as uploaded; a file with no header works too), or one "
                    "prompt for all. Rows fill in as each video is judged; download the table when it is done.")
        videos, prompts_csv, default_prompt = upload_boxes()
        with gr.Row():
            run = gr.Button("Score all", variant="primary", elem_id="batch-run")
            stop = gr.Button("Stop", variant="secondary", elem_id="batch-stop")
        controls = settings_accordion(defaults)
        example_batch(videos, prompts_csv, default_prompt)
        # The progress bar's own place: on a component the run streams into, Gradio hides it after the
        # first update.
        progress_area = gr.HTML("", min_height=56, elem_id="batch-progress")
        parts = results_area()
    wire(parts, [videos, prompts_csv, default_prompt, *controls.inputs()], run, stop, progress_area, score_many,
         model_status, max_batch)


def upload_boxes() -> tuple:
    with gr.Row(equal_height=False):
        videos = gr.File(label="Videos", file_count="multiple", file_types=["video"], height=200,
                         elem_id="batch-videos", scale=3)
        with gr.Column(scale=2, min_width=280):
            prompts_csv = gr.File(label="Prompts (CSV: video,prompt), optional", file_count="single",
                                  file_types=[".csv", ".tsv", ".txt"], height=120, elem_id="batch-csv")
            gr.DownloadButton("A CSV template to fill in", value=str(ASSETS / "batch_template.csv"), size="sm",
                              variant="secondary", elem_id="batch-template")
            default_prompt = gr.Textbox(label="Prompt for all videos (with a CSV: for videos it does not list)",
                                        lines=2, max_lines=6, elem_id="batch-prompt")
    videos.change(lambda paths: gr.update(label=files_label("Videos", paths)), inputs=[videos], outputs=[videos],
                  queue=False, api_visibility="private")
    return videos, prompts_csv, default_prompt


def example_batch(videos, prompts_csv, default_prompt) -> None:
    rows = example_rows()
    if rows:
        # The examples' own index is a valid batch CSV: video, prompt (and a column that is ignored).
        index = Path(rows[0]["path"]).with_name("examples.csv")
        gr.Examples([[[row["path"] for row in rows], str(index), ""]], inputs=[videos, prompts_csv, default_prompt],
                    example_labels=[f"{len(rows)} example clips + examples.csv"],
                    label="Example batch (made by this project)", cache_examples=False)


def results_area() -> dict:
    """The run's outputs, by their names in OUTPUTS."""
    status = gr.HTML(status_html("idle", "Upload videos and their prompts, press Score all."), elem_id="batch-status")
    with gr.Column(elem_classes="vs2-wide-table"):  # scrolls sideways on a phone (style.css)
        table = gr.Dataframe(table_rows([]), headers=TABLE_HEADERS, label="Scores", interactive=False, wrap=True,
                             column_widths=["14%", "26%", "10%", "10%", "10%", "7%", "23%"], elem_id="batch-table",
                             elem_classes=["vs2-readonly-table", "vs2-opens-rows"])
    with gr.Accordion("Reasoning of the clicked row", open=True, elem_id="batch-reasoning"):
        reasoning = gr.HTML(ROW_HINT, elem_id="batch-row-reasoning")
    with gr.Row():
        csv_download = gr.DownloadButton("Download the scores (CSV)", visible=False, elem_id="batch-csv-download")
        json_download = gr.DownloadButton("Download the records (JSON)", visible=False, elem_id="batch-json-download")
    # The view of the run on the page (BatchView): what a click on a row and a Stop read.
    view = gr.State(None)
    return {"status": status, "table": table, "csv": csv_download, "json": json_download, "view": view,
            "reasoning": reasoning}


def wire(parts: dict, inputs: list, run, stop, progress_area, score_many, model_status, max_batch: int) -> None:
    """The run (a check, then the scoring), a click on a row, and Stop. `inputs`: the uploads, the
    prompt and the settings accordion's controls, in the handlers' order."""
    def by_component(named: dict) -> dict:
        return {parts[name]: value for name, value in named.items()}

    def check(paths, csv_path, prompt_text, *settings):
        """Refuse a batch that cannot start in an event of its own, with no outputs: an error
        raised by the run itself would cover the last table with error badges."""
        try:
            plan(paths, csv_path, prompt_text, max_batch)
            options_from(*settings)
        except UserInputError as exc:
            raise refusal("Cannot start the batch", str(exc)) from None
        check_model(model_status)

    @cancellable
    def score_all(paths, csv_path, prompt_text, template, fps, max_frames, decoding, temperature, seed,
                  max_new_tokens, reading, progress=gr.Progress()):
        try:
            items = plan(paths, csv_path, prompt_text, max_batch)
            options = options_from(template, fps, max_frames, decoding, temperature, seed, max_new_tokens, reading)
        except UserInputError as exc:
            raise refusal("Cannot start the batch", str(exc)) from None
        for named in run_batch(score_many, items, options, progress):
            yield by_component(named)

    def show_row(view: BatchView | None, evt: gr.SelectData):
        result = selected_record(view.results, evt.index[0], evt.row_value) if view else None
        return gr.skip() if result is None else row_reasoning(result)

    def stopped(view: BatchView | None):
        after = on_stop(view)
        return gr.skip() if after is None else by_component(shown(after))

    outputs = [parts[name] for name in OUTPUTS]
    # The check is queued (its gr.Error shows as a toast only then) but never waits for the model.
    event = run.click(check, inputs=inputs, outputs=None, concurrency_limit=None, api_visibility="private").success(
        score_all, inputs=inputs, outputs=outputs, **PAGE_MODEL_EVENT, api_visibility="private",
        show_progress_on=[progress_area])
    parts["table"].select(show_row, inputs=[parts["view"]], outputs=[parts["reasoning"]], api_visibility="private")
    # The message follows the cancel: said together, a last update of the run can overwrite it.
    stop.click(None, cancels=[event], api_visibility="private", queue=False).then(
        stopped, inputs=[parts["view"]], outputs=outputs, api_visibility="private", queue=False)
