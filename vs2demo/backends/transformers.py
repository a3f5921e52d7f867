"""The transformers backend: VideoScore2 loaded in this process (4-bit by default), streaming its
answer for sampled frames.

`load_model` returns the model and processor; `TransformersBackend` wraps them and turns sampled
frames + prompt into a stream of `TextUpdate`s ending in a `Generation` (text and digit probabilities).
Generation runs in a thread behind a `TextIteratorStreamer`; a per-call `threading.Event`, checked
by a `StoppingCriteria`, ends `generate()` for real when the caller stops or walks away.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Iterator

import torch
from transformers import (
    AutoConfig,
    AutoProcessor,
    BitsAndBytesConfig,
    LogitsProcessor,
    LogitsProcessorList,
    Qwen2_5_VLForConditionalGeneration,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TextIteratorStreamer,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from ..errors import ModelLoadError, ModelUnavailableError, UserInputError
from ..jobs import CancelToken
from ..positions import mrope_position_ids
from ..prompts import DEFAULT_TEMPLATE, build_messages
from ..settings import VIDEO_MAX_PIXELS, VIDEO_MIN_PIXELS, ScoreOptions, Settings
from ..video import SampledVideo
from . import DigitStep, Generation, LoadInfo, TextUpdate

log = logging.getLogger(__name__)

# Modules kept in 16-bit under quantization. transformers 5 names them model.visual and lm_head;
# the older ["visual"] silently quantizes the vision tower, which wrecks what the model sees.
KEEP_16BIT_MODULES = ["model.visual", "lm_head"]
SCORE_DIGITS = ("1", "2", "3", "4", "5")


# ---- loading ------------------------------------------------------------------------------------

def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailableError("--device cuda was asked for, but PyTorch sees no CUDA GPU on this machine.")
    return device


def compute_dtype(device: str, config) -> torch.dtype:
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # On a CPU, the checkpoint's own dtype when it is full precision (a small model such as the toy
    # stays exact); otherwise bf16, so that VideoScore2's 8.3 B parameters fit in memory.
    return torch.float32 if getattr(config, "dtype", None) == torch.float32 else torch.bfloat16


def quantization_config(quant: str, dtype: torch.dtype) -> BitsAndBytesConfig | None:
    if quant == "none":
        return None
    if quant == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",  # BitsAndBytesConfig still defaults to fp4
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            llm_int8_skip_modules=KEEP_16BIT_MODULES,
        )
    if quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=KEEP_16BIT_MODULES)
    raise UserInputError(f"quant must be 4bit, 8bit or none, not {quant!r}.")


# `--model toy`: the small offline model shipped in assets/toy (built by `python -m tools.toy`).
SHIPPED_TOY = Path(__file__).resolve().parents[2] / "assets" / "toy"
BIG_MODEL_PARAMETERS = 1e9  # above this, a CPU is not a sensible default


def model_source(model: str) -> str:
    """Where `model` is loaded from: "toy" names the shipped toy; anything else is a hub id or a folder."""
    return str(SHIPPED_TOY) if model == "toy" else model


def looks_like_a_folder(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or Path(model).exists() or model.count("/") != 1


HUB_PROBE_TIMEOUT_S = 5.0


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the Hugging Face Hub answers at all, asked once, without the retries the hub client
    makes (six of them, 40 s, on a machine that is offline)."""
    import httpx
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        httpx.head(constants.ENDPOINT, timeout=timeout, follow_redirects=False)  # honours HTTP(S)_PROXY
    except httpx.HTTPError:
        return False
    return True


def no_gpu_message(model: str) -> str:
    return (f"This machine has no CUDA GPU, which {model} needs: run it on a machine with an NVIDIA GPU, "
            "or add `--device cpu` to run it here anyway (minutes per video).")


