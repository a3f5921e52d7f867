"""Pure rendering of engine output for the UI: thinking messages, score cards, numbers, toasts.
Shared by the tabs; no model code.

Text that comes from the model or from a user (file names, prompts, CSV headers) is shown as text:
escaped wherever Gradio would render it as HTML (chat messages, toasts, HTML blocks)."""

from __future__ import annotations

import html
import json
import math
import re
import time
from pathlib import Path

from .. import DIMENSION_TABLE, DIMENSIONS
from ..parsing import ParsedOutput, parse
from ..results import DimensionScore, ScoreResult, text_cell
from ..metrics import counted
from ..scoring import ScoreUpdate, Stage
from . import files

CARD_TITLES = {dimension.key: (dimension.title, dimension.judges) for dimension in DIMENSION_TABLE}

def toy_banner(fallback_reason: str | None = None) -> str:
    """The warning over every tab while the toy model runs; when the app fell back to it, why, and
    the way to the real model (the reason says both, in one sentence)."""
    toy = ("The toy is the project's tiny offline model, built for tests and previews: its scores and "
           "reasoning mean nothing about your video.")
    if fallback_reason:
        reason = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(fallback_reason))
        return (f"<div class='vs2-banner'>⚠ <b>Toy model loaded: the real model cannot run here.</b> {reason} "
                f"{toy}</div>")
    return (f"<div class='vs2-banner'>⚠ <b>Toy model loaded.</b> {toy} For real judgements, run "
            "<code>python app.py</code> (TIGER-Lab/VideoScore2) on a machine with an NVIDIA GPU.</div>")


# The app's own styles, a stylesheet Gradio reads (ui.app.launch passes it as css_paths).
STYLESHEET = Path(__file__).with_name("style.css")


def status_html(state: str, message: str) -> str:
    """The one status line of a tab; `state` (idle, busy, done, failed) is its class, so that Stop
    can tell whether anything was running."""
    return f"<div class='vs2-status {html.escape(state)}'>{html.escape(message)}</div>"


def stopped_view(cards: str, reasoning: str) -> tuple[str, str]:
    """The cards and reasoning panel as they were when Stop was pressed, made calm: a score that
    never came says "stopped" instead of "waiting…", and the panel's header no longer says the
    model is writing. (Stop runs in the page's own event, which has only the outputs' values.)"""
    cards = (cards or "").replace("waiting…", "stopped")
    match = re.search(r"<div class='head'>Writing… ([0-9.]+ s)</div>", reasoning or "")
    if match:
        reasoning = reasoning.replace("vs2-reasoning writing", "vs2-reasoning stopped", 1).replace(
            match.group(0), f"<div class='head'>Stopped after {match.group(1)}</div>", 1)
    return cards, reasoning


def toast_message(title: str, text: str) -> str:
    """A toast's message that leads with what happened in bold. Gradio 6.31 heads every toast with
    its kind only ("Error", "Warning") and drops gr.Error's `title`; the title still goes to
    gr.Error, so a Gradio that shows it again shows it twice rather than never. A toast renders
    HTML: both are escaped, so `<img ...>` or `<form>` in a file name or a CSV header shows as
    the characters it is."""
    return f"<strong>{html.escape(title, quote=False)}</strong><br>{html.escape(text, quote=False)}"


def refusal(title: str, text: str):
    """A gr.Error for a run that cannot start: a toast led by `title` (toast_message), no traceback."""
    import gradio as gr

    return gr.Error(toast_message(title, text), title=title, print_exception=False)


def check_model(model_status) -> None:
    """Refuses a run (a toast) while the model could not be loaded; `model_status()`: scoring.ModelStatus."""
    model = model_status()
    if model.state == "failed":
        raise refusal("The model is not available", f"The model could not be loaded: {model.error}")


def unkept_note(results) -> str:
    """" ⚠ N results were not kept ..." when the store could not keep some (a full disk), else ""."""
    unkept = [result for result in results if result.store_error]
    if not unkept:
        return ""
    return (f" ⚠ {len(unkept)} of these results {'was' if len(unkept) == 1 else 'were'} not kept in the results store "
            f"(shown, but not kept): {unkept[-1].store_error}")


