"""Compare: two to four videos side by side, scored one after another, each reasoning streaming
under its own player; then a grouped chart, the winner of each dimension and a verdict.

What the tab shows is one `CompareView` at a time, made by plain functions (`started`, `progressed`,
`finished`, `stopped`): a run's first view clears everything the last run showed, and a Stop calms
the view of the run it stops, so every part on screen belongs to one run. `build` only lays out
the components and turns views into their updates (`CompareOutputs`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterator

import gradio as gr
import plotly.graph_objects as go

from .. import DIMENSIONS
from ..errors import UserInputError
from ..parsing import ParsedOutput
from ..plots import SHORT_LABELS, comparison_figure
from ..batch import BatchItem
from ..ranking import dimension_winners, listed, ranked_groups, ranking_value
from ..results import ScoreResult
from ..records_io import results_to_json
from ..scoring import ListUpdate, Stage, display_name
from ..settings import ScoreOptions
from . import browser, files, labelling
from .controls import example_rows, options_from, settings_accordion
from .render import (
    UpdatePacer, checks_html, partial_scores, progress_message, reasoning_html, record_reasoning, score_cards,
    status_html, stopped_view, toast_message, unkept_note,
)
from .server import PAGE_MODEL_EVENT, cancellable

SLOTS = 4
PLAY_TOGETHER_JS = """
() => {
  const videos = [...document.querySelectorAll('#compare-players video')];
  videos.forEach(v => { v.currentTime = 0; });
  videos.forEach(v => { v.play(); });
}
"""


# ---- the verdict --------------------------------------------------------------------------------

def videos_named(numbers: list[int]) -> str:
    """"Video 2", "Videos 1 and 3", "Videos 1, 2 and 3" (numbers as on the page, from 1)."""
    if len(numbers) == 1:
        return f"Video {numbers[0]}"
    return "Videos " + listed([str(number) for number in numbers])


def ranking_line(values: tuple[float | None, ...], numbers: list[int]) -> str:
    """"**Video 2 (4.00)**, ahead of Video 1 (3.00, 1.00 behind); Video 3 (1.00, 3.00 behind)", or
    who ties: "Videos 1 and 3 tie at 4.00, ahead of Video 2 (1.00, 3.00 behind)"."""
    groups = ranked_groups(values)
    if not groups:
        return "not scored"

    def best_of(group: list[int]) -> float:
        return max(values[i] for i in group)

    def group_text(group: list[int], behind: float | None = None) -> str:
        who, value = videos_named([numbers[i] for i in group]), f"{best_of(group):.2f}"
        if behind is None:  # the leaders
            return f"{who} tie at {value}" if len(group) > 1 else f"**{who} ({value})**"
        tied = "tied at " if len(group) > 1 else ""
        return f"{who} ({tied}{value}, {behind:.2f} behind)"

    top = groups[0]
    rest = [group_text(group, best_of(top) - best_of(group)) for group in groups[1:]]
    return group_text(top) + (", ahead of " + "; ".join(rest) if rest else "")


def verdict_heading(results: list[ScoreResult], numbers: list[int]) -> str:
    """Who is best overall, by the one tie rule (ranking.ranked_groups): one video, several that tie,
    or why there is no answer."""
    groups = ranked_groups(tuple(ranking_value(result, "overall") for result in results))
    scored = sum(len(group) for group in groups)
    if not groups:
        return "None of the videos could be scored"
    if scored == 1:
        return f"Only {videos_named([numbers[groups[0][0]]])} could be scored"
    top = [numbers[i] for i in groups[0]]
    if len(top) == 1:
        return f"Video {top[0]} is the {'best' if len(results) > 2 else 'better'} video"
    return f"{videos_named(top)} tie" + (" for the best" if len(top) < scored else "")


def verdict_markdown(results: list[ScoreResult], numbers: list[int]) -> str:
    lines = [f"- **{SHORT_LABELS[key]}**: {ranking_line(tuple(ranking_value(r, key) for r in results), numbers)}"
             for key in (*DIMENSIONS, "overall")]
    return "\n".join([f"### Verdict: {verdict_heading(results, numbers)}", *lines])


# ---- what the tab shows -------------------------------------------------------------------------

@dataclass(frozen=True)
class CompareView:
    """Everything the Compare tab shows, as plain values. `slots`: the players compared by the run
    (0-based), in scoring order; `running` while the run goes on (a Stop then has something to stop)."""

    status: str
    cards: tuple[str, ...] = ("",) * SLOTS
    reasoning: tuple[str, ...] = ("",) * SLOTS
    chart: go.Figure | None = None  # hidden while None
    verdict: str = ""
    download: str | None = None  # the records' JSON file; no button while None
    slots: tuple[int, ...] = ()
    names: tuple[str, ...] = ()  # the videos' file names, in scoring order
    running: bool = False
    # Per player, the text being written and for how long (a Stop shows it as stopped there).
    writing: tuple[tuple[ParsedOutput | None, float] | None, ...] = (None,) * SLOTS


IDLE = CompareView(status_html("idle", "Give two to four videos and a prompt, then press Compare."))


def with_slot(values: tuple, slot: int, value) -> tuple:
    return values[:slot] + (value,) + values[slot + 1:]


def refused(view: CompareView | None, message: str) -> CompareView:
    """A run that could not start: the last run's results stay, and the status says why not."""
    return replace(view or IDLE, status=status_html("failed", message), running=False)


