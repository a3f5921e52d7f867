"""How text is generated from sampled frames and a prompt.

A backend loads once (`load(settings)`), says what it loaded (`info`: a `LoadInfo`, whose frame
budget the sampler uses), streams one answer with `generate(video, prompt, options, cancel)` and
ends every answer in progress with `stop()`. `generate` gets frames already sampled and resized (a
`vs2demo.video.SampledVideo`), the prompt and the checked options; it yields `TextUpdate`s as the
text grows and ends with a `Generation`: the text, for every digit 1-5 it wrote, where in the
text and p("1".."5") there, and how sure it was of each token. With `options.samples` K > 1 it
writes K answers at once and ends with `Generations`. Nothing outside `vs2demo.backends` knows
which backend runs; every value here is plain data, so it crosses a process boundary (ZeroGPU, a server) as it is.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator, Protocol

from ..confidence import TokenConfidence

SCORE_DIGITS = ("1", "2", "3", "4", "5")  # the tokens whose probabilities every backend reads at each step


@dataclass(frozen=True)
class LoadInfo:
    """What was loaded, where, and the frame budget the model wants (pixels a frame)."""

    backend: str
    model: str
    revision: str  # the hub commit, or a hash of a local folder's files: part of a record's key
    quant: str
    device: str
    dtype: str
    is_toy: bool
    load_s: float
    parameters: int
    memory_bytes: int
    min_pixels: int
    max_pixels: int
    total_pixels: int
    # How a server runs the model, as its operator named it (--vllm-label): part of a record's key.
    served_as: str | None = None


@dataclass(frozen=True)
class TextUpdate:
    """The answer so far. The first update of a generation has no text yet: the input is built.
    When several samples are written at once (`options.samples` K > 1), `samples` holds each
    one's text so far and `text` is the first's."""

    text: str
    new_tokens: int
    visual_tokens: int
    samples: tuple[str, ...] = ()


@dataclass(frozen=True)
class DigitStep:
    """A generation step that wrote a digit: where its text starts in the answer, and p("1".."5") at
    that step (over the whole vocabulary; the record normalizes them). `score_digit`: the token was
    one of "1".."5", where this app reads a score's probabilities; the others ("0", "8", "４") end
    with another digit, where the authors' script reads them too (`length`: the token's characters)."""

    start: int
    probs: tuple[float, float, float, float, float]
    score_digit: bool = True
    length: int = 1
    step: int | None = None  # which generated token it was (0-based), where the backend knows it


def is_digit_step(piece: str, score_digit: bool) -> bool:
    """Whether a step's probabilities are kept: it wrote one of "1".."5", or a token whose text ends
    with any decimal digit (what the authors' regex `\\d` finds)."""
    return score_digit or piece[-1:].isdecimal()


@dataclass(frozen=True)
class Loop:
    """Where an answer began repeating itself (repetition.find_repetition): the character where the
    repeated unit first starts, the one where its first copy starts, and the tokens written by then."""

    start: int
    repeats_from: int
    after_tokens: int


@dataclass(frozen=True)
class Generation:
    """One finished answer."""

    text: str
    digit_steps: list[DigitStep]
    new_tokens: int
    visual_tokens: int
    preprocess_s: float
    first_token_s: float
    generate_s: float
    stopped_early: bool  # ended by stop() rather than by the model or the token limit
    loop: Loop | None = None  # stopped because the model was repeating itself
    # How sure the model was of each token it wrote (None when the backend keeps no such numbers).
    tokens: TokenConfidence | None = None
    # The generated token ids (where the backend has them: the attention probe reads the answer again).
    token_ids: tuple[int, ...] = ()
    # Where it looked (options.attention): the record's `attention` block (vs2demo.attention).
    attention: dict | None = None

    def step_at(self, start: int) -> DigitStep | None:
        """The step that wrote the digit 1-5 at character `start` of the text."""
        return next((step for step in self.digit_steps if step.start == start and step.score_digit), None)

    def step_ending_at(self, end: int) -> DigitStep | None:
        """The step whose text ends at character `end` with a digit, whichever digit it wrote: where
        the authors' script reads p(1..5) (the token that completes the text up to there)."""
        return next((step for step in self.digit_steps if step.start + step.length == end), None)

    def probs_at(self, start: int) -> tuple[float, ...] | None:
        """p("1".."5") where the digit 1-5 at character `start` of the text was written."""
        step = self.step_at(start)
        return step.probs if step is not None else None

    def probs_ending_at(self, end: int) -> tuple[float, ...] | None:
        """p("1".."5") at the step whose text ends at character `end` with a digit (step_ending_at)."""
        step = self.step_ending_at(end)
        return step.probs if step is not None else None


@dataclass(frozen=True)
class Generations:
    """The answers of one `generate` call with `options.samples` K > 1: K samples of the same input, which
    shared its vision encoding and prefill; each has the call's timings."""

    samples: tuple[Generation, ...]


class ActiveGenerations:
    """The generations a backend is writing now, each with its stop event and, for K samples, an
    event a sample: what the backend's `stop()` sets."""

    def __init__(self):
        self._events: dict[threading.Event, list[threading.Event]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def new_events(samples: int) -> tuple[threading.Event, list[threading.Event]]:
        """A generation's stop event, and one a sample when it writes K > 1."""
        return threading.Event(), [threading.Event() for _ in range(samples)] if samples > 1 else []

    def add(self, stop_event: threading.Event, sample_events: list[threading.Event]) -> None:
        with self._lock:
            self._events[stop_event] = sample_events

    def discard(self, stop_event: threading.Event) -> None:
        with self._lock:
            self._events.pop(stop_event, None)

    def stop(self, sample: int | None = None) -> None:
        """Ends every generation in progress; with `sample`, only that sample of each."""
        with self._lock:
            for event, sample_events in self._events.items():
                if sample is None:
                    event.set()
                elif 0 <= sample < len(sample_events):
                    sample_events[sample].set()


class Backend(Protocol):
    name: str
    info: LoadInfo

    @classmethod
    def load(cls, settings) -> "Backend": ...

    def generate(self, video, prompt: str, options, cancel=None,
                 attention_steps=None) -> Iterator[TextUpdate | Generation | Generations]:
        """TextUpdates, then a Generation; with `options.samples` > 1, then Generations. With
        `options.attention`, `attention_steps(answers)` says which answer and steps to probe
        (scoring.attention_queries), and the answer probed carries its `attention`."""

    def stop(self, sample: int | None = None) -> None:
        """End every generation in progress; with `sample`, only that sample of them."""


def load_backend(settings) -> Backend:
    """The backend the settings name, loaded (ModelLoadError says why not)."""
    if settings.backend == "vllm":
        from .vllm import VllmBackend

        return VllmBackend.load(settings)
    from .transformers import TransformersBackend

    return TransformersBackend.load(settings)


def frame_budget(settings) -> tuple[int, int]:
    """(min, max) pixels a frame for the model the settings name, without loading it (a batch job
    samples frames before its model workers start): read off the checkpoint where this machine has
    its config (a folder, the hub cache), else the reference's; with vLLM as its workers will read it."""
    from ..checkpoint import frame_pixels, read_config

    if settings.min_pixels and settings.max_pixels:
        return settings.min_pixels, settings.max_pixels
    if settings.backend == "vllm":
        from .vllm import served_config

        return frame_pixels(settings, served_config(settings.model))
    return frame_pixels(settings, read_config(settings.model))
