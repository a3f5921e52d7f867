"""The one loaded engine behind the app: loading in the background, its status, and the single
GPU-decorated function every tab scores through.

On a ZeroGPU Space `spaces.GPU` runs `generate` in a forked worker with a GPU attached; elsewhere
it is a no-op. Inputs are checked and frames sampled on the CPU before it is entered, so a bad file
costs no GPU quota, and it yields only picklable values (dataclasses of plain data).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import spaces  # noqa: F401  (imported before torch touches CUDA, as ZeroGPU requires)

from ..engine import Engine, ScoreUpdate
from ..errors import ModelLoadError, UserInputError
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

    def engine(self, timeout: float | None = None) -> Engine:
        """The engine; waits while it loads. ModelLoadError says why when it could not be loaded."""
        if not self._ready.wait(timeout):
            raise ModelLoadError("The model is still loading; try again in a moment.")
        if self._error:
            raise ModelLoadError(f"The model could not be loaded: {self._error}")
        return self._engine

    def prepare(self, video, prompt: str, options: ScoreOptions) -> tuple[SampledVideo, str, ScoreOptions]:
        """Everything checked and sampled on the CPU, before the GPU is asked for."""
        if not video:
            raise UserInputError("No video given: upload one or pick an example.")
        options = options.validated()
        prompt = clean_prompt(prompt)
        return self.engine().sample(video, options), prompt, options


# The one engine; set by the app before launch. `generate` must be a module-level function for
# ZeroGPU, so it finds the runtime here.
RUNTIME: ModelRuntime | None = None


def gpu_seconds(video: SampledVideo, prompt: str, options: ScoreOptions) -> int:
    """ZeroGPU time asked for one scoring: grows with frames (vision encoder) and new tokens."""
    return int(min(300, 15 + 0.25 * video.count + 0.04 * options.max_new_tokens))


@spaces.GPU(duration=gpu_seconds)
def generate(video: SampledVideo, prompt: str, options: ScoreOptions):
    """Stream one scoring: ScoreUpdates, then the ScoreResult."""
    yield from RUNTIME.engine().score(video, prompt, options)


def score_stream(runtime: ModelRuntime, video, prompt: str, options: ScoreOptions):
    """What every tab iterates: validated inputs, then the GPU function's stream.

    Raises UserInputError / ModelLoadError before any GPU work.
    """
    sampled, prompt, options = runtime.prepare(video, prompt, options)
    yield from generate(sampled, prompt, options)


def score_to_result(runtime: ModelRuntime, video, prompt: str, options: ScoreOptions, on_update=None) -> ScoreResult:
    """Score one video to its record; a user error becomes the record's `error`, so lists go on."""
    try:
        result = None
        for update in score_stream(runtime, video, prompt, options):
            if isinstance(update, ScoreResult):
                result = update
            elif on_update is not None:
                on_update(update)
        return result
    except (UserInputError, ModelLoadError) as exc:
        return ScoreResult(video=str(video or ""), prompt=prompt or "", model=runtime.settings.model,
                           error=str(exc), settings=options.to_dict())


def display_name(path) -> str:
    """A video's file name as the user knows it (Gradio keeps the original name in its cache path)."""
    return Path(str(path)).name if path else ""


__all__ = ["ModelRuntime", "RUNTIME", "generate", "score_stream", "score_to_result", "ScoreUpdate", "display_name"]
