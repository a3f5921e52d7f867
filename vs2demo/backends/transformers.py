"""Load VideoScore2 (or the toy model) once, and score videos with it, streaming the text.

`load_model` returns the model and processor; `Engine` wraps them with the settings and turns one
video + prompt into a stream of `ScoreUpdate`s (the text so far) ending in a `ScoreResult`.
Generation runs in a thread behind a `TextIteratorStreamer`; a per-call `threading.Event`, checked
by a `StoppingCriteria`, ends `generate()` for real when the caller stops or walks away.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
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
    TextIteratorStreamer,
)

from .. import DIMENSIONS
from ..errors import ModelLoadError, UserInputError
from ..jobs import CancelToken
from ..parsing import ParsedOutput, parse
from ..positions import mrope_position_ids
from ..prompts import DEFAULT_TEMPLATE, build_messages, clean_prompt
from ..results import DimensionScore, ScoreResult
from ..settings import VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS, ScoreOptions, Settings
from ..video import SampledVideo, sample_frames

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
        raise ModelLoadError("--device cuda was asked for, but PyTorch sees no CUDA GPU on this machine.")
    return device


def compute_dtype(device: str, is_toy: bool) -> torch.dtype:
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # The toy is tiny: full precision keeps its CPU tests exact. The real model on a CPU (who insists)
    # stays in bf16 so that its 8.3 B parameters fit in memory.
    return torch.float32 if is_toy else torch.bfloat16


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


def looks_like_a_folder(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or Path(model).exists() or model.count("/") != 1


def load_config(model: str):
    if looks_like_a_folder(model) and not Path(model).expanduser().is_dir():
        raise ModelLoadError(
            f"No model folder at {model!r}. Give a folder holding a checkpoint (config.json, weights, "
            "processor files) or a hub id such as TIGER-Lab/VideoScore2."
        )
    try:
        return AutoConfig.from_pretrained(str(Path(model).expanduser()) if Path(model).expanduser().is_dir() else model)
    except OSError as exc:
        where = "folder" if Path(model).exists() else "Hugging Face Hub id"
        raise ModelLoadError(
            f"Could not read the model config of {model!r} (a {where}): {exc}. "
            "Give a local folder holding a VideoScore2 checkpoint, or a hub id this machine can download."
        ) from exc


def is_toy_config(config) -> bool:
    return bool(getattr(config, "vs2demo_toy", False))


def load_model(model: str = "TIGER-Lab/VideoScore2", quant: str = "4bit", device: str = "auto"):
    """Load the model and its processor. Returns (model, processor).

    `model`: a hub id or a local folder; `quant`: 4bit (nf4, double quantization), 8bit or none;
    `device`: auto (CUDA when present), cuda or cpu. The vision tower and lm_head stay in 16-bit.
    """
    config = load_config(model)
    is_toy = is_toy_config(config)
    if device == "auto" and not torch.cuda.is_available() and not is_toy:
        raise ModelLoadError(
            "VideoScore2 has 8.3 B parameters and needs a CUDA GPU (about 7 GB of GPU memory in 4-bit, "
            "17 GB in bf16), and PyTorch sees none here. Run on a machine with an NVIDIA GPU; or build "
            "the toy model for a CPU preview (`python -m vs2demo toy-model toy` then `--model toy`); "
            "or pass `--device cpu` to run the real model on the CPU anyway (minutes per video)."
        )
    device = resolve_device(device)
    dtype = compute_dtype(device, is_toy)
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
    Values stay on the device until the end: no host sync per token.
    """

    def __init__(self, digit_ids: list[int]):
        self.digit_ids = torch.tensor(digit_ids)
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids, scores):
        if self.digit_ids.device != scores.device:
            self.digit_ids = self.digit_ids.to(scores.device)
        log_probs = torch.log_softmax(scores[0].float(), dim=-1)
        self.steps.append(log_probs.index_select(0, self.digit_ids))
        return scores

    def as_tensor(self) -> torch.Tensor:
        """(steps, 5) log-probabilities on the CPU."""
        if not self.steps:
            return torch.empty(0, len(self.digit_ids))
        return torch.stack(self.steps).cpu()


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