def started(slots: tuple[int, ...], names: tuple[str, ...]) -> CompareView:
    """A run's first view: nothing of the last run is left; each player compared waits its turn."""
    cards = tuple(score_cards(None) if slot in slots else "" for slot in range(SLOTS))
    return CompareView(status_html("busy", "Comparing…"), cards=cards, slots=slots, names=names, running=True)


def final_card(result: ScoreResult, best: set[str] | frozenset = frozenset()) -> str:
    return score_cards(result.scores, result.overall, final=True, best=best) + checks_html(result.checks)


def progressed(view: CompareView, step: ListUpdate) -> CompareView:
    """The view after one step of the run: a video's progress, its text so far, or its record."""
    slot = view.slots[step.position - 1]
    status = status_html("busy", progress_message(step.position, step.total, step.name, step.update))
    if step.update is None:  # this video's record is in: the next one is read
        result = step.results[-1]
        if step.position < step.total:
            status = status_html("busy", progress_message(step.position + 1, step.total, view.names[step.position]))
        return replace(view, status=status, cards=with_slot(view.cards, slot, final_card(result)),
                       reasoning=with_slot(view.reasoning, slot, record_reasoning(result)),
                       writing=with_slot(view.writing, slot, None))
    update = step.update
    if update.stage is Stage.GENERATING and update.text:
        return replace(view, status=status,
                       cards=with_slot(view.cards, slot, score_cards(partial_scores(update.parsed))),
                       reasoning=with_slot(view.reasoning, slot, reasoning_html(update.parsed, update.elapsed_s)),
                       writing=with_slot(view.writing, slot, (update.parsed, update.elapsed_s)))
    return replace(view, status=status)


def finished(view: CompareView, results: list[ScoreResult], download: str | None) -> CompareView:
    """The run's last view: every card final (each dimension's lone winner marked), the chart, the
    verdict and the records to download."""
    numbers = [slot + 1 for slot in view.slots]
    failed = sum(1 for result in results if result.error)
    message = (f"Compared {len(results)} videos." + (f" {failed} could not be scored: see under its player." if failed else "")
               + unkept_note(results))
    cards, reasoning = view.cards, view.reasoning
    for slot, result, best in zip(view.slots, results, dimension_winners(results)):
        cards = with_slot(cards, slot, final_card(result, best))
        reasoning = with_slot(reasoning, slot, record_reasoning(result))
    return replace(view, status=status_html("failed" if failed else "done", message), cards=cards, reasoning=reasoning,
                   chart=comparison_figure(results, [f"Video {n}" for n in numbers]),
                   verdict=verdict_markdown(results, numbers), download=download, running=False)