def files_label(base: str, paths) -> str:
    """An upload box's label with how many files it holds: the box shows only the first few."""
    count = len(paths or [])
    return f"{base}: {count} file{'s' if count != 1 else ''}" if count else base


class UpdatePacer:
    """Streamed updates to a page at a bounded rate: a model writes tens of tokens a second, and
    re-sending and re-rendering the page's outputs for each one slowed a long answer in the browser
    to four times the model's own time. A few updates a second is plenty for reading; the final
    update is always sent (the tabs yield it outside the pacer), and so is the first with text
    (`skip`), which is what the reader waits for."""

    def __init__(self, per_second: float = 6.0):
        self.interval = 1.0 / per_second
        self._last = float("-inf")

    def skip(self, update: ScoreUpdate) -> bool:
        """True for a streamed update of text that comes too soon after the last one sent. Updates
        without text (a stage changing, generation starting) always go and use up no turn, so the
        first text is never held back."""
        if update.stage is not Stage.GENERATING or not update.text:
            return False
        return not self.due()

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.interval:
            return False
        self._last = now
        return True


REASONING_PLACEHOLDER = "The reasoning streams here as the model writes it."


def reasoning_html(parsed: ParsedOutput | None, elapsed_s: float = 0.0, state: str = "writing", text: str = "",
                   note: str = "") -> str:
    """The model's reasoning as a reading panel: a header (writing…, written in N s, stopped), the
    rationale in body type, then the answer block. It stays open while it streams and after; the
    accordion around it is the reader's to fold. `state`: "empty", "writing", "done" or "stopped".
    The model's text is shown as text (escaped), never as markup."""
    if state == "empty":
        return f"<div class='vs2-reasoning empty'><p class='placeholder'>{REASONING_PLACEHOLDER}</p></div>"
    rationale = parsed.rationale if parsed is not None else ""
    answer = parsed.answer if parsed is not None else ""
    thinking_done = state == "done" or (parsed is not None and parsed.thinking_done)
    if state == "stopped":
        head = f"Stopped after {elapsed_s:.1f} s"
    elif thinking_done:
        head = f"Reasoning, written in {elapsed_s:.1f} s"
    else:
        head = f"Writing… {elapsed_s:.1f} s"
    if state == "done" and not rationale and not answer and text:
        body = text  # an answer in no known shape: all of it, as written
    else:
        body = rationale or ("(no reasoning written)" if thinking_done else "…")
    parts = [f"<div class='vs2-reasoning {html.escape(state)}'>",
             f"<div class='head'>{html.escape(head)}</div>",
             f"<div class='text'>{html.escape(body)}</div>"]
    if thinking_done and answer:
        parts.append(f"<pre class='answer'>{html.escape(answer.strip())}</pre>")
    if note:
        parts.append(f"<div class='note'>{html.escape(note)}</div>")
    parts.append("</div>")
    return "".join(parts)


def checks_html(checks: list[str]) -> str:
    """The consistency checks that hold for an answer, as badges (nothing when none hold)."""
    from ..consistency import CHECKS

    if not checks:
        return ""
    badges = "".join(f"<span class='vs2-check' title='{html.escape(key)}'>⚠ {html.escape(CHECKS.get(key, key))}</span>"
                     for key in checks)
    return f"<div class='vs2-checks'>{badges}</div>"


def record_reasoning(result: ScoreResult) -> str:
    """A finished record's reasoning panel; a record with no text shows only its error, and one
    that kept only its rationale (no whole answer) shows that."""
    if result.error and not result.text:
        return f"<div class='vs2-reasoning failed'><div class='note'>⚠ {html.escape(result.error)}</div></div>"
    text = result.text or (f"<think>{result.rationale}</think>" if result.rationale else "")
    if not text:
        return "<div class='vs2-reasoning'><p class='placeholder'>This record keeps no text (a CSV keeps only the scores).</p></div>"
    return reasoning_html(parse(text), result.timings.get("generate_s", 0), "done", text=text, note=result.error or "")


