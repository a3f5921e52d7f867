"""Evaluate: one video and its prompt; the reasoning streams, then scores, plots and the frames."""

from __future__ import annotations

import time

import gradio as gr

from ..errors import ModelLoadError, UserInputError
from ..plots import probabilities_figure, scores_figure
from ..results import ScoreResult
from . import files
from . import runtime as rt
from .controls import example_rows, options_from, settings_accordion
from .render import (
    as_text, frame_strip, partial_scores, record_download, score_cards, stats_html, status_html, thinking_messages,
    waiting_message,
)
from .server import MODEL_EVENT, cancellable


def build(runtime: rt.ModelRuntime) -> None:
    with gr.Tab("Evaluate", id="evaluate"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=320):
                video = gr.Video(label="Video", sources=["upload"], height=300, elem_id="evaluate-video")
                prompt = gr.Textbox(label="Generation prompt", lines=2, max_lines=6, elem_id="evaluate-prompt",
                                    placeholder="The text the video was generated from")
                with gr.Row():
                    run = gr.Button("Evaluate", variant="primary", elem_id="evaluate-run")
                    stop = gr.Button("Stop", variant="secondary", elem_id="evaluate-stop")
                controls = settings_accordion(runtime.settings.options)
                rows = example_rows()
                if rows:
                    gr.Examples([[r["path"], r["prompt"]] for r in rows], inputs=[video, prompt],
                                example_labels=[r.get("shows") or r["video"] for r in rows],
                                label="Example clips (made by this project)", cache_examples=False)
            with gr.Column(scale=7, min_width=420):
                status = gr.HTML(status_html("idle", "Upload a video, write its prompt, press Evaluate."), elem_id="evaluate-status")
                cards = gr.HTML(score_cards(None), elem_id="evaluate-cards")
                thinking = gr.Chatbot(label="The model's reasoning", height=340, elem_id="evaluate-thinking", layout="panel",
                                      buttons=["copy"], render_markdown=False, placeholder="The reasoning streams here as the model writes it.")
                stats = gr.HTML(elem_id="evaluate-stats")
        with gr.Row():
            scores_plot = gr.Plot(label="Scores", elem_id="evaluate-scores-plot", visible=False)
            probs_plot = gr.Plot(label="Probabilities", elem_id="evaluate-probs-plot", visible=False)
        frames = gr.Gallery(label="Frames the model saw", columns=8, height=210, object_fit="contain",
                            allow_preview=True, elem_id="evaluate-frames")
        download = gr.DownloadButton("Download the result record (JSON)", visible=False, elem_id="evaluate-download")

        outputs = [status, cards, thinking, stats, scores_plot, probs_plot, frames, download]

        @cancellable
        def evaluate(video_path, prompt_text, *settings):
            skip_rest = [gr.skip()] * (len(outputs) - 1)
            loading = runtime.state == "loading"
            yield (status_html("busy", "Waiting for the model to load…" if loading else "Reading the video…"), *skip_rest)
            started = time.perf_counter()
            thought_s = None
            try:
                path = files.uploaded_path(video_path)
                for update in rt.score_stream(runtime, path, prompt_text, options_from(*settings)):
                    if isinstance(update, ScoreResult):
                        yield finished(update, started, thought_s)
                        return
                    if update.stage == "waiting":
                        yield (status_html("busy", waiting_message(update.ahead).capitalize() + "…"), *skip_rest)
                        continue
                    if update.stage == "sampled":
                        started = time.perf_counter()
                        yield (status_html("busy", "The model is looking at the frames…"), score_cards(None), [],
                               stats_html(update=update), gr.update(visible=False), gr.update(visible=False),
                               frame_strip(update.video), gr.update(visible=False))
                        continue
                    parsed = update.parsed
                    if parsed is not None and parsed.thinking_done and thought_s is None:
                        thought_s = time.perf_counter() - started
                    elapsed = thought_s if thought_s is not None else time.perf_counter() - started
                    yield (status_html("busy", f"The model is writing… {update.new_tokens} tokens"),
                           score_cards(partial_scores(parsed)), thinking_messages(parsed, elapsed, done=False),
                           stats_html(update=update), gr.skip(), gr.skip(), gr.skip(), gr.skip())
            except (UserInputError, ModelLoadError) as exc:
                # A warning toast and the status line, not gr.Error: an error would stamp every
                # output with an "Error" badge, and the inputs are fine to keep.
                gr.Warning(as_text(str(exc)), title="Cannot evaluate this video")
                yield (status_html("failed", str(exc)), *skip_rest)

        def finished(result: ScoreResult, started: float, thought_s: float | None):
            from ..parsing import parse

            elapsed = thought_s if thought_s is not None else time.perf_counter() - started
            message = f"Done in {result.timings.get('total_s', 0):.1f} s."
            if result.error:
                message = f"{message} {result.error}"
            return (status_html("failed" if result.error else "done", message),
                    score_cards(result.scores, result.overall, final=True),
                    thinking_messages(parse(result.text), elapsed, done=True, text=result.text),
                    stats_html(result=result),
                    gr.update(value=scores_figure(result), visible=True),
                    gr.update(value=probabilities_figure(result), visible=True),
                    gr.skip(),
                    gr.update(value=record_download(result), visible=True))

        event = run.click(evaluate, inputs=[video, prompt, *controls.inputs()], outputs=outputs,
                          **MODEL_EVENT, api_visibility="private")
        submitted = prompt.submit(evaluate, inputs=[video, prompt, *controls.inputs()], outputs=outputs,
                      **MODEL_EVENT, api_visibility="private")
        # Cancel first, then say so: a message set by the cancelling event itself can be
        # overwritten by an update already on its way.
        stop.click(None, cancels=[event, submitted], api_visibility="private", queue=False).then(
            lambda: status_html("idle", "Stopped."), outputs=[status], api_visibility="private", queue=False)
