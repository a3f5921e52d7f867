"""Evaluate's "Does the prompt matter?": the video just scored, scored again with another prompt
(or none), and how text-to-video alignment moved (prompt_sensitivity)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Iterator, Sequence

import gradio as gr

from .. import DIMENSIONS
from ..errors import UserInputError
from ..prompt_sensitivity import BARELY_MOVED, DIMENSION_NAMES, PromptSensitivity, options_of, sensitivity
from ..prompts import clean_prompt
from ..results import ScoreResult
from ..scoring import display_name
from . import files
from .controls import options_from
from .render import UpdatePacer, progress_status, status_html, toast_message
from .server import PAGE_MODEL_EVENT, cancellable

TITLE = "Cannot score with the other prompt"
IDLE = ("Scores the video just evaluated again, with the same options, and puts the two side by side. An empty "
        "box scores it with no prompt at all: a judge that reads the prompt should then give a lower text alignment.")


@dataclass(frozen=True)
class CheckView:
    """What the check shows: its status line, the comparison table (None: as it is), and a refusal
    for a toast."""

    status: str
    table: str | None = None
    refusal: tuple[str, str] | None = None  # (title, message)


def cleared() -> tuple[str, str]:
    """The check's status line and table with nothing compared: before a first check, for another
    video, and when Evaluate starts a new run (the comparison shown was of the last one)."""
    return status_html("idle", IDLE), ""


def refusal(message: str, title: str = TITLE) -> CheckView:
    return CheckView(status_html("failed", message), refusal=(title, message))


def checked_request(last: ScoreResult | None, video_path, other_text: str, settings: Sequence):
    """(video path, other prompt, options) of the check asked for, or the CheckView that refuses it."""
    if last is None:
        return refusal("Nothing to compare with yet: press Evaluate, and once its result is in, ask again here.",
                       "Score the video first")
    if last.scores.get("text_alignment") is None or last.scores["text_alignment"].score is None:
        return refusal("The last result has no text-alignment score to compare with: evaluate the video again "
                       "(raise max new tokens if it ran out), then ask here.")
    try:
        path = files.uploaded_path(video_path)
        other_prompt = clean_prompt(other_text, allow_empty=True)
        options = options_of(last) or options_from(*settings)
    except UserInputError as exc:
        return refusal(str(exc))
    if display_name(path) != last.video:
        return refusal(f"The video in the box is not {last.video}, the one last evaluated: press Evaluate first.")
    if other_prompt == last.prompt:
        return refusal("That is the prompt already scored: write a different one, or leave the box empty to "
                       "score with no prompt.")
    return path, other_prompt, options


def check(score, last: ScoreResult | None, video_path, prompt_now: str, other_text: str,
          settings: Sequence) -> Iterator[CheckView]:
    """The views of one check: `last` is the record Evaluate shows; `score(video, prompt, options,
    allow_empty_prompt=True)` is scoring.Scorer.score's stream."""
    request = checked_request(last, video_path, other_text, settings)
    if isinstance(request, CheckView):
        yield request
        return
    path, other_prompt, options = request
    pacer = UpdatePacer()
    yield CheckView(status_html("busy", progress_status(None)), table="")
    for update in score(path, other_prompt, options, allow_empty_prompt=True):
        if isinstance(update, ScoreResult):
            yield finished(last, update, (prompt_now or "").strip())
            return
        if not pacer.skip(update):
            yield CheckView(status_html("busy", progress_status(update)))


def finished(last: ScoreResult, result: ScoreResult, prompt_now: str) -> CheckView:
    if result.error and not result.text:
        return refusal(result.error)
    if result.video_sha256 and last.video_sha256 and result.video_sha256 != last.video_sha256:
        return refusal(f"The video in the box is not the {last.video} last evaluated (the same name, other "
                       "bytes): press Evaluate first.")
    compared = sensitivity(last, result)
    how = "without a prompt" if result.prompt == "" else "with the other prompt"
    if result.error:
        message = result.error
    elif result.stored:
        message = f"Scored {how} before: this comes from the results store."
    else:
        message = f"Scored {how} in {result.timings.get('total_s', 0):.1f} s."
    if prompt_now and prompt_now != last.prompt:
        message += " The prompt box has changed since: the comparison is with the prompt last evaluated."
    return CheckView(status_html("failed" if result.error else "done", message), comparison_html(compared, last.video))


@dataclass
class PromptCheck:
    """The check's outputs, which Evaluate clears when it starts a new run."""

    status: gr.HTML
    table: gr.HTML


