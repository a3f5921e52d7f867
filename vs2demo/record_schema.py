"""What a record read from a file must be before anything is shown or computed from it.

Records come back from files people upload (Explore, `metrics`), from `--out` files a resume reads,
and from the store. `ScoreResult.from_dict` builds whatever it is given; `check_record` first checks
every field the app shows or computes with: its JSON type, its range, finite numbers, p(1..5)
non-negative and summing to at most 1. A record that fails is refused with the line and the field,
so a file that runs script in the page or breaks the metrics never reaches either. Pure Python.
"""

from __future__ import annotations

import itertools
import math

from . import DIMENSIONS
from .errors import UserInputError, shown

SCORE_LEVELS = (1, 2, 3, 4, 5)
# The record's form: 2 says its `version`; 1 is every record written before (no `version`), read as it is.
RECORD_VERSION = 2
# Probabilities kept at 4 decimals by earlier versions sum to 1 within 5 x 0.00005.
PROBS_SUM_SLACK = 1e-3
TEXT_FIELDS = ("video", "prompt", "model", "rationale", "text")
OPTIONAL_TEXT_FIELDS = ("error", "key", "video_sha256", "scored_at", "store_error")
MAPPING_FIELDS = ("frames", "timings", "settings")


class RecordError(UserInputError):
    """A record that is not what this app writes: says which field and what was wanted."""


def _fail(where: str, wanted: str, value) -> RecordError:
    return RecordError(f"{where}: {wanted}, not {shown(value)}.")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _all_numbers(values: list, low: float, high: float) -> bool:
    """Every value a finite number from `low` to `high` (at C speed: token lists are long)."""
    if not set(map(type, values)) <= {int, float}:  # bools and text excluded
        return False
    return not values or (math.isfinite(sum(values)) and low <= min(values) and max(values) <= high)


def _number_in(where: str, value, low: float, high: float) -> None:
    if value is not None and not (_is_number(value) and low <= value <= high):
        raise _fail(where, f"a number from {low:g} to {high:g} or null", value)


def _text(where: str, value, optional: bool = False) -> None:
    if not isinstance(value, str) and not (optional and value is None):
        raise _fail(where, "text" + (" or null" if optional else ""), value)


def _text_list(where: str, value) -> None:
    if value is None:
        return
    if not isinstance(value, list) or not set(map(type, value)) <= {str}:  # at C speed: token lists are long
        raise _fail(where, "a list of text", value)


def check_dimension(where: str, data, any_score: bool = False) -> None:
    """One dimension's scores: {score, expected, confidence, probs}, each null or in range. The score
    is 1-5, or with `any_score` any whole number (the authors' regex reads "0", "8", "04")."""
    if data is None:
        return
    if not isinstance(data, dict):
        raise _fail(where, "an object {score, expected, confidence, probs}", data)
    score = data.get("score")
    if score is not None and not (isinstance(score, int) and not isinstance(score, bool)
                                  and (score >= 0 if any_score else score in SCORE_LEVELS)):
        raise _fail(f"{where}.score", "a whole number " + ("or null" if any_score else "from 1 to 5 or null"), score)
    _number_in(f"{where}.expected", data.get("expected"), 1, 5)
    _number_in(f"{where}.confidence", data.get("confidence"), 0, 1)
    probs = data.get("probs")
    if probs is None:
        return
    if not (isinstance(probs, list) and len(probs) == len(SCORE_LEVELS) and all(_is_number(p) and p >= 0 for p in probs)):
        raise _fail(f"{where}.probs", "five non-negative numbers, p(1..5), or null", probs)
    if sum(probs) > 1 + PROBS_SUM_SLACK:
        raise _fail(f"{where}.probs", "probabilities that sum to at most 1", probs)


def check_scores(where: str, data, any_score: bool = False) -> None:
    if data is None:
        return
    if not isinstance(data, dict):
        raise _fail(where, "an object with one entry per dimension", data)
    for key in DIMENSIONS:
        check_dimension(f"{where}.{key}", data.get(key), any_score)


