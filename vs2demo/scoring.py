"""THE path from a video to a record. The CLI, every tab and every API endpoint score through
`Scorer.score` (one video) or `Scorer.score_many` (a list); nothing else turns a video into a record.

    check (prompt, options, file) -> hash the file -> the store has it? -> wait for the model's turn
    -> sample the frames (CPU) -> `generate` (the one GPU function) -> parse -> the record -> the store

Every failure of one video (a bad file, a model that could not be loaded, anything that goes wrong
while it is scored) becomes a record with an `error`, in one place, so a list goes on with the next
video; a cancel (`jobs.Cancelled`) is not a failure and goes through. Records are named the same way
everywhere: by the file's name as the user knows it (`display_name`), unless the caller names it.

No Gradio here. On a ZeroGPU Space `spaces.GPU` runs `generate` in a forked worker with a GPU
attached, elsewhere it is a no-op; frames are sampled before it is entered, so a bad file costs no
GPU quota, and everything crossing it is plain data.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
import threading
import time
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import spaces  # noqa: F401  (imported before torch touches CUDA, as ZeroGPU requires)

from . import DIMENSION_LABELS, DIMENSIONS, self_consistency
from .backends import Backend, Generation, Generations, LoadInfo, Loop, load_backend
from .errors import ModelLoadError, ModelUnavailableError, UserInputError
from .jobs import CancelToken, ModelSlot, current_requester, current_token
from .consistency import check_output
from .parsing import ParsedOutput, authors_reading, parse
from .prompts import clean_prompt
from .repetition import find_repetition
from .batch import BatchItem, score_rows
from .results import DimensionScore, Sample, ScoreResult
from .settings import ScoreOptions, Settings, environment
from .store import ResultStore
from .video import SampledVideo, file_sha256, sample_frames

log = logging.getLogger(__name__)

ON_ZERO_GPU = environment().zero_gpu  # read by the Space's app.py


class Stage(str, enum.Enum):
    """Where one video's scoring stands (a str: the API sends it as it is)."""

    LOADING = "loading"  # the model is still loading
    WAITING = "waiting"  # others use the model: `ahead` of this one
    SAMPLED = "sampled"  # the frames are ready: `frames`, and `video` for the page to show
    GENERATING = "generating"  # the text so far, `parsed` safely while it grows

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ScoreUpdate:
    """What the stream says while one video is scored (see Stage)."""

    stage: Stage
    text: str = ""
    parsed: ParsedOutput | None = None
    frames: dict = field(default_factory=dict)
    visual_tokens: int | None = None
    elapsed_s: float = 0.0
    new_tokens: int = 0
    ahead: int | None = None
    video: SampledVideo | None = None
    samples: tuple[str, ...] = ()  # asked K times: each sample's text so far (`text` is the first's)

    def __post_init__(self):
        object.__setattr__(self, "stage", Stage(self.stage))  # "generating" names Stage.GENERATING


@dataclass(frozen=True)
class ListUpdate:
    """Where a list of videos stands: `results` holds the records so far, in the list's order;
    `update` is the progress of video `position` (1-based) while it is scored, None when its record
    has just been added."""

    position: int
    total: int
    name: str
    update: ScoreUpdate | None
    results: list[ScoreResult]


# ---- the GPU function ------------------------------------------------------------------------------

# The loaded backends, by the id their Scorer gave them: `generate` must be a module-level function
# for ZeroGPU (its worker is forked with this module), so it finds the backend here, by an id that is
# an argument (plain data), and never uses another Scorer's model.
BACKENDS: dict[str, Backend] = {}


def gpu_seconds(backend_id: str, video: SampledVideo, prompt: str, options: ScoreOptions) -> int:
    """ZeroGPU time asked for one scoring: grows with frames (vision encoder) and new tokens (K
    samples decode together, each step a little slower than one's)."""
    return int(min(300, 15 + 0.25 * video.count + 0.04 * options.max_new_tokens * (1 + (options.samples - 1) / 8)))


