"""A model that repeats itself: found in the text as it streams, so that generation can stop as
soon as the loop is certain instead of running to the token limit.

Certain means the text ends in at least MIN_REPEATS copies of one unit, and the copies span at
least MIN_SPAN characters: "The ball rolls. The ball rolls. The ball rolls. ..." A judgement's
rationale does not repeat a sentence three times verbatim; a looping model does, for ever. The
check works on characters (not tokens), so it is the same for every backend.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_REPEATS = 3
MIN_SPAN = 80  # characters: short runs such as "......" or "ha ha ha" are not a loop
PROBE = 12  # the text's last PROBE characters are looked for earlier, to find candidate periods
MAX_PERIOD = 4000


@dataclass(frozen=True)
class Repetition:
    """The text repeats a unit of `period` characters from `start` on; the first copy that
    repeats an earlier one starts at `start + period`."""

    start: int
    period: int

    @property
    def repeats_from(self) -> int:
        return self.start + self.period


def find_repetition(text: str) -> Repetition | None:
    """The loop the text ends in, or None. The shortest period wins; fast enough to run on every
    streamed update (a few `rfind`s over the text)."""
    n = len(text)
    if n < MIN_SPAN:
        return None
    probe = text[n - PROBE:]
    # Each earlier occurrence of the tail gives a candidate period, nearest (shortest) first.
    found = text.rfind(probe, 0, n - 1)
    while found != -1:
        period = (n - PROBE) - found
        if period > MAX_PERIOD or MIN_REPEATS * period > n:
            return None
        span = max(MIN_REPEATS * period, MIN_SPAN)
        if span <= n and text[n - span:n - period] == text[n - span + period:n]:
            start = n - span
            while start > 0 and text[start - 1] == text[start - 1 + period]:
                start -= 1
            return Repetition(start=start, period=period)
        found = text.rfind(probe, 0, found + PROBE - 1)
    return None