def load_config(model: str, device: str = "auto"):
    """The model's config, decided quickly: a folder is read; a hub id is read from the local cache,
    and only fetched when the model could run here (a GPU, or `--device cpu`) and the Hub answers.
    ModelUnavailableError says in one sentence what is missing and what to do."""
    model = model_source(model)
    if looks_like_a_folder(model) and not Path(model).expanduser().is_dir():
        raise ModelLoadError(
            f"No model folder at {model!r}. Give a folder holding a checkpoint (config.json, weights, "
            "processor files) or a hub id such as TIGER-Lab/VideoScore2."
        )
    if Path(model).expanduser().is_dir():
        try:
            return AutoConfig.from_pretrained(str(Path(model).expanduser()))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"The folder {model!r} holds no readable model config: {exc}") from exc
    try:
        return AutoConfig.from_pretrained(model, local_files_only=True)
    except OSError:
        pass  # not downloaded yet
    if device == "auto" and not torch.cuda.is_available():
        # Not worth a 16 GB download onto a machine that cannot run it.
        raise ModelUnavailableError(no_gpu_message(model))
    if not hub_reachable():
        raise ModelUnavailableError(
            f"{model} is not downloaded on this machine and the Hugging Face Hub cannot be reached from here: "
            "connect to the internet once (about 16 GB to fetch), or give a local copy with `--model FOLDER`.")
    try:
        return AutoConfig.from_pretrained(model)
    except OSError as exc:
        raise ModelLoadError(
            f"Could not read the model config of {model!r} from the Hugging Face Hub: {exc}. "
            "Check the hub id (e.g. TIGER-Lab/VideoScore2), or give a local folder holding a checkpoint."
        ) from exc


def is_toy_config(config) -> bool:
    """Whether the checkpoint says it is the project's toy (the app then says its scores mean nothing)."""
    return bool(getattr(config, "vs2demo_toy", False))


def estimated_parameters(config) -> int:
    """Roughly how many parameters the language model has, from its config alone (before loading)."""
    text = getattr(config, "text_config", config)
    hidden, layers = text.hidden_size, text.num_hidden_layers
    return 2 * text.vocab_size * hidden + layers * (4 * hidden * hidden + 3 * hidden * text.intermediate_size)


def model_revision(model: str) -> str:
    """What exactly was loaded, for a record's key: the hub commit of a cached hub model, else a hash
    of a local folder's files (names and contents), so that a rebuilt or fine-tuned checkpoint in the
    same folder does not reuse another's records."""
    source = model_source(model)
    folder = Path(source).expanduser()
    if folder.is_dir():
        digest = hashlib.sha256()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return "sha256:" + digest.hexdigest()[:16]
    from transformers.utils import cached_file

    config_file = Path(cached_file(source, "config.json"))
    parts = config_file.parts
    # The hub cache keeps files under .../snapshots/<commit>/
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else "unknown"


