"""Evaluate: one video and its prompt; the reasoning streams, then scores, plots and the frames.

The tab's logic is plain functions over an `EvaluateView`, what every output of the tab shows for one
run: `start` (a new run clears every output of the last), `on_update` (a streamed update), `on_result`
(the record), `on_stop` (Stop, at any moment) and `refused` (a request refused before it ran).
`changes` says what the page must change to go from one view to the next. The Gradio handlers only
feed the stream through these; the view they last showed is kept in a gr.State on the server, so that
Stop and the colouring work on what the run itself showed, not on the page's values, which may lag
behind the stream."""

from __future__ import annotations

import time
from dataclasses import dataclass, fields, replace
from typing import Iterator, Sequence

import gradio as gr

from ..errors import UserInputError
from ..parsing import parse
from ..plots import probabilities_figure, scores_figure
from ..results import ScoreResult
from ..scoring import ScoreUpdate, Stage
from ..settings import SAMPLES_RANGE, ScoreOptions
from . import attention_view, files, labelling, prompt_check
from .controls import example_rows, options_from, settings_accordion
from .render import (
    UpdatePacer, agreement_html, checks_html, confidence_html, frame_strip, partial_scores, progress_status,
    reasoning_html, record_download, samples_live_html, score_cards, stats_html, status_html, stopped_view,
    toast_message,
)
from .server import PAGE_MODEL_EVENT, cancellable

FRAMES_LABEL = "Frames the model saw"
STORED_FRAMES_LABEL = f"{FRAMES_LABEL}: not read again for a stored result (Score again reads them)"
ASK_AGAIN_RANGE = (SAMPLES_RANGE[0] + 1, SAMPLES_RANGE[1])
IDLE_MESSAGE = "Upload a video, write its prompt, press Evaluate."
REFUSED_TITLE = "Cannot evaluate this video"

# On a phone the status line and the result are far below the buttons (under K samples, the options
# and the examples): a run brings them into view. The width is the stylesheet's phone width.
SHOW_STATUS_JS = """() => {
  if (window.innerWidth <= 640) document.getElementById('evaluate-status')?.scrollIntoView({behavior: 'smooth'});
}"""

# While the reasoning is written, the page follows its newest line (the panel grows with the text, so
# the page is what scrolls), unless the reader scrolled away from it; scrolling back down to it
# follows again. Run by Gradio once the panel is on the page (`element` is the panel, `watch` calls
# back after each new value is rendered).
FOLLOW_NEWEST_LINE_JS = """
let follow = true, ours = null;
const below = () => element.getBoundingClientRect().bottom + 12 - window.innerHeight;
window.addEventListener('scroll', () => {
  if (ours !== null && Math.abs(window.scrollY - ours) < 2) return;  // the scroll this script made
  ours = null;
  follow = below() <= 48;  // the reader's scroll: follow while the newest line is (about) in view
}, {passive: true});
watch('value', () => {
  if (!element.querySelector('.vs2-reasoning.writing')) { follow = true; return; }  // the next run follows
  const by = below();
  if (follow && by > 0) { window.scrollBy(0, by); ours = window.scrollY; }
});
"""


@dataclass(frozen=True)
class EvaluateView:
    """What each output of the tab shows, and where the run that shows it stands."""

    status: str = status_html("idle", IDLE_MESSAGE)  # its class: idle, busy, done, failed
    cards: str = score_cards(None)
    reasoning: str = reasoning_html(None, state="empty")
    stats: str = ""
    samples: str = ""  # the K answers' panel; empty: hidden
    frames: tuple = ()  # (thumbnail, caption) of each frame the model saw
    frames_label: str = FRAMES_LABEL
    record: ScoreResult | None = None  # this run's record: its plots, download, colouring, prompt check
    again: bool = False  # "Score again" offered: the record came from the results store
    toast: str | None = None  # why the request was refused, for a warning toast
    run: int = 0  # runs started in this session: a new one also clears the prompt check
    state: str = "idle"  # idle, busy, done, failed, stopped
    asked: int = 1  # answers asked for (K)
    clock: float | None = None  # when the model began on the frames (time.perf_counter)
    thought_s: float | None = None  # how long the reasoning took, once it is closed
    latest: ScoreUpdate | None = None  # the last update with text (its frames dropped)


