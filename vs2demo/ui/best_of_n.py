"""Best of N: up to 16 candidate videos for one prompt, scored one after another and ranked as
each finishes; the best one plays, a click on a row plays that one, and changing what to rank by
re-ranks without re-scoring."""

from __future__ import annotations

import logging

import gradio as gr
import pandas as pd

from .. import DIMENSIONS
from ..errors import UserInputError
from ..plots import SHORT_LABELS, ranking_figure
from ..prompts import clean_prompt
from ..results import (
    RANK_KEYS, BatchItem, ScoreResult, rank, ranking_value, results_to_csv, results_to_json, score_cells,
)
from ..scoring import display_name
from ..settings import ScoreOptions
from ..video import sample_frames
from . import files
from .controls import example_rows, options_from, settings_accordion
from .render import UpdatePacer, files_label, progress_message, status_html, thumbnail_cell, toast_message, unkept_note
from .server import PAGE_MODEL_EVENT, cancellable

log = logging.getLogger(__name__)

MAX_CANDIDATES = 16
RANK_CHOICES = [(f"{SHORT_LABELS[key]} (mean of the three expected scores)" if key == "overall" else SHORT_LABELS[key], key)
                for key in RANK_KEYS]
TABLE_HEADERS = ["Rank", "Preview", "Video", *(SHORT_LABELS[key] for key in DIMENSIONS), "Overall", "Error"]
TABLE_TYPES = ["str", "markdown", *["str"] * (len(TABLE_HEADERS) - 2)]
VIDEO_COLUMN = TABLE_HEADERS.index("Video")
PLAYER_LABEL = "Best video (click a row of the ranking to play that one)"


# ---- ranking view -------------------------------------------------------------------------------

def unique_labels(names: list[str]) -> list[str]:
    """Names for the table and chart; two uploads called the same get `(2)`, `(3)` so they stay apart."""
    seen: dict[str, int] = {}
    labels = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        labels.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return labels