def stopped(view: CompareView | None) -> CompareView | None:
    """The view of the run a Stop ends, made calm (render.stopped_view): what was scored stays, what
    was being written says it stopped. None when no run was going on: Stop stops nothing."""
    if view is None or not view.running:
        return None
    reasoning = tuple(text if writing is None else reasoning_html(writing[0], writing[1], "stopped")
                      for text, writing in zip(view.reasoning, view.writing))
    return replace(view, status=status_html("idle", "Stopped. The videos scored before the Stop keep their results."),
                   cards=tuple(stopped_view(card, "")[0] for card in view.cards), reasoning=reasoning,
                   writing=(None,) * SLOTS, running=False)


def compare_request(paths, own_prompts, shared: str) -> tuple[tuple[int, ...], list[BatchItem]]:
    """The players holding a video, and what to score for each (its own prompt, else the shared one)."""
    slots = tuple(slot for slot, path in enumerate(paths) if path)
    if len(slots) < 2:
        raise UserInputError("Give at least two videos to compare.")
    uploads = [files.uploaded_path(paths[slot]) for slot in slots]
    return slots, [BatchItem(display_name(path), path, (own_prompts[slot] or "").strip() or shared)
                   for slot, path in zip(slots, uploads)]


def compare_views(score_many: Callable[..., Iterator[ListUpdate]], slots: tuple[int, ...], items: list[BatchItem],
                  options: ScoreOptions) -> Iterator[CompareView]:
    """One run's views, from its first (which clears the last run's) to its last."""
    view = started(slots, tuple(item.video for item in items))
    yield view
    results: list[ScoreResult] = []
    pacer = UpdatePacer()
    for step in score_many(items, options):
        if step.update is not None and pacer.skip(step.update):
            continue
        results = step.results if step.update is None else results
        view = progressed(view, step)
        yield view
    yield finished(view, results, files.write_download(results_to_json(results), "comparison", ".json"))


# ---- the page -----------------------------------------------------------------------------------

@dataclass
class CompareOutputs:
    """The components a CompareView is shown in, and the view itself (a gr.State, for Stop)."""

    status: gr.HTML
    cards: list[gr.HTML]
    reasoning: list[gr.HTML]
    chart: gr.Plot
    verdict: gr.Markdown
    download: gr.DownloadButton
    view: gr.State

    def components(self) -> list:
        return [self.status, *self.cards, *self.reasoning, self.chart, self.verdict, self.download, self.view]

    def updates(self, view: CompareView, before: CompareView | None = None) -> dict:
        """The updates that show `view`; with `before` (what the page shows), only what changed."""
        shown = {self.status: view.status, self.verdict: view.verdict, self.view: view,
                 **dict(zip(self.cards, view.cards)), **dict(zip(self.reasoning, view.reasoning))}
        if before is not None:
            old = {self.status: before.status, self.verdict: before.verdict,
                   **dict(zip(self.cards, before.cards)), **dict(zip(self.reasoning, before.reasoning))}
            shown = {component: value for component, value in shown.items() if old.get(component) != value}
        if before is None or view.chart is not before.chart:
            shown[self.chart] = gr.update(value=view.chart, visible=view.chart is not None)
        if before is None or view.download != before.download:
            shown[self.download] = gr.update(value=view.download, visible=view.download is not None)
        return shown


