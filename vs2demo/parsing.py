"""Read VideoScore2's text: its rationale and its three 1-5 scores, also while the text streams.

The trained shape is `<think>rationale</think>`, a blank line, then
`(1) visual quality: 3` / `(2) text-to-video alignment: 3` / `(3) physical/common-sense
consistency: 2`. The released model strays from it (outputs seen in the wild: the descriptor echoed,
"3/5", floats, no `<think>`, scores inside `<answer>` or only in the thinking), so a score is
read as: a dimension label (with the aliases the model uses), then, before the next label, the
first number written in one of a few recognised shapes ("label: 3", "label – descriptor: 3/5",
"**label** = 4.0", "label (1-5): 4", "label ... a score of 3", "label ... a 3", "label ... 3/5").

Rules:
- The score block is what follows the LAST `</think>` (or, with no `</think>`, the first
  `<answer>`); within it the FIRST readable score of each dimension counts. Only when the block has
  no score at all (and the text is final) is the whole text read, and then the LAST score of each
  dimension counts: inside a rationale the conclusion comes after the deliberation. A block with
  some scores keeps the missing ones None rather than mixing in numbers from the thinking.
- A thinking that is never closed (cut off at the token limit, or `</think>` forgotten) is read
  whole once the text is final, the LAST score of each dimension counting: what follows the last
  `</think>` is preferred, else the whole text.
- Full-width punctuation and digits (`：；，３`), which a Qwen model writes when it drifts into
  Chinese conventions, read as their ASCII forms.
- Only 1..5 count. A decimal in [1, 5] rounds half up (3.5 -> 4, 4.0 -> 4); its span is the digit
  before the point, the token whose probabilities the engine reads. 0, 6, 10, and any "x/10" or
  "x out of 10" give None, never a rescaled number.
- `final=False` (streaming) reports only what can no longer change: nothing before `</think>` (not
  even in a thinking that may never close), and a
  number only once the character after it shows it is complete ("3" may become "3.5", "10" or
  "3/10"). Every score reported for a prefix is therefore reported, unchanged, for the full text.

Pure Python: called on every streamed token, it makes a few linear passes with precompiled regexes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from . import DIMENSION_LABELS, DIMENSIONS


@dataclass(frozen=True)
class ParsedOutput:
    rationale: str  # the thinking, without <think>/</think>/<answer> tags, stripped
    scores: dict[str, int | None]  # each of DIMENSIONS -> 1..5, or None
    spans: dict[str, tuple[int, int] | None]  # (start, end) in the original text of each score's digit
    answer: str  # the text after the thinking (the score block), tags removed, stripped
    thinking_done: bool  # a </think> was seen (or, final, the text has no think section at all)

    @property
    def complete(self) -> bool:
        return all(self.scores.get(key) is not None for key in DIMENSIONS)


def parse(text: str, final: bool = True) -> ParsedOutput:
    """Read `text`, the model's output; `final=False` when it is a prefix of a still-streaming text."""
    scan = text.translate(_ASCII_FORMS)  # the same length: positions found in it are positions in text
    layout = _layout(scan, final)
    readings = _read_scores(scan, layout, final)
    return ParsedOutput(
        rationale=_clean(text, *layout.thinking, streaming=not final),
        scores={key: readings[key].score if key in readings else None for key in DIMENSIONS},
        spans={key: readings[key].span if key in readings else None for key in DIMENSIONS},
        answer=_clean(text, *layout.answer, streaming=not final) if layout.answer else "",
        thinking_done=layout.thinking_done,
    )


# Full-width forms (U+FF01-FF5E) and the ideographic space, comma and full stop read as their ASCII
# counterparts: "visual quality：３；" is "visual quality:3;". One character for one, so every
# position stays where it is in the model's own text, and a prefix maps to a prefix (streaming
# stays safe). ＜ and ＞ are left alone: the tags the model is trained to write are ASCII.
_ASCII_FORMS = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F) if code not in (0xFF1C, 0xFF1E)}
_ASCII_FORMS |= {0x3000: ord(" "), 0x3001: ord(","), 0x3002: ord(".")}


# ---- where the thinking ends and the answer begins -----------------------------------------------