def score_token_steps(tokenizer, generated_ids: list[int], digit_ids: list[int], parsed: ParsedOutput) -> dict[str, int | None]:
    """For each dimension, the generation step whose token wrote its score digit.

    The parser gives the digit's character position in the decoded text; a digit token at step i
    sits at the position where the decoded text of the first i tokens ends.
    """
    steps: dict[str, int | None] = {key: None for key in DIMENSIONS}
    wanted = {span[0]: key for key, span in parsed.spans.items() if span is not None}
    if not wanted:
        return steps
    digit_set = set(digit_ids)
    for step, token in enumerate(generated_ids):
        if token not in digit_set:
            continue
        start = len(tokenizer.decode(generated_ids[:step], skip_special_tokens=True))
        if start in wanted:
            steps[wanted.pop(start)] = step
            if not wanted:
                break
    return steps


# ---- scoring -----------------------------------------------------------------------------------

@dataclass
class ScoreUpdate:
    """What the stream says while a video is being scored (picklable: ZeroGPU ships it across)."""

    stage: str  # "waiting" (for the model), "sampling", "sampled", "generating"
    text: str = ""
    parsed: ParsedOutput | None = None
    frames: dict = field(default_factory=dict)
    visual_tokens: int | None = None
    elapsed_s: float = 0.0
    new_tokens: int = 0
    ahead: int | None = None  # "waiting": requests ahead of this one for the model
    video: SampledVideo | None = None  # "sampled": the frames, for the page to show (never sent to the GPU worker)


@dataclass
class LoadInfo:
    model: str
    quant: str
    device: str
    dtype: str
    is_toy: bool
    load_s: float
    parameters: int
    memory_bytes: int