# ---- what the tab shows, as plain functions --------------------------------------------------------

def start(previous: EvaluateView | None, asked: int = 1) -> EvaluateView:
    """A new run's first view: every output of the last run cleared, so nothing of it can pass for
    this run's, and its record is no longer offered."""
    return EvaluateView(status=status_html("busy", progress_status(None)), run=(previous.run if previous else 0) + 1,
                        state="busy", asked=asked)


def on_update(view: EvaluateView, update: ScoreUpdate, now: float) -> EvaluateView:
    """The view after one streamed update; `now` is time.perf_counter()."""
    status = status_html("busy", progress_status(update))
    if update.stage is Stage.SAMPLED:
        strip = tuple(frame_strip(update.video)) if update.video is not None else ()
        return replace(view, status=status, stats=stats_html(update=update), frames=strip, clock=now)
    if update.stage is not Stage.GENERATING:
        return replace(view, status=status)
    clock = view.clock if view.clock is not None else now
    thought_s = view.thought_s
    if thought_s is None and update.parsed is not None and update.parsed.thinking_done:
        thought_s = now - clock
    return replace(view, status=status, cards=score_cards(partial_scores(update.parsed)),
                   reasoning=reasoning_html(update.parsed, thought_s if thought_s is not None else now - clock),
                   samples=samples_live_html(update.samples) if update.samples else view.samples,
                   clock=clock, thought_s=thought_s, latest=replace(update, video=None))


def on_result(view: EvaluateView, result: ScoreResult, colour: bool = False) -> EvaluateView:
    """The view once the record is in; the reasoning coloured by confidence when `colour`."""
    if result.error and not result.text:  # nothing was written: what went wrong, and no score
        return replace(view, state="failed", status=status_html("failed", result.error),
                       cards=score_cards(None, final=True), toast=result.error, latest=None)
    failed = bool(result.error or result.store_error)
    view = replace(view, state="failed" if failed else "done", status=status_html("failed" if failed else "done",
                   result_message(result)), record=result, again=result.stored, latest=None,
                   cards=score_cards(result.scores, result.overall, final=True) + checks_html(result.checks),
                   stats=stats_html(result=result), samples=agreement_html(result))
    if result.stored:  # not sampled again: no frames to show, and the label says why
        view = replace(view, frames=(), frames_label=STORED_FRAMES_LABEL)
    return coloured(view, colour)


def on_stop(view: EvaluateView, now: float) -> EvaluateView:
    """The view after Stop: what the run had shown, made calm (no "waiting…", no "Writing…"). A view
    whose run had ended is returned as it is: Stop stops nothing then."""
    if view.state != "busy":
        return view
    if view.latest is not None and view.latest.text:
        elapsed = view.thought_s if view.thought_s is not None else now - (view.clock or now)
        reasoning = reasoning_html(view.latest.parsed, elapsed, "stopped")
        message = ("Stopped. What the answers had written is kept below." if view.asked > 1 else
                   "Stopped. What the model had written is kept above.")
    else:
        reasoning = view.reasoning
        message = ("Stopped before the model wrote anything." if view.clock is not None else
                   "Stopped before the model began: nothing was scored.")
    cards, _ = stopped_view(view.cards, "")
    return replace(view, state="stopped", status=status_html("idle", message), cards=cards, reasoning=reasoning)


def refused(view: EvaluateView, message: str) -> EvaluateView:
    """A request refused before it ran (no video, a wrong option): nothing is cleared, and a result
    still shown is named as the last one evaluated, not this request's."""
    if view.record is not None and view.state != "busy":
        message += f" The result below is still the last one evaluated, of {view.record.video}."
    return replace(view, status=status_html("failed", message), toast=message)


def coloured(view: EvaluateView, colour: bool) -> EvaluateView:
    """The record's reasoning, plain or coloured by how sure the model was of each token."""
    result = view.record
    if result is None:
        return view
    if colour and result.tokens is not None:
        return replace(view, reasoning=confidence_html(result))
    elapsed = view.thought_s if view.thought_s is not None else result.timings.get("generate_s", 0.0)
    return replace(view, reasoning=reasoning_html(parse(result.text), elapsed, "done", text=result.text,
                                                  note=result.error or ""))


