"""Batch: many videos, each with its prompt from a CSV (or one prompt for all), scored one after
another into a table that fills in as they finish; failures are rows with their reason, and a click
on a row shows that video's reasoning."""

from __future__ import annotations

import html
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from .. import DIMENSIONS
from ..errors import UserInputError
from ..plots import SHORT_LABELS
from ..prompts import clean_prompt
from ..results import (
    MAX_BATCH_CSV_BYTES, BatchItem, ScoreResult, plan_batch, read_batch_csv, results_to_csv, results_to_json,
    score_cells,
)
from ..settings import ScoreOptions
from . import files
from .controls import ASSETS, example_rows, options_from, settings_accordion
from .render import (
    UpdatePacer, files_label, progress_message, record_reasoning, status_html,
    toast_message, unkept_note,
)
from .server import PAGE_MODEL_EVENT, cancellable

TABLE_HEADERS = ["Video", "Prompt", *(SHORT_LABELS[key] for key in DIMENSIONS), "Overall", "Error"]


def table_rows(results: list[ScoreResult]) -> pd.DataFrame:
    rows = [[result.video, result.prompt, *score_cells(result), result.error or ""] for result in results]
    return pd.DataFrame(rows, columns=TABLE_HEADERS)


ROW_HINT = "<p class='vs2-status'>Click a row of the table to read the model's reasoning for that video here.</p>"


def selected_record(records: list[dict], row: int, row_value: list | None) -> ScoreResult | None:
    """The record of the clicked row. The row's own cells decide (the reader may have sorted the
    table); its number only breaks a tie between identical rows."""
    results = [ScoreResult.from_dict(record) for record in records]
    cells = [str(cell) for cell in row_value] if row_value else None
    matching = [i for i, row_cells in enumerate(table_rows(results).values.tolist())
                if cells is None or [str(cell) for cell in row_cells] == cells]
    if not matching:
        return None
    return results[row if row in matching else matching[0]]


def row_reasoning(result: ScoreResult) -> str:
    """The reasoning panel of one row, headed by the video and its prompt."""
    head = (f"<div class='vs2-row-head'><b>{html.escape(result.video)}</b> · "
            f"{html.escape(result.prompt or '(no prompt)')}</div>")
    return head + record_reasoning(result)


def download_files(results: list[ScoreResult]) -> tuple:
    return (gr.update(value=files.write_download(results_to_csv(results), "batch-scores", ".csv"), visible=True),
            gr.update(value=files.write_download(results_to_json(results), "batch-scores", ".json"), visible=True))


def time_left(results: list[ScoreResult], total: int, started: float) -> str:
    """` · about 2 min left`, from the mean time of the videos done so far (none: nothing to say)."""
    done = len(results)
    if not done or done >= total:
        return ""
    seconds = (time.monotonic() - started) / done * (total - done)
    return f" · about {seconds:.0f} s left" if seconds < 90 else f" · about {seconds / 60:.0f} min left"


