"""The one loaded engine behind the app: loading in the background, its status, and the single
GPU-decorated function every tab scores through.

On a ZeroGPU Space `spaces.GPU` runs `generate` in a forked worker with a GPU attached; elsewhere
it is a no-op. Inputs are checked and frames sampled on the CPU before it is entered, so a bad file
costs no GPU quota, and it yields only picklable values (dataclasses of plain data).

Every video waits its turn for the model (`jobs.ModelSlot`) and is scored for the request that
asked for it: the request's cancel token (`jobs.current_token`) stops the wait, the sampling and
the generation, and the turn passes on only once the work has really stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from contextlib import closing
from pathlib import Path

import spaces  # noqa: F401  (imported before torch touches CUDA, as ZeroGPU requires)

from ..backends.transformers import Engine, ScoreUpdate, frames_record
from ..errors import ModelLoadError, UserInputError
from ..jobs import CancelToken, ModelSlot, current_token
from ..prompts import clean_prompt
from ..results import ScoreResult
from ..settings import ScoreOptions, Settings
from ..video import SampledVideo

log = logging.getLogger(__name__)

ON_ZERO_GPU = bool(os.environ.get("SPACES_ZERO_GPU"))


class ModelRuntime:
    """Loads the engine once (in a thread, so the UI comes up at once) and hands it out."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._engine: Engine | None = None
        self._error: str | None = None
        self._ready = threading.Event()
        self._started_at: float | None = None
        self.slot = ModelSlot()

    def start_loading(self, background: bool = True) -> "ModelRuntime":
        self._started_at = time.perf_counter()
        if background:
            threading.Thread(target=self._load, name="vs2demo-load", daemon=True).start()
        else:
            self._load()
        return self

    def _load(self) -> None:
        try:
            self._engine = Engine.load(self.settings)
        except (ModelLoadError, UserInputError) as exc:
            self._error = str(exc)
        except Exception as exc:  # shown in the UI with its reason rather than lost in a thread
            log.exception("model load failed")
            self._error = f"{type(exc).__name__}: {exc}"
        finally:
            self._ready.set()

    @property
    def state(self) -> str:
        if not self._ready.is_set():
            return "loading"
        return "failed" if self._error else "ready"

    @property
    def error(self) -> str | None:
        return self._error

    @property
    def is_toy(self) -> bool:
        return self._engine is not None and self._engine.is_toy

    def loading_seconds(self) -> float:
        return 0.0 if self._started_at is None else time.perf_counter() - self._started_at

    def engine(self, timeout: float | None = None, cancel: CancelToken | None = None) -> Engine:
        """The engine; waits while it loads (a cancel ends the wait). ModelLoadError says why when it
        could not be loaded."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if cancel is not None:
                cancel.check()
            if deadline is not None and time.monotonic() >= deadline:
                raise ModelLoadError("The model is still loading; try again in a moment.")
        if self._error:
            raise ModelLoadError(f"The model could not be loaded: {self._error}")
        return self._engine

    def failed(self, video: str, prompt: str, error: str, options: ScoreOptions) -> ScoreResult:
        """The record of a video that could not be scored, shaped like the engine's records."""
        if self._engine is not None:
            return self._engine.failed(video, prompt, error, options)
        return ScoreResult(video=str(video), prompt=prompt or "", model=self.settings.model, error=error,
                           settings=options.to_dict())

    def prepare(self, video, options: ScoreOptions, cancel: CancelToken | None = None) -> SampledVideo:
        """The frames sampled on the CPU (once the model has loaded), before the GPU is asked for;
        `options` as `checked_request` returned them."""
        return self.engine(cancel=cancel).sample(video, options, cancel)


def checked_request(video, prompt: str, options: ScoreOptions) -> tuple[str, ScoreOptions]:
    """The prompt and options as they will be used, or a UserInputError: what can be checked
    without the model, before a request waits its turn for it."""
    if not video:
        raise UserInputError("No video given: upload one or pick an example.")
    return clean_prompt(prompt), options.validated()


