"""Evaluate: one video and its prompt; the reasoning streams, then scores, plots and the frames."""

from __future__ import annotations

import time

import gradio as gr

from ..errors import UserInputError
from ..parsing import parse
from ..plots import probabilities_figure, scores_figure
from ..results import ScoreResult
from ..settings import SAMPLES_RANGE, ScoreOptions
from . import files, prompt_check
from .controls import DECODING_CHOICES, example_rows, options_from, settings_accordion
from .render import (
    agreement_html, checks_html, confidence_html, frame_strip, samples_live_html, partial_scores, reasoning_html, record_download, score_cards, stats_html, status_html, toast_message,
    UpdatePacer, stopped_view, waiting_message,
)
from .server import PAGE_MODEL_EVENT, cancellable


FRAMES_LABEL = "Frames the model saw"
ASK_AGAIN_RANGE = (SAMPLES_RANGE[0] + 1, SAMPLES_RANGE[1])


def build(score, defaults: ScoreOptions) -> None:
    """`score(video, prompt, options, refresh=False)`: scoring.Scorer.score's stream."""
    with gr.Tab("Evaluate", id="evaluate"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=320):
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
                controls = settings_accordion(defaults)
                rows = example_rows()
                if rows:
                    gr.Examples([[r["path"], r["prompt"]] for r in rows], inputs=[video, prompt],
                                example_labels=[r.get("shows") or r["video"] for r in rows],
                                label="Example clips (made by this project)", cache_examples=False)
            with gr.Column(scale=7, min_width=420):
                status = gr.HTML(status_html("idle", "Upload a video, write its prompt, press Evaluate."), elem_id="evaluate-status")
                cards = gr.HTML(score_cards(None), elem_id="evaluate-cards")
                # Open while it streams and after; folding it is the reader's choice (the server never
                # sets the accordion's state).
                with gr.Accordion("The model's reasoning", open=True, elem_id="evaluate-reasoning"):
                    coloured = gr.Checkbox(False, label="Colour it by how sure the model was of each token",
                                           visible=False, elem_id="evaluate-coloured")
                    thinking = gr.HTML(reasoning_html(None, state="empty"), elem_id="evaluate-thinking")
                stats = gr.HTML(elem_id="evaluate-stats")
                samples_panel = gr.HTML(visible=False, elem_id="evaluate-samples")
        with gr.Row():
            scores_plot = gr.Plot(label="Scores", elem_id="evaluate-scores-plot", visible=False)
            probs_plot = gr.Plot(label="Probabilities", elem_id="evaluate-probs-plot", visible=False)
        frames = gr.Gallery(label=FRAMES_LABEL, columns=8, height=210, object_fit="contain",
                            allow_preview=True, elem_id="evaluate-frames")
        download = gr.DownloadButton("Download the result record (JSON)", visible=False, elem_id="evaluate-download")
        last_result = gr.State(None)  # the last record shown, for "Does the prompt matter?"
        prompt_check.build(score, video, prompt, controls, last_result)

        outputs = [status, cards, thinking, stats, scores_plot, probs_plot, frames, download, again, last_result,
                   coloured, samples_panel]

        def evaluate_stream(video_path, prompt_text, settings, refresh: bool, colour: bool = False, samples: int = 1):
            started = time.perf_counter()
            thought_s = None
            strip = None  # the frames shown since "sampled"; sent again with the result
            pacer = UpdatePacer()
            shown_cards = None
            try:
                path = files.uploaded_path(video_path) if video_path else None
                if samples > 1:  # asking again means sampling, whatever the decoding radio says
                    settings = list(settings)
                    settings[3] = DECODING_CHOICES[1]
                options = options_from(*settings).with_changes(samples=samples).validated()
            except UserInputError as exc:
                yield refused(str(exc))
                return
            yield {status: status_html("busy", "Reading the video…"), again: gr.update(visible=False)}
            for update in score(path, prompt_text, options, refresh=refresh):
                if isinstance(update, ScoreResult):
                    yield finished(update, started, thought_s, strip, colour)
                    return
                if update.stage == "loading":
                    yield {status: status_html("busy", "Waiting for the model to load…")}
                elif update.stage == "waiting":
                    yield {status: status_html("busy", waiting_message(update.ahead).capitalize() + "…")}
                elif update.stage == "sampled":
                    started = time.perf_counter()
                    strip = frame_strip(update.video)
                    yield {status: status_html("busy", "The model is looking at the frames…"), cards: score_cards(None),
                           thinking: reasoning_html(None, 0.0), stats: stats_html(update=update), scores_plot: gr.update(visible=False),
                           probs_plot: gr.update(visible=False),
                           frames: gr.update(value=strip, label=FRAMES_LABEL),
                           download: gr.update(visible=False), coloured: gr.update(visible=False),
                           samples_panel: gr.update(value="", visible=samples > 1)}
                else:
                    parsed = update.parsed
                    if parsed is not None and parsed.thinking_done and thought_s is None:
                        thought_s = time.perf_counter() - started
                    if pacer.skip(update):
                        continue
                    elapsed = thought_s if thought_s is not None else time.perf_counter() - started
                    view = {status: status_html("busy", f"The model is writing… {update.new_tokens} tokens"),
                            thinking: reasoning_html(parsed, elapsed), stats: stats_html(update=update)}
                    shown = score_cards(partial_scores(parsed))
                    if shown != shown_cards:  # the cards only when a score has appeared
                        view[cards] = shown_cards = shown
                    if update.samples:
                        # Visible again with each update: the page may drop the one that showed it.
                        view[samples_panel] = gr.update(value=samples_live_html(update.samples), visible=True)
                    yield view

        def refused(message: str) -> dict:
            # A warning toast and the status line, not gr.Error: an error would stamp every output with
            # an "Error" badge, and the inputs are fine to keep.
            gr.Warning(toast_message("Cannot evaluate this video", message), title="Cannot evaluate this video")
            return {status: status_html("failed", message)}

        def finished(result: ScoreResult, started: float, thought_s: float | None, strip, colour: bool) -> dict:
            if result.error and not result.text:  # nothing was scored: the inputs, the last result stay
                return refused(result.error)
            elapsed = thought_s if thought_s is not None else result.timings.get("generate_s", time.perf_counter() - started)
            scored = any(dim.score is not None for dim in result.scores.values())
            if result.stored:
                message = (f"From the results store: this video, prompt, model and settings were scored on "
                           f"{stored_when(result)}. Press “Score again” to ask the model anew. {result.error or ''}").strip()
            elif result.error:
                message = result.error  # what went wrong and what to try; not "Done"
            else:
                message = f"Done in {result.timings.get('total_s', 0):.1f} s."
            if result.store_error:
                message += f" ⚠ {result.store_error}"
            return {status: status_html("failed" if result.error or result.store_error else "done", message),
                    cards: score_cards(result.scores, result.overall, final=True) + checks_html(result.checks),
                    thinking: confidence_html(result) if colour and result.tokens is not None else
                    reasoning_html(parse(result.text), elapsed, "done", text=result.text, note=result.error or ""),
                    coloured: gr.update(visible=result.tokens is not None),
                    samples_panel: gr.update(value=agreement_html(result), visible=bool(result.samples)),
                    stats: stats_html(result=result),
                    # No score, no plots: empty axes would read as zeros.
                    scores_plot: gr.update(value=scores_figure(result), visible=True) if scored else gr.update(visible=False),
                    probs_plot: gr.update(value=probabilities_figure(result), visible=True) if scored else gr.update(visible=False),
                    # A stored record was not sampled again: no frames to show, and the label says why.
                    frames: gr.update(value=[], label=f"{FRAMES_LABEL}: not read again for a stored result "
                                                      "(Score again reads them)") if result.stored else
                    # Again with the result: the page can drop one of several updates that arrive
                    # within milliseconds, and the final view must not depend on an earlier one.
                    gr.update(value=strip, label=FRAMES_LABEL),
                    download: gr.update(value=record_download(result), visible=True),
                    again: gr.update(visible=result.stored), last_result: result}

        @cancellable
        def evaluate(video_path, prompt_text, colour, *settings):
            yield from evaluate_stream(video_path, prompt_text, settings, refresh=False, colour=colour)

        @cancellable
        def evaluate_again(video_path, prompt_text, colour, *settings):
            """The same request, scored anew by the model instead of served from the store."""
            yield from evaluate_stream(video_path, prompt_text, settings, refresh=True, colour=colour)

        @cancellable
        def ask_again(video_path, prompt_text, colour, k, *settings):
            """K samples of the same request, side by side, and how far they agree."""
            yield from evaluate_stream(video_path, prompt_text, settings, refresh=False, colour=colour, samples=int(k))

        inputs = [video, prompt, coloured, *controls.inputs()]
        event = run.click(evaluate, inputs=inputs, outputs=outputs, **PAGE_MODEL_EVENT, api_visibility="private")
        submitted = prompt.submit(evaluate, inputs=inputs, outputs=outputs, **PAGE_MODEL_EVENT, api_visibility="private")
        rescored = again.click(evaluate_again, inputs=inputs, outputs=outputs, **PAGE_MODEL_EVENT, api_visibility="private")
        asked = ask.click(ask_again, inputs=[video, prompt, coloured, samples_k, *controls.inputs()], outputs=outputs,
                          **PAGE_MODEL_EVENT, api_visibility="private")

        def recolour(colour: bool, result: ScoreResult | None):
            """The reasoning panel of the result shown, plain or coloured by confidence."""
            if result is None or (result.error and not result.text):
                return gr.skip()
            if colour:
                return confidence_html(result)
            return reasoning_html(parse(result.text), result.timings.get("generate_s", 0.0), "done", text=result.text,
                                  note=result.error or "")

        coloured.change(recolour, inputs=[coloured, last_result], outputs=thinking, queue=False,
                        api_visibility="private")

        def stopped(status_now: str, cards_now: str, thinking_now: str):
            """A calm stopped state: what was written stays, nothing says it is still coming."""
            if "vs2-status busy" not in (status_now or ""):
                return gr.skip(), gr.skip(), gr.skip()  # nothing was running: Stop stops nothing
            return (status_html("idle", "Stopped. What the model had written is kept above."),
                    *stopped_view(cards_now, thinking_now))

        # Cancel first, then say so: a message set by the cancelling event itself can be
        # overwritten by an update already on its way.
        stop.click(None, cancels=[event, submitted, rescored, asked], api_visibility="private", queue=False).then(
            stopped, inputs=[status, cards, thinking], outputs=[status, cards, thinking], api_visibility="private",
            queue=False)


def stored_when(result: ScoreResult) -> str:
    """`2026-11-26 16:32 UTC`, from the record's ISO time."""
    when = result.scored_at or ""
    return f"{when[:10]} {when[11:16]} UTC" if len(when) >= 16 else "an earlier run"