def _card(title: str, hint: str, score: str, detail: str, extra_class: str = "") -> str:
    return (f"<div class='vs2-card {extra_class}'><div class='title'>{html.escape(title)}</div>"
            f"<div class='hint'>{html.escape(hint)}</div><div class='score'>{score}</div>"
            f"<div class='detail'>{detail}</div></div>")


def _out_of_five(value) -> str:
    """A card's big number; escaped whatever its type (a record from a file is checked before it is
    shown, and this keeps the page safe should anything slip past)."""
    return f"{html.escape(str(value))}<small> / 5</small>"


def score_cards(scores: dict[str, DimensionScore] | None, overall: float | None = None, final: bool = False,
                best: set[str] | frozenset = frozenset()) -> str:
    """Three cards (score, expected value, confidence) and the overall. While streaming, a score
    shows as soon as it is written; expected values and confidence come with the final result."""
    scores = scores or {}
    cards = []
    for key in DIMENSIONS:
        title, hint = CARD_TITLES[key]
        dim = scores.get(key) or DimensionScore(None)
        if dim.score is None:
            cards.append(_card(title, hint, "–<small> / 5</small>", "not scored" if final else "waiting…", "pending"))
            continue
        detail = "&nbsp;"
        if dim.expected is not None and dim.confidence is not None:
            detail = f"expected {dim.expected:.2f} · confidence {dim.confidence:.0%}"
        if key in best:  # Compare: this video wins this dimension alone
            cards.append(_card(f"★ {title}", "the best of the videos here", _out_of_five(dim.score), detail,
                               "best"))
        else:
            cards.append(_card(title, hint, _out_of_five(dim.score), detail))
    if overall is not None:
        cards.append(_card("Overall", "mean of the expected scores", _out_of_five(f"{overall:.2f}"), "&nbsp;", "overall"))
    else:
        cards.append(_card("Overall", "mean of the expected scores", "–", "after all three" if not final else "incomplete", "overall pending"))
    return f"<div class='vs2-cards'>{''.join(cards)}</div>"


def partial_scores(parsed: ParsedOutput | None) -> dict[str, DimensionScore]:
    if parsed is None:
        return {}
    return {key: DimensionScore(value) for key, value in parsed.scores.items() if value is not None}


def stats_html(update: ScoreUpdate | None = None, result: ScoreResult | None = None) -> str:
    """The numbers a curious user wants: frames, frame size, visual tokens, speed."""
    frames = (result.frames if result else update.frames if update else {}) or {}
    if not frames:
        return ""
    parts = [
        f"<b>{frames['count']} frames</b> of {frames['source_frames']} "
        f"({frames['source_fps']:g} fps, {frames['duration']:.1f} s, {frames['source_width']}×{frames['source_height']})",
        f"seen at <b>{frames['width']}×{frames['height']}</b>",
    ]
    if frames.get("sampled_fps"):
        # Both rates: the one the frames have, and the one the model is told (as the authors' stack does).
        rate = f"{frames['sampled_fps']:.3g} frames a second"
        if frames.get("model_fps"):
            rate += f", the model told {frames['model_fps']:g}"
        parts.append(rate)
    tokens = frames.get("visual_tokens")
    if tokens:
        parts.append(f"<b>{tokens:,} visual tokens</b>")
    if result is not None and result.timings:
        t = result.timings
        parts.append(f"first token after <b>{t['first_token_s']:.2f} s</b>")
        if t.get("tokens_per_s"):
            among = f", {len(result.samples)} samples" if result.samples else ""
            parts.append(f"<b>{t['tokens_per_s']:.1f} tokens/s</b> ({t['new_tokens']} tokens{among})")
        parts.append(f"total {t['total_s']:.1f} s")
    elif update is not None and update.new_tokens:
        parts.append(f"{update.new_tokens} tokens so far")
    return "<div class='vs2-stats'>" + " · ".join(parts) + "</div>"


