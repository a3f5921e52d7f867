"""Explore: look through a set of judgements (records from a file, or this app's results store),
with people's labels beside them: filter, sort, open one (the video, the frames the model saw, the
rationale, p(1..5), the labels, the settings), measure the judge against people as the paper does,
slice by prompt, run or a label column, and export what is shown.

Videos are shown only from files at hand: uploaded in this tab, or under the folder the app was
started with (`--videos DIR`), found by name in an index made at start-up. A record's `video`
field is only a name to look up in those; no path from a record or a request is ever opened.
"""

from __future__ import annotations

import functools
import html
import json
import logging
from pathlib import Path
from typing import Callable

import gradio as gr

from .. import DIMENSIONS
from ..errors import UserInputError
from ..explore import (
    AGREEMENTS, FLAG_MARK, MAX_INTERVAL_ROWS, MAX_RECORDS, MAX_SHOWN, SAMPLINGS, SORTS, STATUSES, TABLE_HEADERS,
    Collection, LoadedSets, Query, build_collection, export_csv, export_dataset, export_jsonl, matched_summary,
    metrics_for, select, slice_keys, slices, table,
)
from ..consistency import CHECKS
from ..metrics import (
    MAX_FILE_BYTES, SCORE_KIND_LABELS, TooMany, counted, figure_notes, interval_cell, read_labels, read_pairs,
    read_records, video_key,
)
from ..plots import SHORT_LABELS, confusion_figure, probabilities_figure, reliability_figure
from ..results import ScoreResult
from ..settings import ScoreOptions, request_options
from ..video import sample_frames
from . import files
from .render import (
    agreement_html, checks_html, confidence_html, frame_strip, record_reasoning, score_cards, status_html,
)

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v", ".gif"}
METRIC_HEADERS = ["Dimension", "Items", "Exact %", "Within 1 %", "PLCC", "SRCC", "ECE", "Brier"]
STATUS_CHOICES = [("All", "all"), ("Scored", "scored"), ("Failed", "failed")]
AGREEMENT_CHOICES = [("All", "all"), ("With people's labels", "labelled"), ("Agrees with people (gap < 1)", "agrees"),
                     ("Disagrees with people (gap ≥ 1)", "disagrees"), ("Without labels", "unlabelled")]
CHECK_CHOICES = ([("All", ""), ("Any warning", "any"), ("No warning", "none")]
                 + [(f"⚠ {message}", key) for key, message in CHECKS.items()])
# Unstable: some dimension's K answers lie two points apart, or agree less than half the time.
SAMPLING_CHOICES = [("All", "all"), ("Asked K times", "asked"), ("Unstable", "unstable"), ("Stable", "stable")]
EMPTY_DETAIL = "<p class='vs2-status'>Click a row of the table to open that judgement here.</p>"
LET_GO = ("These records were let go (after two idle hours, or to make room: this app holds a bounded amount of "
          "records for all its visitors). Press Load again.")
assert [c[1] for c in STATUS_CHOICES] == list(STATUSES) and [c[1] for c in AGREEMENT_CHOICES] == list(AGREEMENTS)
assert [c[1] for c in SAMPLING_CHOICES] == list(SAMPLINGS)


def video_index(folder: str | Path | None) -> dict[str, str]:
    """The videos under `folder` (the app's --videos), by the name records are matched by."""
    if not folder:
        return {}
    root = Path(folder).resolve()
    index = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file() and path.resolve().is_relative_to(root):
            index.setdefault(video_key(path.name), str(path.resolve()))
    log.info("Explore: %d videos under %s", len(index), root)
    return index


def figure_text(block: dict, name: str, value=None) -> str:
    """A figure as the table shows it: the number and its 95% interval, marked when flagged;
    "undefined" where it cannot be computed (the note says why)."""
    value = block[name] if value is None else value
    if value is None:
        return "undefined" if name in block.get("undefined", {}) else "–"
    text = f"{value:g} {interval_cell(block, name)}".rstrip()
    return f"{FLAG_MARK} {text}" if name in block.get("flags", {}) else text