class Engine:
    """One loaded model and processor; `score` streams one video's judgement."""

    def __init__(self, model, processor, settings: Settings, info: LoadInfo):
        self.model = model
        self.processor = processor
        self.settings = settings
        self.info = info
        self.digit_ids = digit_token_ids(processor.tokenizer)
        self._active: set[threading.Event] = set()
        self._active_lock = threading.Lock()
        frame_pixels = getattr(model.config, "vs2demo_frame_pixels", None) or {}
        # A toy model declares its own (small) frame budget; the reference's is the default.
        self.min_pixels = settings.min_pixels or frame_pixels.get("min_pixels", VIDEO_MIN_PIXELS)
        self.max_pixels = settings.max_pixels or frame_pixels.get("max_pixels", VIDEO_MAX_PIXELS)

    @classmethod
    def load(cls, settings: Settings) -> "Engine":
        started = time.perf_counter()
        model, processor = load_model(settings.model, quant=settings.quant, device=settings.device)
        device = str(model.device.type)
        info = LoadInfo(
            model=settings.model,
            quant=settings.quant,
            device=device,
            dtype=str(model.dtype).replace("torch.", ""),
            is_toy=is_toy_config(model.config),
            load_s=time.perf_counter() - started,
            parameters=sum(p.numel() for p in model.parameters()),
            memory_bytes=model.get_memory_footprint(),
        )
        return cls(model, processor, settings, info)

    @property
    def is_toy(self) -> bool:
        return self.info.is_toy

    def stop(self) -> None:
        """Ends every generation in progress (the app's Stop button, a closed browser tab)."""
        with self._active_lock:
            for event in self._active:
                event.set()

    def sample(self, video_path, options: ScoreOptions, cancel: CancelToken | None = None) -> SampledVideo:
        return sample_frames(
            video_path,
            fps=options.fps,
            max_frames=options.max_frames,
            min_pixels=self.min_pixels,
            max_pixels=self.max_pixels,
            total_pixels=self.settings.total_pixels,
            cancel=cancel,
        )

    def record_settings(self, options: ScoreOptions) -> dict:
        return {**options.to_dict(), "quant": self.info.quant, "device": self.info.device}

    def failed(self, video, prompt, error: str, options: ScoreOptions | None = None) -> ScoreResult:
        options = options or self.settings.options
        return ScoreResult(video=str(video), prompt=prompt or "", model=self.info.model, error=error,
                           settings=self.record_settings(options))

    def score(self, video_path, prompt: str, options: ScoreOptions | None = None,
              cancel: CancelToken | None = None) -> Iterator[ScoreUpdate | ScoreResult]:
        """Yield ScoreUpdates as the text grows, then the ScoreResult. `video_path` is a file or a
        SampledVideo. UserInputError for bad input (raised before any model work). Closing the
        generator stops generation; so does `cancel`, and then `jobs.Cancelled` is raised once
        generate() has really ended (no record: the request is gone)."""
        cancel = cancel or CancelToken()
        options = (options or self.settings.options).validated()
        prompt = clean_prompt(prompt)
        started = time.perf_counter()
        if isinstance(video_path, SampledVideo):
            # Sampled already (the app does it before entering the GPU function, so that a bad
            # file costs no GPU time); the decode time is the sampling's own.
            video, video_path = video_path, video_path.path
            started -= video.decode_s
        else:
            yield ScoreUpdate(stage="sampling")
            video = self.sample(video_path, options, cancel)
        cancel.check()
        decoded = time.perf_counter()
        inputs = build_inputs(self.processor, video, prompt, options.template, config=self.model.config,
                              fps=options.fps).to(self.model.device)
        grid = inputs.get("video_grid_thw")
        merge = self.processor.video_processor.merge_size ** 2
        visual_tokens = int(grid.prod(-1).sum().item() // merge) if grid is not None else 0
        frames_info = {**frames_record(video), "model_fps": options.fps, "visual_tokens": visual_tokens}
        preprocessed = time.perf_counter()
        yield ScoreUpdate(stage="generating", frames=frames_info, visual_tokens=visual_tokens,
                          elapsed_s=preprocessed - started)

        tokenizer = self.processor.tokenizer
        streamer = TimedTextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=None)
        digits = DigitProbabilities(self.digit_ids)
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
        if options.do_sample:
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
                yield ScoreUpdate(stage="generating", text=text, parsed=parse(text, final=False),
                                  frames=frames_info, visual_tokens=visual_tokens,
                                  elapsed_s=time.perf_counter() - started, new_tokens=len(digits.steps))
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
        text = tokenizer.decode(generated, skip_special_tokens=True)
        parsed = parse(text, final=True)
        log_probs = digits.as_tensor()
        steps = score_token_steps(tokenizer, generated, self.digit_ids, parsed)
        scores = {}
        for key in DIMENSIONS:
            step = steps[key]
            probs = log_probs[step].exp().tolist() if step is not None and step < len(log_probs) else None
            scores[key] = DimensionScore.from_probs(parsed.scores.get(key), probs)
        first_token_at = streamer.first_token_at or finished
        yield ScoreResult(
            video=str(video_path),
            prompt=prompt,
            model=self.info.model,
            scores=scores,
            rationale=parsed.rationale,
            text=text,
            frames=frames_info,
            timings={
                "decode_s": round(video.decode_s, 4),
                "preprocess_s": round(preprocessed - decoded, 4),
                "first_token_s": round(first_token_at - preprocessed, 4),
                "generate_s": round(finished - preprocessed, 4),
                "new_tokens": len(generated),
                "tokens_per_s": round(len(generated) / max(finished - first_token_at, 1e-9), 2) if len(generated) > 1 else None,
                "total_s": round(finished - started, 4),
            },
            settings=self.record_settings(options),
            error=None if parsed.complete else incomplete_message(parsed, len(generated), options.max_new_tokens, stopped_early),
        )

    def score_to_result(self, video_path, prompt: str, options: ScoreOptions | None = None) -> ScoreResult:
        """Run `score` to its end; bad input becomes the record's `error` instead of an exception."""
        options = options or self.settings.options
        try:
            result = None
            for update in self.score(video_path, prompt, options):
                result = update
            return result
        except UserInputError as exc:
            return self.failed(video_path, prompt, str(exc), options)


def incomplete_message(parsed: ParsedOutput, new_tokens: int, max_new_tokens: int, stopped_early: bool) -> str | None:
    missing = [key for key in DIMENSIONS if parsed.scores.get(key) is None]
    if not missing:
        return None
    if stopped_early:
        return f"Stopped before the model wrote every score ({', '.join(missing)} missing)."
    if new_tokens >= max_new_tokens:
        return f"The model used all {max_new_tokens} new tokens before writing every score ({', '.join(missing)} missing): raise max new tokens."
    return f"The model's answer has no score for {', '.join(missing)}."


def frames_record(video: SampledVideo) -> dict:
    return {
        "count": video.count,
        "indices": list(video.indices),
        "timestamps": [round(t, 3) for t in video.timestamps],
        "source_frames": video.source_frames,
        "source_fps": round(video.source_fps, 3),
        # The rate the frames really have (their count over the source's length); the model is told
        # the rate they were asked for ("model_fps", set by the engine), as in the authors' stack.
        "sampled_fps": round(video.metadata().sampled_fps, 4),
        "width": video.width,
        "height": video.height,
        "source_width": video.source_width,
        "source_height": video.source_height,
        "duration": round(video.duration, 3),
        "backend": video.backend,
    }


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
