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
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable

import gradio as gr
import pandas as pd

from .. import DIMENSIONS
from ..errors import UserInputError
from ..explore import (
    AGREEMENTS, FLAG_MARK, MAX_INTERVAL_ROWS, MAX_RECORDS, MAX_SHOWN, SAMPLINGS, SORTS, STATUSES, TABLE_HEADERS,
    Collection, LoadedSets, Query, build_collection, export_csv, export_dataset, export_jsonl, matched_summary,
    metrics_for, select, slice_keys, slices, table,
)
from ..consistency import CHECKS
from ..labels import with_stored
from ..metrics import SCORE_KIND_LABELS, counted, figure_notes, interval_cell, read_labels, read_pairs, video_key
from ..records_io import MAX_FILE_BYTES, TooMany, read_records
from ..plots import SHORT_LABELS, confusion_figure, probabilities_figure, reliability_figure
from ..results import ScoreResult
from ..runs import run_labels
from ..settings import ScoreOptions, request_options
from ..video import sample_frames
from . import attention_view, explore_runs, files, labelling
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


def metrics_table(report: dict) -> pd.DataFrame:
    figures = ("exact_acc", "relaxed_acc", "plcc", "srcc", "ece", "brier")
    rows = [[SHORT_LABELS[key], m["n"], *(figure_text(m, name) for name in figures)]
            for key, m in ((key, report["dimensions"][key]) for key in DIMENSIONS)]
    return pd.DataFrame(rows, columns=METRIC_HEADERS)