def build(score, video, prompt, controls, view) -> PromptCheck:
    """Inside the Evaluate tab. `score(video, prompt, options, refresh=False, **kw)`: scoring.Scorer.score's
    stream (called with `allow_empty_prompt=True`); `video`, `prompt`: the tab's inputs; `controls`: its
    controls.SettingsControls (used only when the record does not say its options); `view`: the gr.State
    with what the tab shows (evaluate.EvaluateView), whose `record` is the result compared with. The tab's
    own result is never touched. `prompt` is the tab's prompt box: the comparison is with the prompt of
    the record, which it names when the box has changed since."""
    with gr.Accordion("Does the prompt matter?", open=False, elem_id="prompt-check"):
        other = gr.Textbox(label="Other prompt (leave empty to score with no prompt)", lines=2, max_lines=6,
                           elem_id="prompt-check-prompt",
                           placeholder="Empty: no prompt at all. Or a prompt that does not fit the video.")
        run = gr.Button("Score again with this prompt", variant="secondary", elem_id="prompt-check-run")
        status = gr.HTML(cleared()[0], elem_id="prompt-check-status")
        table = gr.HTML(elem_id="prompt-check-result")

    @cancellable
    def checked(video_path, shown, prompt_now, other_text, *settings):
        for step in check(score, shown.record if shown is not None else None, video_path, prompt_now, other_text,
                          settings):
            if step.refusal:
                gr.Warning(toast_message(*step.refusal), title=step.refusal[0])
            yield {status: step.status} | ({table: step.table} if step.table is not None else {})

    inputs = [video, view, prompt, other, *controls.inputs()]
    for trigger in (run.click, other.submit):
        trigger(checked, inputs=inputs, outputs=[status, table], **PAGE_MODEL_EVENT, api_visibility="private")
    # Another video: the comparison shown was of the one before. (Not `view.change`: Gradio then hashes
    # the State at every streamed update of the tab.)
    video.change(cleared, outputs=[status, table], queue=False, api_visibility="private")
    return PromptCheck(status, table)


# ---- the table -----------------------------------------------------------------------------------

CELL = "padding:5px 10px;border-bottom:1px solid var(--border-color-primary);text-align:left"
EMPHASIS = "font-weight:700;background:var(--color-accent-soft)"


def _score(score: int | None, expected: float | None) -> str:
    if score is None and expected is None:
        return "–"
    if score is None:
        return f"{expected:.2f}"
    return f"{score} <small>({expected:.2f})</small>" if expected is not None else str(score)


def _change(change: float | None) -> str:
    if change is None:
        return "–"
    if round(change, 2) == 0:
        return "0.00"  # not −0.00 for a change in the fourth decimal
    return f"{change:+.2f}".replace("-", "−")  # a real minus sign


def comparison_html(compared: PromptSensitivity, video: str = "") -> str:
    """The table (dimension, with your prompt, with the other prompt, change; alignment emphasised)
    and the verdict. Every prompt is escaped: it is the user's text."""
    other_head = "Without a prompt" if compared.empty_prompt else "With the other prompt"
    rows = []
    for dim in DIMENSIONS:
        shift = compared.shift(dim)
        style = f"{CELL};{EMPHASIS}" if dim == "text_alignment" else CELL
        rows.append(f"<tr><td style='{style}'>{html.escape(DIMENSION_NAMES[dim].capitalize())}</td>"
                    f"<td style='{style}'>{_score(shift.before, shift.before_expected)}</td>"
                    f"<td style='{style}'>{_score(shift.after, shift.after_expected)}</td>"
                    f"<td style='{style}'>{_change(shift.change)}</td></tr>")
    head = "".join(f"<th style='{CELL}'>{name}</th>"
                   for name in ("Dimension", "With your prompt", other_head, "Change (expected)"))
    prompts = " · ".join(
        ([html.escape(video)] if video else []) + [f"your prompt: “{html.escape(compared.original_prompt)}”",
        "the other: none" if compared.empty_prompt else f"the other: “{html.escape(compared.other_prompt)}”"])
    note = f"<p style='margin:4px 0 0;font-size:14px'>{html.escape(compared.note)}</p>" if compared.note else ""
    return (f"<div class='vs2-prompt-check'><table style='border-collapse:collapse;width:100%;font-size:14px'>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"<p class='vs2-verdict' style='margin:10px 0 0'>{html.escape(compared.verdict)}</p>{note}"
            f"<p class='vs2-status' style='overflow-wrap:anywhere'>{prompts}<br>Each cell: the written score (its "
            f"expected value); a change under {BARELY_MOVED:g} in expected value counts as barely moved.</p></div>")