def metrics_table(report: dict):
    import pandas as pd

    rows = []
    for key in DIMENSIONS:
        m = report["dimensions"][key]
        rows.append([SHORT_LABELS[key], m["n"], *(figure_text(m, k)
                                                   for k in ("exact_acc", "relaxed_acc", "plcc", "srcc", "ece", "brier"))])
    return pd.DataFrame(rows, columns=METRIC_HEADERS)


def metrics_note(report: dict, pairs_given: bool) -> str:
    if not report["n"]:
        return "<p class='vs2-status'>No shown row has people's labels: load a labels file to measure the judge.</p>"
    intervals = ("each figure with its 95% bootstrap interval" if report["ci"] else
                 f"95% intervals are worked out here over at most {MAX_INTERVAL_ROWS:,} rows: narrow the filters, "
                 "or run <code>python -m vs2demo metrics</code>")
    parts = [f"<b>{counted(report['n'], 'labelled item')}</b>, model score: "
             f"{html.escape(SCORE_KIND_LABELS[report['score']])}; {intervals}.",
             f"All three dimensions exact: <b>{html.escape(figure_text(report, 'all_exact_acc'))}</b> %."]
    if report["dropped_missing_score"]:
        parts.append(f"{counted(report['dropped_missing_score'], 'item')} left out: no such score in some dimension "
                     "(as the authors' scripts do).")
    if report["settings_groups"] > 1:
        parts.append("⚠ These rows come from several runs (model or settings): pick one run above.")
    for name, block in (report.get("pairwise") or {}).items():
        figures = [f"{label} {html.escape(figure_text(block, figure, value))}%" for label, figure, value in (
            ("with ties", "acc_with_ties", None), ("without ties", "acc_without_ties", None),
            ("Ties Matter", "ties_matter", block["ties_matter"]["accuracy"]))]
        parts.append(f"Pairwise ({html.escape(name.replace('_', ' '))}, {counted(block['n'], 'pair')}): "
                     + ", ".join(figures) + ".")
    if pairs_given and not report.get("pairwise"):
        parts.append("No pair of the pairs file has both videos among the shown rows.")
    notes = [note for key in DIMENSIONS for note in figure_notes(report["dimensions"][key], SHORT_LABELS[key], FLAG_MARK)]
    notes += figure_notes(report, "", FLAG_MARK)
    notes += [note for name, block in (report.get("pairwise") or {}).items()
              for note in figure_notes(block, f"Pairwise {name.replace('_', ' ')}", FLAG_MARK)]
    listed = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    return "<div class='vs2-verdict'>" + " ".join(parts) + (f"<ul>{listed}</ul>" if listed else "") + "</div>"


def read_record_files(paths: list[str], most_bytes: int) -> tuple[list[ScoreResult], int]:
    """The records of the uploaded files (each checked) and their size in bytes: at most
    MAX_RECORDS and `most_bytes` in all, refused before reading on size and as soon as one record
    too many is read."""
    if not paths:
        raise UserInputError("Upload a records file first (.jsonl, .json or .csv).")
    size = sum(Path(path).stat().st_size for path in paths)
    if size > most_bytes:
        raise UserInputError(f"These files hold {size / 2**20:,.0f} MiB; the tab reads at most {most_bytes / 2**20:,.0f} "
                             "MiB of records at once. Split them, or use `python -m vs2demo metrics` for the figures.")
    records: list[ScoreResult] = []
    for path in paths:
        try:
            records += read_records(path, limit=MAX_RECORDS - len(records))
        except TooMany:
            raise UserInputError(f"More than {MAX_RECORDS:,} records: the tab explores at most that many at once. "
                                 "Split the file, or use `python -m vs2demo metrics` for the figures.") from None
        except UserInputError as exc:
            raise UserInputError(f"{Path(path).name}: {exc}") from None
    return records, size


def read_people(labels_path, pairs_path) -> tuple[list, list | None]:
    """The labels and the preference pairs uploaded beside the records (each optional)."""
    labels = read_labels(files.uploaded_path(labels_path), limit=MAX_RECORDS) if labels_path else []
    pairs = read_pairs(files.uploaded_path(pairs_path)) if pairs_path else None
    return labels, pairs