@spaces.GPU(duration=gpu_seconds)
def generate(backend_id: str, video: SampledVideo, prompt: str, options: ScoreOptions):
    """The backend's stream for one video: TextUpdates, then the Generation (or, for K samples,
    the Generations), each answer's loop noted where the model began repeating itself.

    The cancel token is the calling thread's, not an argument: it cannot be pickled. On ZeroGPU the
    forked worker has none, and a cancel ends the stream from this side (`Scorer.score` checks it
    between updates and closes the stream).
    """
    backend = BACKENDS[backend_id]
    watches = [LoopWatch() for _ in range(options.samples)]
    asked = {}
    if options.attention:
        # The backend probes right after the answer, while it still holds the answer's cache; which
        # steps wrote the scores is read here, as the record reads them (loops noted first).
        asked["attention_steps"] = lambda answers: attention_queries(
            [watch.noted(answer) for watch, answer in zip(watches, answers)], options)
    for item in backend.generate(video, prompt, options, cancel=current_token(), **asked):
        if isinstance(item, Generation):
            yield watches[0].noted(item)
            return
        if isinstance(item, Generations):
            yield Generations(tuple(watch.noted(answer) for watch, answer in zip(watches, item.samples)))
            return
        for sample, (watch, text) in enumerate(zip(watches, item.samples or (item.text,))):
            if watch.found_loop(text, item.new_tokens):
                # Certain now: stop the model (it ends its answer with what it wrote) rather than let
                # it fill max new tokens with copies; of several samples, only the one looping.
                backend.stop(sample if options.samples > 1 else None)
        yield item


def attention_queries(answers: list[Generation], options: ScoreOptions) -> tuple[int, dict[str, int]]:
    """Where the attention probe looks (options.attention): (the answer the record shows, of K
    samples the one most in agreement; per dimension, the answer step that wrote its score's digit,
    where its p(1..5) are read). A dimension with no such step is left out."""
    shown = self_consistency.representative([read_answer(g, options) for g in answers]) if len(answers) > 1 else 0
    generation = answers[shown]
    readings = score_readings(generation, parsed_answer(generation)[0], options)
    return shown, {dim: step.step for dim, (_, step) in readings.items() if step is not None and step.step is not None}


class LoopWatch:
    """Watches one answer as it grows for the model repeating itself (repetition.find_repetition)."""

    def __init__(self):
        self.written: list[tuple[int, int]] = []  # (characters, tokens) at each update
        self.loop: Loop | None = None

    def found_loop(self, text: str, tokens: int) -> bool:
        """True once, when the text has just been found looping."""
        self.written.append((len(text), tokens))
        if self.loop is not None:
            return False
        found = find_repetition(text)
        if found is None:
            return False
        after = next(tokens for chars, tokens in self.written if chars >= found.repeats_from)
        self.loop = Loop(found.start, found.repeats_from, after)
        return True

    def noted(self, generation: Generation) -> Generation:
        return dataclasses.replace(generation, loop=self.loop) if self.loop is not None else generation


# ---- records ---------------------------------------------------------------------------------------

def display_name(video) -> str:
    """A video's file name as the user knows it (Gradio keeps the original name in its cache path;
    the CLI's user typed it)."""
    return Path(str(video)).name if video else ""


def frames_record(video: SampledVideo, options: ScoreOptions) -> dict:
    return {
        "count": video.count,
        "indices": list(video.indices),
        "timestamps": [round(t, 3) for t in video.timestamps],
        "source_frames": video.source_frames,
        "source_fps": round(video.source_fps, 3),
        # The rate the frames really have (their count over the source's length); the model is told
        # the rate they were asked for, as in the authors' stack.
        "sampled_fps": round(video.metadata().sampled_fps, 4),
        "model_fps": options.fps,
        "width": video.width,
        "height": video.height,
        "source_width": video.source_width,
        "source_height": video.source_height,
        "duration": round(video.duration, 3),
        "backend": video.backend,
    }


def record_settings(options: ScoreOptions, info: LoadInfo | None) -> dict:
    settings = options.to_dict()
    if info is not None:
        settings.update(quant=info.quant, device=info.device, dtype=info.dtype, backend=info.backend,
                        revision=info.revision)
        if info.served_as is not None:
            settings["served_as"] = info.served_as
    return settings


# Options left out of a record's key at these values (their defaults; the check mark unset), so the
# records made before the options existed keep their keys.
KEYLESS_DEFAULTS = {"reading": "answer", "samples": 1, "replace_frames": (), "attention": False, "check": None}


