"""Every knob in one place: the model to load, and the options of one scoring.

Defaults follow the reference preprocessing and decoding (qwen-vl-utils, the authors' vs2_inference.py)
except where the project chose better for a demo: greedy decoding (one answer per input) and at most
64 frames.
Each field can come from a command-line flag or an environment variable (what a Space uses).
"""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace

from .errors import UserInputError, shown
from .prompts import DEFAULT_TEMPLATE, TEMPLATES

DEFAULT_MODEL = "TIGER-Lab/VideoScore2"
QUANT_MODES = ("4bit", "8bit", "none")
DEVICES = ("auto", "cuda", "cpu")
# How text is generated: the model in this process, or a vLLM server it talks to (vs2demo.backends).
BACKENDS = ("transformers", "vllm")

# The reference's frame budgets (qwen-vl-utils as the authors used it).
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28
VIDEO_TOTAL_PIXELS = 90_316_800
# The sampling defaults, the one place every default of fps and frame counts comes from: the
# reference's 2 fps and 4 frames at least; at most 64 frames (the reference allows 768) for a demo.
DEFAULT_FPS = 2.0
DEFAULT_MAX_FRAMES = 64
MIN_FRAMES = 4

# Every range a value must lie in, in one place: the checks below, the CLI and the page's sliders.
FPS_RANGE = (0.1, 30.0)
MAX_FRAMES_RANGE = (4, 768)
TEMPERATURE_RANGE = (0.01, 2.0)
SEED_RANGE = (0, 2**32 - 1)  # what every backend's generator takes
MAX_NEW_TOKENS_RANGE = (16, 8192)
SAMPLES_RANGE = (1, 16)  # answers asked for at once ("ask again K times"): they share one prefill
MAX_BATCH_RANGE = (1, 1000)
DEFAULT_MAX_BATCH = 32
# Whether everyone who reaches the app shares its results store (Explore's "Load this app's results
# store", and records one person asked for served to another): "auto" shares it only when nobody
# else can reach the app (see store_shared), "on" always, "off" never.
SHARE_STORE = ("auto", "on", "off")
# Whether people may label videos in the app (vs2demo.labels): "auto" only where the store is
# shared by the same test (one person's app), "on" always, "off" never.
LABELLING = ("auto", "on", "off")
MAX_LABELS_RANGE = (1, 1_000_000)  # labels (and preferences) one session may keep in the store
EXPLORE_MB_RANGE = (1, 65536)  # records the Explore tab holds for all its visitors together, in MiB of files
# Where a score and its probabilities are read: "answer", this app's (the answer block after the
# thinking, p(1..5) before temperature); "authors", as the authors' vs2_inference.py reads them (their
# regex's first match anywhere in the text, p(1..5) after temperature and top-k, the sampler's own).
READINGS = ("answer", "authors")
ATTENTION_LAYERS = ("all", "later")  # vs2demo.attention.LAYER_CHOICES
# The authors' public inference (vs2_inference.py, with qwen-vl-utils' 768-frame cap), as one preset.
PRESETS = {
    "authors": {"template": "inference", "fps": DEFAULT_FPS, "max_frames": 768, "do_sample": True, "temperature": 0.7,
                "max_new_tokens": 1024, "reading": "authors"},
}


def checked_number(label: str, value, bounds: tuple[float, float]) -> float:
    """`value` if it is a finite number (not a bool, not a string) within `bounds`, else a
    UserInputError that says what is wanted."""
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise UserInputError(f"{label} must be a number from {low:g} to {high:g}, not {shown(value)}.")
    return float(value)