_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_ANY_TAG = re.compile(r"</?(?:think|answer)>", re.IGNORECASE)
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_LONGEST_TAG = max(len(tag) for tag in _TAGS)


@dataclass(frozen=True)
class _Layout:
    thinking: tuple[int, int]  # span holding the rationale (tags inside it are removed later)
    answer: tuple[int, int] | None  # span of the score block; None while the model is still thinking
    thinking_done: bool


def thinking_span(text: str) -> tuple[int, int]:
    """Where a finished answer's thinking lies in it (tags included): (0, 0) when it has none."""
    return _layout(text.translate(_ASCII_FORMS), final=True).thinking


def _layout(text: str, final: bool) -> _Layout:
    last_close = _last_match(_THINK_CLOSE, text)
    if last_close is not None:
        thinking_end, answer_start = last_close.start(), last_close.end()
    elif (answer_open := _ANSWER_OPEN.search(text)) is not None:
        # "<think>...<answer>scores</answer>" without </think>: the answer tag ends the thinking.
        thinking_end = answer_start = answer_open.start()
    elif final and _THINK_OPEN.search(text) is None:
        # No think section at all: the whole text is the answer.
        return _Layout(thinking=(0, 0), answer=(0, len(text)), thinking_done=True)
    else:
        # Still thinking. Streaming text without any tag counts too: the model may have skipped the
        # opening <think> and write </think> later, which would make all of this the rationale.
        return _Layout(thinking=(0, len(text)), answer=None, thinking_done=False)
    # A <think> reopened after the answer began starts thinking again; its text is not the answer.
    reopened = _THINK_OPEN.search(text, answer_start)
    answer_end = reopened.start() if reopened is not None else len(text)
    return _Layout(thinking=(0, thinking_end), answer=(answer_start, answer_end), thinking_done=True)


def _last_match(pattern: re.Pattern, text: str) -> re.Match | None:
    last = None
    for last in pattern.finditer(text):
        pass
    return last


def _clean(text: str, start: int, end: int, streaming: bool) -> str:
    """The text of one section without its tags; while streaming, without a half-written tag either."""
    piece = _ANY_TAG.sub("", text[start:end])
    if streaming and end == len(text):
        piece = _without_partial_tag(piece)
    return piece.strip()


def _without_partial_tag(piece: str) -> str:
    """Drop a tag still being written at the end ("...the ball falls.</thi"), so the UI never shows it."""
    for length in range(min(len(piece), _LONGEST_TAG - 1), 0, -1):
        ending = piece[-length:].lower()
        if any(tag.startswith(ending) for tag in _TAGS):
            return piece[:-length]
    return piece


# ---- dimension labels ----------------------------------------------------------------------------

# Everything after the canonical label: the other names the model gives a dimension.
_LABEL_ALIASES = {
    "visual_quality": (),
    "text_alignment": (
        "text video alignment", "video text alignment", "t2v alignment", "text alignment", "prompt alignment",
    ),
    "physical_consistency": (
        "physical and common sense consistency", "common sense consistency", "physical consistency",
        "physics consistency",
    ),
}
# Between the words of a label: spaces, "-", "/", "_", "&" or nothing ("commonsense", "t2v_alignment").
_WORD_GAP = r"[\s_/&-]*"


def _label_pattern(name: str) -> str:
    """A label as a regex that accepts any of the usual separators between its words."""
    words = re.findall(r"[a-z0-9]+", name.lower())
    return _WORD_GAP.join(re.escape(word) for word in words)


def _dimension_group(key: str) -> str:
    names = sorted({DIMENSION_LABELS[key], *_LABEL_ALIASES[key]}, key=len, reverse=True)
    return f"(?P<{key}>" + "|".join(_label_pattern(name) for name in names) + ")"


_LABEL = re.compile(r"\b(?:" + "|".join(_dimension_group(key) for key in DIMENSIONS) + r")\b", re.IGNORECASE)


# ---- a score written after a label ---------------------------------------------------------------
# Each pattern is matched right where a label ends and must stop before the next label. Every one
# takes the first number after the label (their gaps hold no digit), except that "(1-5)" is skipped,
# so the patterns can only disagree on whether there is a score, never on which number it is.