def record_downloads(results, name: str) -> tuple:
    """The updates of a run's two download buttons: its records as the CSV table and as JSON
    (files named after `name`); hidden while it has none."""
    import gradio as gr

    from ..records_io import results_to_csv, results_to_json

    if not results:
        return gr.update(value=None, visible=False), gr.update(value=None, visible=False)
    return (gr.update(value=files.write_download(results_to_csv(results), name, ".csv"), visible=True),
            gr.update(value=files.write_download(results_to_json(results), name, ".json"), visible=True))


def record_download(result: ScoreResult) -> str:
    return files.write_download(json.dumps(result.to_dict(), ensure_ascii=False, indent=2), Path(result.video).name or "result", ".json")


def _scaled(frame, height: int):
    """A frame as a PIL image `height` pixels high, its shape kept."""
    from PIL import Image

    image = Image.fromarray(frame)
    return image.resize((max(1, round(image.width * height / image.height)), height), Image.BILINEAR)


def frame_strip(video, height: int = 96) -> list[tuple]:
    """Thumbnails of the frames the model saw, captioned with their time in the source video."""
    return [(_scaled(frame, height), f"{seconds:.1f} s") for frame, seconds in zip(video.frames, video.timestamps)]


# ---- tables of many videos (Best of N, Batch) ---------------------------------------------------

def thumbnail_cell(frame, height: int = 54) -> str:
    """A video's thumbnail for a table cell (markdown): one frame as a small inline JPEG, so the
    table needs no file route and a row's picture travels with the row (about 2-4 KB)."""
    import base64
    import io

    buffer = io.BytesIO()
    _scaled(frame, height).save(buffer, "JPEG", quality=75)
    return f"![thumbnail](data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode()})"


def progress_status(update: ScoreUpdate | None) -> str:
    """Where one video's scoring stands, in words: the one place every tab reads an update's stage."""
    if update is None:
        return "Reading the video…"
    if update.stage is Stage.LOADING:
        return "Waiting for the model to load…"
    if update.stage is Stage.WAITING:
        return f"Waiting for the model: {counted(update.ahead or 0, 'request')} ahead of this one…"
    if update.stage is Stage.SAMPLED or not update.new_tokens:
        return "The model is looking at the frames…"
    return f"The model is writing… {counted(update.new_tokens, 'token')}"


def progress_message(position: int, total: int, name: str, update: ScoreUpdate | None = None) -> str:
    """`Scoring 3 of 8: clip.mp4. The model is writing… 120 tokens`"""
    return f"Scoring {position} of {total}: {name}. {progress_status(update)}"


# ---- looking inside one judgement: token confidence, K samples ----------------------------------

# (lowest p of the band, its class): a token in the first band whose lowest p it reaches.
CONFIDENCE_BANDS = ((0.9, "c0"), (0.7, "c1"), (0.5, "c2"), (0.3, "c3"), (0.0, "c4"))
SURE = CONFIDENCE_BANDS[0][0]  # every token at least this likely: no passage is singled out
CONFIDENCE_LEGEND = (("c0", "p ≥ 0.9"), ("c1", "0.7–0.9"), ("c2", "0.5–0.7"), ("c3", "0.3–0.5"), ("c4", "< 0.3"))


def confidence_band(p: float) -> str:
    return next(band for low, band in CONFIDENCE_BANDS if p >= low)


def token_tip(tokens, index: int) -> str:
    """What a token's tooltip says: its probability, then the likeliest tokens at that step."""
    if not tokens.has_alternatives:  # the engine gave the chosen token's p only (vLLM)
        return f"p = {tokens.p[index]:.3g}"
    lines = [f"p = {tokens.p[index]:.3g} · entropy {tokens.entropy[index]:.2f} nats"]
    lines += [f"{prob:6.1%}  {text!r}" for text, prob in tokens.alternatives_at(index)]
    return "\n".join(lines)