def checked_choice(label: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise UserInputError(f"{label} must be one of {', '.join(choices)}, not {shown(value)}.")
    return value


def checked_whole(label: str, value, bounds: tuple[int, int]) -> int:
    """`value` if it is a whole number within `bounds` (64.0 counts, 4.5 and "64" do not)."""
    low, high = bounds
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserInputError(f"{label} must be a whole number from {low:,} to {high:,}, not {shown(value)}.")
    return value


def checked_frame_positions(value) -> tuple[int, ...]:
    """Frame positions (in the sampled list) as a sorted tuple without repeats, each a whole number
    below the most frames a video may give; whether they leave a frame unreplaced is known only once
    the video is sampled (video.replace_frames)."""
    if not isinstance(value, (list, tuple)):
        raise UserInputError(f"replace_frames must be a list of frame positions, not {shown(value)}.")
    if len(value) >= MAX_FRAMES_RANGE[1]:
        raise UserInputError(f"replace_frames names {len(value)} frames; at most {MAX_FRAMES_RANGE[1] - 1} can be replaced.")
    bounds = (0, MAX_FRAMES_RANGE[1] - 1)
    return tuple(sorted({checked_whole("a frame position in replace_frames", item, bounds) for item in value}))


# "Do these frames matter?" (frames_check): a scoring that is part of a check of another record.
CHECK_KINDS = ("top-frames", "random-frames")


@dataclass(frozen=True)
class CheckMark:
    """Marks a scoring as a check of the record `of` (its key): `kind` is which frames were replaced
    (CHECK_KINDS), `replaced` their positions in the sampled frame list, `seed` the draw of random ones.
    Kept in the record's settings (`settings["check"]`) and its key, so a check is never served as,
    or mistaken for, an ordinary scoring."""

    of: str
    kind: str
    replaced: tuple[int, ...]
    seed: int | None = None

    def validated(self) -> "CheckMark":
        checked_choice("check kind", self.kind, CHECK_KINDS)
        if not isinstance(self.of, str) or not 0 < len(self.of) <= 128:
            raise UserInputError(f"A check must name the record it checks, not {shown(self.of)}.")
        seed = None if self.seed is None else checked_whole("check seed", self.seed, SEED_RANGE)
        return replace(self, replaced=checked_frame_positions(self.replaced), seed=seed)


@dataclass(frozen=True)
class ScoreOptions:
    """How one video is sampled and judged; stored in every result record."""

    fps: float = DEFAULT_FPS
    max_frames: int = DEFAULT_MAX_FRAMES
    template: str = DEFAULT_TEMPLATE
    do_sample: bool = False
    temperature: float = 0.7
    seed: int | None = None
    max_new_tokens: int = 1024
    reading: str = "answer"
    samples: int = 1  # K > 1: K sampled answers to the same input, and how far they agree
    # Positions in the sampled frame list whose pixels are replaced by their nearest sampled
    # neighbour's before the model sees them ("Do those frames matter?": vs2demo.video.replace_frames).
    replace_frames: tuple[int, ...] = ()
    # "Where it looked": each score's attention over the frames and the prompt's words (vs2demo.attention).
    attention: bool = False
    check: CheckMark | None = None  # set only by frames_check: this scoring checks another record

    def validated(self) -> "ScoreOptions":
        """These options with every value checked (type and range) and in its plain type, or a
        UserInputError saying which value is wrong and what it must be. The one check the page,
        the API and the CLI share."""
        checked_choice("template", self.template, TEMPLATES)
        checked_choice("reading", self.reading, READINGS)
        if not isinstance(self.do_sample, bool):
            raise UserInputError(f"do_sample must be true or false, not {shown(self.do_sample)}.")
        temperature = self.temperature
        if self.do_sample:
            temperature = checked_number("temperature", temperature, TEMPERATURE_RANGE)
        elif isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise UserInputError(f"temperature must be a number, not {shown(temperature)}.")
        samples = checked_whole("samples", self.samples, SAMPLES_RANGE)
        if not isinstance(self.attention, bool):
            raise UserInputError(f"attention must be true or false, not {shown(self.attention)}.")
        if samples > 1 and not self.do_sample:
            raise UserInputError(f"Asking {samples} times needs sampling (a temperature): greedy decoding gives "
                                 "the same answer every time.")
        if self.check is not None and not isinstance(self.check, CheckMark):
            raise UserInputError("check is set by the frames check itself, not by a request.")
        if self.check is not None and checked_frame_positions(self.check.replaced) != checked_frame_positions(
                self.replace_frames):
            raise UserInputError("A check's mark must name the frames it replaces (replace_frames).")
        return replace(
            self,
            samples=samples,
            replace_frames=checked_frame_positions(self.replace_frames),
            check=None if self.check is None else self.check.validated(),
            fps=checked_number("fps", self.fps, FPS_RANGE),
            max_frames=checked_whole("max_frames", self.max_frames, MAX_FRAMES_RANGE),
            temperature=float(temperature),
            seed=None if self.seed is None else checked_whole("seed", self.seed, SEED_RANGE),
            max_new_tokens=checked_whole("max_new_tokens", self.max_new_tokens, MAX_NEW_TOKENS_RANGE),
        )

    def to_dict(self) -> dict:
        """The options as JSON keeps them (a record's settings come back from a file the same)."""
        return {**asdict(self), "replace_frames": list(self.replace_frames)}

    def with_changes(self, **changes) -> "ScoreOptions":
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in changes.items() if k in known and v is not None})


def request_options(defaults: ScoreOptions, **values) -> ScoreOptions:
    """The options of one request (the page's controls, an API call, the CLI's flags) over the
    defaults, checked. A seed is checked even for greedy decoding, then dropped: it has no effect
    there, and the record should not claim one."""
    options = defaults.with_changes(**values).validated()
    return options if options.do_sample else replace(options, seed=None)