def check_tokens(where: str, data) -> None:
    """The token confidence (`tokens`): pieces as text and their probabilities, lists of one length."""
    if data is None:
        return
    if not isinstance(data, dict):
        raise _fail(where, "an object {piece, p, ...}", data)
    pieces, chosen = data.get("piece"), data.get("p")
    _text_list(f"{where}.piece", pieces)
    if not isinstance(chosen, list) or len(chosen) != len(pieces or []):
        raise _fail(f"{where}.p", "one probability per piece", chosen)
    if not _all_numbers(chosen, 0, 1):
        raise _fail(f"{where}.p", "probabilities from 0 to 1", chosen)
    entropy, alternatives = data.get("entropy"), data.get("alt_p")
    if entropy is not None and not (isinstance(entropy, list) and _all_numbers(entropy, 0, math.inf)):
        raise _fail(f"{where}.entropy", "non-negative numbers", entropy)
    if alternatives is not None and not (isinstance(alternatives, list) and set(map(type, alternatives)) <= {list}
                                         and _all_numbers(list(itertools.chain.from_iterable(alternatives)), 0, 1)):
        raise _fail(f"{where}.alt_p", "lists of probabilities", alternatives)
    ids = data.get("alt")
    if ids is not None and not (isinstance(ids, list) and set(map(type, ids)) <= {list}
                                and set(map(type, itertools.chain.from_iterable(ids))) <= {int}):
        raise _fail(f"{where}.alt", "lists of token ids (whole numbers)", ids)
    texts = data.get("alt_text")
    if texts is not None and not (isinstance(texts, dict) and (not texts or "".join(texts).isdigit())
                                  and set(map(type, texts.values())) <= {str}):
        raise _fail(f"{where}.alt_text", "an object of token texts by token id", texts)


# Where it looked (vs2demo.attention): bounds that keep a record small and its view quick.
ATTENTION_VERSION = 1
MAX_ATTENTION_PATCHES = 768
MAX_ATTENTION_WORDS = 512
MAX_WORD_CHARS = 200
SHARES_SUM_SLACK = 1e-3


def _shares(where: str, value, length: int, sums_to_one: bool) -> None:
    """`length` shares from 0 to 1 that, when `sums_to_one` and there are any, sum to 1."""
    if not (isinstance(value, list) and len(value) == length and _all_numbers(value, 0, 1)):
        raise _fail(where, f"{length} shares from 0 to 1", value)
    if sums_to_one and value and abs(sum(value) - 1) > SHARES_SUM_SLACK:
        raise _fail(where, "shares that sum to 1", value)


def check_attention_dimension(where: str, data, patches: int, words: int) -> None:
    if not isinstance(data, dict):
        raise _fail(where, "an object {visual, prompt, patches, words}", data)
    for name in ("visual", "prompt"):
        if not (_is_number(data.get(name)) and 0 <= data[name] <= 1):
            raise _fail(f"{where}.{name}", "a share from 0 to 1", data.get(name))
    if data["visual"] + data["prompt"] > 1 + SHARES_SUM_SLACK:
        raise _fail(where, "visual and prompt shares that sum to at most 1", [data["visual"], data["prompt"]])
    _shares(f"{where}.patches", data.get("patches"), patches, sums_to_one=True)
    _shares(f"{where}.words", data.get("words"), words, sums_to_one=True)


