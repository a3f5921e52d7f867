"""How sure the model was of each token it wrote: the record's compact form and what is read from it.

Per generated token the engine keeps, from the same distribution the score digits are read from
(`backends.transformers.StepRecorder`): the probability of the token it chose, the step's entropy
and its five most likely tokens with their probabilities. In a record this is one small object of
parallel lists (tens of bytes a token in JSON):

    {"piece": ["<think", ">The", " frames", ...],   # the text each token added; joined, the answer
     "p": [0.998, 0.87, ...],                         # p(chosen token), 3 significant digits
     "entropy": [0.012, 0.51, ...],                   # nats
     "alt": [[id, ...], ...], "alt_p": [[p, ...], ...],  # the 5 most likely tokens, best first
                                                      # (those under MIN_ALTERNATIVE_P left out)
     "alt_text": {"id": "text", ...}}                 # each alternative's text, once

Pure Python (and orjson): no torch, no Gradio.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import orjson

from .errors import UserInputError
from .record_schema import check_tokens

TOP_ALTERNATIVES = 5
# Alternatives less likely than this are not kept (but the most likely always is): a confident
# step keeps one or two, and a record of 1,000 tokens stays under 100 KB.
MIN_ALTERNATIVE_P = 0.001
SIGNIFICANT = 3  # digits kept of each probability and entropy: a record stays small, a tiny p stays > 0


def significant(value: float, digits: int = SIGNIFICANT) -> float:
    return float(f"{value:.{digits}g}") if math.isfinite(value) else value


class TokenConfidence:
    """One answer's tokens and how sure the model was of each (see the module's docstring).

    Read from a file (`unread`), its columns are built when first asked for: a file of 10,000
    records is listed without reading any, and a row opened reads its own."""

    __slots__ = ("_columns", "_text", "_where", "problem")

    def __init__(self, pieces, p, entropy=(), alternatives=(), alternative_p=(), alternative_text=None):
        self._text, self._where, self.problem = None, "", None
        self._columns = (tuple(pieces), tuple(p), tuple(entropy), tuple(alternatives), tuple(alternative_p),
                         dict(alternative_text or {}))

    @classmethod
    def unread(cls, text: bytes, where: str) -> "TokenConfidence":
        """A record's token confidence as its JSON text, read and checked (record_schema.check_tokens)
        when first asked for: what fails then is `problem` (saying `where`), and no tokens."""
        made = cls.__new__(cls)
        made._columns, made._text, made._where, made.problem = None, text, where, None
        return made

    def _built(self) -> tuple:
        if self._columns is None:
            read, self.problem = _read_checked(self._text, self._where)
            self._columns, self._text = (read if read is not None else TokenConfidence((), ()))._columns, None
        return self._columns

    pieces = property(lambda self: self._built()[0])
    p = property(lambda self: self._built()[1])
    entropy = property(lambda self: self._built()[2])
    alternatives = property(lambda self: self._built()[3])
    alternative_p = property(lambda self: self._built()[4])
    alternative_text = property(lambda self: self._built()[5])

    def __len__(self) -> int:
        return len(self._built()[0])

    def __eq__(self, other) -> bool:
        return isinstance(other, TokenConfidence) and self._built() == other._built()

    __hash__ = None

    def __repr__(self) -> str:
        return f"TokenConfidence({len(self)} tokens)"

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def offsets(self) -> list[int]:
        """Where each token's text starts in the answer."""
        starts, at = [], 0
        for piece in self.pieces:
            starts.append(at)
            at += len(piece)
        return starts

    def alternatives_at(self, index: int) -> list[tuple[str, float]]:
        """Token `index`'s most likely tokens as (text, probability), best first."""
        return [(self.alternative_text.get(token, f"#{token}"), prob)
                for token, prob in zip(self.alternatives[index], self.alternative_p[index])]

    def to_dict(self) -> dict:
        if not self.has_alternatives:
            return {"piece": list(self.pieces), "p": list(self.p)}
        return {"piece": list(self.pieces), "p": list(self.p), "entropy": list(self.entropy),
                "alt": [list(ids) for ids in self.alternatives], "alt_p": [list(ps) for ps in self.alternative_p],
                "alt_text": {str(token): text for token, text in sorted(self.alternative_text.items())}}

    @classmethod
    def from_dict(cls, data: dict | None) -> "TokenConfidence | None":
        """A record's token confidence, None when its columns are not of one length (a hand-edited
        or cut record: no confidence rather than a wrong one)."""
        if isinstance(data, TokenConfidence):  # an `unread` one
            return data
        if not data or not isinstance(data, dict):
            return None
        pieces = data.get("piece")
        # A record from an engine that gives the chosen tokens' p only (vLLM) has no entropy or alternatives.
        partial = "entropy" not in data and "alt" not in data and "alt_p" not in data
        columns = [data.get("p")] + ([] if partial else [data.get(name, ()) for name in ("entropy", "alt", "alt_p")])
        if not isinstance(pieces, list) or not isinstance(data.get("alt_text") or {}, dict) or any(
                not isinstance(column, (list, tuple)) or len(column) != len(pieces) for column in columns):
            return None
        try:
            return cls(map(str, pieces), map(float, data["p"]), map(float, data.get("entropy", ())),
                       (tuple(map(int, row)) for row in data.get("alt", ())),
                       (tuple(map(float, row)) for row in data.get("alt_p", ())),
                       {int(token): str(text) for token, text in (data.get("alt_text") or {}).items()})
        except (TypeError, ValueError):
            return None

    @property
    def has_alternatives(self) -> bool:
        """Whether the engine gave each token's entropy and alternatives (vLLM gives the chosen
        token's probability only)."""
        return len(self.entropy) == len(self.pieces) and len(self.alternatives) == len(self.pieces)

    @classmethod
    def build(cls, pieces, chosen_p, entropy=(), alternatives=(), alternative_p=(), decode=None) -> "TokenConfidence":
        """From the engine's numbers (plain lists); `decode(token_id) -> str` names the alternatives.
        Without entropy and alternatives (empty), only the chosen tokens' probabilities are kept."""
        kept_ids, kept_p = [], []
        for ids, probs in zip(alternatives, alternative_p):
            keep = [i for i, prob in enumerate(probs) if i == 0 or prob >= MIN_ALTERNATIVE_P]
            kept_ids.append(tuple(int(ids[i]) for i in keep))
            kept_p.append(tuple(significant(float(probs[i])) for i in keep))
        names = {token: decode(token) for token in sorted({t for row in kept_ids for t in row})} if decode else {}
        return cls(tuple(pieces), tuple(significant(float(v)) for v in chosen_p),
                   tuple(significant(max(0.0, float(v))) for v in entropy), tuple(kept_ids), tuple(kept_p), names)


