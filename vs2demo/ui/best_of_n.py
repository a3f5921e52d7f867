"""Best of N: up to 16 candidate videos for one prompt, scored one after another and ranked as
each finishes; the best one plays, a click on a row plays that one, and changing what to rank by
re-ranks without re-scoring.

What the tab shows is one `RankView` at a time (the run's status and the candidates it scored), made
by plain functions: `started` clears the last run's ranking, `scored` adds a candidate, `stopped`
says where a Stop left the run, `reranked` follows a new key. The table, chart, player and downloads
are drawn from the view (`RankOutputs`), so they always show the same candidates. Videos that tie
(ranking.ranked_groups, the rule Compare and the API use) share a place, and none of them is named
the best."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterator

import gradio as gr
import pandas as pd

from .. import DIMENSIONS
from ..errors import UserInputError
from ..plots import SHORT_LABELS, ranking_figure
from ..prompts import clean_prompt
from ..batch import BatchItem
from ..ranking import RANK_KEYS, Standing, listed, standings
from ..results import ScoreResult, score_cells
from ..scoring import ListUpdate, Stage, display_name
from ..settings import ScoreOptions
from ..video import sample_frames
from . import browser, files
from .controls import example_rows, options_from, settings_accordion
from .render import (UpdatePacer, check_model, files_label, progress_message, record_downloads, refusal, status_html,
                     thumbnail_cell, unkept_note)
from .server import PAGE_MODEL_EVENT, cancellable

MAX_CANDIDATES = 16
RANK_CHOICES = [(f"{SHORT_LABELS[key]} (mean of the three expected scores)" if key == "overall" else SHORT_LABELS[key], key)
                for key in RANK_KEYS]
TABLE_HEADERS = ["Rank", "Preview", "Video", *(SHORT_LABELS[key] for key in DIMENSIONS), "Overall", "Error"]
TABLE_TYPES = ["str", "markdown", *["str"] * (len(TABLE_HEADERS) - 2)]
VIDEO_COLUMN = TABLE_HEADERS.index("Video")
PLAYER_LABEL = "Best video (click a row of the ranking to play that one)"
IDLE_MESSAGE = "Upload the candidates, write their prompt, press Rank."


# ---- the candidates and their ranking -----------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """A scored candidate: its upload, the name shown for it, its record and its table picture."""

    path: str
    label: str
    result: ScoreResult
    thumbnail: str = ""


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


def ranked(candidates: tuple[Candidate, ...], by: str) -> list[Standing]:
    """The candidates' standings by `by`, best first (the one tie rule: ranking.standings)."""
    return standings([candidate.result for candidate in candidates], by)


def place_text(standing: Standing) -> str:
    """The table's Rank cell: "2", "1 (tie)", or "–" for a video with no score to rank by."""
    if standing.place is None:
        return "–"
    return f"{standing.place} (tie)" if standing.tied else str(standing.place)


def ranked_table(candidates: tuple[Candidate, ...], by: str) -> pd.DataFrame:
    rows = []
    for standing in ranked(candidates, by):
        candidate = candidates[standing.index]
        rows.append([place_text(standing), candidate.thumbnail, candidate.label, *score_cells(candidate.result),
                     candidate.result.error or ""])
    return pd.DataFrame(rows, columns=TABLE_HEADERS)


def leaders_text(candidates: tuple[Candidate, ...], by: str) -> tuple[list[Candidate], str] | None:
    """Who is first by `by` and how that reads: "the best is a.mp4 (4.00)", "a.mp4 and b.mp4 tie for
    first at 4.00", "all 5 tie at 4.00"; None when none was scored."""
    first = [s for s in ranked(candidates, by) if s.place == 1]
    if not first:
        return None
    who = [candidates[s.index] for s in first]
    value = max(s.value for s in first)
    if len(who) == 1:
        return who, f"the best is {who[0].label} ({value:.2f})"
    scored = sum(1 for s in ranked(candidates, by) if s.place is not None)
    if len(who) == scored:
        return who, f"all {scored} tie at {value:.2f}"
    return who, f"{listed([c.label for c in who])} tie for first at {value:.2f}"


