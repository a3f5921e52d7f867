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

Pure Python: no torch, no Gradio.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

TOP_ALTERNATIVES = 5
# Alternatives less likely than this are not kept (but the most likely always is): a confident
# step keeps one or two, and a record of 1,000 tokens stays under 100 KB.
MIN_ALTERNATIVE_P = 0.001
SIGNIFICANT = 3  # digits kept of each probability and entropy: a record stays small, a tiny p stays > 0


def significant(value: float, digits: int = SIGNIFICANT) -> float:
    return float(f"{value:.{digits}g}") if math.isfinite(value) else value


@dataclass(frozen=True)
class TokenConfidence:
    """One answer's tokens and how sure the model was of each (see the module's docstring)."""

    pieces: tuple[str, ...]
    p: tuple[float, ...]
    entropy: tuple[float, ...]
    alternatives: tuple[tuple[int, ...], ...]
    alternative_p: tuple[tuple[float, ...], ...]
    alternative_text: dict[int, str]

    def __len__(self) -> int:
        return len(self.pieces)

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
        if not data or not isinstance(data, dict):
            return None
        try:
            pieces = tuple(str(piece) for piece in data["piece"])
            # A record from an engine that gives the chosen tokens' p only (vLLM) has no entropy or alternatives.
            values = (tuple(float(v) for v in data["p"]), tuple(float(v) for v in data.get("entropy", ())),
                      tuple(tuple(int(i) for i in row) for row in data.get("alt", ())),
                      tuple(tuple(float(v) for v in row) for row in data.get("alt_p", ())))
            partial = "entropy" not in data and "alt" not in data and "alt_p" not in data
            if any(len(column) != len(pieces) for column in (values if not partial else values[:1])):
                return None  # a hand-edited or cut record: no confidence rather than a wrong one
            alternative_text = {int(token): str(text) for token, text in (data.get("alt_text") or {}).items()}
        except (KeyError, TypeError, ValueError):
            return None
        return cls(pieces, *values, alternative_text)

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