_WRAP = r"[*_`\"']*"  # markdown emphasis or quotes around a label or a number: **visual quality**: "3"
_NUMBER = r"(?P<number>\d+(?:\.\d+)?)"
_OUT_OF = (  # "3/5", "3 out of 5"; another denominator means another scale: no score
    r"(?:[ \t]*/[ \t]*(?P<denominator>\d+(?:\.\d+)?)|[ \t]+out[ \t]+of[ \t]+(?P<out_of>\d+(?:\.\d+)?))"
)
_NUMBER_END = r"(?![\w-]|\.\d)"  # not "3D", "2-second", "3-4"
_SCORE = _WRAP + _NUMBER + _OUT_OF + "?" + _NUMBER_END

# "(1) visual quality – clarity, smoothness, artifacts: 3": the card's descriptor echoed.
_DESCRIPTOR = r"(?:[ \t]*[-–—][ \t]*[^\n\d:;.=|<>]{1,80}?)?"
_SCORE_WORD = r"(?:[ \t]+(?:score|rating))?"  # "visual quality score: 4"
_RANGE_NOTE = (  # "visual quality (1-5): 4", "[1 to 5]", "(out of 5)": the scale, not the score
    r"(?:[ \t]*[(\[][ \t]*(?:1[ \t]*(?:-|–|—|to)[ \t]*5|out[ \t]+of[ \t]+5)[ \t]*[)\]])?"
)
_SEPARATOR = r"(?:[ \t]*(?:->|=>|→|[:=|\-–—])|[ \t]+(?:is|was|of|would[ \t]+be|gets?)\b)"
# Inside a sentence: up to 60 characters with no digit, no sentence or line end, no tag.
_PHRASE_GAP = r"[^\n\d.;<>]{0,60}?"
# After "a 3" the sentence must go on with punctuation or a connecting word, not "a 2-second glitch".
_CLAUSE_END = r"(?=" + _WRAP + r"[ \t]*(?:[,.;:!?)\]\n]|$|(?:for|and|overall|here)\s))"

_SCORE_PATTERNS = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        # visual quality: 3 | **Visual quality**: 4.0 | - visual quality = 4 | label – descriptor: 3/5
        _WRAP + _DESCRIPTOR + _WRAP + _SCORE_WORD + _WRAP + _RANGE_NOTE + _WRAP + _SEPARATOR
        + r"[ \t]*" + _WRAP + r"[ \t]*[(\[]?[ \t]*(?:an?[ \t]+)?" + _SCORE,
        # **Visual quality**\n- Score: 4
        _WRAP + r"[ \t]*:?[ \t]*" + _WRAP + r"[ \t]*\n[ \t]*(?:[-*>•][ \t]*)?" + _WRAP
        + r"(?:score|rating)" + _WRAP + r"[ \t]*[:=][ \t]*" + _SCORE,
        # I would give visual quality a score of 3 | the visual quality rating is 4
        _PHRASE_GAP + r"\b(?:score[ds]?|rating|rated?|grade[ds]?)\b(?:[ \t]+it)?[ \t]*"
        + r"(?:(?:of|is|would[ \t]+be|at|as|to[ \t]+be|:|=)[ \t]*)?(?:an?[ \t]+)?" + _SCORE,
        # visual quality deserves a 3, ...
        _PHRASE_GAP + r"\ban?[ \t]+" + _SCORE + _CLAUSE_END,
        # visual quality looks fine overall, 4/5
        _PHRASE_GAP + r"(?<![\w.])" + _WRAP + _NUMBER + _OUT_OF + _NUMBER_END,
        # visual quality 3, text alignment 4
        r"[ \t]+" + _SCORE + _CLAUSE_END,
    )
)

# What may follow a number that is not finished yet: "3" -> "3.5", "3/" -> "3/10", "3 out of 1" ->
# "3 out of 10", "**3" -> "**3** apples". Prefix-closed: once the text after a number leaves this
# set, no later text brings it back, so a number reported as settled stays settled.
_UNSETTLED_TAIL = re.compile(
    r"\.|[*_`\"']*[ \t]*(?:/[ \t]*\d*|o(?:u(?:t(?:[ \t]+(?:o(?:f(?:[ \t]+\d*)?)?)?)?)?)?)?"
)
_UNSETTLED_TAIL_MAX = 24  # chars looked at; 24 blanks after a number keep it waiting, which is harmless