def result_message(result: ScoreResult) -> str:
    if result.stored:
        when = result.scored_at or ""  # ISO: shown as `2026-11-26 16:32 UTC`
        when = f"{when[:10]} {when[11:16]} UTC" if len(when) >= 16 else "an earlier run"
        message = (f"From the results store: this video, prompt, model and settings were scored on "
                   f"{when}. Press “Score again” to ask the model anew. {result.error or ''}").strip()
    elif result.error:
        message = result.error  # what went wrong and what to try; not "Done"
    else:
        message = f"Done in {result.timings.get('total_s', 0):.1f} s."
    return f"{message} ⚠ {result.store_error}" if result.store_error else message


def request_options(settings: Sequence, asked: int = 1, attention: bool = False) -> ScoreOptions:
    """The Scoring options' values as checked options; asking K times means sampling, whatever the
    decoding control says."""
    options = options_from(*settings)
    if attention:
        options = options.with_changes(attention=True)
    if asked > 1:
        options = options.with_changes(samples=asked, do_sample=True)
    return options.validated()


def evaluation(score, previous: EvaluateView, video_path, prompt_text: str, settings: Sequence, colour: bool = False,
               refresh: bool = False, asked: int = 1, clock=time.perf_counter,
               attention: bool = False) -> Iterator[EvaluateView]:
    """The views of one run, paced (render.UpdatePacer): `score(video, prompt, options, refresh=)` is
    scoring.Scorer.score's stream."""
    try:
        path = files.uploaded_path(video_path) if video_path else None
        options = request_options(settings, asked, attention)
    except UserInputError as exc:
        yield refused(previous, str(exc))
        return
    view = start(previous, asked)
    yield view
    pacer = UpdatePacer()
    for update in score(path, prompt_text, options, refresh=refresh):
        if isinstance(update, ScoreResult):
            yield on_result(view, update, colour)
            return
        view = on_update(view, update, clock())
        if not pacer.skip(update):
            yield view


# ---- the page ------------------------------------------------------------------------------------

@dataclass
class EvaluateOutputs:
    """The tab's output components, by the names `changes` uses; `view` holds the view shown."""

    status: gr.HTML
    cards: gr.HTML
    reasoning: gr.HTML
    colour: gr.Checkbox
    stats: gr.HTML
    samples: gr.HTML
    scores_plot: gr.Plot
    probs_plot: gr.Plot
    frames: gr.Gallery
    download: gr.DownloadButton
    again: gr.Button
    check_status: gr.HTML
    check_table: gr.HTML
    attention: gr.HTML
    frames_check_offer: gr.Row
    frames_check_status: gr.HTML
    frames_check_table: gr.HTML
    view: gr.State

    def all(self) -> list:
        return [getattr(self, field.name) for field in fields(self)]

    def updates(self, view: EvaluateView, old: EvaluateView | None) -> dict:
        """The component updates that show `view` where `old` was shown (everything when old is None)."""
        return {getattr(self, name): value for name, value in changes(old, view).items()} | {self.view: view}


def changes(old: EvaluateView | None, new: EvaluateView) -> dict:
    """By output name, what the page must change to show `new` where it shows `old` (every output of
    the tab when `old` is None; the prompt check is cleared when a new run begins). Only what changed
    is sent: each output re-sent costs the page a render, and the plots and frames most."""
    out = {name: getattr(new, name) for name in ("status", "cards", "reasoning", "stats")
           if old is None or getattr(old, name) != getattr(new, name)}
    if old is None or old.samples != new.samples:
        out["samples"] = gr.update(value=new.samples, visible=bool(new.samples))
    new_record = old is None or old.record is not new.record
    # The frames again with the record: the page was seen to drop an update that set the strip alone,
    # and the finished view must not depend on an earlier update.
    if new_record or old.frames is not new.frames or old.frames_label != new.frames_label:
        out["frames"] = gr.update(value=list(new.frames), label=new.frames_label)
    if new_record:
        out |= record_outputs(new.record)
    if old is None or old.again != new.again:
        out["again"] = gr.update(visible=new.again)
    if old is not None and old.run != new.run:
        out["check_status"], out["check_table"] = prompt_check.cleared()
        out["frames_check_status"] = out["frames_check_table"] = ""  # what they showed was of the last run
    return out