def build(score_many, defaults: ScoreOptions, desk: labelling.LabelDesk | None = None) -> None:
    """`score_many(items, options)`: scoring.Scorer.score_many's stream; `desk`: where people's
    preferences are kept (None: no A/B/tie panel)."""
    with gr.Tab("Compare", id="compare"):
        gr.Markdown("Put two to four videos side by side. They are judged one after another against the "
                    "shared prompt (or each against its own, when you give one under the player).")
        with gr.Row():
            shared_prompt = gr.Textbox(label="Prompt for all videos", lines=1, scale=5, elem_id="compare-prompt")
            run = gr.Button("Compare", variant="primary", scale=1, elem_id="compare-run")
            stop = gr.Button("Stop", scale=1, elem_id="compare-stop")
            play = gr.Button("▶ Play together", scale=1, elem_id="compare-play")
        # The status line next to the buttons, where the eye is after pressing Compare. It also
        # carries the script that says, under a player, that the browser cannot play its file.
        status = gr.HTML(IDLE.status, elem_id="compare-status", js_on_load=browser.UNPLAYABLE_JS)
        videos, prompts, cards, reasoning = [], [], [], []
        with gr.Row(elem_id="compare-players", equal_height=False):
            for slot in range(SLOTS):
                with gr.Column(min_width=220, elem_classes=["vs2-compact"]):
                    videos.append(gr.Video(label=f"Video {slot + 1}", sources=["upload"], height=220,
                                           elem_id=f"compare-video-{slot}", elem_classes=[browser.PLAYER_CLASS]))
                    prompts.append(gr.Textbox(label="Own prompt (optional)", lines=1, elem_id=f"compare-prompt-{slot}"))
                    cards.append(gr.HTML(elem_id=f"compare-cards-{slot}"))
                    reasoning.append(gr.HTML(elem_id=f"compare-thinking-{slot}"))
        with gr.Row(equal_height=False, elem_id="compare-result"):
            chart = gr.Plot(label="Side by side", visible=False, elem_id="compare-chart", scale=3, min_width=300)
            verdict = gr.Markdown(elem_id="compare-verdict", elem_classes=["vs2-verdict"], min_height=0)
        download = gr.DownloadButton("Download the records (JSON)", visible=False, elem_id="compare-download")
        preference = labelling.pair_panel("compare") if desk else None
        controls = settings_accordion(defaults)
        rows = example_rows()
        if len(rows) >= 2:
            gr.Examples([[rows[0]["path"], rows[1]["path"], rows[0]["prompt"]]] +
                        ([[rows[i]["path"], rows[i + 1]["path"], rows[i]["prompt"]] for i in range(2, len(rows) - 1, 2)]),
                        inputs=[videos[0], videos[1], shared_prompt], label="Example pairs", cache_examples=False)
        outputs = CompareOutputs(status, cards, reasoning, chart, verdict, download, gr.State(None))
        event = wire(outputs, score_many, run, stop, play, [*videos, *prompts, shared_prompt, *controls.inputs()])
        if desk:
            labelling.wire_compare(preference, desk, outputs.view, prompts, shared_prompt, event)


def wire(outputs: CompareOutputs, score_many, run: gr.Button, stop: gr.Button, play: gr.Button, inputs: list):
    """The run, its Stop and Play together; returns the run's event."""

    @cancellable
    def run_compare(*values):
        paths, own_prompts = values[:SLOTS], values[SLOTS:2 * SLOTS]
        shared, settings, previous = values[2 * SLOTS], values[2 * SLOTS + 1:-1], values[-1]
        try:
            slots, items = compare_request(paths, own_prompts, shared)
            options = options_from(*settings)
        except UserInputError as exc:
            gr.Warning(toast_message("Cannot compare", str(exc)), title="Cannot compare")
            yield outputs.updates(refused(previous, str(exc)), previous)
            return
        before = None
        for view in compare_views(score_many, slots, items, options):
            # The last view goes whole: the browser can drop one of several updates that arrive
            # within milliseconds, and must not keep a stale card.
            yield outputs.updates(view, None if not view.running else before)
            before = view

    def stop_compare(view: CompareView | None):
        calm = stopped(view)
        return [gr.skip()] * len(outputs.components()) if calm is None else outputs.updates(calm)

    # On a phone the players come next: bring the status under the buttons into view if it is not.
    run.click(None, js=browser.scroll_into_view("#compare-status"))
    event = run.click(run_compare, inputs=[*inputs, outputs.view], outputs=outputs.components(),
                      **PAGE_MODEL_EVENT, api_visibility="private")
    # Cancel first, then calm the view: said together, a last update of the run can overwrite it.
    stop.click(None, cancels=[event], api_visibility="private", queue=False).then(
        stop_compare, inputs=[outputs.view], outputs=outputs.components(), api_visibility="private", queue=False)
    play.click(None, js=PLAY_TOGETHER_JS, api_visibility="private")
    return event