def thumbnail_from_file(path: str) -> str:
    """A table thumbnail for a video that was not sampled in this run (a stored result): its middle
    frame from a small, quick sample; none for a file that cannot be read."""
    try:
        video = sample_frames(path, fps=1.0, max_frames=4, max_pixels=160 * 28 * 28)
    except UserInputError:
        return ""
    return thumbnail_cell(video.frames[len(video.frames) // 2])


def ranked_order(results: list[ScoreResult], by: str) -> list[int]:
    """The results' indices, best first by `by` (those without a value last, in upload order)."""
    position = {id(result): index for index, result in enumerate(results)}
    return [position[id(result)] for result in rank(results, by)]


def ranked_view(entries: list[dict], by: str) -> tuple:
    """Table, chart, best video and downloads for the scored entries ({path, label, record,
    thumbnail} each), best first by `by`."""
    results = [ScoreResult.from_dict(entry["record"]) for entry in entries]
    order = ranked_order(results, by)
    rows = []
    for place, index in enumerate(order, start=1):
        result = results[index]
        ranked = ranking_value(result, by) is not None
        rows.append([str(place) if ranked else "–", entries[index].get("thumbnail", ""), entries[index]["label"],
                     *score_cells(result), result.error or ""])
    table = pd.DataFrame(rows, columns=TABLE_HEADERS)

    scored = [index for index in order if ranking_value(results[index], by) is not None]
    if scored:
        # Worst first: the figure's stable sort then puts the table's winner on top among equal values.
        shown = scored[::-1]
        chart = gr.update(value=ranking_figure([results[i] for i in shown], [entries[i]["label"] for i in shown], by),
                          visible=True)
        best = scored[0]
        best_video = gr.update(value=entries[best]["path"],
                               label=f"Best by {SHORT_LABELS[by].lower()}: {entries[best]['label']} "
                                     f"({ranking_value(results[best], by):.2f}). Click a row to play another.",
                               autoplay=False)  # a new ranking shows the best; only a click plays at once
    else:
        chart = gr.update(visible=False)
        best_video = gr.update(value=None, label=PLAYER_LABEL)
    in_order = [results[index] for index in order]
    csv_file = gr.update(value=files.write_download(results_to_csv(in_order), "best-of-n", ".csv"), visible=True)
    json_file = gr.update(value=files.write_download(results_to_json(in_order), "best-of-n", ".json"), visible=True)
    return table, chart, best_video, csv_file, json_file


def empty_table() -> pd.DataFrame:
    return pd.DataFrame([], columns=TABLE_HEADERS)


def candidate_to_play(entries: list[dict], by: str, row: int, row_value: list | None):
    """The player's update for a click on row `row` of the ranking: that candidate, labelled with its
    place. The row's own Video cell decides which one (the reader may have sorted the table), and the
    row number only when the cell is missing."""
    results = [ScoreResult.from_dict(entry["record"]) for entry in entries]
    order = ranked_order(results, by)
    label = row_value[VIDEO_COLUMN] if row_value and len(row_value) > VIDEO_COLUMN else None
    by_label = [place for place, index in enumerate(order) if entries[index]["label"] == label]
    place = by_label[0] if by_label else row
    if not 0 <= place < len(order):
        return gr.skip()
    entry = entries[order[place]]
    value = ranking_value(results[order[place]], by)
    where = (f"#{place + 1} by {SHORT_LABELS[by].lower()} ({value:.2f})" if value is not None
             else "not ranked: see its error")
    return gr.update(value=entry["path"], label=f"Playing {entry['label']}, {where}", autoplay=True)


def build(score_many, model_status, defaults: ScoreOptions) -> None:
    """`score_many(items, options)`: scoring.Scorer.score_many's stream; `model_status()`: the model's (scoring.ModelStatus)."""
    with gr.Tab("Best of N", id="best-of-n"):
        gr.Markdown(f"Generated several videos for one prompt? Upload up to {MAX_CANDIDATES} of them: each is "
                    "judged in turn and the table ranks them as they finish. The best one plays on the right.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=320):
                candidates_label = f"Candidate videos (up to {MAX_CANDIDATES})"
                candidates = gr.File(label=candidates_label, file_count="multiple",
                                file_types=["video"], height=220, elem_id="best-of-n-files")
                prompt = gr.Textbox(label="Generation prompt (the same for all)", lines=2, max_lines=6,
                                    elem_id="best-of-n-prompt", placeholder="The text the videos were generated from")
                rank_by = gr.Dropdown(RANK_CHOICES, value="overall", label="Rank by", elem_id="best-of-n-rank-by",
                                      info="Changing it after a run re-ranks the scored videos at once")
                with gr.Row():
                    run = gr.Button("Rank", variant="primary", elem_id="best-of-n-run")
                    stop = gr.Button("Stop", variant="secondary", elem_id="best-of-n-stop")
                controls = settings_accordion(defaults)
                rows = example_rows()
                if len(rows) >= 2:
                    # All the example clips against the one prompt most of them were made for.
                    prompts = [row["prompt"] for row in rows]
                    shared = max(prompts, key=prompts.count)
                    gr.Examples([[[row["path"] for row in rows], shared]], inputs=[candidates, prompt],
                                example_labels=[f"{len(rows)} example clips, one prompt"],
                                label="Example candidates (made by this project)", cache_examples=False)
            with gr.Column(scale=7, min_width=420):
                status = gr.HTML(status_html("idle", "Upload the candidates, write their prompt, press Rank."),
                                 elem_id="best-of-n-status")
                best_video = gr.Video(label=PLAYER_LABEL, interactive=False, height=300, elem_id="best-of-n-best")
        with gr.Column(elem_classes="vs2-wide-table"):  # scrolls sideways on a phone (style.css)
            table = gr.Dataframe(empty_table(), headers=TABLE_HEADERS, datatype=TABLE_TYPES, label="Ranking",
                                 interactive=False, wrap=True, column_widths=["6%", "10%", "17%", "12%", "12%", "12%", "8%", "23%"],
                                 elem_id="best-of-n-table")
        chart = gr.Plot(label="Ranking", visible=False, elem_id="best-of-n-chart")
        with gr.Row():
            csv_download = gr.DownloadButton("Download the ranking (CSV)", visible=False, elem_id="best-of-n-csv")
            json_download = gr.DownloadButton("Download the records (JSON)", visible=False, elem_id="best-of-n-json")
        # The finished records as plain dicts ({path, label, record, thumbnail}), so "rank by" can
        # re-rank them and a click on a row can play that one.
        scored = gr.State([])

        view_outputs = [table, chart, best_video, csv_download, json_download]
        outputs = [status, *view_outputs, scored]
        unchanged_view = (gr.skip(),) * len(view_outputs)

        def checked_inputs(paths, prompt_text, settings) -> tuple[list[str], str, ScoreOptions]:
            paths = [str(path) for path in paths or []]
            if not paths:
                raise gr.Error(toast_message("Nothing to rank", "Upload the candidate videos first."), title="Nothing to rank",
                               print_exception=False)
            if len(paths) > MAX_CANDIDATES:
                raise gr.Error(toast_message("Too many videos", f"{len(paths)} videos were uploaded; Best of N ranks at most "
                               f"{MAX_CANDIDATES} at a time. Remove {len(paths) - MAX_CANDIDATES} of them (or use the Batch "
                               "tab) and press Rank again."),
                               title="Too many videos", print_exception=False)
            try:
                options = options_from(*settings)
                return ([files.uploaded_path(path) for path in paths],
                        clean_prompt(prompt_text, template=options.template), options)
            except UserInputError as exc:
                raise gr.Error(toast_message("Cannot rank these videos", str(exc)), title="Cannot rank these videos",
                               print_exception=False) from None

        def check(paths, prompt_text, by, *settings):
            """Refuse a run that cannot start in an event of its own, with no outputs: an error
            raised by the run itself would cover the uploads' last ranking with error badges."""
            checked_inputs(paths, prompt_text, settings)
            model = model_status()
            if model.state == "failed":
                raise gr.Error(toast_message("The model is not available", f"The model could not be loaded: {model.error}"),
                               title="The model is not available",
                               print_exception=False)

        @cancellable
        def rank_videos(paths, prompt_text, by, *settings):
            paths, prompt_clean, options = checked_inputs(paths, prompt_text, settings)
            labels = unique_labels([display_name(path) for path in paths])
            items = [BatchItem(display_name(path), path, prompt_clean) for path in paths]
            entries: list[dict] = []
            thumbnails: dict[int, str] = {}  # position -> the table's picture, from the frames the model saw
            pacer = UpdatePacer()
            yield {status: status_html("busy", progress_message(1, len(paths), labels[0])), table: empty_table(),
                   chart: gr.update(visible=False), best_video: gr.update(value=None, label=PLAYER_LABEL),
                   csv_download: gr.update(visible=False), json_download: gr.update(visible=False), scored: []}
            for step in score_many(items, options):
                position = step.position
                if step.update is not None:
                    update = step.update
                    if update.stage == "sampled" and update.video is not None:
                        frames = update.video.frames
                        thumbnails[position] = thumbnail_cell(frames[len(frames) // 2])
                    if pacer.skip(update):
                        continue
                    message = ("Waiting for the model to load…" if update.stage == "loading" else
                               progress_message(position, len(paths), labels[position - 1], update))
                    yield {status: status_html("busy", message)}
                    continue
                record = step.results[-1]
                thumbnail = thumbnails.get(position)
                if thumbnail is None and not record.error:  # from the results store: not sampled this time
                    thumbnail = thumbnail_from_file(paths[position - 1])
                entries.append({"path": paths[position - 1], "label": labels[position - 1],
                                "record": record.to_dict(), "thumbnail": thumbnail or ""})
                message = (progress_message(position + 1, len(paths), labels[position])
                           if position < len(paths) else "Ranking…")
                yield {status: status_html("busy", message), **dict(zip(view_outputs, ranked_view(entries, by))),
                       scored: list(entries)}
            # The whole view again: the last message carries full values, which repairs a browser that
            # lost one of the quick updates (videos failing in a burst).
            yield {status: status_html(*finished_message(entries, by)), **dict(zip(view_outputs, ranked_view(entries, by)))}

        def finished_message(entries: list[dict], by: str) -> tuple[str, str]:
            results = [ScoreResult.from_dict(entry["record"]) for entry in entries]
            failed = sum(1 for result in results if result.error)
            ranked = [(ranking_value(result, by), entry["label"]) for result, entry in zip(results, entries)
                      if ranking_value(result, by) is not None]
            if not ranked:
                return "failed", f"None of the {len(results)} videos could be scored: see the error column."
            value, label = max(ranked, key=lambda pair: pair[0])
            message = f"Ranked {len(ranked)} videos by {SHORT_LABELS[by].lower()}: the best is {label} ({value:.2f})."
            if failed:
                message += f" {failed} could not be scored: see the error column."
            return "done", message + unkept_note(results)

        def rerank(entries, by):
            """Rank the videos already scored by another key: no model work."""
            if not entries:
                return unchanged_view
            return ranked_view(entries, by)

        inputs = [candidates, prompt, rank_by, *controls.inputs()]
        # The check is queued (its gr.Error shows as a toast only then) but never waits for the model.
        event = run.click(check, inputs=inputs, outputs=None, concurrency_limit=None, api_visibility="private").success(
            rank_videos, inputs=inputs, outputs=outputs, **PAGE_MODEL_EVENT,
            api_visibility="private")
        # The run ranks by the key chosen when it started; if it was changed meanwhile, follow it now.
        event.then(rerank, inputs=[scored, rank_by], outputs=view_outputs, api_visibility="private")
        def rerank_and_say(entries, by):
            """A new ranking key: the table, the chart, the best video and the status line all follow it."""
            if not entries:
                return [*unchanged_view, gr.skip()]
            return [*ranked_view(entries, by), status_html(*finished_message(entries, by))]

        def play(entries, by, evt: gr.SelectData):
            if not entries:
                return gr.skip()
            return candidate_to_play(entries, by, evt.index[0], evt.row_value)

        # The player sits above the table: bring it into view, or the click seems to do nothing.
        table.select(play, inputs=[scored, rank_by], outputs=[best_video], api_visibility="private").then(
            None, js="() => document.querySelector('#best-of-n-best')?.scrollIntoView({block: 'nearest'})")
        candidates.change(lambda paths: gr.update(label=files_label(candidates_label, paths)), inputs=[candidates],
                          outputs=[candidates], queue=False, api_visibility="private")

        rank_by.change(rerank_and_say, inputs=[scored, rank_by], outputs=[*view_outputs, status],
                       api_visibility="private")
        # The message follows the cancel: said together, a last update of the run can overwrite it.
        stop.click(None, cancels=[event], api_visibility="private", queue=False).then(
            lambda: status_html("idle", "Stopped. The videos scored so far stay ranked."), outputs=[status],
            api_visibility="private", queue=False)