def load_model(model: str = "TIGER-Lab/VideoScore2", quant: str = "4bit", device: str = "auto"):
    """Load the model and its processor. Returns (model, processor).

    `model`: a hub id or a local folder; `quant`: 4bit (nf4, double quantization), 8bit or none;
    `device`: auto (CUDA when present), cuda or cpu. The vision tower and lm_head stay in 16-bit.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailableError("--device cuda was asked for, but PyTorch sees no CUDA GPU on this machine.")
    config = load_config(model, device)
    if device == "auto" and not torch.cuda.is_available() and estimated_parameters(config) > BIG_MODEL_PARAMETERS:
        raise ModelUnavailableError(no_gpu_message(model))
    model = model_source(model)
    device = resolve_device(device)
    dtype = compute_dtype(device, config)
    kwargs = {"dtype": dtype, "device_map": {"": 0 if device == "cuda" else "cpu"}}
    qconfig = quantization_config(quant, dtype)
    if qconfig is not None:
        try:
            import bitsandbytes  # noqa: F401  (fail here with a clear message, not deep in loading)
        except ImportError as exc:
            raise ModelLoadError(f"quant={quant} needs the bitsandbytes package: pip install bitsandbytes ({exc}).") from exc
        kwargs["quantization_config"] = qconfig
    try:
        loaded = Qwen2_5_VLForConditionalGeneration.from_pretrained(model, **kwargs)
        processor = AutoProcessor.from_pretrained(model)
    except torch.cuda.OutOfMemoryError as exc:
        raise ModelLoadError(f"The GPU ran out of memory loading {model} ({quant}); try --quant 4bit. ({exc})") from exc
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"Could not load {model!r} ({quant} on {device}): {exc}") from exc
    loaded.eval()
    return loaded, processor


# ---- generation helpers ------------------------------------------------------------------------

class DigitProbabilities(LogitsProcessor):
    """Keeps log p("1".."5") at every generated step: five numbers a step, never the vocabulary.

    In transformers 5 a custom processor runs after the default ones (repetition penalty) and
    before the sampling warpers, so it sees the untempered distribution greedy decoding picks from.
    With `warpers` (the authors' reading) it reads the distribution the sampler draws from instead:
    the same warpers applied to a copy, as the authors' `output_scores` gave them.
    Values stay on the device until the end: no host sync per token.
    """

    def __init__(self, digit_ids: list[int], warpers: LogitsProcessorList | None = None):
        self.digit_ids = torch.tensor(digit_ids)
        self.warpers = warpers
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids, scores):
        if self.digit_ids.device != scores.device:
            self.digit_ids = self.digit_ids.to(scores.device)
        seen = self.warpers(input_ids, scores.clone()) if self.warpers else scores
        log_probs = torch.log_softmax(seen[0].float(), dim=-1)
        self.steps.append(log_probs.index_select(0, self.digit_ids))
        return scores

    def as_tensor(self) -> torch.Tensor:
        """(steps, 5) log-probabilities on the CPU."""
        if not self.steps:
            return torch.empty(0, len(self.digit_ids))
        return torch.stack(self.steps).cpu()


# transformers 4.x (the authors' stack) sampled with top_k=50 unless the checkpoint said otherwise;
# transformers 5 has no default top-k. The authors' reading passes it explicitly.
AUTHORS_DEFAULT_TOP_K = 50


def authors_sampling(generation_config, temperature: float) -> tuple[dict, LogitsProcessorList]:
    """The sampling the authors' stack did for `temperature` (the checkpoint's top-k and top-p, else
    transformers 4's defaults): the generate() arguments, and the same warpers, in transformers'
    order, for reading the probabilities the sampler draws from."""
    top_k = generation_config.top_k if generation_config.top_k is not None else AUTHORS_DEFAULT_TOP_K
    top_p = generation_config.top_p if generation_config.top_p is not None else 1.0
    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k=top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=top_p))
    return {"do_sample": True, "temperature": temperature, "top_k": top_k, "top_p": top_p}, warpers


class StopOnEvent(StoppingCriteria):
    """Ends generate() at the next token once the engine's own stop is set or the request is cancelled."""

    def __init__(self, event: threading.Event, cancel: CancelToken):
        self.event = event
        self.cancel = cancel

    def __call__(self, input_ids, scores, **kwargs):
        stop = self.event.is_set() or self.cancel.cancelled
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class TimedTextStreamer(TextIteratorStreamer):
    """A TextIteratorStreamer that notes when the first generated token arrived (time to first token:
    vision encoder + prefill + one step), before the text heuristics hold any of it back."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.first_token_at: float | None = None

    def put(self, value):
        if not self.next_tokens_are_prompt and self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        super().put(value)


def digit_token_ids(tokenizer) -> list[int]:
    ids = []
    for digit in SCORE_DIGITS:
        encoded = tokenizer.encode(digit, add_special_tokens=False)
        if len(encoded) != 1:
            raise ModelLoadError(f"The tokenizer splits the digit {digit!r} into {encoded}: scores cannot be traced.")
        ids.append(encoded[0])
    return ids


# ---- the backend ---------------------------------------------------------------------------------

class TransformersBackend:
    """The model in this process (transformers, 4-bit by default): `generate` streams one answer for
    frames already sampled, with p("1".."5") wherever a digit was written."""

    name = "transformers"

    def __init__(self, model, processor, settings: Settings, info: LoadInfo):
        self.model = model
        self.processor = processor
        self.settings = settings
        self.info = info
        self.digit_ids = digit_token_ids(processor.tokenizer)
        self._active: set[threading.Event] = set()
        self._active_lock = threading.Lock()

    @classmethod
    def load(cls, settings: Settings) -> "TransformersBackend":
        started = time.perf_counter()
        model, processor = load_model(settings.model, quant=settings.quant, device=settings.device)
        config = model.config
        # A checkpoint may declare its own frame budget (the toy's frames are tiny); the reference's
        # is the default, and the settings win over both.
        declared = getattr(config, "vs2demo_frame_pixels", None) or {}
        info = LoadInfo(
            backend=cls.name,
            model=settings.model,
            revision=model_revision(settings.model),
            quant=settings.quant,
            device=str(model.device.type),
            dtype=str(model.dtype).replace("torch.", ""),
            is_toy=is_toy_config(config),
            load_s=time.perf_counter() - started,
            parameters=sum(p.numel() for p in model.parameters()),
            memory_bytes=model.get_memory_footprint(),
            min_pixels=settings.min_pixels or declared.get("min_pixels", VIDEO_MIN_PIXELS),
            max_pixels=settings.max_pixels or declared.get("max_pixels", VIDEO_MAX_PIXELS),
            total_pixels=settings.total_pixels,
        )
        return cls(model, processor, settings, info)

    def stop(self) -> None:
        """Ends every generation in progress."""
        with self._active_lock:
            for event in self._active:
                event.set()

    def generate(self, video: SampledVideo, prompt: str, options: ScoreOptions,
                 cancel: CancelToken | None = None) -> Iterator[TextUpdate | Generation]:
        """`TextUpdate`s as the text grows (the first, with no text, once the input is built), then the
        `Generation`. `prompt` and `options` as checked by the caller. Closing the generator ends
        generate() for real; so does `cancel`, and then `jobs.Cancelled` is raised once it has ended."""
        cancel = cancel or CancelToken()
        started = time.perf_counter()
        inputs = build_inputs(self.processor, video, prompt, options.template, config=self.model.config,
                              fps=options.fps).to(self.model.device)
        grid = inputs.get("video_grid_thw")
        merge = self.processor.video_processor.merge_size ** 2
        visual_tokens = int(grid.prod(-1).sum().item() // merge) if grid is not None else 0
        preprocessed = time.perf_counter()
        yield TextUpdate(text="", new_tokens=0, visual_tokens=visual_tokens)

        tokenizer = self.processor.tokenizer
        streamer = TimedTextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=None)
        sampling, warpers = (authors_sampling(self.model.generation_config, options.temperature)
                             if options.reading == "authors" and options.do_sample else ({}, None))
        digits = DigitProbabilities(self.digit_ids, warpers)
        stop_event = threading.Event()
        outcome: dict = {}
        generate_kwargs = dict(
            **inputs,
            streamer=streamer,
            max_new_tokens=options.max_new_tokens,
            logits_processor=LogitsProcessorList([digits]),
            stopping_criteria=StoppingCriteriaList([StopOnEvent(stop_event, cancel)]),
            return_dict_in_generate=True,
        )
        if sampling:
            generate_kwargs.update(sampling)
        elif options.do_sample:
            generate_kwargs.update(do_sample=True, temperature=options.temperature)
        else:
            # Greedy: one answer per input. Unset the checkpoint's sampling knobs to avoid warnings.
            generate_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)

        def run_generate():
            try:
                with torch.inference_mode():
                    if options.do_sample and options.seed is not None:
                        torch.manual_seed(options.seed)
                    outcome["output"] = self.model.generate(**generate_kwargs)
            except BaseException as exc:  # re-raised in the caller's thread below
                outcome["error"] = exc
            finally:
                streamer.end()  # unblocks the reader even when generate failed

        with self._active_lock:
            self._active.add(stop_event)
        thread = threading.Thread(target=run_generate, name="vs2demo-generate", daemon=True)
        text = ""
        try:
            thread.start()
            for piece in streamer:
                if not piece:
                    continue
                text += piece
                yield TextUpdate(text=text, new_tokens=len(digits.steps), visual_tokens=visual_tokens)
            stopped_early = stop_event.is_set()
        finally:
            # Also reached when the consumer closes the generator (Stop, a closed tab): end
            # generate() for real, so the next request starts at once.
            stop_event.set()
            thread.join()
            with self._active_lock:
                self._active.discard(stop_event)
        cancel.check()
        if "error" in outcome:
            raise outcome["error"]
        finished = time.perf_counter()

        generated = outcome["output"].sequences[0, inputs["input_ids"].shape[1]:].tolist()
        first_token_at = streamer.first_token_at or finished
        yield Generation(
            text=tokenizer.decode(generated, skip_special_tokens=True),
            digit_steps=digit_steps(tokenizer, generated, self.digit_ids, digits.as_tensor()),
            new_tokens=len(generated),
            visual_tokens=visual_tokens,
            preprocess_s=preprocessed - started,
            first_token_s=first_token_at - preprocessed,
            generate_s=finished - preprocessed,
            stopped_early=stopped_early,
        )


def digit_steps(tokenizer, generated_ids: list[int], digit_ids: list[int], log_probs: torch.Tensor) -> list[DigitStep]:
    """Every generation step that wrote a digit 1-5: where its text starts in the decoded answer (the
    decoded text of the tokens before it), and p("1".."5") there."""
    steps = []
    digit_set = set(digit_ids)
    for step, token in enumerate(generated_ids):
        if token in digit_set and step < len(log_probs):
            start = len(tokenizer.decode(generated_ids[:step], skip_special_tokens=True))
            steps.append(DigitStep(start, tuple(log_probs[step].exp().tolist())))
    return steps


def build_inputs(processor, video, prompt: str, template: str = DEFAULT_TEMPLATE, *, config, fps: float = 2.0):
    """The model's input for one video (a `vs2demo.video.SampledVideo`) and its generation prompt,
    as the authors' stack gave it to VideoScore2. `config` is the model's (its M-RoPE sizes); `fps`
    the rate the frames were asked for, which is what the model is told.

    Frames arrive already sampled and resized the reference way, so the processor neither samples
    nor resizes again; the metadata tells it where they lie in the source video.
    """
    text = processor.apply_chat_template(build_messages(prompt, template), tokenize=False, add_generation_prompt=True)
    frames = torch.from_numpy(video.frames).permute(0, 3, 1, 2)  # (n, 3, h, w) uint8
    inputs = processor(
        text=[text],
        videos=[frames],
        video_metadata=[video.metadata()],
        do_sample_frames=False,
        do_resize=False,
        # No effect with do_resize=False (frames already carry the reference's per-frame cap);
        # saying so silences transformers' warning about its own default.
        cap_pixels_per_frame=True,
        return_tensors="pt",
    )
    # The time step: the authors tell the processor fps=2.0, the rate they ask qwen-vl-utils to sample
    # at, whatever rate the frames really have (a capped or very short clip's is lower), and training
    # did the same; transformers 5 would tell the real one. The real one is in the record's frames.
    temporal_patch_size = processor.video_processor.temporal_patch_size
    inputs["second_per_grid_ts"] = torch.full_like(inputs["second_per_grid_ts"], temporal_patch_size / fps,
                                                   dtype=torch.float32)
    # The positions: the original rule, not transformers 5's (see vs2demo.positions); generate() uses
    # these for the prefill and extends them by one a token.
    inputs["position_ids"] = mrope_position_ids(
        inputs["input_ids"], inputs["mm_token_type_ids"],
        spatial_merge_size=config.vision_config.spatial_merge_size,
        tokens_per_second=config.vision_config.tokens_per_second,
        video_grid_thw=inputs["video_grid_thw"], second_per_grid_ts=inputs["second_per_grid_ts"],
        attention_mask=inputs["attention_mask"],
    )
    return inputs