def confidence_html(result: ScoreResult) -> str:
    """The answer as written, laid out as the reasoning view lays it out (the rationale, then the score
    block; no <think> or <answer> tags), each token shaded by how sure the model was of it (its
    alternatives on hover or tap), then the passages where it was least sure."""
    tokens = result.tokens
    if tokens is not None and not len(tokens) and tokens.problem:  # read from a file when the row was opened
        return ("<div class='vs2-reasoning'><p class='placeholder'>This record's token probabilities cannot be shown: "
                f"{html.escape(tokens.problem)}</p></div>")
    if tokens is None or not len(tokens):
        return ("<div class='vs2-reasoning'><p class='placeholder'>This record keeps no token probabilities "
                "(it was scored before they were kept, or read from a CSV).</p></div>")
    sections = shown_sections(tokens.text)
    shown = {part: token_fragments(tokens, start, end) for part, start, end in sections}
    spans = {part: "".join(f"<span class='vs2-tok {confidence_band(tokens.p[index])}' tabindex='0' "
                           f"data-alt='{html.escape(token_tip(tokens, index))}'>{html.escape(piece)}</span>"
                           for index, piece in fragments) for part, fragments in shown.items()}
    legend = "".join(f"<span class='vs2-tok {band}'>{html.escape(label)}</span>" for band, label in CONFIDENCE_LEGEND)
    parts = ["<div class='vs2-reasoning done vs2-confidence'>",
             "<div class='head'>How sure the model was of each token it wrote (point at or tap a token for "
             f"{'its alternatives' if tokens.has_alternatives else 'its probability; a vLLM engine gives no alternatives'})"
             f"<div class='vs2-legend'>{legend}</div></div>",
             f"<div class='text'>{spans.get('text') or '(no reasoning written)'}</div>"]
    if spans.get("answer"):
        parts.append(f"<pre class='answer'>{spans['answer']}</pre>")
    parts.append(least_sure_html(tokens, sections, [index for fragments in shown.values() for index, _ in fragments]))
    parts.append("</div>")
    return "".join(parts)


_TAG = re.compile(r"</?(?:think|answer)>", re.IGNORECASE)


def shown_sections(text: str) -> list[tuple[str, int, int]]:
    """Where the reasoning view's two parts lie in an answer, as (part, start, end): "text" (the
    rationale) and "answer" (the score block), each without the tags and blanks at its ends."""
    from ..parsing import thinking_span

    start, end = thinking_span(text)
    found = []
    for part, low, high in (("text", start, end), ("answer", end, len(text))):
        while low < high:  # leading blanks and tags
            tag = _TAG.match(text, low)
            if tag is None and not text[low].isspace():
                break
            low = tag.end() if tag else low + 1
        while high > low:  # trailing ones
            tag = next((m for m in _TAG.finditer(text, low, high) if m.end() == high), None)
            if tag is None and not text[high - 1].isspace():
                break
            high = tag.start() if tag else high - 1
        if high > low:
            found.append((part, low, high))
    return found


def token_fragments(tokens, low: int, high: int) -> list[tuple[int, str]]:
    """(token index, the part of its text shown) for the tokens that reach into text[low:high], tags
    cut out: a token the tokenizer merged across a tag (">The") shows only its word."""
    text = tokens.text
    tags = [(m.start(), m.end()) for m in _TAG.finditer(text, low, high)]
    fragments = []
    for index, start in enumerate(tokens.offsets()):
        end = start + len(tokens.pieces[index])
        if end <= low or start >= high:
            continue
        at, piece = max(start, low), ""
        for tag_start, tag_end in tags:
            if tag_end > at and tag_start < min(end, high):
                piece += text[at:max(at, tag_start)]
                at = max(at, tag_end)
        piece += text[at:min(end, high)] if at < min(end, high) else ""
        if piece:
            fragments.append((index, piece))
    return fragments