@dataclass(frozen=True)
class _Reading:
    score: int
    span: tuple[int, int]


def _read_scores(text: str, layout: _Layout, final: bool) -> dict[str, _Reading]:
    if layout.answer is None:
        # Still thinking, or a final text whose thinking never closed: then the whole of it is read.
        return _scores_between(text, 0, len(text), settled_only=False, keep_last=True) if final else {}
    if not final:
        return _scores_between(text, *layout.answer, settled_only=True, keep_last=False)
    readings = _scores_between(text, *layout.answer, settled_only=False, keep_last=False)
    if not readings:
        readings = _scores_between(text, 0, len(text), settled_only=False, keep_last=True)
    return readings


def _scores_between(text: str, start: int, end: int, settled_only: bool, keep_last: bool) -> dict[str, _Reading]:
    """The score of each dimension whose label and number both lie in text[start:end]."""
    labels = list(_LABEL.finditer(text, start, end))
    readings: dict[str, _Reading] = {}
    for index, label in enumerate(labels):
        key = label.lastgroup
        if key in readings and not keep_last:
            continue
        window_end = labels[index + 1].start() if index + 1 < len(labels) else end
        match = _match_score(text, label.end(), window_end)
        if match is None or (settled_only and not _is_settled(text, match)):
            continue
        score = _score_value(match)
        if score is not None:
            readings[key] = _Reading(score, _digit_span(match))
    return readings


def _digit_span(match: re.Match) -> tuple[int, int]:
    """The units digit the model wrote: the "4" of "4.0", the "3" of "3/5"."""
    units_end = match.start("number") + len(match["number"].split(".")[0])
    return (units_end - 1, units_end)


def _match_score(text: str, start: int, end: int) -> re.Match | None:
    return next((match for pattern in _SCORE_PATTERNS if (match := pattern.match(text, start, end))), None)


def _is_settled(text: str, match: re.Match) -> bool:
    number_end = match.end("number")
    tail = text[number_end:number_end + _UNSETTLED_TAIL_MAX]
    return _UNSETTLED_TAIL.fullmatch(tail) is None


def _score_value(match: re.Match) -> int | None:
    """1..5, or None for a number off the 1-5 scale."""
    scale = match["denominator"] or match["out_of"]
    if scale is not None and float(scale) != 5:
        return None
    value = float(match["number"])
    if not 1 <= value <= 5:
        return None
    return math.floor(value + 0.5)  # half up, unlike round(), which sends 2.5 to 2


# ---- the authors' reading -----------------------------------------------------------------------------

# vs2_inference.py's score regex (the integer scores) and its search for each score's token (the
# first digit after the first "<label>:", optionally after "(n) " or a new line), over the whole
# text, thinking included.
AUTHORS_SCORES = re.compile(
    r"visual quality:\s*(\d+).*?text-to-video alignment:\s*(\d+).*?physical/common-sense consistency:\s*(\d+)",
    re.DOTALL | re.IGNORECASE)
AUTHORS_LABELS = {"visual_quality": "visual quality:", "text_alignment": "text-to-video alignment:",
                  "physical_consistency": "physical/common-sense consistency:"}


def authors_reading(text: str) -> dict[str, tuple[int | None, int | None]]:
    """Each dimension's (score, where its probabilities are read) as the authors' script reads them:
    the score from their regex (any whole number, as they keep it; None for all three when it does
    not match), and the character of the first digit after the first match of the label (None when
    there is none; their soft score is then None too)."""
    match = AUTHORS_SCORES.search(text)
    reading = {}
    for number, key in enumerate(DIMENSIONS, start=1):
        label = re.search(r"(?:\(\d+\)\s*|\n\s*)?" + re.escape(AUTHORS_LABELS[key]), text, re.IGNORECASE)
        digit = re.search(r"\d", text[label.end():]) if label else None
        score = int(match.group(number)) if match else None
        reading[key] = (score, label.end() + digit.start() if digit else None)
    return reading
