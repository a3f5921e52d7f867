"""Where the model looked (issue #26): a record's `attention` shown where people look.

Pure functions from a record to HTML: a strip per scored dimension under "Frames the model saw", one
cell per temporal patch with its share as a bar and a percent, its time range, the top 3 marked by an
outline and a rank (not by colour alone), each cell a button that seeks the video to the patch's
start; the prompt with its words shaded by the text-alignment score's attention (weight and underline
by tier, the percent in a tooltip, the top words in text); and one line of caution. Every word and
name is escaped: the prompt is the user's text and the record may come from a file.

The seeking is one click listener on the document (SEEK_JS, installed once by `js_on_load`): the
strip is re-rendered by Gradio with each result, so no listener is attached to the cells themselves.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Iterator

import gradio as gr

from .. import DIMENSION_SHORT, DIMENSION_TITLES, DIMENSIONS
from ..errors import UserInputError
from ..frames_check import CheckStep, FramesCheck, run_check, signed
from ..prompt_sensitivity import options_of
from ..results import ScoreResult
from ..scoring import display_name
from . import files
from .controls import options_from
from .prompt_check import CheckView, refusal
from .render import UpdatePacer, progress_status, status_html, toast_message
from .server import PAGE_MODEL_EVENT, cancellable

CAUTION = "Attention shows where the model looked while writing each score, not proof of why it gave it."
TOP = 3  # patches (and words) marked as the most attended
EVALUATE_PLAYER = "evaluate-video"
EXPLORE_PLAYER = "explore-video"

# One delegated listener for every strip on the page, now and after any re-render: a click on a cell
# seeks the player the cell names (`data-vs2-player`: the elem_id of a gr.Video) to the cell's time.
SEEK_JS = """
if (!window.vs2SeekInstalled) {
  window.vs2SeekInstalled = true;
  document.addEventListener('click', (event) => {
    const cell = event.target.closest('[data-vs2-seek]');
    if (!cell) return;
    const video = document.querySelector(`#${cell.dataset.vs2Player} video`);
    if (!video) return;
    video.pause();
    video.currentTime = Number(cell.dataset.vs2Seek);
    video.scrollIntoView({block: 'nearest'});
  });
}
"""

# Scoped to the strip's own classes; kept with the HTML it styles (the strip is its only user).
STYLE = """<style>
.vs2-attention {margin:6px 0 10px;font-size:14px}
.vs2-attention .caution {font-size:13px;color:var(--body-text-color-subdued);margin:0 0 6px}
.vs2-attention .strip-head {font-weight:600;margin:10px 0 2px}
.vs2-attention .strip-note {font-size:12px;color:var(--body-text-color-subdued);margin:0 0 4px}
.vs2-attention .strip {display:flex;gap:4px;overflow-x:auto;padding:4px 2px 6px;max-width:100%}
.vs2-attention .cell {box-sizing:border-box;flex:0 0 72px;width:72px;min-width:0;margin:0;display:flex;flex-direction:column;align-items:stretch;gap:2px;padding:4px;
  border:1px solid var(--border-color-primary);border-radius:6px;background:var(--block-background-fill);
  color:var(--body-text-color);font:inherit;font-size:12px;cursor:pointer;text-align:center;position:relative}