def record_outputs(record: ScoreResult | None) -> dict:
    """The outputs that show a record: its plots (none without a score: empty axes would read as
    zeros), its download and the colouring box (when it kept token probabilities)."""
    scored = record is not None and any(dim.score is not None for dim in record.scores.values())
    return {"scores_plot": gr.update(value=scores_figure(record) if scored else None, visible=scored),
            "probs_plot": gr.update(value=probabilities_figure(record) if scored else None, visible=scored),
            "download": gr.update(value=record_download(record) if record is not None else None,
                                  visible=record is not None),
            "colour": gr.update(visible=record is not None and record.tokens is not None),
            **attention_view.record_outputs(record)}


def shown_on_page(outputs: EvaluateOutputs, views: Iterator[EvaluateView], shown: EvaluateView) -> Iterator[dict]:
    """A run's views as component updates, each against the one before."""
    for view in views:
        if view.toast:
            # A warning toast, not gr.Error: an error would stamp every output with an "Error" badge.
            gr.Warning(toast_message(REFUSED_TITLE, view.toast), title=REFUSED_TITLE)
        yield outputs.updates(view, shown)
        shown = view


def stopped(outputs: EvaluateOutputs, view: EvaluateView, status_now: str) -> dict:
    """After Stop has cancelled the run: the whole view of that run, made calm. When the run had
    already ended and the page shows its end, nothing changes."""
    calm = on_stop(view, time.perf_counter())
    if calm is view and "vs2-status busy" not in (status_now or ""):
        return {component: gr.skip() for component in outputs.all()}
    return outputs.updates(calm, None)


def recoloured(outputs: EvaluateOutputs, view: EvaluateView, colour: bool) -> dict:
    if view.record is None:
        return {outputs.reasoning: gr.skip(), outputs.view: gr.skip()}
    view = coloured(view, colour)
    return {outputs.reasoning: view.reasoning, outputs.view: view}


def build(score, defaults: ScoreOptions, desk: labelling.LabelDesk | None = None, backend: str = "transformers") -> None:
    """`score(video, prompt, options, refresh=False)`: scoring.Scorer.score's stream; `desk`: where
    people's labels are kept (None: no labelling panel under the result); `backend`: the one it runs
    on (attention is offered on transformers only)."""
    with gr.Tab("Evaluate", id="evaluate"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=320):
                video, prompt, run, stop, again, samples_k, ask, controls = inputs_column(defaults, backend)
            with gr.Column(scale=7, min_width=420):
                status = gr.HTML(EvaluateView.status, elem_id="evaluate-status")
                cards = gr.HTML(EvaluateView.cards, elem_id="evaluate-cards")
                # Open while it streams and after; folding it is the reader's choice (the server never
                # sets the accordion's state).
                with gr.Accordion("The model's reasoning", open=True, elem_id="evaluate-reasoning"):
                    colour = gr.Checkbox(False, label="Colour it by how sure the model was of each token",
                                         visible=False, elem_id="evaluate-coloured")
                    reasoning = gr.HTML(EvaluateView.reasoning, elem_id="evaluate-thinking",
                                        js_on_load=FOLLOW_NEWEST_LINE_JS)
                stats = gr.HTML(elem_id="evaluate-stats")
                samples = gr.HTML(visible=False, elem_id="evaluate-samples")
        with gr.Row():
            scores_plot = gr.Plot(label="Scores", elem_id="evaluate-scores-plot", visible=False)
            probs_plot = gr.Plot(label="Probabilities", elem_id="evaluate-probs-plot", visible=False)
        frames = gr.Gallery(label=FRAMES_LABEL, columns=8, height=210, object_fit="contain",
                            allow_preview=True, elem_id="evaluate-frames")
        view = gr.State(EvaluateView())
        looked = attention_view.build(score, video, controls, view)  # where it looked, under the frames
        download = gr.DownloadButton("Download the result record (JSON)", visible=False, elem_id="evaluate-download")
        label_panel = labelling.panel("evaluate", moves=False) if desk else None
        check = prompt_check.build(score, video, prompt, controls, view)
    outputs = EvaluateOutputs(status, cards, reasoning, colour, stats, samples, scores_plot, probs_plot, frames,
                              download, again, check.status, check.table, looked.attention, looked.offer,
                              looked.status, looked.table, view)
    runs = wire(score, outputs, video, prompt, run, stop, again, samples_k, ask, controls)
    if desk:
        labelling.wire_evaluate(label_panel, desk, view, runs)