def row_options(record: ScoreResult, defaults: ScoreOptions) -> ScoreOptions:
    """How to sample a record's video for its row view: the record's fps and frame count within
    the app's own limits (a record may say anything), else the app's defaults."""
    settings = record.settings or {}
    try:
        return request_options(defaults, fps=settings.get("fps", defaults.fps),
                               max_frames=settings.get("max_frames", defaults.max_frames))
    except UserInputError:
        return defaults


def build(store_records: Callable[[], tuple[list[ScoreResult], int]] | None, videos_dir: str | None = None,
          defaults: ScoreOptions = ScoreOptions(), budget_bytes: int = 256 * 2**20) -> LoadedSets:
    """`store_records()`: the app's results store (its newest MAX_RECORDS records and its size; None:
    not offered, see ui.app.store_for_explore); `videos_dir`: the folder of videos the records name;
    `budget_bytes`: the records all sessions together may hold (LoadedSets). Returns the sets, for
    the app to let a session's go when it ends."""
    folder_videos = video_index(videos_dir)
    sets = LoadedSets(budget_bytes)
    with gr.Tab("Explore", id="explore"):
        gr.Markdown("Look through a set of judgements: records from `python -m vs2demo score --out`, `export`, "
                    "Batch or the API, and, to check the judge against people, their labels (a CSV "
                    "`video,visual_quality,text_alignment,physical_consistency`, or VideoScore-Bench-v2's JSON). "
                    "Filter and sort, click a row to open it, read the paper's metrics on what is shown, export it.")
        with gr.Row(equal_height=False):
            records_files = gr.File(label="Records (.jsonl, .json or .csv)", file_count="multiple", height=140,
                                    file_types=[".jsonl", ".json", ".csv"], elem_id="explore-records")
            labels_file = gr.File(label="People's labels (optional)", file_count="single", height=140,
                                  file_types=[".csv", ".json", ".jsonl"], elem_id="explore-labels")
            pairs_file = gr.File(label="Preference pairs (optional: video_a,video_b,preference)", file_count="single",
                                 height=140, file_types=[".csv"], elem_id="explore-pairs")
            videos = gr.File(label="The videos (optional, to watch them)", file_count="multiple", height=140,
                             file_types=["video"], elem_id="explore-videos")
        with gr.Row():
            load = gr.Button("Load", variant="primary", elem_id="explore-load")
            load_store = gr.Button("Load this app's results store", variant="secondary", visible=store_records is not None,
                                   elem_id="explore-load-store")
        summary = gr.HTML(status_html("idle", "Load records to look through."), elem_id="explore-summary")
        with gr.Row():
            search = gr.Textbox(label="Search video names, prompts and rationales", elem_id="explore-search", scale=3)
            status_filter = gr.Dropdown(STATUS_CHOICES, value="all", label="Status", elem_id="explore-status-filter")
            agreement = gr.Dropdown(AGREEMENT_CHOICES, value="all", label="People", elem_id="explore-agreement")
            sort = gr.Dropdown([(label, key) for key, (label, _, _) in SORTS.items()], value="video", label="Sort",
                               elem_id="explore-sort")
        with gr.Row():
            dimension = gr.Dropdown([(SHORT_LABELS[key], key) for key in DIMENSIONS], value="visual_quality",
                                    label="Expected score of", elem_id="explore-dimension")
            low = gr.Slider(1, 5, value=1, step=0.1, label="from", elem_id="explore-low")
            high = gr.Slider(1, 5, value=5, step=0.1, label="to", elem_id="explore-high")
            max_confidence = gr.Slider(0.2, 1, value=1, step=0.05, label="Least sure dimension at most",
                                       elem_id="explore-confidence")
            run = gr.Dropdown([("All runs", "")], value="", label="Run (model and settings)", elem_id="explore-run")
            check = gr.Dropdown(CHECK_CHOICES, value="", label="Words against numbers", elem_id="explore-check")
            sampling = gr.Dropdown(SAMPLING_CHOICES, value="all", label="Asked again K times", elem_id="explore-sampling")
        count = gr.HTML("", elem_id="explore-count")
        with gr.Column(elem_classes="vs2-wide-table"):  # scrolls sideways on a phone (style.css)
            grid = gr.Dataframe(headers=TABLE_HEADERS, label="Judgements", interactive=False, wrap=True, max_height=420,
                                column_widths=["4%", "13%", "21%", "8%", "9%", "8%", "7%", "6%", "9%", "5%", "10%"],
                                elem_id="explore-table")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=300):
                player = gr.Video(label="The video", interactive=False, height=280, elem_id="explore-video")
                frames = gr.Gallery(label="The frames the model saw", columns=6, height=160, object_fit="contain",
                                    elem_id="explore-frames")
            with gr.Column(scale=7, min_width=320):
                head = gr.HTML(EMPTY_DETAIL, elem_id="explore-detail")
                cards = gr.HTML("", elem_id="explore-cards")
                reasoning = gr.HTML("", elem_id="explore-reasoning")
        probs_plot = gr.Plot(label="How sure the model was", visible=False, elem_id="explore-probs")
        settings_view = gr.Code(language="json", label="This record's model and settings", visible=False,
                                elem_id="explore-settings")
        with gr.Accordion("Against people: the paper's metrics on the rows shown", open=True, elem_id="explore-metrics"):
            kind = gr.Radio([(SCORE_KIND_LABELS[k], k) for k in ("expected", "int", "normed")], value="expected",
                            label="Model score", elem_id="explore-kind")
            note = gr.HTML("", elem_id="explore-metrics-note")
            scores_grid = gr.Dataframe(headers=METRIC_HEADERS, interactive=False, elem_id="explore-metrics-table")
            with gr.Row():
                reliability = gr.Plot(label="Calibration", visible=False, elem_id="explore-reliability")
                confusion = gr.Plot(label="Confusion", visible=False, elem_id="explore-confusion")
        with gr.Accordion("Slices: the metrics per group", open=False, elem_id="explore-slices") as slices_panel:
            slice_by = gr.Dropdown([("Prompt", "prompt"), ("Run (model and settings)", "run")], value="prompt",
                                   label="Group the rows shown by (the 50 largest groups; ⚠: a figure over fewer "
                                         "than 30 labelled items, or a correlation over a nearly constant column)",
                                   elem_id="explore-slice-by")
            slice_grid = gr.Dataframe(interactive=False, elem_id="explore-slice-table")
        with gr.Row():
            export_jsonl_button = gr.Button("Export shown rows (JSONL)", size="sm", elem_id="explore-export-jsonl")
            export_csv_button = gr.Button("Export shown rows (CSV)", size="sm", elem_id="explore-export-csv")
            export_dataset_button = gr.Button("Export as a Hugging Face dataset (.zip)", size="sm",
                                              elem_id="explore-export-dataset")
        exported = gr.File(label="Exported", visible=False, elem_id="explore-exported")

        collection = gr.State(None)
        uploaded_videos = gr.State({})
        pairs = gr.State(None)
        # Slices cost a metrics run per group: worked out only while their panel is open.
        slices_open = gr.State(False)

        query_inputs = [search, status_filter, agreement, dimension, low, high, max_confidence, run, sort, check, sampling]

        def query_of(text, status_value, agreement_value, dimension_value, low_value, high_value, confidence, run_value,
                     sort_value, check_value, sampling_value) -> Query:
            return Query(text or "", status_value or "all", agreement_value or "all", dimension_value or "visual_quality",
                         float(low_value), float(high_value), float(confidence), run_value or "", check_value or "",
                         sort_value or "video", sampling_value or "all")

        # A change shows the table first (what the reader is looking at) and then the metrics, plots
        # and slices over the same rows: on 10,000 records those take most of a second more.
        def view_rows(handle: str | None, *query_values):
            current = sets.get(handle)
            if current is None:
                return (status_html("failed", LET_GO) if handle else ""), gr.skip()
            rows = select(current, query_of(*query_values))
            shown = min(len(rows), MAX_SHOWN)
            says = (f"Showing {len(rows):,} of {counted(len(current.records), 'record')}" if len(rows) <= MAX_SHOWN else
                    f"{len(rows):,} of {len(current.records):,} records match; the first {shown:,} are shown "
                    "(narrow the filters or sort to see others; metrics, slices and exports use all of them)")
            return f"<p class='vs2-status'>{says}.</p>", table(current, rows)

        def view_metrics(handle: str | None, kept_pairs, kind_value, slice_value, show_slices, *query_values):
            current = sets.get(handle)
            if current is None:
                return gr.skip(), gr.skip(), gr.update(visible=False), gr.update(visible=False), gr.skip()
            rows = select(current, query_of(*query_values))
            report = metrics_for(current, rows, kind_value or "expected", kept_pairs)
            labelled = report["n"] > 0
            return (metrics_note(report, bool(kept_pairs)), metrics_table(report),
                    gr.update(value=reliability_figure(report) if labelled else None,
                              visible=labelled and any(report["dimensions"][k].get("calibration") for k in DIMENSIONS)),
                    gr.update(value=confusion_figure(report) if labelled else None, visible=labelled),
                    slices(current, rows, slice_value or "prompt", kind_value or "expected") if show_slices else gr.skip())

        rows_outputs = [count, grid]
        rows_inputs = [collection, *query_inputs]
        metrics_outputs = [note, scores_grid, reliability, confusion, slice_grid]
        metrics_inputs = [collection, pairs, kind, slice_by, slices_open, *query_inputs]

        def loaded(current: Collection, size: int, kept_pairs, video_files, request: gr.Request):
            videos_by_name = {}
            for path in video_files or []:
                try:
                    path = files.uploaded_path(path)
                except UserInputError:
                    continue  # not an upload of this app: never opened
                videos_by_name[video_key(Path(path).name)] = path
            runs = sorted(current.frame["run"].unique()) if len(current.records) else []
            choices = [("All runs", "")] + [(name, name) for name in runs]
            slice_choices = slice_keys(current)
            handle = sets.put(request.session_hash or "", current, size)
            return (handle, kept_pairs, videos_by_name, status_html("done", matched_summary(current)),
                    gr.update(choices=choices, value=""), gr.update(choices=slice_choices, value="prompt"))

        load_outputs = [collection, pairs, uploaded_videos, summary, run, slice_by]

        def refused(message: str) -> tuple:
            return (gr.skip(),) * 3 + (status_html("failed", message), gr.skip(), gr.skip())

        def load_files(record_paths, labels_path, pairs_path, video_files, request: gr.Request):
            try:
                paths = [files.uploaded_path(path) for path in record_paths or []]
                records, size = read_record_files(paths, min(MAX_FILE_BYTES, budget_bytes))
                labels, kept_pairs = read_people(labels_path, pairs_path)
                return loaded(build_collection(records, labels), size, kept_pairs, video_files, request)
            except UserInputError as exc:
                return refused(str(exc))

        def load_from_store(labels_path, pairs_path, video_files, request: gr.Request):
            try:
                labels, kept_pairs = read_people(labels_path, pairs_path)
                records, size = store_records() if store_records is not None else ([], 0)
                if not records:
                    raise UserInputError("The results store holds no records yet.")
                return loaded(build_collection(records, labels), size, kept_pairs, video_files, request)
            except UserInputError as exc:
                return refused(str(exc))

        def video_for(record: ScoreResult, videos_by_name: dict) -> str | None:
            key = video_key(record.video)
            return videos_by_name.get(key) or folder_videos.get(key)

        def open_row(handle: str | None, videos_by_name, evt: gr.SelectData):
            current = sets.get(handle)
            if current is None or not evt.row_value:
                return (gr.skip(),) * 7
            try:
                number = int(evt.row_value[0])
                record = current.record(number)
            except (ValueError, IndexError):
                return (gr.skip(),) * 7
            label = current.label_of(record)
            people = ""
            if label is not None:
                people = " · ".join(f"{SHORT_LABELS[key]} {label.scores[key]:g}" for key in DIMENSIONS
                                    if key in label.scores)
                people = f"<div>People: <b>{html.escape(people)}</b></div>"
            heading = (f"<div class='vs2-row-head'><b>{html.escape(record.video)}</b> · {html.escape(record.prompt)}"
                       f"{people}<div class='vs2-status'>{html.escape(record.model)}"
                       f"{' · scored ' + html.escape(record.scored_at) if record.scored_at else ''}</div></div>")
            path = video_for(record, videos_by_name)
            strip = []
            if path is not None:
                options = row_options(record, defaults)
                try:
                    strip = frame_strip(sample_frames(path, fps=options.fps, max_frames=options.max_frames))
                except UserInputError as exc:
                    log.info("Explore: frames of %s not shown: %s", record.video, exc)
            player_update = gr.update(value=path, label=f"{record.video}" if path else
                                      "The video's file is not at hand: upload it above, or start the app with "
                                      "--videos FOLDER")
            has_probs = any(record.scores[key].probs for key in DIMENSIONS)
            return (player_update, strip, heading,
                    score_cards(record.scores, record.overall, final=True) + checks_html(record.checks),
                    # Its tokens coloured by confidence when the record kept them; K answers below.
                    (confidence_html(record) if record.tokens is not None and not record.error else
                     record_reasoning(record)) + agreement_html(record),
                    gr.update(value=probabilities_figure(record) if has_probs else None, visible=has_probs),
                    gr.update(value=json.dumps({"model": record.model, **(record.settings or {})}, indent=2,
                                               ensure_ascii=False), visible=True))

        def export(what: str, handle: str | None, videos_by_name, *query_values):
            current = sets.get(handle)
            if current is None:
                raise gr.Error(LET_GO if handle else "Load records first.", title="Nothing to export",
                               print_exception=False)
            rows = select(current, query_of(*query_values))
            if what == "jsonl":
                return gr.update(value=files.write_download(export_jsonl(current, rows), "explore", ".jsonl"), visible=True)
            if what == "csv":
                return gr.update(value=files.write_download(export_csv(current, rows), "explore", ".csv"), visible=True)
            path = files.download_path("vs2-dataset", ".zip")
            export_dataset(current, rows, lambda record: video_for(record, videos_by_name), path)
            return gr.update(value=path, visible=True)

        private = {"api_visibility": "private"}
        for loading in (load.click(load_files, inputs=[records_files, labels_file, pairs_file, videos],
                                   outputs=load_outputs, **private),
                        load_store.click(load_from_store, inputs=[labels_file, pairs_file, videos], outputs=load_outputs,
                                         **private)):
            loading.success(view_rows, inputs=rows_inputs, outputs=rows_outputs, **private).then(
                view_metrics, inputs=metrics_inputs, outputs=metrics_outputs, **private)
        # What selects the rows: the table, then the metrics. A sort changes only the table's order.
        for control in [status_filter, agreement, dimension, low, high, max_confidence, run, check, sampling]:
            control.change(view_rows, inputs=rows_inputs, outputs=rows_outputs, trigger_mode="always_last",
                           **private).then(view_metrics, inputs=metrics_inputs, outputs=metrics_outputs, **private)
        search.change(view_rows, inputs=rows_inputs, outputs=rows_outputs, trigger_mode="always_last",
                      **private).then(view_metrics, inputs=metrics_inputs, outputs=metrics_outputs, **private)
        sort.change(view_rows, inputs=rows_inputs, outputs=rows_outputs, trigger_mode="always_last", **private)
        for control in (kind, slice_by):
            control.change(view_metrics, inputs=metrics_inputs, outputs=metrics_outputs, trigger_mode="always_last",
                           **private)
        slices_panel.expand(lambda: True, outputs=[slices_open], queue=False, **private).then(
            view_metrics, inputs=metrics_inputs, outputs=metrics_outputs, **private)
        slices_panel.collapse(lambda: False, outputs=[slices_open], queue=False, **private)
        grid.select(open_row, inputs=[collection, uploaded_videos],
                    outputs=[player, frames, head, cards, reasoning, probs_plot, settings_view], **private)
        for button, what in ((export_jsonl_button, "jsonl"), (export_csv_button, "csv"),
                             (export_dataset_button, "dataset")):
            button.click(functools.partial(export, what), inputs=[collection, uploaded_videos, *query_inputs],
                         outputs=[exported], **private)
    return sets