def finished_message(candidates: tuple[Candidate, ...], by: str) -> tuple[str, str]:
    """The status line's state and words for a ranking that is complete (or stopped and re-ranked)."""
    results = [candidate.result for candidate in candidates]
    failed = sum(1 for result in results if result.error)
    first = leaders_text(candidates, by)
    if first is None:
        return "failed", f"None of the {len(results)} videos could be scored: see the error column."
    ranked_count = sum(1 for s in ranked(candidates, by) if s.place is not None)
    message = f"Ranked {ranked_count} videos by {SHORT_LABELS[by].lower()}: {first[1]}."
    if failed:
        message += f" {failed} could not be scored: see the error column."
    return "done", message + unkept_note(results)


def player_update(candidates: tuple[Candidate, ...], by: str):
    """The player under a new ranking: the best candidate (not playing: only a click plays at once),
    or nothing when several tie for first, as none of them is the best."""
    first = leaders_text(candidates, by)
    if first is None:
        return gr.update(value=None, label=PLAYER_LABEL)
    who, words = first
    if len(who) > 1:
        return gr.update(value=None, label=f"By {SHORT_LABELS[by].lower()}, {words}: click a row to play one.")
    return gr.update(value=who[0].path, label=f"By {SHORT_LABELS[by].lower()}, {words}. Click a row to play another.",
                     autoplay=False)


def candidate_to_play(candidates: tuple[Candidate, ...], by: str, row: int, row_value: list | None):
    """The player's update for a click on row `row` of the ranking: that candidate, labelled with its
    place. The row's own Video cell decides which one (the reader may have sorted the table), and the
    row number only when the cell is missing."""
    order = ranked(candidates, by)
    label = row_value[VIDEO_COLUMN] if row_value and len(row_value) > VIDEO_COLUMN else None
    by_label = [at for at, standing in enumerate(order) if candidates[standing.index].label == label]
    at = by_label[0] if by_label else row
    if not 0 <= at < len(order):
        return gr.skip()
    standing = order[at]
    candidate = candidates[standing.index]
    if standing.place is None:
        where = "not ranked: see its error"
    else:
        tied = "tied " if standing.tied else ""
        where = f"{tied}#{standing.place} by {SHORT_LABELS[by].lower()} ({standing.value:.2f})"
    return gr.update(value=candidate.path, label=f"Playing {candidate.label}, {where}", autoplay=True)


# ---- what the tab shows -------------------------------------------------------------------------

@dataclass(frozen=True)
class RankView:
    """What the Best of N tab shows, as plain values: the status line and the candidates this run
    has scored, ranked by `by`; `total` videos in the run; `running` while it goes on."""

    status: str
    candidates: tuple[Candidate, ...] = ()
    by: str = "overall"
    total: int = 0
    running: bool = False


def started(labels: list[str], by: str) -> RankView:
    """A run's first view: the last run's ranking is gone."""
    return RankView(status_html("busy", progress_message(1, len(labels), labels[0])), by=by, total=len(labels),
                    running=True)


def progressed(view: RankView, step: ListUpdate, label: str) -> RankView:
    update = step.update
    message = ("Waiting for the model to load…" if update is not None and update.stage is Stage.LOADING else
               progress_message(step.position, view.total, label, update))
    return replace(view, status=status_html("busy", message))


def scored(view: RankView, candidate: Candidate, next_label: str | None) -> RankView:
    """The view with one more candidate ranked; the status names the next one, if any."""
    count = len(view.candidates) + 1
    message = progress_message(count + 1, view.total, next_label) if next_label else "Ranking…"
    return replace(view, status=status_html("busy", message), candidates=view.candidates + (candidate,))


def finished(view: RankView) -> RankView:
    return replace(view, status=status_html(*finished_message(view.candidates, view.by)), running=False)


def stopped(view: RankView | None) -> RankView | None:
    """Where a Stop left the run: the ranking shows the candidates scored before it. None when no run
    was going on (Stop stops nothing, and a finished ranking must not read as stopped)."""
    if view is None or not view.running:
        return None
    done = len(view.candidates)
    message = (f"Stopped after {done} of {view.total} videos: the ranking shows the {done} scored." if done else
               "Stopped before any video was scored.")
    return replace(view, status=status_html("idle", message), running=False)


def reranked(view: RankView | None, by: str) -> RankView | None:
    """The same candidates by another key: the table, chart, player and status all follow it (a
    running view keeps its progress line). None when there is nothing to re-rank."""
    if view is None or view.by == by:
        return None
    view = replace(view, by=by)
    if view.running or not view.candidates:
        return view
    return replace(view, status=status_html(*finished_message(view.candidates, by)))