def _read_checked(text: bytes, where: str) -> tuple["TokenConfidence | None", str | None]:
    """Token confidence's JSON text, read and checked, or None and why not."""
    try:
        data = orjson.loads(text)
        check_tokens(where, data)
    except orjson.JSONDecodeError:
        return None, f"{where}: not JSON"
    except UserInputError as exc:
        return None, str(exc)
    read = TokenConfidence.from_dict(data)
    return (read, None) if read is not None else (None, f"{where}: its lists are not of one length")


# ---- what a reader wants from it ------------------------------------------------------------------

@dataclass(frozen=True)
class Passage:
    """A stretch of the answer (a sentence) and how unsure the model was in it: `mean_surprise` is
    the mean -log p of its tokens (nats), `weakest` the least likely token chosen there."""

    start: int
    end: int
    text: str
    mean_surprise: float
    weakest: str
    weakest_p: float


_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|\n+")


def least_certain_passages(confidence: TokenConfidence, limit: int = 3, within: tuple[int, int] | None = None,
                           min_tokens: int = 3) -> list[Passage]:
    """The `limit` sentences (of at least `min_tokens` tokens) where the model was least sure, most
    unsure first; `within` restricts them to a span of the answer (the rationale). A token belongs to
    every sentence its text reaches into, not only to the one it starts in: a tokenizer merges the end
    of a tag with the next word (">The"), and such a token's doubt belongs to the sentence it opens.
    `weakest` is the part of the least likely token inside the sentence."""
    text = confidence.text
    low, high = within or (0, len(text))
    bounds, at = [], low
    for match in _SENTENCE_END.finditer(text, low, high):
        bounds.append((at, match.start()))
        at = match.end()
    bounds.append((at, high))
    starts = confidence.offsets()
    passages = []
    for start, end in bounds:
        inside = {i: text[max(s, start):min(s + len(confidence.pieces[i]), end)].strip()
                  for i, s in enumerate(starts) if s < end and s + len(confidence.pieces[i]) > start}
        members = [i for i, part in inside.items() if part]
        if len(members) < min_tokens or not text[start:end].strip():
            continue
        surprise = sum(-math.log(max(confidence.p[i], 1e-12)) for i in members) / len(members)
        weakest = min(members, key=lambda i: confidence.p[i])
        passages.append(Passage(start, end, text[start:end].strip(), surprise, inside[weakest], confidence.p[weakest]))
    passages.sort(key=lambda passage: -passage.mean_surprise)
    return passages[:limit]
