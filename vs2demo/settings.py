"""Every knob in one place: the model to load, and the options of one scoring.

Defaults follow the reference preprocessing and decoding (../shared/REFERENCE.md) except where the
project chose better for a demo: greedy decoding (one answer per input) and at most 64 frames.
Each field can come from a command-line flag or an environment variable (what a Space uses).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace

from .errors import UserInputError
from .prompts import DEFAULT_TEMPLATE, TEMPLATES

DEFAULT_MODEL = "TIGER-Lab/VideoScore2"
QUANT_MODES = ("4bit", "8bit", "none")
DEVICES = ("auto", "cuda", "cpu")

# The reference's frame budgets (qwen-vl-utils as the authors used it).
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28
VIDEO_TOTAL_PIXELS = 90_316_800


@dataclass(frozen=True)
class ScoreOptions:
    """How one video is sampled and judged; stored in every result record."""

    fps: float = 2.0
    max_frames: int = 64
    template: str = DEFAULT_TEMPLATE
    do_sample: bool = False
    temperature: float = 0.7
    seed: int | None = None
    max_new_tokens: int = 1024

    def validated(self) -> "ScoreOptions":
        if not (0.1 <= self.fps <= 30):
            raise UserInputError(f"fps must be between 0.1 and 30, not {self.fps}.")
        if not (4 <= self.max_frames <= 768):
            raise UserInputError(f"max frames must be between 4 and 768, not {self.max_frames}.")
        if self.template not in TEMPLATES:
            raise UserInputError(f"Unknown prompt template {self.template!r}: choose one of {', '.join(TEMPLATES)}.")
        if self.do_sample and not (0.01 <= self.temperature <= 2.0):
            raise UserInputError(f"temperature must be between 0.01 and 2, not {self.temperature}.")
        if not (16 <= self.max_new_tokens <= 8192):
            raise UserInputError(f"max new tokens must be between 16 and 8192, not {self.max_new_tokens}.")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def with_changes(self, **changes) -> "ScoreOptions":
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in changes.items() if k in known and v is not None})


@dataclass(frozen=True)
class Settings:
    """What the app or the command line runs with: one model, and the default options."""

    model: str = DEFAULT_MODEL
    quant: str = "4bit"
    device: str = "auto"
    options: ScoreOptions = field(default_factory=ScoreOptions)
    # Frame pixel budgets; None means the reference's (or what a toy model declares for itself).
    min_pixels: int | None = None
    max_pixels: int | None = None
    total_pixels: int = VIDEO_TOTAL_PIXELS

    def __post_init__(self):
        if self.quant not in QUANT_MODES:
            raise UserInputError(f"quant must be one of {', '.join(QUANT_MODES)}, not {self.quant!r}.")
        if self.device not in DEVICES:
            raise UserInputError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}.")


# Environment variables a Space (or a shell) can set; flags given on the command line win.
ENV_VARS = {
    "model": "VS2_MODEL",
    "quant": "VS2_QUANT",
    "device": "VS2_DEVICE",
    "fps": "VS2_FPS",
    "max_frames": "VS2_MAX_FRAMES",
    "template": "VS2_TEMPLATE",
    "max_new_tokens": "VS2_MAX_NEW_TOKENS",
}


def settings_from_env(environ: dict | None = None, **overrides) -> Settings:
    """Settings from environment variables, then from explicit overrides (None = not given)."""
    env = os.environ if environ is None else environ
    values: dict = {}
    for name, var in ENV_VARS.items():
        if env.get(var):
            values[name] = env[var]
    values.update({k: v for k, v in overrides.items() if v is not None})
    option_names = {f.name for f in fields(ScoreOptions)}
    option_types = {"fps": float, "max_frames": int, "max_new_tokens": int, "temperature": float, "seed": int}
    options = {}
    for name in list(values):
        if name in option_names:
            raw = values.pop(name)
            try:
                options[name] = option_types.get(name, lambda v: v)(raw)
            except (TypeError, ValueError):
                raise UserInputError(f"{name} must be a number, not {raw!r}.") from None
    base = ScoreOptions()
    return Settings(options=base.with_changes(**options).validated(), **values)