def record_key(video_sha256: str, prompt: str, options: ScoreOptions, info: LoadInfo) -> str:
    """What makes two scorings the same: the video's bytes, the prompt, the model exactly (id and
    revision), how it runs (backend, quantization, device, dtype), the frame budget and every option
    that changes the output."""
    parts = {
        "video_sha256": video_sha256, "prompt": prompt,
        "model": info.model, "revision": info.revision, "backend": info.backend, "quant": info.quant,
        "device": info.device, "dtype": info.dtype,
        "pixels": [info.min_pixels, info.max_pixels, info.total_pixels],
        # The defaults of later options are left out, so records made before they existed keep their keys.
        "options": {k: v for k, v in options.to_dict().items()
                    if k not in KEYLESS_DEFAULTS or (tuple(v) if isinstance(v, list) else v) != KEYLESS_DEFAULTS[k]},
    }
    if info.served_as is not None:  # absent otherwise: the keys of records made before it stay the same
        parts["served_as"] = info.served_as
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def incomplete_message(parsed: ParsedOutput, generation: Generation, max_new_tokens: int) -> str | None:
    if generation.loop is not None:
        said = (" Its answer was complete before the loop, and its scores are those."
                if parsed.thinking_done and parsed.complete else
                " No scores are read from a loop. Try again with sampling on (temperature 0.7 and a seed), or with "
                "fewer frames.")
        return (f"The model started repeating itself after {generation.loop.after_tokens} tokens, so it was stopped "
                f"there; what it wrote is kept.{said}")
    missing = [key for key in DIMENSIONS if parsed.scores.get(key) is None]
    if not missing:
        return None
    named = ", ".join(DIMENSION_LABELS[key] for key in missing)
    if generation.stopped_early:
        return f"Stopped before the model wrote every score (no {named})."
    if generation.new_tokens >= max_new_tokens:
        return (f"The model used all {max_new_tokens} new tokens before writing every score (no {named}): "
                "raise max new tokens in Scoring options.")
    return f"The model's answer has no score for {named}."


def parsed_answer(generation: Generation) -> tuple[ParsedOutput, ParsedOutput]:
    """(the answer as its scores are read, the whole text parsed)."""
    parsed = parsed_whole = parse(generation.text, final=True)
    if generation.loop is not None:
        # A score written in a loop is not a judgement: only an answer complete before the loop
        # began counts (its spans index the same text).
        before = parse(generation.text[:generation.loop.start], final=True)
        parsed = before if before.thinking_done and before.complete else dataclasses.replace(
            before, scores={}, spans={})
    return parsed, parsed_whole


def score_readings(generation: Generation, parsed: ParsedOutput, options: ScoreOptions) -> dict:
    """Per dimension, (the score read, the DigitStep its p(1..5) are read at, or None)."""
    if options.reading == "authors":
        # As vs2_inference.py reads them: its regex over all the text written (a loop stopped early
        # only leaves out copies that add nothing), and p(1..5) at the token that completes the first
        # digit after each label, whichever digit it is; no soft score without both, as there.
        return {dim: (score, generation.step_ending_at(digit + 1) if digit is not None and score is not None else None)
                for dim, (score, digit) in authors_reading(generation.text).items()}
    spans = {dim: parsed.spans.get(dim) for dim in DIMENSIONS}
    return {dim: (parsed.scores.get(dim), generation.step_at(span[0]) if span is not None else None)
            for dim, span in spans.items()}


def read_answer(generation: Generation, options: ScoreOptions) -> Sample:
    """One answer read: the scores with their probabilities, the rationale, the checks on its words
    and numbers, and what is missing."""
    parsed, parsed_whole = parsed_answer(generation)
    error = incomplete_message(parsed, generation, options.max_new_tokens)
    readings = score_readings(generation, parsed, options)
    scores = {dim: DimensionScore.from_probs(score, step.probs if step is not None else None)
              for dim, (score, step) in readings.items()}
    if options.reading == "authors" and all(score is not None for score, _ in readings.values()):
        error = None
    return Sample(text=generation.text, rationale=parsed.rationale, scores=scores,
                  checks=check_output(generation.text, parsed_whole, looped=generation.loop is not None),
                  error=error, new_tokens=generation.new_tokens)