@dataclass(frozen=True)
class Settings:
    """What the app or the command line runs with: one model, and the default options."""

    model: str = DEFAULT_MODEL
    quant: str = "4bit"
    device: str = "auto"
    backend: str = "transformers"
    vllm_url: str | None = None  # the vLLM server's address (http://HOST:PORT), with backend "vllm"
    # The operator's name for how that server runs the model (weights, quantization, dtype), which a
    # client cannot read off it: kept in each record and its key.
    vllm_label: str | None = None
    options: ScoreOptions = field(default_factory=ScoreOptions)
    # Frame pixel budgets; None means the reference's (or what a toy model declares for itself).
    min_pixels: int | None = None
    max_pixels: int | None = None
    total_pixels: int = VIDEO_TOTAL_PIXELS
    # The app's limit on videos in one Batch request (the page and the API): a public Space must
    # not let one request hold the model for hours.
    max_batch: int = DEFAULT_MAX_BATCH
    # Keep each token's probability, entropy and top alternatives (vs2demo.confidence); off only to
    # measure what keeping them costs.
    token_confidence: bool = True
    share_store: str = "auto"
    explore_mb: int = 256
    labelling: str = "auto"
    max_labels: int = 10_000
    # Where it looked: the layers whose attention is averaged, "all" or "later" (the later half).
    attention_layers: str = "all"

    def __post_init__(self):
        checked_whole("max_batch", self.max_batch, MAX_BATCH_RANGE)
        checked_whole("explore_mb", self.explore_mb, EXPLORE_MB_RANGE)
        checked_choice("share_store", self.share_store, SHARE_STORE)
        checked_choice("labelling", self.labelling, LABELLING)
        checked_whole("max_labels", self.max_labels, MAX_LABELS_RANGE)
        checked_choice("attention_layers", self.attention_layers, ATTENTION_LAYERS)
        checked_choice("quant", self.quant, QUANT_MODES)
        checked_choice("device", self.device, DEVICES)
        checked_choice("backend", self.backend, BACKENDS)
        if self.backend == "vllm" and not self.vllm_url:
            raise UserInputError("--backend vllm needs the server's address: --vllm-url http://HOST:PORT (or VS2_VLLM_URL).")
        if self.vllm_url is not None and not str(self.vllm_url).startswith(("http://", "https://")):
            raise UserInputError(f"the vLLM server's address must start with http:// or https://, not {shown(self.vllm_url)}.")
        if self.vllm_label is not None:
            if self.backend != "vllm":
                raise UserInputError("--vllm-label names how a vLLM server runs the model: it goes with --backend vllm.")
            if not isinstance(self.vllm_label, str) or not 0 < len(self.vllm_label) <= 100 or not self.vllm_label.isprintable():
                raise UserInputError(f"--vllm-label must be 1 to 100 printable characters, not {shown(self.vllm_label)}.")


# Environment variables a Space (or a shell) can set, each VS2_ and its setting's name (VS2_MODEL,
# VS2_MAX_FRAMES, ...); flags given on the command line win.
ENV_VARS = {name: f"VS2_{name.upper()}" for name in (
    "model", "quant", "device", "backend", "vllm_url", "vllm_label", "fps", "max_frames", "template", "max_new_tokens",
    "max_batch", "share_store", "explore_mb", "labelling", "max_labels", "attention_layers")}
# The settings of ENV_VARS that are numbers (the environment's values are text).
NUMERIC = {"fps": float, "max_frames": int, "max_new_tokens": int, "max_batch": int, "explore_mb": int,
           "max_labels": int}


@dataclass(frozen=True)
class Environment:
    """What the app reads from its environment besides the settings of ENV_VARS: every variable
    read anywhere is read here (`environment`), by the names in ENVIRONMENT_VARS."""

    store: str = ""  # VS2_STORE: the results store's file; off, none or no: none
    videos: str = ""  # VS2_VIDEOS: the folder Explore opens records' videos from (as --videos)
    on_space: bool = False  # SPACE_ID: set on a Hugging Face Space
    zero_gpu: bool = False  # SPACES_ZERO_GPU: set on a ZeroGPU Space
    cache_home: str = ""  # XDG_CACHE_HOME: where the store goes by default (else ~/.cache)
    server_name: str = ""  # GRADIO_SERVER_NAME: the address Gradio listens on when --host is not given
    upload_dir: str = ""  # GRADIO_TEMP_DIR: where Gradio keeps uploads (else the app's own folder)


ENVIRONMENT_VARS = {"store": "VS2_STORE", "videos": "VS2_VIDEOS", "on_space": "SPACE_ID", "zero_gpu": "SPACES_ZERO_GPU",
                    "cache_home": "XDG_CACHE_HOME", "server_name": "GRADIO_SERVER_NAME", "upload_dir": "GRADIO_TEMP_DIR"}


