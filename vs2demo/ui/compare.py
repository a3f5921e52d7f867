"""Compare: two to four videos side by side, scored one after another, each reasoning streaming
under its own player; then a grouped chart, the winner of each dimension and a verdict."""

from __future__ import annotations

import gradio as gr

from .. import DIMENSIONS
from ..plots import SHORT_LABELS, comparison_figure
from ..errors import UserInputError
from ..results import (
    BatchItem, ScoreResult, compare, dimension_winners, ranked_groups, ranking_value, results_to_json,
)
from ..scoring import display_name
from ..settings import ScoreOptions
from . import files
from .controls import example_rows, options_from, settings_accordion
from .render import (
    checks_html, UpdatePacer, partial_scores, progress_message, reasoning_html, record_reasoning, score_cards, status_html, stopped_view, toast_message,
    unkept_note,
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


def ranking_line(values: tuple[float | None, ...], names: list[str]) -> str:
    """"**Video 2** (4.00), ahead of Video 1 (3.00, by 1.00) and Video 3 (1.00, by 3.00)", or who ties."""
    groups = ranked_groups(values)
    if not groups:
        return "not scored"

    def group_text(group: list[int], behind: float | None = None) -> str:
        who = " and ".join(names[i] for i in group)
        value = f"{values[group[0]]:.2f}"
        if behind is None:  # the leaders
            return f"{who} tie at {value}" if len(group) > 1 else f"{who} ({value})"
        tied = "tied at " if len(group) > 1 else ""
        return f"{who} ({tied}{value}, {behind:.2f} behind)"

    top = groups[0]
    head = f"**{group_text(top)}**" if len(top) == 1 else group_text(top)
    rest = [group_text(group, values[top[0]] - values[group[0]]) for group in groups[1:]]
    return head + (", ahead of " + "; ".join(rest) if rest else "")


def verdict_markdown(results: list[ScoreResult], names: list[str]) -> str:
    lines = [f"- **{SHORT_LABELS[key]}**: {ranking_line(tuple(ranking_value(r, key) for r in results), names)}"
             for key in (*DIMENSIONS, "overall")]
    overall = compare(results)["overall"]
    if overall.winner is not None and overall.margin is not None:
        head = f"### Verdict: {names[overall.winner]} is the best video" if len(results) > 2 else \
            f"### Verdict: {names[overall.winner]} is the better video"
    else:
        head = "### Verdict: no clear winner"
    return "\n".join([head, *lines])


def build(score_many, defaults: ScoreOptions) -> None:
    """`score_many(items, options)`: scoring.Scorer.score_many's stream."""
    with gr.Tab("Compare", id="compare"):
        gr.Markdown("Put two to four videos side by side. They are judged one after another against the "
                    "shared prompt (or each against its own, when you give one under the player).")
        with gr.Row():
            shared_prompt = gr.Textbox(label="Prompt for all videos", lines=1, scale=5, elem_id="compare-prompt")
            run = gr.Button("Compare", variant="primary", scale=1, elem_id="compare-run")
            stop = gr.Button("Stop", scale=1)
            play = gr.Button("▶ Play together", scale=1, elem_id="compare-play")
        # The status line next to the buttons, where the eye is after pressing Compare.
        status = gr.HTML(elem_id="compare-status")
        videos, prompts, cards, thoughts = [], [], [], []
        with gr.Row(elem_id="compare-players", equal_height=False):
            for slot in range(SLOTS):
                with gr.Column(min_width=220, elem_classes=["vs2-compact"]):
                    videos.append(gr.Video(label=f"Video {slot + 1}", sources=["upload"], height=220,
                                           elem_id=f"compare-video-{slot}"))
                    prompts.append(gr.Textbox(label="Own prompt (optional)", lines=1, elem_id=f"compare-prompt-{slot}"))
                    cards.append(gr.HTML(elem_id=f"compare-cards-{slot}"))
                    thoughts.append(gr.HTML(elem_id=f"compare-thinking-{slot}"))
        with gr.Row(equal_height=False):
            chart = gr.Plot(label="Side by side", visible=False, elem_id="compare-chart", scale=3)
            verdict = gr.Markdown(elem_id="compare-verdict", elem_classes=["vs2-verdict"])
        download = gr.DownloadButton("Download the records (JSON)", visible=False)
        controls = settings_accordion(defaults)
        rows = example_rows()
        if len(rows) >= 2:
            gr.Examples([[rows[0]["path"], rows[1]["path"], rows[0]["prompt"]]] +
                        ([[rows[i]["path"], rows[i + 1]["path"], rows[i]["prompt"]] for i in range(2, len(rows) - 1, 2)]),
                        inputs=[videos[0], videos[1], shared_prompt], label="Example pairs", cache_examples=False)

        outputs = [status, *cards, *thoughts, chart, verdict, download]

        def final_view(slot: int, result: ScoreResult, best: set[str] = frozenset()) -> dict:
            return {cards[slot]: score_cards(result.scores, result.overall, final=True, best=best)
                    + checks_html(result.checks),
                    thoughts[slot]: record_reasoning(result)}

        @cancellable
        def run_compare(*values):
            paths, own_prompts = values[:SLOTS], values[SLOTS:2 * SLOTS]
            shared, settings = values[2 * SLOTS], values[2 * SLOTS + 1:]
            try:
                slots = [slot for slot, path in enumerate(paths) if path]
                if len(slots) < 2:
                    raise UserInputError("Give at least two videos to compare.")
                uploads = [files.uploaded_path(paths[slot]) for slot in slots]
                items = [BatchItem(display_name(path), path, (own_prompts[slot] or "").strip() or shared)
                         for slot, path in zip(slots, uploads)]
                options = options_from(*settings)
            except UserInputError as exc:
                gr.Warning(toast_message("Cannot compare", str(exc)), title="Cannot compare")
                yield {status: status_html("failed", str(exc))}
                return
            yield {status: status_html("busy", "Comparing…"), chart: gr.update(visible=False), verdict: "",
                   download: gr.update(visible=False),
                   **{cards[slot]: score_cards(None) if paths[slot] else "" for slot in range(SLOTS)},
                   **{thoughts[slot]: "" for slot in range(SLOTS)}}
            final: dict = {}
            results: list[ScoreResult] = []
            pacer = UpdatePacer()
            for step in score_many(items, options):
                slot = slots[step.position - 1]
                label = progress_message(step.position, step.total, step.name, step.update)
                if step.update is None:  # this video's record is in
                    results = step.results
                    final.update(final_view(slot, results[-1]))
                    yield {status: status_html("busy", label), **final_view(slot, results[-1])}
                elif step.update.stage == "generating" and step.update.text:
                    if not pacer.skip(step.update):
                        yield {status: status_html("busy", label),
                               cards[slot]: score_cards(partial_scores(step.update.parsed)),
                               thoughts[slot]: reasoning_html(step.update.parsed, step.update.elapsed_s)}
                elif step.update.stage != "generating":
                    yield {status: status_html("busy", label)}
            names = [f"Video {slot + 1}" for slot in slots]
            failed = sum(1 for r in results if r.error)
            message = (f"Compared {len(results)} videos." + (f" {failed} could not be scored: see under its player." if failed else "")
                       + unkept_note(results))
            # The last message carries every final card and reasoning again (each dimension's winner
            # marked on its card): the browser can drop one of several updates that arrive within
            # milliseconds, and must not keep a stale one.
            if len(results) == len(slots):
                for slot, result, best in zip(slots, results, dimension_winners(results)):
                    final.update(final_view(slot, result, best))
            yield {status: status_html("failed" if failed else "done", message), **final,
                   chart: gr.update(value=comparison_figure(results, names), visible=True),
                   verdict: verdict_markdown(results, names),
                   download: gr.update(value=files.write_download(results_to_json(results), "comparison", ".json"), visible=True)}

        event = run.click(run_compare, inputs=[*videos, *prompts, shared_prompt, *controls.inputs()], outputs=outputs,
                          **PAGE_MODEL_EVENT, api_visibility="private")

        def stopped(status_now: str, *views):
            """What each slot had when Stop was pressed, made calm (render.stopped_view)."""
            if "vs2-status busy" not in (status_now or ""):
                return [gr.skip()] * (1 + 2 * SLOTS)
            calm = [stopped_view(views[slot], views[SLOTS + slot]) for slot in range(SLOTS)]
            return [status_html("idle", "Stopped. What was scored is kept."), *(c for c, _ in calm), *(r for _, r in calm)]

        stop.click(None, cancels=[event], api_visibility="private", queue=False).then(
            stopped, inputs=[status, *cards, *thoughts], outputs=[status, *cards, *thoughts], api_visibility="private",
            queue=False)
        play.click(None, js=PLAY_TOGETHER_JS, api_visibility="private")