def inputs_column(defaults: ScoreOptions, backend: str = "transformers") -> tuple:
    video = gr.Video(label="Video", sources=["upload"], height=300, elem_id="evaluate-video")
    prompt = gr.Textbox(label="Generation prompt", lines=2, max_lines=6, elem_id="evaluate-prompt",
                        placeholder="The text the video was generated from")
    with gr.Row():
        run = gr.Button("Evaluate", variant="primary", elem_id="evaluate-run")
        stop = gr.Button("Stop", variant="secondary", elem_id="evaluate-stop")
        again = gr.Button("Score again", variant="secondary", visible=False, elem_id="evaluate-again")
    # Would it say the same again? K samples at the temperature in Scoring options.
    with gr.Row(equal_height=True):
        samples_k = gr.Slider(*ASK_AGAIN_RANGE, value=4, step=1, label="Ask again K times", scale=3,
                              elem_id="evaluate-samples-k",
                              info="K answers, sampled at the temperature and seed set below")
        ask = gr.Button("Ask K times", variant="secondary", scale=1, elem_id="evaluate-ask")
    controls = settings_accordion(defaults, attention_backend=backend)
    rows = example_rows()
    if rows:
        gr.Examples([[r["path"], r["prompt"]] for r in rows], inputs=[video, prompt],
                    example_labels=[r.get("shows") or r["video"] for r in rows],
                    label="Example clips (made by this project)", cache_examples=False)
    return video, prompt, run, stop, again, samples_k, ask, controls


def wire(score, outputs: EvaluateOutputs, video, prompt, run, stop, again, samples_k, ask, controls) -> list:
    """The tab's events; returns its run events (what ends with a record)."""
    @cancellable
    def evaluate(video_path, prompt_text, colour, view, attention, *settings):
        yield from shown_on_page(outputs, evaluation(score, view, video_path, prompt_text, settings, colour,
                                                     attention=attention), view)

    @cancellable
    def evaluate_again(video_path, prompt_text, colour, view, attention, *settings):
        """The same request, scored anew by the model instead of served from the store."""
        yield from shown_on_page(outputs, evaluation(score, view, video_path, prompt_text, settings, colour,
                                                     refresh=True, attention=attention), view)

    @cancellable
    def ask_again(video_path, prompt_text, colour, view, attention, k, *settings):
        """K samples of the same request, side by side, and how far they agree."""
        yield from shown_on_page(outputs, evaluation(score, view, video_path, prompt_text, settings, colour,
                                                     asked=int(k), attention=attention), view)

    inputs = [video, prompt, outputs.colour, outputs.view, controls.attention]
    # No Gradio progress overlay on the outputs: the status line says where the run stands, and the
    # overlays (a running timer on each of the tab's outputs) kept the page busy from the click to the
    # end, delaying the request itself.
    page = {"outputs": outputs.all(), **PAGE_MODEL_EVENT, "api_visibility": "private", "show_progress": "hidden"}
    events = [run.click(evaluate, inputs=[*inputs, *controls.inputs()], **page),
              prompt.submit(evaluate, inputs=[*inputs, *controls.inputs()], **page),
              again.click(evaluate_again, inputs=[*inputs, *controls.inputs()], **page),
              ask.click(ask_again, inputs=[*inputs, samples_k, *controls.inputs()], **page)]
    for trigger in (run.click, prompt.submit, again.click, ask.click):
        trigger(None, js=SHOW_STATUS_JS, queue=False, api_visibility="private")
    outputs.colour.change(lambda view, colour: recoloured(outputs, view, colour), inputs=[outputs.view, outputs.colour],
                          outputs=[outputs.reasoning, outputs.view], queue=False, api_visibility="private")
    # Cancel first, then say so: a message set by the cancelling event itself can be overwritten by
    # an update already on its way. The stopped view comes from the server's copy of the run's view.
    stop.click(None, cancels=events, api_visibility="private", queue=False).then(
        lambda view, status_now: stopped(outputs, view, status_now), inputs=[outputs.view, outputs.status],
        outputs=outputs.all(), api_visibility="private", queue=False)
    return events