def environment(environ: dict | None = None) -> Environment:
    """The Environment of `environ` (os.environ when None); a flag is on when its variable is set."""
    env = os.environ if environ is None else environ
    values = {name: (env.get(var) or "").strip() for name, var in ENVIRONMENT_VARS.items()}
    return Environment(**{name: bool(value) if isinstance(getattr(Environment, name), bool) else value
                          for name, value in values.items()})


def _from_env(env, variables: dict, numeric: dict) -> dict:
    """The settings `variables` names that `env` sets, by setting name: text, or the number `numeric`
    reads it as (UserInputError when it is not one)."""
    values = {}
    for name, var in variables.items():
        if env.get(var):
            try:
                values[name] = numeric[name](env[var]) if name in numeric else env[var]
            except ValueError:
                raise UserInputError(f"{var} must be a number, not {shown(env[var])}.") from None
    return values


def settings_from_env(environ: dict | None = None, **overrides) -> Settings:
    """Settings from environment variables, then from explicit overrides (None = not given)."""
    values = _from_env(os.environ if environ is None else environ, ENV_VARS, NUMERIC)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("model") == "toy":
        # The toy is full precision unless a quantization is asked for by name (the tests load it in
        # 4-bit to check that path): 4-bit on a CPU only needs bitsandbytes' CPU kernels.
        values.setdefault("quant", "none")
    option_names = {f.name for f in fields(ScoreOptions)}
    options = {name: values.pop(name) for name in list(values) if name in option_names}
    return Settings(options=request_options(ScoreOptions(), **options), **values)


def store_shared(share_store: str, host: str | None = None, share_link: bool = False, environ: dict | None = None) -> bool:
    """Whether the app shares its results store among all who reach it (SHARE_STORE). "auto": only
    when nobody else can reach the app: it listens on this machine's loopback address alone (the
    --host, else GRADIO_SERVER_NAME, else 127.0.0.1), with no share link, and not as a Space."""
    if share_store != "auto":
        return share_store == "on"
    env = environment(environ)
    if share_link or env.on_space:
        return False
    host = (host or env.server_name or "127.0.0.1").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: others may reach it


def labelling_on(labelling: str, host: str | None = None, share_link: bool = False, environ: dict | None = None) -> bool:
    """Whether people may label in the app (LABELLING): "auto" as `store_shared` decides "auto" (off
    on a public Space or wherever others can reach the app), unless the operator says on or off."""
    return store_shared(labelling, host, share_link, environ)


# ---- what a public server allows one visitor (vs2demo.ui.server, vs2demo.ui.files) ----------------------

MAX_REQUESTS_PER_CLIENT_RANGE = (1, 1000)
PROXY_HOPS_RANGE = (0, 8)
UPLOADS_MAX_GB_RANGE = (0.001, 1_000_000.0)


@dataclass(frozen=True)
class ServerLimits:
    """What one visitor may hold of a running app: model requests waiting or running at once (counted
    by address), and the disk its uploads may fill together."""

    max_requests_per_client: int = 4
    # Proxies of another machine in front of the app that append the address they saw to
    # X-Forwarded-For (a Hugging Face Space has one); 0 reads no header the client could write.
    proxy_hops: int = 0
    uploads_max_gb: float = 5.0

    def __post_init__(self):
        checked_whole("max_requests_per_client", self.max_requests_per_client, MAX_REQUESTS_PER_CLIENT_RANGE)
        checked_whole("proxy_hops", self.proxy_hops, PROXY_HOPS_RANGE)
        checked_number("uploads_max_gb", self.uploads_max_gb, UPLOADS_MAX_GB_RANGE)

    @property
    def uploads_max_bytes(self) -> int:
        return int(self.uploads_max_gb * 1e9)


# VS2_MAX_REQUESTS_PER_CLIENT, VS2_PROXY_HOPS, VS2_UPLOADS_MAX_GB
SERVER_ENV_VARS = {name: f"VS2_{name.upper()}" for name in ("max_requests_per_client", "proxy_hops", "uploads_max_gb")}


def server_limits_from_env(environ: dict | None = None, **overrides) -> ServerLimits:
    """ServerLimits from environment variables, then from explicit overrides (None = not given). On a
    Hugging Face Space (SPACE_ID set) the Space's proxy is one hop unless VS2_PROXY_HOPS says otherwise."""
    env = os.environ if environ is None else environ
    values: dict = {"proxy_hops": 1} if environment(env).on_space else {}
    values.update(_from_env(env, SERVER_ENV_VARS, {f.name: type(f.default) for f in fields(ServerLimits)}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ServerLimits(**values)
