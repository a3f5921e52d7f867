"""The transformers backend: VideoScore2 loaded in this process (4-bit by default), streaming its
answer for sampled frames.

`load_model` returns the model and processor; `TransformersBackend` wraps them and turns sampled
frames + prompt into a stream of `TextUpdate`s ending in a `Generation` (text and digit probabilities).
Generation runs in a thread; its tokens reach the caller through a `TokenStreamer`, and a
per-call `threading.Event`, checked by a `StoppingCriteria`, ends `generate()` for real when the
caller stops or walks away (one event a sample ends that sample alone). `StepRecorder` keeps, at
every step, what the record's probabilities and token confidence are read from. K samples share
one prefill (`shared_prefill`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import torch
from transformers.generation.streamers import BaseStreamer
from transformers import (
    AutoConfig,
    AutoProcessor,
    BitsAndBytesConfig,
    DynamicCache,
    LogitsProcessor,
    LogitsProcessorList,
    Qwen2_5_VLForConditionalGeneration,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from ..errors import ModelLoadError, ModelUnavailableError, UserInputError
from ..checkpoint import frame_pixels, is_toy, looks_like_a_folder, model_revision, model_source
from ..confidence import TOP_ALTERNATIVES, TokenConfidence
from ..jobs import CancelToken
from ..positions import mrope_position_ids
from ..prompts import DEFAULT_TEMPLATE, build_messages
from ..settings import DEFAULT_FPS, ScoreOptions, Settings
from ..video import SampledVideo
from . import SCORE_DIGITS, ActiveGenerations, DigitStep, Generation, Generations, LoadInfo, TextUpdate, is_digit_step

log = logging.getLogger(__name__)

# Modules kept in 16-bit under quantization. transformers 5 names them model.visual and lm_head;
# the older ["visual"] silently quantizes the vision tower, which wrecks what the model sees.
KEEP_16BIT_MODULES = ["model.visual", "lm_head"]


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


BIG_MODEL_PARAMETERS = 1e9  # above this, a CPU is not a sensible default
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
            "or add `--device cpu` to run it here anyway (minutes per video), or try the whole pipeline on the "
            "small offline toy model with `--model toy` (its scores mean nothing).")


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


def estimated_parameters(config) -> int:
    """Roughly how many parameters the language model has, from its config alone (before loading)."""
    text = getattr(config, "text_config", config)
    hidden, layers = text.hidden_size, text.num_hidden_layers
    return 2 * text.vocab_size * hidden + layers * (4 * hidden * hidden + 3 * hidden * text.intermediate_size)


def load_model(model: str = "TIGER-Lab/VideoScore2", quant: str = "4bit", device: str = "auto"):
    """Load the model and its processor. Returns (model, processor).

    `model`: a hub id or a local folder; `quant`: 4bit (nf4, double quantization), 8bit or none;
    `device`: auto (CUDA when present), cuda or cpu. The vision tower and lm_head stay in 16-bit.
    """
    asked, device = device, resolve_device(device)  # --device cuda without a GPU: refused before reading anything
    config = load_config(model, asked)
    if asked == "auto" and device == "cpu" and estimated_parameters(config) > BIG_MODEL_PARAMETERS:
        raise ModelUnavailableError(no_gpu_message(model))
    model = model_source(model)
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

class StepRecorder(LogitsProcessor):
    """Keeps, at every generated step and for every sample, numbers read off the distribution the
    score digits are read from: log p("1".."5") and, with `confidence`, the step's entropy, its top
    5 tokens (ids and log p) and, one step later, the log p of the token chosen. Never the
    vocabulary: 17 numbers a step.

    In transformers 5 a custom processor runs after the default ones (repetition penalty) and
    before the sampling warpers, so it sees the untempered distribution greedy decoding picks from.
    With `warpers` (the authors' reading) it reads the distribution the sampler draws from instead:
    the same warpers applied to a copy, as the authors' `output_scores` gave them.
    Values stay on the device until the end (`numbers`): no host sync per token.
    """

    def __init__(self, digit_ids: list[int], warpers: LogitsProcessorList | None = None, confidence: bool = True,
                 greedy: bool = False):
        self.digit_ids = torch.tensor(digit_ids)
        self.warpers = warpers
        self.confidence = confidence
        # Greedy decoding picks the most likely token of this very distribution: its log p is the top
        # one's, and the step-later lookup is not needed (one op a step fewer).
        self.greedy = greedy
        self.digits: list[torch.Tensor] = []  # (samples, 5) a step
        self.top: list[torch.Tensor] = []  # (samples, 5) log p
        self.top_ids: list[torch.Tensor] = []
        self.entropy: list[torch.Tensor] = []  # (samples,)
        self.chosen: list[torch.Tensor] = []  # (samples,), one step behind
        self._last: torch.Tensor | None = None  # the last step's log p, to read the token chosen from it

    @property
    def steps(self) -> int:
        return len(self.digits)

    def __call__(self, input_ids, scores):
        if self.digit_ids.device != scores.device:
            self.digit_ids = self.digit_ids.to(scores.device)
        seen = (self.warpers(input_ids, scores.clone()) if self.warpers else scores).float()
        log_probs = torch.log_softmax(seen, dim=-1)
        self.digits.append(log_probs.index_select(-1, self.digit_ids))
        if self.confidence:
            # As few ops as can be: each is a pause the generating thread may have to wait out
            # while the reading thread holds the GIL.
            if self._last is not None and not self.greedy:  # the token chosen last step ends input_ids now
                self.chosen.append(self._last.gather(-1, input_ids[:, -1:]).squeeze(-1))
            top = log_probs.topk(TOP_ALTERNATIVES, dim=-1)
            self.top.append(top.values)
            self.top_ids.append(top.indices)
            # sum p log p (negated at the end); a token masked out (-inf, p 0) gives nan there, which
            # nansum counts as 0. softmax rather than exp(log_probs): one fused pass, faster on a CPU.
            self.entropy.append(torch.nansum(torch.softmax(seen, dim=-1) * log_probs, dim=-1))
            self._last = log_probs
        return scores

    def numbers(self, last_tokens: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Everything kept, on the CPU, each (steps, samples, ...): "digits" (log p), and with
        confidence "chosen" (log p), "entropy", "top" (log p), "top_ids". `last_tokens` (samples,)
        are the tokens chosen at the last step (the end of the output sequences)."""
        if not self.digits:
            return {"digits": torch.empty(0, 1, len(self.digit_ids))}
        kept = {"digits": torch.stack(self.digits)}
        if self.confidence:
            top = torch.stack(self.top)
            if self.greedy:
                chosen = top[..., 0]
            else:
                steps = list(self.chosen)
                if last_tokens is not None and self._last is not None and len(steps) < len(self.digits):
                    steps.append(self._last.gather(-1, last_tokens.to(self._last.device)[:, None]).squeeze(-1))
                chosen = torch.stack(steps) if steps else torch.empty(0, self.digits[0].shape[0])
            kept.update(chosen=chosen, entropy=-torch.stack(self.entropy), top=top, top_ids=torch.stack(self.top_ids))
        return {name: values.cpu() for name, values in kept.items()}


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
    """Ends generate() at the next token once the engine's own stop is set or the request is
    cancelled; ends one sample (of several) once its own event is set, and notes where it ended."""

    def __init__(self, event: threading.Event, cancel: CancelToken, sample_events: list[threading.Event] = ()):
        self.event = event
        self.cancel = cancel
        self.sample_events = list(sample_events)
        self.ended_at: dict[int, int] = {}  # sample -> sequence length when it was stopped

    def __call__(self, input_ids, scores, **kwargs):
        stop = self.event.is_set() or self.cancel.cancelled
        rows = [stop] * input_ids.shape[0]
        for sample, event in enumerate(self.sample_events):
            if event.is_set():
                rows[sample] = True
                self.ended_at.setdefault(sample, input_ids.shape[1])
        return torch.tensor(rows, dtype=torch.bool, device=input_ids.device)


class TokenStreamer(BaseStreamer):
    """generate()'s new tokens as they come, one a sample each step, for the caller's thread to read
    (`batches`); notes when the first arrived (time to first token: vision encoder + prefill + one
    step). A TextIteratorStreamer takes one sample only and holds text back to word ends."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._prompt_seen = False
        self.first_token_at: float | None = None

    def put(self, value):
        if not self._prompt_seen:  # generate() puts the prompt first
            self._prompt_seen = True
            return
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self._queue.put(value.reshape(-1).tolist())

    def end(self):
        self._queue.put(None)

    def batches(self) -> Iterator[list[list[int]]]:
        """The steps that arrived since the last batch (each: a token a sample), until the end."""
        while True:
            steps = [self._queue.get()]
            while not self._queue.empty():
                steps.append(self._queue.get_nowait())
            ended = None in steps
            steps = [step for step in steps if step is not None]
            if steps:
                yield steps
            if ended:
                return


class PieceDecoder:
    """Token ids to text a token at a time, keeping each token's share of the text (its piece): the
    bytes of a character split over tokens go to the token that completes it. Joined, the pieces
    are the text `tokenizer.decode` gives for all of them (byte-level BPE decodes piecewise)."""

    MAX_PENDING = 4  # a UTF-8 character is at most 4 bytes

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.pieces: list[str] = []
        self.text = ""
        self._pending: list[int] = []

    def add(self, token: int) -> str:
        self._pending.append(token)
        piece = self.tokenizer.decode(self._pending, skip_special_tokens=True)
        if piece.endswith("\ufffd") and len(self._pending) < self.MAX_PENDING:
            piece = ""  # an unfinished character: it comes with the next token
        else:
            self._pending = []
        self.pieces.append(piece)
        self.text += piece
        return piece


def token_pieces(tokenizer, token_ids: list[int]) -> tuple[list[str], str]:
    """(each token's piece of the text, the text) for generated tokens; the pieces always join to
    the text: should piecewise decoding ever differ (a tokenizer that cleans up spaces), each
    piece is read off the decoded prefixes instead."""
    decoder = PieceDecoder(tokenizer)
    for token in token_ids:
        decoder.add(token)
    text = tokenizer.decode(token_ids, skip_special_tokens=True)
    if decoder.text == text:
        return decoder.pieces, text
    prefixes = [len(tokenizer.decode(token_ids[:i], skip_special_tokens=True)) for i in range(len(token_ids) + 1)]
    return [text[a:b] for a, b in zip(prefixes, prefixes[1:])], text


def input_pieces(tokenizer, token_ids: list[int], token_types: list[int]) -> list[str]:
    """Each input token's text (special tokens ""), decoding only the text tokens: a video's
    thousands of visual tokens are special and write nothing."""
    from ..positions import TEXT

    text_at = [position for position, kind in enumerate(token_types) if kind == TEXT]
    pieces = [""] * len(token_ids)
    for position, piece in zip(text_at, token_pieces(tokenizer, [token_ids[p] for p in text_at])[0]):
        pieces[position] = piece
    return pieces


def shared_prefill(model, inputs, samples: int) -> dict:
    """generate()'s inputs for `samples` answers that share one prefill: the vision encoder and all
    of the prompt but its last token run once, into a cache then copied for each sample; generate()
    feeds that last token (text) to every sample and goes on from there. (num_return_sequences
    copies the input first, and runs the vision encoder and the prefill once a sample.)"""
    cache = DynamicCache(config=model.config)
    head = {key: (value[..., :-1] if key in PER_TOKEN_INPUTS else value) for key, value in inputs.items()}
    model(**head, cache=cache, use_cache=True, logits_to_keep=1)
    cache.batch_repeat_interleave(samples)
    return {"input_ids": inputs["input_ids"].repeat(samples, 1),
            "attention_mask": inputs["attention_mask"].repeat(samples, 1),
            # (4, 1, tokens): text positions and M-RoPE's three, a sample each on dim 1
            "position_ids": inputs["position_ids"].repeat(1, samples, 1),
            "cache": cache}


PER_TOKEN_INPUTS = ("input_ids", "attention_mask", "mm_token_type_ids", "position_ids")


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
        self.token_confidence = settings.token_confidence
        # The tokens that end an answer (a sample's tokens after one are padding).
        eos = model.generation_config.eos_token_id
        self.end_ids = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
        self.active = ActiveGenerations()

    @classmethod
    def load(cls, settings: Settings) -> "TransformersBackend":
        started = time.perf_counter()
        model, processor = load_model(settings.model, quant=settings.quant, device=settings.device)
        config = model.config.to_dict()
        min_pixels, max_pixels = frame_pixels(settings, config)
        info = LoadInfo(
            backend=cls.name,
            model=settings.model,
            revision=model_revision(settings.model),
            quant=settings.quant,
            device=str(model.device.type),
            dtype=str(model.dtype).replace("torch.", ""),
            is_toy=is_toy(config),
            load_s=time.perf_counter() - started,
            parameters=sum(p.numel() for p in model.parameters()),
            memory_bytes=model.get_memory_footprint(),
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            total_pixels=settings.total_pixels,
        )
        return cls(model, processor, settings, info)

    def stop(self, sample: int | None = None) -> None:
        """Ends every generation in progress; with `sample`, only that sample of each."""
        self.active.stop(sample)

    def generate(self, video: SampledVideo, prompt: str, options: ScoreOptions, cancel: CancelToken | None = None,
                 attention_steps=None) -> Iterator[TextUpdate | Generation | Generations]:
        """`TextUpdate`s as the text grows (the first, with no text, once the input is built), then the
        `Generation`, or with `options.samples` K > 1 the K answers' `Generations` (they share one
        prefill). With `options.attention`, the answer `attention_steps` names is probed, while its cache
        is at hand (`with_attention`). `prompt` and `options` as checked by the caller. Closing the generator ends
        generate() for real; so does `cancel`, and then `jobs.Cancelled` is raised once it has ended."""
        cancel = cancel or CancelToken()
        samples = options.samples
        started = time.perf_counter()
        inputs = build_inputs(self.processor, video, prompt, options.template, config=self.model.config,
                              fps=options.fps).to(self.model.device)
        grid = inputs.get("video_grid_thw")
        merge = self.processor.video_processor.merge_size ** 2
        visual_tokens = int(grid.prod(-1).sum().item() // merge) if grid is not None else 0
        prompt_length = inputs["input_ids"].shape[1]
        preprocessed = time.perf_counter()
        yield TextUpdate(text="", new_tokens=0, visual_tokens=visual_tokens)

        tokenizer = self.processor.tokenizer
        streamer = TokenStreamer()
        sampling, warpers = (authors_sampling(self.model.generation_config, options.temperature)
                             if options.reading == "authors" and options.do_sample else ({}, None))
        recorder = StepRecorder(self.digit_ids, warpers, confidence=self.token_confidence,
                                greedy=not options.do_sample)
        stop_event, sample_events = self.active.new_events(samples)
        stopper = StopOnEvent(stop_event, cancel, sample_events)
        outcome: dict = {}
        generate_kwargs = dict(
            streamer=streamer,
            max_new_tokens=options.max_new_tokens,
            logits_processor=LogitsProcessorList([recorder]),
            stopping_criteria=StoppingCriteriaList([stopper]),
            return_dict_in_generate=True,
            **decoding_kwargs(options, sampling),
        )

        self.active.add(stop_event, sample_events)
        thread = threading.Thread(target=self.run_generate, args=(inputs, options, generate_kwargs, outcome),
                                  name="vs2demo-generate", daemon=True)
        decoders = [PieceDecoder(tokenizer) for _ in range(samples)]
        ended = [False] * samples
        try:
            thread.start()
            for steps in streamer.batches():
                grew = False
                for tokens in steps:
                    for sample, token in enumerate(tokens):
                        if not ended[sample]:
                            grew |= bool(decoders[sample].add(token))
                            ended[sample] = token in self.end_ids or sample in stopper.ended_at
                if grew:
                    texts = tuple(decoder.text for decoder in decoders)
                    yield TextUpdate(text=texts[0], new_tokens=recorder.steps, visual_tokens=visual_tokens,
                                     samples=texts if samples > 1 else ())
            stopped_early = stop_event.is_set()
        finally:
            # Also reached when the consumer closes the generator (Stop, a closed tab): end
            # generate() for real, so the next request starts at once.
            stop_event.set()
            thread.join()
            self.active.discard(stop_event)
        cancel.check()
        if "error" in outcome:
            raise outcome["error"]
        finished = time.perf_counter()

        timing = dict(visual_tokens=visual_tokens, preprocess_s=preprocessed - started,
                      first_token_s=(streamer.first_token_at or finished) - preprocessed,
                      generate_s=finished - preprocessed)
        stopped = [stopped_early or (bool(sample_events) and sample_events[sample].is_set()) for sample in range(samples)]
        answers = self.answers(outcome["output"].sequences, prompt_length, recorder, stopper.ended_at, stopped, timing)
        if options.attention and attention_steps is not None:
            answers = self.with_attention(video, prompt, options, inputs, outcome["output"].cache, answers, attention_steps)
        yield answers[0] if samples == 1 else Generations(tuple(answers))

    def run_generate(self, inputs, options: ScoreOptions, generate_kwargs: dict, outcome: dict) -> None:
        """generate() on its own thread: its output, or the exception it raised (re-raised in the
        reader's thread), in `outcome`; the streamer ends either way, which unblocks the reader."""
        try:
            with torch.inference_mode():
                if options.do_sample and options.seed is not None:
                    torch.manual_seed(options.seed)
                samples = options.samples
                model_inputs = dict(inputs) if samples == 1 else shared_prefill(self.model, inputs, samples)
                outcome["output"] = self.model.generate(**model_inputs, **generate_kwargs)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            generate_kwargs["streamer"].end()

    def answers(self, sequences, prompt_length: int, recorder: StepRecorder, ended_at: dict[int, int],
                stopped: list[bool], timing: dict) -> list[Generation]:
        """Each sample's `Generation` from generate()'s `sequences`: its answer's tokens (to its end
        token or where it was stopped alone), text, digit steps and token confidence; `timing` the
        times and visual tokens they share, `stopped[sample]` whether it was stopped early."""
        tokenizer = self.processor.tokenizer
        numbers = recorder.numbers(last_tokens=sequences[:, -1])
        answers = []
        for sample, stopped_early in enumerate(stopped):
            generated = sequences[sample, prompt_length:].tolist()
            generated = generated[:self.answer_length(generated, ended_at.get(sample), prompt_length)]
            pieces, text = token_pieces(tokenizer, generated)
            answers.append(Generation(
                text=text,
                digit_steps=digit_steps(pieces, generated, self.digit_ids, numbers["digits"][:, sample]),
                new_tokens=len(generated),
                stopped_early=stopped_early,
                tokens=token_confidence(tokenizer, pieces, numbers, sample) if self.token_confidence else None,
                token_ids=tuple(generated),
                **timing,
            ))
        return answers

    def attention(self, video: SampledVideo, prompt: str, options: ScoreOptions, inputs, answer_ids: list[int],
                  steps: dict[str, int], cache) -> dict:
        """Where it looked (vs2demo.attention): for each dimension in `steps` (the answer step that
        wrote its score's digit), the attention of the position that predicts it over the frames'
        patches and the prompt's words: the record's `attention` block. `inputs` as `generate` built
        them; `cache` holds the keys of (at least) every position before the first of those (the
        answer's own cache, which this crops): only the answer's tokens from there on are run again."""
        from .. import attention

        of_layers = self.model.config.text_config.num_hidden_layers
        layers = attention.layer_range(self.settings.attention_layers, of_layers)
        dimensions = list(steps)
        rows, _ = attention.probe_rows(self.model, inputs, answer_ids, [steps[dim] for dim in dimensions], layers, cache)
        pieces = input_pieces(self.processor.tokenizer, inputs["input_ids"][0].tolist(),
                              inputs["mm_token_type_ids"][0].tolist())
        patch_of_key, patches = attention.patch_map(
            inputs["mm_token_type_ids"].cpu(), inputs["video_grid_thw"].cpu(), self.processor.video_processor.merge_size,
            self.processor.video_processor.temporal_patch_size, video.count)
        word_tokens, words = attention.word_map(pieces, attention.prompt_start(pieces, prompt, options.template), prompt)
        keys = attention.KeyMap(patch_of_key, patches, word_tokens, words)
        return attention.attention_block(rows, dimensions, keys, layers, of_layers)

    def with_attention(self, video: SampledVideo, prompt: str, options: ScoreOptions, inputs, cache,
                       answers: list[Generation], attention_steps) -> list[Generation]:
        """The answers, the one `attention_steps` names probed at its score digits' steps. A probe that
        fails costs the attention, never the answer (logged)."""
        shown, steps = attention_steps(answers)
        if not steps:
            return answers
        try:
            if len(answers) > 1:
                cache.batch_select_indices(torch.tensor([shown], device=self.model.device))
            looked = self.attention(video, prompt, options, inputs, list(answers[shown].token_ids), steps, cache)
        except Exception:
            log.exception("the attention probe failed; the answer is kept without it")
            return answers
        return [replace(answer, attention=looked) if number == shown else answer for number, answer in enumerate(answers)]

    def answer_length(self, generated: list[int], ended_at: int | None, prompt_length: int) -> int:
        """How many of a sample's generated tokens are its answer: up to its first end token, or to
        where it was stopped alone; what follows is padding while the other samples went on."""
        length = len(generated) if ended_at is None else min(len(generated), ended_at - prompt_length)
        for position, token in enumerate(generated[:length]):
            if token in self.end_ids:
                return position + 1
        return length


def decoding_kwargs(options: ScoreOptions, sampling: dict) -> dict:
    """generate()'s decoding arguments: the authors' sampler's (`sampling`), plain sampling at the
    options' temperature, or greedy decoding."""
    if sampling:
        return sampling
    if options.do_sample:
        return {"do_sample": True, "temperature": options.temperature}
    # Greedy: one answer per input. Unset the checkpoint's sampling knobs to avoid warnings.
    return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def token_confidence(tokenizer, pieces: list[str], numbers: dict, sample: int) -> TokenConfidence:
    """A sample's `TokenConfidence` from the StepRecorder's numbers (its first len(pieces) steps)."""
    steps = len(pieces)
    return TokenConfidence.build(
        pieces,
        numbers["chosen"][:steps, sample].exp().tolist(),
        numbers["entropy"][:steps, sample].tolist(),
        numbers["top_ids"][:steps, sample].tolist(),
        numbers["top"][:steps, sample].exp().tolist(),
        decode=lambda token: tokenizer.decode([token]),
    )


def digit_steps(pieces: list[str], generated_ids: list[int], digit_ids: list[int], log_probs: torch.Tensor) -> list[DigitStep]:
    """Every generation step that wrote a digit (`is_digit_step`): where its text starts in the
    decoded answer (the pieces before it, joined), and p("1".."5") there."""
    steps = []
    digit_set = set(digit_ids)
    start = 0
    for step, token in enumerate(generated_ids):
        piece = pieces[step]
        if is_digit_step(piece, token in digit_set) and step < len(log_probs):
            steps.append(DigitStep(start, tuple(log_probs[step].exp().tolist()), token in digit_set, len(piece), step))
        start += len(piece)
    return steps


def build_inputs(processor, video, prompt: str, template: str = DEFAULT_TEMPLATE, *, config, fps: float = DEFAULT_FPS):
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