def rank_views(score_many: Callable[..., Iterator[ListUpdate]], paths: list[str], prompt: str, options: ScoreOptions,
               by: str) -> Iterator[RankView]:
    """One run's views, from its first (which clears the last run's ranking) to its last."""
    labels = unique_labels([display_name(path) for path in paths])
    items = [BatchItem(display_name(path), path, prompt) for path in paths]
    thumbnails: dict[int, str] = {}  # position -> the table's picture, from the frames the model saw
    pacer = UpdatePacer()
    view = started(labels, by)
    yield view
    for step in score_many(items, options):
        position, update = step.position, step.update
        if update is not None:
            if update.stage is Stage.SAMPLED and update.video is not None:
                thumbnails[position] = thumbnail_cell(update.video.frames[len(update.video.frames) // 2])
            if not pacer.skip(update):
                view = progressed(view, step, labels[position - 1])
                yield view
            continue
        record = step.results[-1]
        thumbnail = thumbnails.get(position)
        if thumbnail is None and not record.error:  # from the results store: not sampled this time
            thumbnail = thumbnail_from_file(paths[position - 1])
        view = scored(view, Candidate(paths[position - 1], labels[position - 1], record, thumbnail or ""),
                      labels[position] if position < len(paths) else None)
        yield view
    yield finished(view)


def checked_request(paths, prompt_text, settings) -> tuple[list[str], str, ScoreOptions]:
    """The uploads, the prompt and the options of a run, or a gr.Error (a toast) saying what to fix."""
    paths = [str(path) for path in paths or []]
    if not paths:
        raise refusal("Nothing to rank", "Upload the candidate videos first.")
    if len(paths) > MAX_CANDIDATES:
        raise refusal("Too many videos", f"{len(paths)} videos were uploaded; Best of N ranks at most {MAX_CANDIDATES} "
                      f"at a time. Remove {len(paths) - MAX_CANDIDATES} of them (or use the Batch tab) and press Rank again.")
    try:
        options = options_from(*settings)
        return [files.uploaded_path(path) for path in paths], clean_prompt(prompt_text, template=options.template), options
    except UserInputError as exc:
        raise refusal("Cannot rank these videos", str(exc)) from None


# ---- the page -----------------------------------------------------------------------------------

@dataclass
class RankOutputs:
    """The components a RankView is shown in, and the view itself (a gr.State)."""

    status: gr.HTML
    table: gr.Dataframe
    chart: gr.Plot
    player: gr.Video
    csv: gr.DownloadButton
    json: gr.DownloadButton
    view: gr.State

    def components(self) -> list:
        return [self.status, self.table, self.chart, self.player, self.csv, self.json, self.view]

    def updates(self, view: RankView, before: RankView | None = None) -> dict:
        """The updates that show `view`; with `before` (what the page shows), only what changed. The
        ranking's parts are drawn together from the view's candidates, never one without the others."""
        shown = {self.view: view}
        if before is None or view.status != before.status:
            shown[self.status] = view.status
        if before is None or (view.candidates, view.by) != (before.candidates, before.by):
            shown.update(self.ranking(view))
        return shown

    def ranking(self, view: RankView) -> dict:
        candidates, by = view.candidates, view.by
        csv, json = record_downloads([candidates[s.index].result for s in ranked(candidates, by)], "best-of-n")
        if not candidates:
            return {self.table: empty_table(), self.chart: gr.update(value=None, visible=False),
                    self.player: gr.update(value=None, label=PLAYER_LABEL), self.csv: csv, self.json: json}
        scored_any = any(standing.place is not None for standing in ranked(candidates, by))
        chart = ranking_figure([c.result for c in candidates], [c.label for c in candidates], by)
        return {self.table: ranked_table(candidates, by),
                self.chart: gr.update(value=chart, visible=True) if scored_any else gr.update(value=None, visible=False),
                self.player: player_update(candidates, by), self.csv: csv, self.json: json}


def empty_table() -> pd.DataFrame:
    return pd.DataFrame([], columns=TABLE_HEADERS)


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
            with gr.Column(scale=7, min_width=300):
                status = gr.HTML(status_html("idle", IDLE_MESSAGE), elem_id="best-of-n-status",
                                 js_on_load=browser.UNPLAYABLE_JS)
                player = gr.Video(label=PLAYER_LABEL, interactive=False, height=300, elem_id="best-of-n-best",
                                  elem_classes=[browser.PLAYER_CLASS])
        with gr.Column(elem_classes="vs2-wide-table"):  # scrolls sideways on a phone (style.css)
            # Read-only, with no cell to edit: a tap on a row plays that candidate.
            table = gr.Dataframe(empty_table(), headers=TABLE_HEADERS, datatype=TABLE_TYPES, label="Ranking",
                                 interactive=False, wrap=True,
                                 column_widths=["8%", "10%", "17%", "12%", "12%", "12%", "8%", "21%"],
                                 elem_id="best-of-n-table")
        chart = gr.Plot(label="Ranking", visible=False, elem_id="best-of-n-chart")
        with gr.Row():
            csv_download = gr.DownloadButton("Download the ranking (CSV)", visible=False, elem_id="best-of-n-csv")
            json_download = gr.DownloadButton("Download the records (JSON)", visible=False, elem_id="best-of-n-json")
        outputs = RankOutputs(status, table, chart, player, csv_download, json_download, gr.State(None))
        wire(outputs, score_many, model_status, run, stop, rank_by, [candidates, prompt, rank_by, *controls.inputs()])
        candidates.change(lambda paths: gr.update(label=files_label(candidates_label, paths)), inputs=[candidates],
                          outputs=[candidates], queue=False, api_visibility="private")


def wire(outputs: RankOutputs, score_many, model_status, run: gr.Button, stop: gr.Button, rank_by: gr.Dropdown,
         inputs: list) -> None:
    """The run (after a check that may refuse it), its Stop, re-ranking and a click on a row."""

    def check(paths, prompt_text, by, *settings):
        """Refuse a run that cannot start in an event of its own, with no outputs: an error
        raised by the run itself would cover the uploads' last ranking with error badges."""
        checked_request(paths, prompt_text, settings)
        check_model(model_status)

    @cancellable
    def rank_videos(paths, prompt_text, by, *settings):
        paths, prompt_clean, options = checked_request(paths, prompt_text, settings)
        before = None
        for view in rank_views(score_many, paths, prompt_clean, options, by):
            # The last view goes whole: it repairs a browser that lost one of the quick updates
            # (videos failing in a burst).
            yield outputs.updates(view, before if view.running else None)
            before = view

    def show(view: RankView | None, before: RankView | None):
        return [gr.skip()] * len(outputs.components()) if view is None else outputs.updates(view, before)

    def play(view: RankView | None, evt: gr.SelectData):
        if view is None or not view.candidates:
            return gr.skip()
        return candidate_to_play(view.candidates, view.by, evt.index[0], evt.row_value)

    # On a phone the status sits under the inputs and examples: bring it into view, or Rank seems to do nothing.
    run.click(None, js=browser.scroll_into_view("#best-of-n-status"))
    # The check is queued (its gr.Error shows as a toast only then) but never waits for the model.
    event = run.click(check, inputs=inputs, outputs=None, concurrency_limit=None, api_visibility="private").success(
        rank_videos, inputs=inputs, outputs=outputs.components(), **PAGE_MODEL_EVENT, api_visibility="private")
    # The run ranks by the key chosen when it started; if it was changed meanwhile, follow it now.
    event.then(lambda view, by: show(reranked(view, by), view), inputs=[outputs.view, rank_by],
               outputs=outputs.components(), api_visibility="private")
    rank_by.change(lambda view, by: show(reranked(view, by), view), inputs=[outputs.view, rank_by],
                   outputs=outputs.components(), api_visibility="private")
    # The player sits above the table: bring it into view, or the click seems to do nothing.
    outputs.table.select(play, inputs=[outputs.view], outputs=[outputs.player], api_visibility="private").then(
        None, js=browser.scroll_into_view("#best-of-n-best"))
    # The message follows the cancel: said together, a last update of the run can overwrite it.
    stop.click(None, cancels=[event], api_visibility="private", queue=False).then(
        lambda view: show(stopped(view), view), inputs=[outputs.view], outputs=outputs.components(),
        api_visibility="private", queue=False)
