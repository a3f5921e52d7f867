"""Do the model's words agree with its numbers? Checks on one answer's text, kept in the record and
shown as badges: what VideoScore2's users report (thinking that contradicts the scores, scores
written only inside the thinking, a doubled `</think>`) and the shapes that make a score doubtful.
Pure Python, on the final text."""

from __future__ import annotations

import re

from . import DIMENSION_LABELS, DIMENSIONS
from .parsing import ParsedOutput, parse

# key -> what the badge says
CHECKS = {
    "thinking_disagrees": "the thinking concludes other scores than the answer gives",
    "scores_only_in_thinking": "no answer block: the scores were read from the thinking",
    "think_closed_twice": "</think> written more than once",
    "score_out_of_range": "a score outside 1-5 was written",
    "answer_inside_thinking": "a score block was written before the thinking ended",
    "loop": "the model repeated itself and was stopped",
}

_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
# "(1) visual quality: 3" at the start of a line: the trained score block's shape.
_BLOCK_LINE = re.compile(r"(?:^|\n)\s*\(1\)\s*visual quality\s*[:：]", re.IGNORECASE)
_NUMBER_AFTER_LABEL = {key: re.compile(re.escape(label) + r"\s*[:：=]\s*(\d+(?:\.\d+)?)(\s*/\s*\d+)?", re.IGNORECASE)
                       for key, label in DIMENSION_LABELS.items()}


def check_output(text: str, parsed: ParsedOutput | None = None, looped: bool = False) -> list[str]:
    """The CHECKS keys that hold for this final answer, in CHECKS' order."""
    parsed = parsed if parsed is not None else parse(text, final=True)
    found = set()
    closes = list(_THINK_CLOSE.finditer(text))
    if len(closes) > 1:
        found.add("think_closed_twice")
    if closes and _BLOCK_LINE.search(text[:closes[-1].start()]):
        found.add("answer_inside_thinking")
    # The thinking's own conclusion: read alone, a never-closed thinking counts its last scores.
    thinking = parse("<think>" + parsed.rationale, final=True).scores if parsed.rationale else {}
    answer = parse(parsed.answer, final=True).scores if parsed.answer else {}
    if any(parsed.scores.values()) and not any(answer.values()):
        found.add("scores_only_in_thinking")
    if any(answer.get(k) is not None and thinking.get(k) is not None and answer[k] != thinking[k] for k in DIMENSIONS):
        found.add("thinking_disagrees")
    for pattern in _NUMBER_AFTER_LABEL.values():
        for match in pattern.finditer(text):
            value, out_of = float(match.group(1)), match.group(2)
            if not 1 <= value <= 5 or (out_of and out_of.strip(" /") != "5"):
                found.add("score_out_of_range")
    if looped:
        found.add("loop")
    return [key for key in CHECKS if key in found]