def least_sure_html(tokens, sections, shown: list[int]) -> str:
    """"Where it was least sure": the sentences of the rationale and the lines of the score block
    that hold a token chosen below SURE (however short: an unsure token shaded above is never left
    out), or that it was sure of every token shown."""
    from ..confidence import least_certain_passages

    lowest = min((tokens.p[index] for index in shown), default=1.0)
    if lowest >= SURE:
        return (f"<div class='vs2-least'>It was sure of every token it wrote (none below p {SURE:g}; the least, "
                f"p {lowest:.2f}).</div>")
    passages = [passage for _, start, end in sections
                for passage in least_certain_passages(tokens, len(tokens), within=(start, end), min_tokens=1)
                if passage.weakest_p < SURE]
    passages = sorted(passages, key=lambda passage: -passage.mean_surprise)[:3]
    items = "".join(
        f"<li>“{html.escape(text_cell(p.text, 160))}”<br><small>mean p {math.exp(-p.mean_surprise):.2f} per token; "
        f"least sure of “{html.escape(p.weakest)}” (p {p.weakest_p:.2g})</small></li>" for p in passages)
    return f"<div class='vs2-least'><b>Where it was least sure</b><ol>{items}</ol></div>"


def samples_live_html(texts: tuple[str, ...]) -> str:
    """K answers as they are written, side by side (their reasoning so far)."""
    cards = []
    for number, text in enumerate(texts, start=1):
        parsed = parse(text, final=False)
        body = parsed.rationale or "…"
        scores = " · ".join(f"{CARD_TITLES[key][0]} {value}" for key, value in parsed.scores.items() if value is not None)
        cards.append(f"<div class='vs2-sample'><div class='head'>Sample {number}</div>"
                     f"<div class='scores'>{html.escape(scores) or '&nbsp;'}</div>"
                     f"<div class='body'>{html.escape(body)}</div></div>")
    return f"<div class='vs2-samples'>{''.join(cards)}</div>"


def agreement_html(result: ScoreResult) -> str:
    """How K samples agreed: per dimension the scores they wrote (a bar a score), the agreement
    rate, the mean and spread of their expected values and an unstable flag; then each sample."""
    from ..results import agreement
    from ..self_consistency import representative, summary_sentence

    samples = result.samples
    if not samples:
        return ""
    rows = []
    for key, summary in agreement(samples).items():
        most = max(summary.counts) or 1
        bars = "".join(f"<div class='level' title='{count} wrote {level}'>"
                       f"<div class='bar' style='height:{max(2, round(28 * count / most)) if count else 0}px'></div>"
                       f"{level}</div>" for level, count in zip(range(1, 6), summary.counts))
        agree = "–" if summary.agreement is None else f"{summary.agreement:.0%} wrote {summary.mode}"
        spread = ("–" if summary.expected_mean is None else
                  f"{summary.expected_mean:.2f} ± {summary.expected_sd:.2f}")
        flag = "<span class='unstable'>unstable</span>" if summary.unstable else "stable"
        rows.append(f"<tr><td>{html.escape(CARD_TITLES[key][0])}</td><td><div class='bars'>{bars}</div></td>"
                    f"<td>{agree}</td><td>{spread}</td><td>{flag}</td></tr>")
    shown = representative(samples)
    cards = []
    for number, sample in enumerate(samples, start=1):
        scores = " · ".join(f"{CARD_TITLES[key][0]} {sample.scores[key].score if sample.scores[key].score else '–'}"
                            for key in DIMENSIONS)
        head = f"Sample {number}" + (" (shown above)" if number - 1 == shown else "")
        note = f"<div class='note'>{html.escape(sample.error)}</div>" if sample.error else ""
        cards.append(f"<div class='vs2-sample{' shown' if number - 1 == shown else ''}'>"
                     f"<div class='head'>{head}</div><div class='scores'>{html.escape(scores)}</div>"
                     f"{checks_html(sample.checks)}<div class='body'>{html.escape(sample.rationale or sample.text)}</div>"
                     f"{note}</div>")
    return (f"<div class='vs2-stats'><b>{html.escape(summary_sentence(samples))}</b> The cards above show the score "
            "most samples wrote, with p(1..5) averaged over the samples.</div>"
            "<div class='vs2-scroll'><table class='vs2-agreement'><tr><th>Dimension</th><th>Scores written</th>"
            "<th>Agreement</th><th>Expected, mean ± sd</th><th></th></tr>" + "".join(rows) + "</table></div>"
            f"<div class='vs2-samples'>{''.join(cards)}</div>")