def build(score_many, model_status, defaults: ScoreOptions, max_batch: int) -> None:
    """`score_many(items, options)`: scoring.Scorer.score_many's stream; `model_status()`: the model's
    (scoring.ModelStatus); `max_batch`: the most videos one request may hold."""
    with gr.Tab("Batch", id="batch"):
        gr.Markdown(f"Score up to {max_batch} videos at once. Give each its prompt in a CSV file with columns "
                    "`video,prompt` (the video's file name as uploaded; a file with no header works too), or one "
                    "prompt for all. Rows fill in as each video is judged; download the table when it is done.")
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
        with gr.Row():
            run = gr.Button("Score all", variant="primary", elem_id="batch-run")
            stop = gr.Button("Stop", variant="secondary", elem_id="batch-stop")
        controls = settings_accordion(defaults)
        rows = example_rows()
        if rows:
            # The examples' own index is a valid batch CSV: video, prompt (and a column that is ignored).
            index = Path(rows[0]["path"]).with_name("examples.csv")
            gr.Examples([[[row["path"] for row in rows], str(index), ""]],
                        inputs=[videos, prompts_csv, default_prompt],
                        example_labels=[f"{len(rows)} example clips + examples.csv"],
                        label="Example batch (made by this project)", cache_examples=False)
        # The progress bar's own place: on a component the run streams into, Gradio hides it after the
        # first update.
        progress_area = gr.HTML("", min_height=56, elem_id="batch-progress")
        status = gr.HTML(status_html("idle", "Upload videos and their prompts, press Score all."), elem_id="batch-status")
        with gr.Column(elem_classes="vs2-wide-table"):  # scrolls sideways on a phone (style.css)
            table = gr.Dataframe(table_rows([]), headers=TABLE_HEADERS, label="Scores", interactive=False, wrap=True,
                                 column_widths=["15%", "25%", "11%", "11%", "11%", "7%", "20%"], elem_id="batch-table")
        with gr.Accordion("Reasoning of the clicked row", open=True, elem_id="batch-reasoning"):
            reasoning = gr.HTML(ROW_HINT, elem_id="batch-row-reasoning")
        with gr.Row():
            csv_download = gr.DownloadButton("Download the scores (CSV)", visible=False, elem_id="batch-csv-download")
            json_download = gr.DownloadButton("Download the records (JSON)", visible=False, elem_id="batch-json-download")
        # The records so far as plain dicts, for a click on a row.
        records = gr.State([])

        outputs = [status, table, csv_download, json_download, records, reasoning]

        def downloads(results: list[ScoreResult]) -> dict:
            return dict(zip((csv_download, json_download), download_files(results)))

        def plan(paths, csv_path, prompt_text) -> list[BatchItem]:
            """What to score against what; UserInputError for a batch that cannot start at all."""
            paths = [files.uploaded_path(path) for path in paths or []]
            if not paths:
                raise UserInputError("Upload the videos to score first.")
            if len(paths) > max_batch:
                raise UserInputError(f"{len(paths)} videos were uploaded; a batch here is at most {max_batch}. "
                                     f"Remove {len(paths) - max_batch} of them and score the rest in another batch.")
            if csv_path:
                csv_file = Path(files.uploaded_path(csv_path))
                if csv_file.stat().st_size > MAX_BATCH_CSV_BYTES:  # refused before it is read into memory
                    raise UserInputError(f"The CSV file is {csv_file.stat().st_size // 1024:,} KiB; a batch file of "
                                         f"'video,prompt' lines is at most {MAX_BATCH_CSV_BYTES // 1024} KiB.")
                pairs = read_batch_csv(csv_file.read_bytes())
                default = clean_prompt(prompt_text) if (prompt_text or "").strip() else ""
                return plan_batch(paths, pairs, default, most=max_batch)
            if not (prompt_text or "").strip():
                raise UserInputError("Give the prompt for all videos, or a CSV file with each video's prompt.")
            return plan_batch(paths, None, clean_prompt(prompt_text), most=max_batch)

        def checked_inputs(paths, csv_path, prompt_text, settings) -> tuple[list[BatchItem], ScoreOptions]:
            try:
                return plan(paths, csv_path, prompt_text), options_from(*settings)
            except UserInputError as exc:
                raise gr.Error(toast_message("Cannot start the batch", str(exc)), title="Cannot start the batch",
                               print_exception=False) from None

        def check(paths, csv_path, prompt_text, *settings):
            """Refuse a batch that cannot start in an event of its own, with no outputs: an error
            raised by the run itself would cover the last table with error badges."""
            checked_inputs(paths, csv_path, prompt_text, settings)
            model = model_status()
            if model.state == "failed":
                raise gr.Error(toast_message("The model is not available", f"The model could not be loaded: {model.error}"),
                               title="The model is not available",
                               print_exception=False)

        @cancellable
        def score_all(paths, csv_path, prompt_text, template, fps, max_frames, decoding, temperature, seed,
                      max_new_tokens, reading, progress=gr.Progress()):
            items, options = checked_inputs(paths, csv_path, prompt_text, (template, fps, max_frames, decoding,
                                                                           temperature, seed, max_new_tokens, reading))
            total = len(items)
            # A CSV row that names no uploaded file is a row of the table, not a video.
            missing = sum(1 for item in items if item.problem)
            videos_total = total - missing
            missing_note = (f" {missing} row{'s' if missing > 1 else ''} of the CSV name{'' if missing > 1 else 's'} no "
                            "uploaded file: see the error column.") if missing else ""
            results: list[ScoreResult] = []
            pacer = UpdatePacer()
            started = time.monotonic()
            yield {status: status_html("busy", f"Scoring {videos_total} videos…"), table: table_rows([]),
                   csv_download: gr.update(visible=False), json_download: gr.update(visible=False), records: [],
                   reasoning: ROW_HINT}
            for step in score_many(items, options):
                # Said again before every update: the browser drops the bar at each streamed value.
                progress((step.position - 1, total), desc=f"{step.name} ({step.position} of {total})", unit="videos")
                if step.update is None:
                    results = step.results
                    yield {table: table_rows(results), **downloads(results),
                           records: [result.to_dict() for result in results]}
                elif step.update.stage == "loading":
                    yield {status: status_html("busy", "Waiting for the model to load…")}
                elif not pacer.skip(step.update):
                    message = progress_message(step.position, total, step.name, step.update)
                    yield {status: status_html("busy", message + time_left(results, total, started))}
            failed = sum(1 for result in results if result.error) - missing
            stored = sum(1 for result in results if result.stored)
            if failed == videos_total:
                message = f"None of the {videos_total} videos could be scored: see the error column."
            else:
                message = f"Scored {videos_total - failed} of {videos_total} videos."
                if stored:
                    message += f" {stored} came from the results store (scored before with the same settings)."
                if failed:
                    message += f" {failed} failed: see the error column."
            message += missing_note + unkept_note(results)
            # The whole table again, not gr.skip(): the last message carries full values, which repairs a
            # browser that lost one of the quick row-by-row updates (rows failing in a burst).
            yield {status: status_html("failed" if failed == videos_total else "done", message), table: table_rows(results),
                   **downloads(results), records: [result.to_dict() for result in results]}

        inputs = [videos, prompts_csv, default_prompt, *controls.inputs()]
        # The check is queued (its gr.Error shows as a toast only then) but never waits for the model.
        event = run.click(check, inputs=inputs, outputs=None, concurrency_limit=None, api_visibility="private").success(
            score_all, inputs=inputs, outputs=outputs, **PAGE_MODEL_EVENT,
            api_visibility="private", show_progress_on=[progress_area])
        def show_row(kept, evt: gr.SelectData):
            result = selected_record(kept, evt.index[0], evt.row_value) if kept else None
            return gr.skip() if result is None else row_reasoning(result)

        table.select(show_row, inputs=[records], outputs=[reasoning], api_visibility="private")
        videos.change(lambda paths: gr.update(label=files_label("Videos", paths)), inputs=[videos], outputs=[videos],
                      queue=False, api_visibility="private")

        # The message follows the cancel: said together, a last update of the run can overwrite it.
        stop.click(None, cancels=[event], api_visibility="private", queue=False).then(
            lambda: status_html("idle", "Stopped. The rows above are kept, and in the downloads."), outputs=[status],
            api_visibility="private", queue=False)