.vs2-attention .cell:focus-visible {outline:3px solid var(--color-accent);outline-offset:1px}
.vs2-attention .cell.top {border:3px solid #0072b2;padding:2px}
.vs2-attention .bar {height:40px;display:flex;align-items:flex-end;background:var(--background-fill-secondary);border-radius:3px}
.vs2-attention .bar span {display:block;width:100%;background:#0072b2;border-radius:3px 3px 0 0}
.vs2-attention .pct {font-weight:600}
.vs2-attention .rank {position:absolute;top:-2px;right:-2px;font-size:10px;font-weight:700;background:#0072b2;color:#fff;
  border-radius:0 4px 0 6px;padding:0 4px}
.vs2-attention .time {font-size:11px;color:var(--body-text-color-subdued);white-space:nowrap}
.vs2-attention .prompt {line-height:2;overflow-wrap:anywhere;margin:4px 0}
.vs2-attention .w1 {text-decoration:underline 1px;text-underline-offset:3px;background:rgba(0,114,178,.10)}
.vs2-attention .w2 {font-weight:600;text-decoration:underline 2px;text-underline-offset:3px;background:rgba(0,114,178,.22)}
.vs2-attention .w3 {font-weight:800;text-decoration:underline 4px;text-underline-offset:3px;background:rgba(0,114,178,.38)}
.vs2-attention .top-words {font-size:13px;margin:2px 0 0}
</style>"""


def usable(attention) -> bool:
    """Whether `attention` has the shape this view reads (record_schema checks loaded records; this
    also guards a record from a backend or an older file): patches of frame positions and, per
    dimension, one share per patch and one per word."""
    if not isinstance(attention, dict) or not isinstance(attention.get("dimensions"), dict):
        return False
    patches, words = attention.get("patches"), attention.get("words")
    if not isinstance(patches, list) or not patches or not isinstance(words, list):
        return False
    if not all(isinstance(p, list) and p and all(isinstance(i, int) and i >= 0 for i in p) for p in patches):
        return False
    for dim in attention["dimensions"].values():
        if not isinstance(dim, dict):
            return False
        shares = dim.get("patches"), dim.get("words", [])
        if not isinstance(shares[0], list) or len(shares[0]) != len(patches) or not _numbers(shares[0]):
            return False
        if not isinstance(shares[1], list) or (shares[1] and len(shares[1]) != len(words)) or not _numbers(shares[1]):
            return False
    return True


def _numbers(values: list) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in values)


# Asked for, yet not in the record: the probe failed (the backend keeps the answer and logs why).
UNAVAILABLE = ("Where it looked is not available for this result: the attention probe could not run on this "
               "model's attention kernel (the server's log says why). The scores are unaffected.")


def attention_of(record: ScoreResult | None) -> dict | None:
    """The record's attention when it has one this view can show, else None."""
    attention = getattr(record, "attention", None) if record is not None else None
    return attention if usable(attention) else None


def top_count(patches: int) -> int:
    """How many patches are marked top: 3, but never more than half of them (of 3 patches, marking
    all would tell nothing); the same count the frames check replaces."""
    return min(TOP, max(1, patches // 2))


def top_indices(shares: list[float], count: int = TOP) -> list[int]:
    """The positions of the `count` largest shares, largest first (the earlier on a tie); none that
    is zero: a patch the model did not look at is not "top"."""
    ranked = sorted(range(len(shares)), key=lambda i: (-shares[i], i))
    return [i for i in ranked[:count] if shares[i] > 0]


def percent(share: float) -> str:
    """A share as the page shows it: one decimal (0.183 -> "18.3%")."""
    return f"{100 * share:.1f}%"


def patch_times(patch: list[int], timestamps: list) -> tuple[float, float] | None:
    """(start, end) in seconds of the source video of a patch's frames; None when the record's
    timestamps do not cover them."""
    try:
        times = [float(timestamps[i]) for i in patch]
    except (IndexError, TypeError, ValueError):
        return None
    return min(times), max(times)


def time_range(times: tuple[float, float] | None) -> str:
    if times is None:
        return "time unknown"
    start, end = times
    return f"{start:.1f} s" if round(start, 1) == round(end, 1) else f"{start:.1f}–{end:.1f} s"


def cell_html(index: int, share: float, largest: float, times, rank: int | None, dimension: str, player: str) -> str:
    """One patch: a button that seeks `player` to its start, with its share as a bar and a percent."""
    height = 0 if largest <= 0 else max(2, round(40 * share / largest))
    label = (f"Frames {time_range(times)}: {percent(share)} of {DIMENSION_TITLES.get(dimension, dimension).lower()}'s "
             f"attention to the frames" + (f", rank {rank}" if rank else "") +
             (". Seek the video there." if times else "."))
    seek = f" data-vs2-seek='{times[0]:.3f}' data-vs2-player='{html.escape(player)}'" if times else " disabled"
    mark = f"<span class='rank'>top {rank}</span>" if rank else ""
    return (f"<button type='button' class='cell{' top' if rank else ''}' data-patch='{index}'{seek} "
            f"title='{html.escape(label)}' aria-label='{html.escape(label)}'>{mark}"
            f"<span class='bar'><span style='height:{height}px'></span></span>"
            f"<span class='pct'>{percent(share)}</span><span class='time'>{time_range(times)}</span></button>")


def strip_html(attention: dict, dimension: str, timestamps: list, player: str) -> str:
    """The strip of one dimension: a cell per temporal patch, the top 3 outlined and ranked."""
    data = attention["dimensions"][dimension]
    shares = [float(s) for s in data["patches"]]
    ranks = {i: r for r, i in enumerate(top_indices(shares, top_count(len(shares))), start=1)}
    largest = max(shares, default=0.0)
    cells = "".join(cell_html(i, share, largest, patch_times(patch, timestamps), ranks.get(i), dimension, player)
                    for i, (share, patch) in enumerate(zip(shares, attention["patches"])))
    title = DIMENSION_TITLES.get(dimension, dimension)
    where = []
    if isinstance(data.get("visual"), (int, float)):
        where.append(f"{percent(data['visual'])} of its attention on the frames")
    if isinstance(data.get("prompt"), (int, float)):
        where.append(f"{percent(data['prompt'])} on the prompt's words")
    note = f"<p class='strip-note'>While writing this score: {', '.join(where)}.</p>" if where else ""
    return (f"<div class='strip-block' data-dimension='{html.escape(dimension)}'>"
            f"<p class='strip-head'>{html.escape(title)}: its share of the frames' attention</p>{note}"
            f"<div class='strip' role='group' aria-label='{html.escape(title)}: attention per frame pair'>{cells}</div></div>")


def word_tier(share: float, largest: float) -> int:
    """0 (unmarked) to 3, by the share against the most attended word: tiers are relative because
    the prompt's words compete with each other, and the leading word should always stand out."""
    if largest <= 0 or share <= 0:
        return 0
    ratio = share / largest
    return 3 if ratio >= 0.66 else 2 if ratio >= 0.33 else 1 if ratio >= 0.1 else 0


def prompt_html(attention: dict) -> str:
    """The prompt, each word shaded by text alignment's word shares (weight and underline by tier,
    its percent in a tooltip), and the top words in text. "" when there is no text-alignment share."""
    data = attention["dimensions"].get("text_alignment")
    words = [str(w) for w in attention.get("words") or []]
    if not data or not data.get("words") or not words:
        return ""
    shares = [float(s) for s in data["words"]]
    largest = max(shares, default=0.0)
    shaded = []
    for word, share in zip(words, shares):
        tier = word_tier(share, largest)
        shaded.append(f"<span class='w{tier}' title='{percent(share)}'>{html.escape(word)}</span>" if tier else
                      f"<span title='{percent(share)}'>{html.escape(word)}</span>")
    top = "; ".join(f"“{html.escape(words[i])}” {percent(shares[i])}" for i in top_indices(shares))
    return (f"<p class='strip-head'>The prompt, by text alignment's attention to each word</p>"
            f"<p class='prompt'>{' '.join(shaded)}</p>"
            f"<p class='top-words'>Most attended words: {top or 'none'}. (Bolder and more underlined: more "
            f"attended; point at a word for its share.)</p>")


def attention_html(record: ScoreResult | None, player: str = EVALUATE_PLAYER) -> str:
    """Everything the view shows for `record` ("" when it has no usable attention): the caution, a
    strip per scored dimension (seeking `player`, the elem_id of the page's gr.Video) and the prompt."""
    attention = attention_of(record)
    if attention is None:
        if record is not None and record.ok and (record.settings or {}).get("attention"):
            return f"{STYLE}<div class='vs2-attention'><p class='caution'>{html.escape(UNAVAILABLE)}</p></div>"
        return ""
    timestamps = (record.frames or {}).get("timestamps") or []
    dims = [d for d in DIMENSIONS if d in attention["dimensions"]]
    strips = "".join(strip_html(attention, d, timestamps, player) for d in dims)
    count = top_count(len(attention["patches"]))
    caption = ("Each cell is 2 frames the model merged into one (a temporal patch), with its share of the "
               f"attention the score's tokens gave the frames. The top {count if count > 1 else ''} "
               f"{'are' if count > 1 else 'is'} outlined and ranked; a click seeks the video there.").replace("  ", " ")
    return (f"{STYLE}<div class='vs2-attention'><p class='caution'>⚠ {html.escape(CAUTION)}</p>"
            f"<p class='strip-note'>{caption}</p>{strips}{prompt_html(attention)}</div>")


# ---- "Do these frames matter?": the check's view (the logic is vs2demo.frames_check) ---------------

CHECK_TITLE = "Cannot run the frames check"
CHECK_IDLE = ("Scores the video again twice, with the same options: with the most-attended frames replaced by "
              "their neighbours, and with as many random frames replaced. If the top frames matter, their "
              "scores should move more.")
# Narrower than the prompt check's cells, for a phone's width.
TABLE_CELL = "padding:5px 6px;border:none;border-bottom:1px solid var(--border-color-primary);text-align:left"
CHECK_STOPPED = ("Stopped: the check did not finish. A scoring it had finished is kept in the results store, "
                 "and asking again takes it from there.")
KIND_NAMES = {"top-frames": "the most-attended frames replaced", "random-frames": "random frames replaced"}


def check_offered(record: ScoreResult | None) -> bool:
    """The check is offered under a result with attention that the transformers backend made (the
    only one that reports attention and replaces frames)."""
    return attention_of(record) is not None and (record.settings or {}).get("backend", "transformers") == "transformers"


def check_request(last: ScoreResult | None, video_path, settings):
    """(video path, options) of the check asked for, or the CheckView that refuses it."""
    if not check_offered(last):
        return refusal("Evaluate with “Show where it looked (attention)” on first: the check picks the frames by "
                       "the result's attention.", CHECK_TITLE)
    try:
        path = files.uploaded_path(video_path)
        options = options_of(last) or options_from(*settings)
    except UserInputError as exc:
        return refusal(str(exc), CHECK_TITLE)
    if display_name(path) != last.video:
        return refusal(f"The video in the box is not {last.video}, the one last evaluated: press Evaluate first.",
                       CHECK_TITLE)
    return path, options.with_changes(attention=True)


def check_progress(step: CheckStep) -> str:
    doing = f"Scoring {step.step} of 2, with {KIND_NAMES[step.kind]}"
    return status_html("busy", f"{doing}: {progress_status(step.update)}" if step.update is not None else f"{doing}…")


def frames_check_views(score, last: ScoreResult | None, video_path, settings) -> Iterator[CheckView]:
    """The views of one check: `last` is the record Evaluate shows; `score` is Scorer.score's stream."""
    request = check_request(last, video_path, settings)
    if isinstance(request, CheckView):
        yield request
        return
    path, options = request
    pacer = UpdatePacer()
    try:
        steps = run_check(score, last, path, options)
        for step in steps:
            if isinstance(step, CheckStep):
                if step.update is None or not pacer.skip(step.update):
                    yield CheckView(check_progress(step), table="")
            elif isinstance(step, ScoreResult):  # a scoring failed: its own error says why
                yield refusal(step.error or "The check's scoring failed.", CHECK_TITLE)
            else:
                took = sum(r.timings.get("total_s", 0) for r in (step.top, step.random))
                said = ("Checked before: both scorings come from the results store." if step.top.stored and
                        step.random.stored else f"Scored twice in {took:.1f} s.")
                yield CheckView(status_html("done", said), check_table_html(step))
    except UserInputError as exc:
        yield refusal(str(exc), CHECK_TITLE)


def frames_named(positions: tuple[int, ...], timestamps: list) -> str:
    """The replaced frames by their times in the video: "0.5, 1.0, 3.0 s"."""
    try:
        return ", ".join(f"{float(timestamps[i]):.1f}" for i in positions) + " s"
    except (IndexError, TypeError, ValueError):
        return "frames " + ", ".join(str(i) for i in positions)


def check_table_html(check: FramesCheck) -> str:
    """Per dimension the expected value before, with the top frames replaced and with random ones,
    each with its signed shift; a sentence per dimension; which frames each replaced."""
    def value(number):
        return "–" if number is None else f"{number:.2f}"

    def shift(number):
        return "–" if number is None else signed(number)

    def row(move) -> str:
        # Each check's value with its shift beside it: four columns fit a phone's width.
        cells = (html.escape(DIMENSION_SHORT[move.dimension]), value(move.before),
                 f"{value(move.top)} <b>({shift(move.top_shift)})</b>",
                 f"{value(move.random)} <b>({shift(move.random_shift)})</b>")
        return "<tr>" + "".join(f"<td style='{TABLE_CELL}'>{cell}</td>" for cell in cells) + "</tr>"

    rows = "".join(row(move) for move in check.moves)
    head = "".join(f"<th style='{TABLE_CELL}'>{name}</th>" for name in
                   ("Score", "Before", "Top frames replaced (shift)", "Random frames replaced (shift)"))
    sentences = "".join(f"<li>{html.escape(s)}</li>" for s in check.sentences)
    times = (check.original.frames or {}).get("timestamps") or []
    plan = check.plan
    return (f"<div class='vs2-frames-check'><div style='overflow-x:auto'>"
            f"<table style='border-collapse:collapse;width:100%;font-size:14px'><thead><tr>{head}</tr></thead>"
            f"<tbody>{rows}</tbody></table></div><ul class='vs2-verdict' style='margin:8px 0 0'>{sentences}</ul>"
            f"<p class='vs2-status' style='overflow-wrap:anywhere'>Each value is a score's expected value (the sum of "
            f"s·p(s)); a shift is the check's value minus the value before. Replaced: the "
            f"{'patch' if len(plan.top_patches) == 1 else f'{len(plan.top_patches)} patches'} "
            f"most attended on average over the three scores, the frames at {frames_named(plan.top, times)}; as many "
            f"random ones (seed {plan.seed}), at {frames_named(plan.random, times)}. The model saw each replaced frame "
            f"as its nearest kept neighbour.</p></div>")


@dataclass
class FramesCheckOutputs:
    """The attention view and the check, which Evaluate fills with a record and clears with a new run."""

    attention: gr.HTML
    offer: gr.Row  # the check's Run and Stop buttons, shown under a result the check can run on
    status: gr.HTML
    table: gr.HTML


def build(score, video, controls, view) -> FramesCheckOutputs:
    """Inside the Evaluate tab, under its frames. `score`: Scorer.score's stream; `video`: the tab's
    video box; `controls`: its SettingsControls (used when the record does not say its options);
    `view`: the gr.State with evaluate.EvaluateView, whose `record` is the one checked."""
    attention = gr.HTML("", elem_id="evaluate-attention", js_on_load=SEEK_JS)
    with gr.Column(elem_id="frames-check"):
        with gr.Row(visible=False) as offer:
            run = gr.Button("Do these frames matter?", variant="secondary", scale=3, elem_id="frames-check-run")
            stop = gr.Button("Stop the check", variant="secondary", scale=1, elem_id="frames-check-stop")
        status = gr.HTML("", elem_id="frames-check-status")
        table = gr.HTML("", elem_id="frames-check-result")

    @cancellable
    def checked(video_path, shown, *settings):
        for step in frames_check_views(score, shown.record if shown is not None else None, video_path, settings):
            if step.refusal:
                gr.Warning(toast_message(*step.refusal), title=step.refusal[0])
            yield {status: step.status} | ({table: step.table} if step.table is not None else {})

    event = run.click(checked, inputs=[video, view, *controls.inputs()], outputs=[status, table], **PAGE_MODEL_EVENT,
                      api_visibility="private")
    # Cancel first, then say so (as Evaluate's Stop): a message set by the cancelling event itself
    # could be overwritten by an update already on its way.
    stop.click(None, cancels=[event], queue=False, api_visibility="private").then(
        stopped_check, inputs=[status], outputs=[status], queue=False, api_visibility="private")
    return FramesCheckOutputs(attention, offer, status, table)


def stopped_check(status_now: str) -> str:
    """The status after Stop: unchanged unless a check was running."""
    if "vs2-status busy" not in (status_now or ""):
        return gr.skip()
    return status_html("idle", CHECK_STOPPED)


def record_outputs(record: ScoreResult | None) -> dict:
    """Evaluate's outputs of this view for a record (None: a new run, Stop, a failure clear them)."""
    offered = check_offered(record)
    return {"attention": attention_html(record, EVALUATE_PLAYER),
            "frames_check_offer": gr.update(visible=offered),
            "frames_check_status": status_html("idle", CHECK_IDLE) if offered else "", "frames_check_table": ""}