def metrics_note(report: dict, pairs_given: bool, intervals_pending: bool = False) -> str:
    if not report["n"]:
        return "<p class='vs2-status'>No shown row has people's labels: load a labels file to measure the judge.</p>"
    intervals = ("each figure with its 95% bootstrap interval" if report["ci"] else
                 "their 95% intervals follow in a moment" if intervals_pending else
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


def read_record_files(paths: list[str], most_bytes: int,
                      sources: list | None = None) -> tuple[list[ScoreResult], int]:
    """The records of the uploaded files (each checked) and their size in bytes: at most
    MAX_RECORDS and `most_bytes` in all, refused before reading on size and as soon as one record
    too many is read. `sources`, when given, gets (file name, records read) of each file."""
    if not paths:
        raise UserInputError("Upload a records file first (.jsonl, .json or .csv).")
    size = sum(Path(path).stat().st_size for path in paths)
    if size > most_bytes:
        raise UserInputError(f"These files hold {size / 2**20:,.0f} MiB; the tab reads at most {most_bytes / 2**20:,.0f} "
                             "MiB of records at once. Split them, or use `python -m vs2demo metrics` for the figures.")
    records: list[ScoreResult] = []
    for path in paths:
        try:
            found = read_records(path, limit=MAX_RECORDS - len(records))
        except TooMany:
            raise UserInputError(f"More than {MAX_RECORDS:,} records: the tab explores at most that many at once. "
                                 "Split the file, or use `python -m vs2demo metrics` for the figures.") from None
        except UserInputError as exc:
            raise UserInputError(f"{Path(path).name}: {exc}") from None
        records += found
        if sources is not None:
            sources.append((Path(path).name, len(found)))
    return records, size


def read_people(ctx: ExploreContext, session: str, labels_path, pairs_path) -> tuple[list, list | None, str]:
    """The labels and the preference pairs uploaded beside the records (each optional); with the
    labels, those kept in the store that this session may see (the file's win for the same video),
    and a note saying so."""
    labels = read_labels(files.uploaded_path(labels_path), limit=MAX_RECORDS) if labels_path else []
    pairs = read_pairs(files.uploaded_path(pairs_path)) if pairs_path else None
    labels, note = with_stored(labels, ctx.desk.visible(session)) if ctx.desk is not None else (labels, "")
    return labels, pairs, note


def row_options(record: ScoreResult, defaults: ScoreOptions) -> ScoreOptions:
    """How to sample a record's video for its row view: the record's fps and frame count within
    the app's own limits (a record may say anything), else the app's defaults."""
    settings = record.settings or {}
    try:
        return request_options(defaults, fps=settings.get("fps", defaults.fps),
                               max_frames=settings.get("max_frames", defaults.max_frames))
    except UserInputError:
        return defaults



# ---- the tab's logic: plain values in, named views out ------------------------------------------------

# The filters, by the names of Query's fields: the controls are wired in this order.
QUERY_FIELDS = tuple(field.name for field in fields(Query))


def query_of(values) -> Query:
    """The filters' values, in QUERY_FIELDS' order, as a Query; a cleared control (None, "") gives its default."""
    defaults = Query()
    named = {}
    for name, value in zip(QUERY_FIELDS, values):
        default = getattr(defaults, name)
        named[name] = default if value is None or value == "" else type(default)(value)
    return Query(**named)


@dataclass(frozen=True)
class ExploreContext:
    """What the tab's handlers share: the sets held for every session, the videos of --videos, the
    app's options, the most bytes of records one load may read, and the results store's records
    (None: not offered)."""

    sets: LoadedSets
    folder_videos: dict[str, str]
    defaults: ScoreOptions
    most_bytes: int
    store_records: Callable[[], tuple[list[ScoreResult], int]] | None = None
    desk: labelling.LabelDesk | None = None  # people's labels in the store (None: labelling is off)


@dataclass(frozen=True)
class RowsView:
    """The count line and the table; `table` None: the set was let go, the table stays as it is."""

    count: str
    table: pd.DataFrame | None


@dataclass(frozen=True)
class MetricsView:
    """The metrics against people on the shown rows; `slices` None: not worked out (their panel is shut)."""

    note: str
    table: pd.DataFrame
    reliability: object | None = None  # a plotly figure, or None: hidden
    confusion: object | None = None
    slices: pd.DataFrame | None = None


@dataclass(frozen=True)
class RowDetail:
    """One opened row: its video (a path at hand, or None), the frames the model saw, the heading,
    the cards, the reasoning, p(1..5) (None: hidden) and its settings as JSON (None: hidden)."""

    video: str | None = None
    video_label: str = "The video"
    frames: tuple = ()
    head: str = EMPTY_DETAIL
    cards: str = ""
    reasoning: str = ""
    probs: object | None = None
    settings: str | None = None
    attention: str = ""  # where it looked (attention_view), when the record has attention


CLOSED_ROW = RowDetail()
# Shown from the moment a set is loaded until its metrics are worked out (most of a second on 10,000).
PENDING_METRICS = MetricsView("<p class='vs2-status'>Working out the metrics…</p>",
                              pd.DataFrame([], columns=METRIC_HEADERS), slices=pd.DataFrame([]))


@dataclass(frozen=True)
class LoadView:
    """A set just loaded, and the whole view it owns: the old set's rows, opened row, metrics and
    export go in the same update."""

    handle: str
    pairs: list | None
    videos_by_name: dict[str, str]
    summary: str
    runs: list[tuple[str, str]]
    slice_choices: list[tuple[str, str]]
    rows: RowsView
    detail: RowDetail = CLOSED_ROW
    metrics: MetricsView = PENDING_METRICS


def rows_view(current: Collection | None, query: Query, handle: str | None) -> RowsView:
    if current is None:
        return RowsView(status_html("failed", LET_GO) if handle else "", None)
    rows = select(current, query)
    shown = min(len(rows), MAX_SHOWN)
    says = (f"Showing {len(rows):,} of {counted(len(current.records), 'record')}" if len(rows) <= MAX_SHOWN else
            f"{len(rows):,} of {len(current.records):,} records match; the first {shown:,} are shown "
            "(narrow the filters or sort to see others; metrics, slices and exports use all of them)")
    return RowsView(f"<p class='vs2-status'>{says}.</p>", table(current, rows))


def metrics_view(current: Collection, query: Query, kind: str, pairs, slice_by: str, show_slices: bool,
                 intervals: bool = True) -> MetricsView:
    rows = select(current, query)
    report = metrics_for(current, rows, kind or "expected", pairs, intervals)
    labelled = report["n"] > 0
    calibrated = labelled and any(report["dimensions"][key].get("calibration") for key in DIMENSIONS)
    pending = not intervals and len(rows) <= MAX_INTERVAL_ROWS
    return MetricsView(metrics_note(report, bool(pairs), pending), metrics_table(report),
                       reliability_figure(report) if calibrated else None,
                       confusion_figure(report) if labelled else None,
                       slices(current, rows, slice_by or "prompt", kind or "expected") if show_slices else None)


def shown_metrics(ctx: ExploreContext, intervals: bool, handle, pairs, kind, slice_by, show_slices,
                  *query_values) -> tuple:
    """The metrics outputs over the session's shown rows (the plots hidden when its set was let go)."""
    current = ctx.sets.get(handle)
    view = None if current is None else metrics_view(current, query_of(query_values), kind, pairs, slice_by,
                                                     show_slices, intervals)
    return ordered(METRICS_OUT, metrics_shown(view))


def loaded_view(sets: LoadedSets, session: str, current: Collection, size: int, pairs, videos_by_name: dict,
                query: Query, note: str = "") -> LoadView:
    """Holds `current` for the session (in place of its last set) and gives the view it owns;
    `note` says what else was loaded (the labels kept in the store)."""
    handle = sets.put(session, current, size)
    runs = sorted(current.frame["run"].unique()) if len(current.records) else []
    summary = matched_summary(current) + (f" With them: {note}." if note else "")
    return LoadView(handle, pairs, videos_by_name, status_html("done", summary),
                    [("All runs", "")] + [(name, name) for name in runs], slice_keys(current),
                    rows_view(current, replace(query, run=""), handle))  # the run list is the new set's


def uploaded_videos(video_files) -> dict[str, str]:
    """The videos uploaded in the tab, by the name records are matched by; nothing else is opened."""
    videos_by_name = {}
    for path in video_files or []:
        try:
            path = files.uploaded_path(path)
        except UserInputError:
            continue  # not an upload of this app: never opened
        videos_by_name[video_key(Path(path).name)] = path
    return videos_by_name


def load_files(ctx: ExploreContext, session: str, record_paths, labels_path, pairs_path, video_files,
               query: Query) -> LoadView:
    """The uploaded records (and labels, pairs, videos) as the session's set; UserInputError says why not."""
    paths = [files.uploaded_path(path) for path in record_paths or []]
    sources: list[tuple[str, int]] = []
    records, size = read_record_files(paths, ctx.most_bytes, sources)
    labels, pairs, note = read_people(ctx, session, labels_path, pairs_path)
    # Two files of one run (another judge's records, the same model twice) stay two runs.
    collection = build_collection(records, labels, run_labels(records, sources))
    return loaded_view(ctx.sets, session, collection, size, pairs, uploaded_videos(video_files), query, note)


def load_store(ctx: ExploreContext, session: str, labels_path, pairs_path, video_files, query: Query) -> LoadView:
    labels, pairs, note = read_people(ctx, session, labels_path, pairs_path)
    records, size = ctx.store_records() if ctx.store_records is not None else ([], 0)
    if not records:
        raise UserInputError("The results store holds no records yet.")
    return loaded_view(ctx.sets, session, build_collection(records, labels), size, pairs, uploaded_videos(video_files),
                       query, note)


def video_for(ctx: ExploreContext, record: ScoreResult, videos_by_name: dict) -> str | None:
    key = video_key(record.video)
    return videos_by_name.get(key) or ctx.folder_videos.get(key)


def row_number(row_value) -> int | None:
    """The record's number in a clicked row (its first cell)."""
    try:
        return int(row_value[0]) if row_value else None
    except (TypeError, ValueError):
        return None


def row_heading(current: Collection, record: ScoreResult) -> str:
    label = current.label_of(record)
    people = ""
    if label is not None:
        people = " · ".join(f"{SHORT_LABELS[key]} {label.scores[key]:g}" for key in DIMENSIONS if key in label.scores)
        people = f"<div>People: <b>{html.escape(people)}</b></div>"
    return (f"<div class='vs2-row-head'><b>{html.escape(record.video)}</b> · {html.escape(record.prompt)}"
            f"{people}<div class='vs2-status'>{html.escape(record.model)}"
            f"{' · scored ' + html.escape(record.scored_at) if record.scored_at else ''}</div></div>")


def row_frames(path: str | None, record: ScoreResult, defaults: ScoreOptions) -> tuple:
    """The frames the model saw, sampled again from the file at hand (none without one)."""
    if path is None:
        return ()
    options = row_options(record, defaults)
    try:
        return tuple(frame_strip(sample_frames(path, fps=options.fps, max_frames=options.max_frames)))
    except UserInputError as exc:
        log.info("Explore: frames of %s not shown: %s", record.video, exc)
        return ()


def row_detail(ctx: ExploreContext, current: Collection | None, number: int | None, videos_by_name: dict) -> RowDetail | None:
    """The opened row `number` of the set; None: no such row (the click changes nothing)."""
    if current is None or number is None or not 0 <= number < len(current.records):
        return None
    record = current.record(number)
    path = video_for(ctx, record, videos_by_name)
    return RowDetail(
        video=path,
        video_label=record.video if path else ("The video's file is not at hand: upload it above, or start the app "
                                               "with --videos FOLDER"),
        frames=row_frames(path, record, ctx.defaults), head=row_heading(current, record),
        cards=score_cards(record.scores, record.overall, final=True) + checks_html(record.checks),
        # Its tokens coloured by confidence when the record kept them; K answers below.
        reasoning=(confidence_html(record) if record.tokens is not None and not record.error else
                   record_reasoning(record)) + agreement_html(record),
        probs=probabilities_figure(record) if any(record.scores[key].probs for key in DIMENSIONS) else None,
        settings=json.dumps({"model": record.model, **(record.settings or {})}, indent=2, ensure_ascii=False),
        attention=attention_view.attention_html(record, attention_view.EXPLORE_PLAYER))


def export_file(ctx: ExploreContext, what: str, current: Collection, query: Query, videos_by_name: dict) -> str:
    """The shown rows as a file to download: "jsonl", "csv" or "dataset" (a zip the Hub's viewer reads)."""
    rows = select(current, query)
    if what == "jsonl":
        return files.write_download(export_jsonl(current, rows), "explore", ".jsonl")
    if what == "csv":
        return files.write_download(export_csv(current, rows), "explore", ".csv")
    path = files.download_path("vs2-dataset", ".zip")
    export_dataset(current, rows, lambda record: video_for(ctx, record, videos_by_name), path)
    return path


# ---- views as what each output shows, by name ----------------------------------------------------------

ROWS_OUT = ("count", "grid")
METRICS_OUT = ("note", "metrics", "reliability", "confusion", "slices")
DETAIL_OUT = ("player", "frames", "head", "cards", "reasoning", "probs", "settings", "attention")
LOAD_OUT = ("collection", "pairs", "videos_by_name", "summary", "run", "slice_by", *ROWS_OUT, *DETAIL_OUT,
            *METRICS_OUT, "exported")


def rows_shown(view: RowsView) -> dict:
    return {"count": view.count, **({} if view.table is None else {"grid": view.table})}


def metrics_shown(view: MetricsView | None) -> dict:
    """None: the set was let go: the plots go, the rest stays."""
    if view is None:
        return {"reliability": gr.update(visible=False), "confusion": gr.update(visible=False)}
    out = {"note": view.note, "metrics": view.table,
           "reliability": gr.update(value=view.reliability, visible=view.reliability is not None),
           "confusion": gr.update(value=view.confusion, visible=view.confusion is not None)}
    return out if view.slices is None else {**out, "slices": view.slices}


def detail_shown(view: RowDetail) -> dict:
    return {"player": gr.update(value=view.video, label=view.video_label), "frames": list(view.frames),
            "head": view.head, "cards": view.cards, "reasoning": view.reasoning,
            "probs": gr.update(value=view.probs, visible=view.probs is not None),
            "settings": gr.update(value=view.settings or "", visible=view.settings is not None),
            "attention": view.attention}


def load_shown(view: LoadView) -> dict:
    return {"collection": view.handle, "pairs": view.pairs, "videos_by_name": view.videos_by_name,
            "summary": view.summary, "run": gr.update(choices=view.runs, value=""),
            "slice_by": gr.update(choices=view.slice_choices, value="prompt"), **rows_shown(view.rows),
            **detail_shown(view.detail), **metrics_shown(view.metrics), "exported": gr.update(value=None, visible=False)}


def ordered(names: tuple[str, ...], named: dict) -> tuple:
    """A handler's return in its outputs' order; an output `named` leaves out stays as it is."""
    return tuple(named[name] if name in named else gr.skip() for name in names)


# ---- layout and wiring -------------------------------------------------------------------------------

def build(store_records: Callable[[], tuple[list[ScoreResult], int]] | None, videos_dir: str | None = None,
          defaults: ScoreOptions = ScoreOptions(), budget_bytes: int = 256 * 2**20,
          desk: labelling.LabelDesk | None = None) -> LoadedSets:
    """`store_records()`: the app's results store (its newest MAX_RECORDS records and its size; None:
    not offered, see ui.app.store_for_explore); `videos_dir`: the folder of videos the records name;
    `budget_bytes`: the records all sessions together may hold (LoadedSets); `desk`: where people's
    labels are kept (None: no labelling panel). Returns the sets, for the app to let a session's go
    when it ends."""
    ctx = ExploreContext(LoadedSets(budget_bytes), video_index(videos_dir), defaults,
                         min(MAX_FILE_BYTES, budget_bytes), store_records, desk)
    with gr.Tab("Explore", id="explore"):
        gr.Markdown("Look through a set of judgements: records from `python -m vs2demo score --out`, `export`, "
                    "Batch or the API, and, to check the judge against people, their labels (a CSV "
                    "`video,visual_quality,text_alignment,physical_consistency`, or VideoScore-Bench-v2's JSON). "
                    "Filter and sort, click a row to open it, read the paper's metrics on what is shown, export it.")
        ui = {**sources(store_records is not None), **filters(), **table_area(),
              **row_area(functools.partial(labelling.panel, "explore") if desk else None), **metrics_area(),
              **export_area()}
        ui.update(collection=gr.State(None), pairs=gr.State(None), videos_by_name=gr.State({}),
                  # Slices cost a metrics run per group: worked out only while their panel is open.
                  slices_open=gr.State(False))
        wire(ui, ctx)
        explore_runs.build(ui, ctx)  # two runs side by side, generators ranked: under the rest
        if desk:
            labelling.wire_explore(ui, ctx)
    return ctx.sets


def sources(store_offered: bool) -> dict:
    with gr.Row(equal_height=False):
        records = gr.File(label="Records (.jsonl, .json or .csv)", file_count="multiple", height=140,
                          file_types=[".jsonl", ".json", ".csv"], elem_id="explore-records")
        labels = gr.File(label="People's labels (optional)", file_count="single", height=140,
                         file_types=[".csv", ".json", ".jsonl"], elem_id="explore-labels")
        pairs_file = gr.File(label="Preference pairs (optional: video_a,video_b,preference)", file_count="single",
                             height=140, file_types=[".csv"], elem_id="explore-pairs")
        videos = gr.File(label="The videos (optional, to watch them)", file_count="multiple", height=140,
                         file_types=["video"], elem_id="explore-videos")
    with gr.Row():
        load = gr.Button("Load", variant="primary", elem_id="explore-load")
        load_store = gr.Button("Load this app's results store", variant="secondary", visible=store_offered,
                               elem_id="explore-load-store")
    summary = gr.HTML(status_html("idle", "Load records to look through."), elem_id="explore-summary")
    return {"records": records, "labels": labels, "pairs_file": pairs_file, "videos": videos, "load": load,
            "load_store": load_store, "summary": summary}


def filters() -> dict:
    """The filters, by the names of Query's fields."""
    with gr.Row():
        text = gr.Textbox(label="Search video names, prompts and rationales", elem_id="explore-search", scale=3)
        status = gr.Dropdown(STATUS_CHOICES, value="all", label="Status", elem_id="explore-status-filter")
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
    named = {"text": text, "status": status, "agreement": agreement, "dimension": dimension, "low": low, "high": high,
             "max_confidence": max_confidence, "run": run, "check": check, "sort": sort, "sampling": sampling}
    assert tuple(named) == QUERY_FIELDS
    return named


def table_area() -> dict:
    count = gr.HTML("", elem_id="explore-count")
    with gr.Column(elem_classes="vs2-wide-table"):  # scrolls sideways on a phone (style.css)
        grid = gr.Dataframe(headers=TABLE_HEADERS, label="Judgements", interactive=False, wrap=True, max_height=420,
                            column_widths=["4%", "13%", "21%", "8%", "9%", "8%", "7%", "6%", "9%", "5%", "10%"],
                            elem_id="explore-table", elem_classes=["vs2-readonly-table", "vs2-opens-rows"])
    return {"count": count, "grid": grid}


def row_area(beside_player: Callable[[], dict] | None = None) -> dict:
    """The open row; `beside_player` builds what goes right under the video (the labelling panel)."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=300):
            player = gr.Video(label="The video", interactive=False, height=280, elem_id="explore-video")
            under_player = beside_player() if beside_player else {}
            frames = gr.Gallery(label="The frames the model saw", columns=6, height=160, object_fit="contain",
                                elem_id="explore-frames")
            attention = gr.HTML("", elem_id="explore-attention", js_on_load=attention_view.SEEK_JS)
        with gr.Column(scale=7, min_width=320):
            head = gr.HTML(EMPTY_DETAIL, elem_id="explore-detail")
            cards = gr.HTML("", elem_id="explore-cards")
            reasoning = gr.HTML("", elem_id="explore-reasoning")
    probs = gr.Plot(label="How sure the model was", visible=False, elem_id="explore-probs")
    settings = gr.Code(language="json", label="This record's model and settings", visible=False,
                       elem_id="explore-settings")
    return {"player": player, "frames": frames, "head": head, "cards": cards, "reasoning": reasoning, "probs": probs,
            "settings": settings, "attention": attention, **under_player}


def metrics_area() -> dict:
    with gr.Accordion("Against people: the paper's metrics on the rows shown", open=True, elem_id="explore-metrics"):
        kind = gr.Radio([(SCORE_KIND_LABELS[k], k) for k in ("expected", "int", "normed")], value="expected",
                        label="Model score", elem_id="explore-kind")
        note = gr.HTML("", elem_id="explore-metrics-note")
        metrics = gr.Dataframe(headers=METRIC_HEADERS, interactive=False, elem_id="explore-metrics-table",
                               elem_classes=["vs2-readonly-table"])
        with gr.Row():
            reliability = gr.Plot(label="Calibration", visible=False, elem_id="explore-reliability")
            confusion = gr.Plot(label="Confusion", visible=False, elem_id="explore-confusion")
    with gr.Accordion("Slices: the metrics per group", open=False, elem_id="explore-slices") as slices_panel:
        slice_by = gr.Dropdown([("Prompt", "prompt"), ("Run (model and settings)", "run")], value="prompt",
                               label="Group the rows shown by (the 50 largest groups; ⚠: a figure over fewer "
                                     "than 30 labelled items, or a correlation over a nearly constant column)",
                               elem_id="explore-slice-by")
        slices_table = gr.Dataframe(interactive=False, elem_id="explore-slice-table",
                                    elem_classes=["vs2-readonly-table"])
    return {"kind": kind, "note": note, "metrics": metrics, "reliability": reliability, "confusion": confusion,
            "slices_panel": slices_panel, "slice_by": slice_by, "slices": slices_table}


def export_area() -> dict:
    with gr.Row():
        jsonl = gr.Button("Export shown rows (JSONL)", size="sm", elem_id="explore-export-jsonl")
        csv = gr.Button("Export shown rows (CSV)", size="sm", elem_id="explore-export-csv")
        dataset = gr.Button("Export as a Hugging Face dataset (.zip)", size="sm", elem_id="explore-export-dataset")
    exported = gr.File(label="Exported", visible=False, elem_id="explore-exported")
    return {"export_jsonl": jsonl, "export_csv": csv, "export_dataset": dataset, "exported": exported}


def wire(ui: dict, ctx: ExploreContext) -> None:
    """Each handler reads its inputs by name and returns its view in its outputs' order."""
    def components(names) -> list:
        return [ui[name] for name in names]

    def loader(load_set, given: int):
        """A Load button's handler: its `given` uploads, then the filters."""
        def load(request: gr.Request, *values):
            try:
                view = load_set(ctx, request.session_hash or "", *values[:given], query_of(values[given:]))
            except UserInputError as exc:
                return ordered(LOAD_OUT, {"summary": status_html("failed", str(exc))})
            return ordered(LOAD_OUT, load_shown(view))
        return load

    # A change shows the table first (what the reader is looking at) and then the metrics, plots
    # and slices over the same rows: on 10,000 records those take most of a second more.
    def show_rows(handle, *query_values):
        return ordered(ROWS_OUT, rows_shown(rows_view(ctx.sets.get(handle), query_of(query_values), handle)))

    def open_row(evt: gr.SelectData, handle, videos_by_name):
        view = row_detail(ctx, ctx.sets.get(handle), row_number(evt.row_value), videos_by_name)
        return ordered(DETAIL_OUT, {} if view is None else detail_shown(view))

    def export(what: str, handle, videos_by_name, *query_values):
        current = ctx.sets.get(handle)
        if current is None:
            raise gr.Error(LET_GO if handle else "Load records first.", title="Nothing to export", print_exception=False)
        return gr.update(value=export_file(ctx, what, current, query_of(query_values), videos_by_name), visible=True)

    filters_in = components(QUERY_FIELDS)
    rows_event = {"fn": show_rows, "inputs": [ui["collection"], *filters_in], "outputs": components(ROWS_OUT)}
    metrics_event = {"fn": functools.partial(shown_metrics, ctx, True), "outputs": components(METRICS_OUT),
                     "inputs": components(("collection", "pairs", "kind", "slice_by", "slices_open")) + filters_in}
    private = {"api_visibility": "private"}
    for button, load_set, uploads in (("load", load_files, ("records", "labels", "pairs_file", "videos")),
                                      ("load_store", load_store, ("labels", "pairs_file", "videos"))):
        ui[button].click(loader(load_set, len(uploads)), inputs=components(uploads) + filters_in,
                         outputs=components(LOAD_OUT), **private).then(**metrics_event, **private)
    # What selects the rows: the table, then the metrics. A sort changes only the table's order.
    for name in QUERY_FIELDS:
        changed = ui[name].change(**rows_event, trigger_mode="always_last", **private)
        if name != "sort":
            changed.then(**metrics_event, **private)
    for name in ("kind", "slice_by"):
        ui[name].change(**metrics_event, trigger_mode="always_last", **private)
    ui["slices_panel"].expand(lambda: True, outputs=[ui["slices_open"]], queue=False, **private).then(
        **metrics_event, **private)
    ui["slices_panel"].collapse(lambda: False, outputs=[ui["slices_open"]], queue=False, **private)
    ui["grid"].select(open_row, inputs=components(("collection", "videos_by_name")), outputs=components(DETAIL_OUT),
                      **private)
    for what in ("jsonl", "csv", "dataset"):
        ui[f"export_{what}"].click(functools.partial(export, what), inputs=components(("collection", "videos_by_name"))
                                   + filters_in, outputs=[ui["exported"]], **private)