def scored_record(name: str, prompt: str, options: ScoreOptions, info: LoadInfo, sampled: SampledVideo,
                  answer: Generation | Generations, started: float, video_sha256: str, key: str) -> ScoreResult:
    """The record of one answer (or of K samples: their combined scores, and the text of the one
    most in agreement): the parsed scores with their probabilities, the frames, the times."""
    answers = list(answer.samples) if isinstance(answer, Generations) else [answer]
    read = [read_answer(generation, options) for generation in answers]
    samples = []
    if isinstance(answer, Generations):
        samples = read
        shown = self_consistency.representative(read)
        scores = self_consistency.combined_scores(read)
        missing = [DIMENSION_LABELS[key] for key in DIMENSIONS if scores[key].score is None]
        error = f"No sample gave a score for {', '.join(missing)}." if missing else None
    else:
        shown, scores, error = 0, read[0].scores, read[0].error
    generation = answers[shown]
    new_tokens = sum(g.new_tokens for g in answers)
    streaming_s = generation.generate_s - generation.first_token_s
    return ScoreResult(
        video=name, prompt=prompt, model=info.model, scores=scores, rationale=read[shown].rationale,
        text=generation.text,
        frames={**frames_record(sampled, options), "visual_tokens": generation.visual_tokens},
        timings={
            "decode_s": round(sampled.decode_s, 4),
            "preprocess_s": round(generation.preprocess_s, 4),
            "first_token_s": round(generation.first_token_s, 4),
            "generate_s": round(generation.generate_s, 4),
            "new_tokens": new_tokens,  # of every sample
            "tokens_per_s": round(new_tokens / max(streaming_s, 1e-9), 2) if new_tokens > 1 else None,
            "total_s": round(time.perf_counter() - started, 4),  # from the start of sampling: no waiting
        },
        settings=record_settings(options, info),
        error=error,
        checks=read[shown].checks,
        tokens=generation.tokens,
        attention=generation.attention,
        samples=samples,
        key=key, video_sha256=video_sha256, scored_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


@dataclass(frozen=True)
class ModelStatus:
    """What the page says about the model: "loading" (for `loading_s`), "ready" (`info`), "failed" (`error`)."""

    state: str
    model: str
    quant: str
    loading_s: float = 0.0
    info: LoadInfo | None = None
    error: str | None = None
    fallback_reason: str | None = None  # why the toy runs instead of the model asked for


# ---- the scorer ------------------------------------------------------------------------------------

class Scorer:
    """The one loaded backend, the model's turns, and the results store: the functions every tab,
    endpoint and the CLI are given.

    `start_loading` loads the backend (in a thread, so a page comes up at once); `score` waits for it.
    `fallback`: settings to load instead when the model asked for cannot run on this machine (no
    GPU, not downloaded and no Hub): the app gives the shipped toy, so that a first run always lands
    on a working page that says why; the CLI gives none, as toy scores in a results file would mislead.
    """

    def __init__(self, settings: Settings, store: ResultStore | None = None, backend: Backend | None = None,
                 fallback: Settings | None = None):
        self.settings = settings
        self.fallback = fallback
        self.fallback_reason: str | None = None
        self.store = store
        # Whether a record one person asked for is served to another (see store.ResultStore.get):
        # True for the CLI and one person's app; the app sets it from settings.store_shared.
        self.store_shared = True
        self.slot = ModelSlot()
        self.backend_id = uuid.uuid4().hex
        self._backend: Backend | None = None
        self._error: str | None = None
        self._ready = threading.Event()
        self._started_at: float | None = None
        if backend is not None:
            self._set_backend(backend)
            self._ready.set()

    # -- loading --

    def start_loading(self, background: bool = True) -> "Scorer":
        if self._ready.is_set():
            return self
        self._started_at = time.perf_counter()
        if background:
            threading.Thread(target=self._load, name="vs2demo-load", daemon=True).start()
        else:
            self._load()
        return self

    def _load(self) -> None:
        try:
            try:
                self._set_backend(load_backend(self.settings))
            except ModelUnavailableError as exc:
                if self.fallback is None:
                    raise
                log.warning("%s Loading %s instead.", exc, self.fallback.model)
                self.fallback_reason = str(exc)
                self._set_backend(load_backend(self.fallback))
        except (ModelLoadError, UserInputError) as exc:
            self._error = str(exc)
        except Exception as exc:  # said where the user looks, rather than lost in a thread
            log.exception("model load failed")
            self._error = f"{type(exc).__name__}: {exc}"
        finally:
            self._ready.set()

    def _set_backend(self, backend: Backend) -> None:
        self._backend = backend
        BACKENDS[self.backend_id] = backend

    @property
    def state(self) -> str:
        """"loading", "ready" or "failed"."""
        if not self._ready.is_set():
            return "loading"
        return "failed" if self._error else "ready"

    @property
    def error(self) -> str | None:
        return self._error

    @property
    def info(self) -> LoadInfo | None:
        return self._backend.info if self._backend is not None else None

    @property
    def is_toy(self) -> bool:
        return self.info is not None and self.info.is_toy

    def status(self) -> ModelStatus:
        loading_s = 0.0 if self._started_at is None else time.perf_counter() - self._started_at
        return ModelStatus(self.state, self.settings.model, self.settings.quant, loading_s, self.info, self.error,
                           self.fallback_reason)

    def backend(self, cancel: CancelToken | None = None, timeout: float | None = None) -> Backend:
        """The backend; waits while it loads (a cancel ends the wait). ModelLoadError says why when
        it could not be loaded."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if cancel is not None:
                cancel.check()
            if deadline is not None and time.monotonic() >= deadline:
                raise ModelLoadError("The model is still loading; try again in a moment.")
        if self._error:
            raise ModelLoadError(f"The model could not be loaded: {self._error}")
        return self._backend

    # -- one video --

    def failed(self, name: str, prompt: str, error: str, options: ScoreOptions,
               video_sha256: str | None = None, key: str | None = None) -> ScoreResult:
        """The record of a video that could not be scored (with its key when the file could be read:
        a resumed list does not try it again)."""
        model = self.info.model if self.info is not None else self.settings.model
        return ScoreResult(video=name, prompt=prompt or "", model=model, error=error,
                           settings=record_settings(options, self.info), video_sha256=video_sha256, key=key,
                           scored_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def key_for(self, video, prompt: str, options: ScoreOptions | None = None,
                cancel: CancelToken | None = None) -> tuple[str, str]:
        """(the video's SHA-256, the record's key) once the model has loaded; UserInputError for a
        file that cannot be read, ModelLoadError for a model that could not be loaded."""
        options = (options or self.settings.options).validated()
        info = self.backend(cancel).info
        sha = file_sha256(video, cancel)
        return sha, record_key(sha, clean_prompt(prompt, template=options.template), options, info)

    def score(self, video, prompt: str, options: ScoreOptions | None = None, *, name: str | None = None,
              refresh: bool = False, allow_empty_prompt: bool = False,
              presampled: SampledVideo | None = None) -> Iterator[ScoreUpdate | ScoreResult]:
        """ScoreUpdates while one video is scored, then its record (the last item, always).

        A record with the same key already in the store is returned at once, marked `stored`
        (unless `refresh`, or unseeded sampling). Never raises for this video's failure: it becomes
        the record's `error`. jobs.Cancelled goes through when the request is cancelled; closing the
        generator ends generation at once, and the model passes on only once the work has stopped.
        """
        cancel = current_token()
        name = name or display_name(video)
        options = options or self.settings.options
        sha = key = None
        try:
            if not video:
                raise UserInputError("No video given: upload one or pick an example.")
            options = options.validated()
            # allow_empty_prompt: scored with no prompt at all ("Does the prompt matter?").
            prompt = clean_prompt(prompt, allow_empty=allow_empty_prompt, template=options.template)
            if self.state == "loading":
                yield ScoreUpdate(stage=Stage.LOADING)
            backend = self.backend(cancel)
            sha = file_sha256(video, cancel)
            key = record_key(sha, prompt, options, backend.info)
            # Unseeded sampling gives another answer each time: it is kept, never served again.
            if self.store is not None and not refresh and (not options.do_sample or options.seed is not None):
                kept = self._stored(key)
                if kept is not None:
                    yield dataclasses.replace(kept, video=name, stored=True)
                    return
            with self.slot.turn(cancel) as waiting:
                for ahead in waiting:
                    yield ScoreUpdate(stage=Stage.WAITING, ahead=ahead)
                started = time.perf_counter()
                # A batch job samples in CPU tasks ahead of the model (`sample_video`, the same call).
                sampled = presampled if presampled is not None else self.sample(video, options, backend.info, cancel)
                frames = frames_record(sampled, options)
                yield ScoreUpdate(stage=Stage.SAMPLED, frames=frames, video=sampled)
                generation = None
                with closing(generate(self.backend_id, sampled, prompt, options)) as stream:
                    for item in stream:
                        cancel.check()
                        if isinstance(item, (Generation, Generations)):
                            generation = item
                            break
                        yield ScoreUpdate(stage=Stage.GENERATING, text=item.text, samples=item.samples,
                                          parsed=parse(item.text, final=False) if item.text else None,
                                          frames={**frames, "visual_tokens": item.visual_tokens},
                                          visual_tokens=item.visual_tokens, new_tokens=item.new_tokens,
                                          elapsed_s=time.perf_counter() - started)
                if generation is None:
                    raise RuntimeError("the backend gave no answer")
            result = scored_record(name, prompt, options, backend.info, sampled, generation, started, sha, key)
            yield self._keep(result)
            return
        except (UserInputError, ModelLoadError) as exc:
            error = str(exc)
        except Exception as exc:  # one broken file must not end a run of many
            log.exception("scoring %s failed", name)
            error = f"Scoring failed: {type(exc).__name__}: {exc}"
        yield self.failed(name, prompt if isinstance(prompt, str) else "", error, options, sha, key)

    def score_to_result(self, video, prompt: str, options: ScoreOptions | None = None, **kwargs) -> ScoreResult:
        """`score` run to its record."""
        *_, result = self.score(video, prompt, options, **kwargs)
        return result

    # -- a list --

    def score_many(self, items: list[BatchItem], options: ScoreOptions | None = None,
                   refresh: bool = False) -> Iterator[ListUpdate]:
        """Score the items one after another (each takes its own turn for the model, so others'
        requests get in between): a ListUpdate for each step of each video, and one after each record.
        An item with a `problem` (a CSV row naming no upload) is a failed record saying so."""
        results: list[ScoreResult] = []
        rows = score_rows(self, items, options or self.settings.options, refresh=refresh)
        for position, (item, _, updates) in enumerate(rows, start=1):
            for update in updates:
                if isinstance(update, ScoreResult):
                    results.append(update)
                else:
                    yield ListUpdate(position, len(items), item.video, update, list(results))
            yield ListUpdate(position, len(items), item.video, None, list(results))

    # -- helpers --

    def sample(self, video, options: ScoreOptions, info: LoadInfo, cancel: CancelToken) -> SampledVideo:
        return sample_video(video, options, info.min_pixels, info.max_pixels, info.total_pixels, cancel)

    def _stored(self, key: str) -> ScoreResult | None:
        try:
            return self.store.get(key, owner=current_requester(), shared=self.store_shared)
        except Exception:  # a broken store costs a scoring, never the request
            log.exception("reading the results store failed")
            return None

    def _keep(self, result: ScoreResult) -> ScoreResult:
        """The record, kept in the store; when it cannot be (a full disk, a broken file), marked so
        that whoever asked is told."""
        if self.store is None:
            return result
        try:
            self.store.put(result, owner=current_requester())
            return result
        except Exception as exc:
            log.exception("saving to the results store failed")
            return dataclasses.replace(result, store_error=f"This result was not kept in the results store "
                                                           f"{self.store.path} ({exc}); it is shown, but not kept.")


def sample_video(video, options: ScoreOptions, min_pixels: int, max_pixels: int, total_pixels: int,
                 cancel: CancelToken | None = None) -> SampledVideo:
    """The frames the model sees of `video` under `options` and a model's frame budget (with
    `options.replace_frames` replaced by their neighbours)."""
    sampled = sample_frames(video, fps=options.fps, max_frames=options.max_frames, min_pixels=min_pixels,
                            max_pixels=max_pixels, total_pixels=total_pixels, cancel=cancel)
    return replace_frames(sampled, options.replace_frames)


def frame_neighbours(count: int, replaced: tuple[int, ...]) -> dict[int, int]:
    """For each replaced position, the nearest position among the `count` sampled frames that is not
    itself replaced (the earlier one on a tie); UserInputError when a position is out of range or
    no frame would be left."""
    outside = [position for position in replaced if not 0 <= position < count]
    if outside:
        raise UserInputError(f"replace_frames names frame {outside[0]}, but this video gives {count} frames "
                             f"(positions 0 to {count - 1}).")
    kept = [position for position in range(count) if position not in set(replaced)]
    if not kept:
        raise UserInputError(f"replace_frames names all {count} frames of this video: at least one must stay.")
    return {position: min(kept, key=lambda other: (abs(other - position), other)) for position in replaced}


def replace_frames(video: SampledVideo, replaced: tuple[int, ...]) -> SampledVideo:
    """`video` with the frames at the `replaced` positions holding their neighbours' pixels
    (frame_neighbours); the positions and times stay, so the model is told the same timeline."""
    if not replaced:
        return video
    frames = video.frames.copy()
    for position, neighbour in frame_neighbours(video.count, replaced).items():
        frames[position] = video.frames[neighbour]
    return dataclasses.replace(video, frames=frames)