# The one engine; set by the app before launch. `generate` must be a module-level function for
# ZeroGPU, so it finds the runtime here.
RUNTIME: ModelRuntime | None = None


def gpu_seconds(video: SampledVideo, prompt: str, options: ScoreOptions) -> int:
    """ZeroGPU time asked for one scoring: grows with frames (vision encoder) and new tokens."""
    return int(min(300, 15 + 0.25 * video.count + 0.04 * options.max_new_tokens))


@spaces.GPU(duration=gpu_seconds)
def generate(video: SampledVideo, prompt: str, options: ScoreOptions):
    """Stream one scoring: ScoreUpdates, then the ScoreResult.

    The cancel token is the calling thread's, not an argument: it cannot be pickled. On ZeroGPU the
    forked worker has none, and a cancel ends the stream from this side (`score_stream` checks it
    between updates and closes the stream).
    """
    yield from RUNTIME.engine().score(video, prompt, options, cancel=current_token())


def score_stream(runtime: ModelRuntime, video, prompt: str, options: ScoreOptions):
    """What every tab iterates: the request checked, its turn for the model awaited ("waiting"
    updates say how many are ahead), the frames sampled ("sampled"), then the GPU function's
    stream, whose record names the video by the file name the user knows (`named`).

    Raises UserInputError / ModelLoadError before any GPU work, and jobs.Cancelled when the
    request is cancelled; the model passes to the next request only once the work has stopped.
    """
    cancel = current_token()
    prompt, options = checked_request(video, prompt, options)  # refused before waiting in line
    with runtime.slot.turn(cancel) as waiting:
        for ahead in waiting:
            yield ScoreUpdate(stage="waiting", ahead=ahead)
        sampled = runtime.prepare(video, options, cancel)
        yield ScoreUpdate(stage="sampled", frames=frames_record(sampled), video=sampled)
        with closing(generate(sampled, prompt, options)) as stream:
            for update in stream:
                cancel.check()
                yield named(update, video) if isinstance(update, ScoreResult) else update


def named(result: ScoreResult, video) -> ScoreResult:
    """The record with `video` set to the file's name as uploaded, not Gradio's cache path."""
    return dataclasses.replace(result, video=display_name(video))


def score_file_stream(runtime: ModelRuntime, video, prompt: str, options: ScoreOptions):
    """ScoreUpdates while one video is scored, then its ScoreResult (see `score_stream`).

    Never raises for this video's failure: a bad file, a model that could not be loaded, or
    anything else that goes wrong with it becomes the record's `error`, so a list of videos goes on
    with the next one. A cancel is not a failure: jobs.Cancelled goes through, and the list ends.
    Closing the generator ends generation at once.
    """
    try:
        with closing(score_stream(runtime, video, prompt, options)) as stream:
            for update in stream:
                yield update
                if isinstance(update, ScoreResult):
                    return
        raise RuntimeError("the model gave no result")
    except (UserInputError, ModelLoadError) as exc:
        error = str(exc)
    except Exception as exc:  # one broken file must not end a run of many
        log.exception("scoring %s failed", video)
        error = f"Scoring failed: {type(exc).__name__}: {exc}"
    yield runtime.failed(display_name(video), prompt, error, options)


def score_to_result(runtime: ModelRuntime, video, prompt: str, options: ScoreOptions) -> ScoreResult:
    """Score one video to its record, as `score_file_stream` does, without the updates."""
    *_, result = score_file_stream(runtime, video, prompt, options)
    return result


def display_name(path) -> str:
    """A video's file name as the user knows it (Gradio keeps the original name in its cache path)."""
    return Path(str(path)).name if path else ""


__all__ = ["ModelRuntime", "RUNTIME", "generate", "score_stream", "score_file_stream", "score_to_result", "named",
           "ScoreUpdate", "display_name"]