def check_attention(where: str, data) -> None:
    """The attention block: {version, aggregation, patches, words, dimensions}; lengths that match,
    shares in [0, 1] that sum to 1 where they are shares of a whole (vs2demo.attention)."""
    if data is None:
        return
    if not isinstance(data, dict):
        raise _fail(where, "an object {version, aggregation, patches, words, dimensions}", data)
    if data.get("version") != ATTENTION_VERSION:
        raise _fail(f"{where}.version", f"{ATTENTION_VERSION}", data.get("version"))
    aggregation = data.get("aggregation")
    if not isinstance(aggregation, dict) or not all(isinstance(v, (str, int, list)) for v in aggregation.values()):
        raise _fail(f"{where}.aggregation", "an object saying how the attention was aggregated", aggregation)
    patches, words = data.get("patches"), data.get("words")
    if not (isinstance(patches, list) and len(patches) <= MAX_ATTENTION_PATCHES and all(
            isinstance(patch, list) and 1 <= len(patch) <= 2 and _all_numbers(patch, 0, 10**6)
            and all(isinstance(frame, int) for frame in patch) for patch in patches)):
        raise _fail(f"{where}.patches", f"at most {MAX_ATTENTION_PATCHES} lists of one or two frame positions", patches)
    if not (isinstance(words, list) and len(words) <= MAX_ATTENTION_WORDS
            and all(isinstance(word, str) and len(word) <= MAX_WORD_CHARS for word in words)):
        raise _fail(f"{where}.words", f"at most {MAX_ATTENTION_WORDS} words of at most {MAX_WORD_CHARS} characters",
                    words)
    dimensions = data.get("dimensions")
    if not isinstance(dimensions, dict) or not set(dimensions) <= set(DIMENSIONS):
        raise _fail(f"{where}.dimensions", "an object with an entry per dimension scored", dimensions)
    for key, dimension in dimensions.items():
        check_attention_dimension(f"{where}.dimensions.{key}", dimension, len(patches), len(words))


def check_sample(where: str, data, any_score: bool = False) -> None:
    if not isinstance(data, dict):
        raise _fail(where, "an object (one answer)", data)
    for name in ("text", "rationale"):
        _text(f"{where}.{name}", data.get(name, ""))
    _text(f"{where}.error", data.get("error"), optional=True)
    _text_list(f"{where}.checks", data.get("checks"))
    check_scores(f"{where}.scores", data.get("scores"), any_score)
    tokens = data.get("new_tokens", 0)
    if tokens is not None and not (isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0):
        raise _fail(f"{where}.new_tokens", "a whole number", tokens)


def check_record(data, where: str = "The record") -> dict:
    """`data` if it is a record this app could have written (see the module's doc), else a
    RecordError naming `where` (e.g. "Line 3") and the field."""
    if not isinstance(data, dict):
        raise _fail(where, "a JSON object (one record)", data)
    version = data.get("version", 1)
    if not (isinstance(version, int) and not isinstance(version, bool) and version >= 1):
        raise _fail(f"{where}, version", "a whole number from 1", version)
    if version > RECORD_VERSION:
        raise RecordError(f"{where}: a record of version {version}, written by a newer vs2demo; this one reads "
                          f"versions 1 to {RECORD_VERSION}. Upgrade vs2demo to read it.")
    for name in TEXT_FIELDS:
        _text(f"{where}, {name}", data.get(name, ""))
    for name in OPTIONAL_TEXT_FIELDS:
        _text(f"{where}, {name}", data.get(name), optional=True)
    for name in MAPPING_FIELDS:
        if data.get(name) is not None and not isinstance(data[name], dict):
            raise _fail(f"{where}, {name}", "an object", data[name])
    if not isinstance(data.get("stored", False), bool):
        raise _fail(f"{where}, stored", "true or false", data.get("stored"))
    _number_in(f"{where}, overall", data.get("overall"), 1, 5)
    _text_list(f"{where}, checks", data.get("checks"))
    # Read as the authors' script reads (settings.reading), a score is whatever whole number their regex found.
    any_score = (data.get("settings") or {}).get("reading") == "authors"
    check_scores(f"{where}, scores", data.get("scores"), any_score)
    check_tokens(f"{where}, tokens", data.get("tokens"))
    check_attention(f"{where}, attention", data.get("attention"))
    samples = data.get("samples")
    if samples is not None:
        if not isinstance(samples, list):
            raise _fail(f"{where}, samples", "a list of answers", samples)
        for number, sample in enumerate(samples, start=1):
            check_sample(f"{where}, sample {number}", sample, any_score)
    return data
