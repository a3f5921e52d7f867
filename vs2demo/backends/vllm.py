"""The vLLM backend: VideoScore2 served by a vLLM OpenAI-compatible server in its own process (and
environment: its pins differ from this project's), spoken to over HTTP.

This project still samples the frames, builds the prompt, parses the answer and keeps the record;
the server only generates. What the model sees must equal what the in-process engine gives it:

- the frames this project sampled, resized, as lossless PNG images in one
  `data:video/jpeg;base64,FRAME,FRAME,...` URL (vLLM opens each with PIL whatever its format; JPEG, or
  letting the server decode the file, moves the scores' probabilities by 0.007-0.016), with
  `num_frames: -1` (else vLLM keeps the first 32) and `do_resize: false`;
- the time step the authors tell the model (2 / fps seconds a grid step, whatever rate the frames
  really have): Qwen's processor reads it off the metadata as `len(frames_indices) /
  total_num_frames * fps`, so the metadata sent is that of n frames at `fps`, not the source's (the
  record keeps the source's); the server must run with `--trust-request-mm-kwargs` to take it;
- positions: vLLM places text after a video with Qwen's original rule, which the in-process engine
  restores (vs2demo.positions).

p("1".."5") comes back at every step through `logprob_token_ids` (a top-k list would miss some
digits); vLLM's default `raw_logprobs` are read before temperature, as the in-process engine reads
them. vLLM returns either those ids' log p or a top-k list, not both, so a token's confidence here
is the chosen token's probability only: no entropy, no alternatives.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import queue
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
from PIL import Image

from ..checkpoint import frame_pixels, is_toy, model_revision, model_source, read_config, vision_geometry
from ..confidence import TokenConfidence
from ..errors import ModelLoadError, UserInputError
from ..jobs import CancelToken
from ..prompts import build_messages
from ..settings import ScoreOptions, Settings
from ..video import SampledVideo
from . import SCORE_DIGITS, ActiveGenerations, DigitStep, Generation, Generations, LoadInfo, TextUpdate, is_digit_step

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
# The longest silence while an answer streams: the prefill of a long video on a busy server.
READ_TIMEOUT_S = 600.0
POLL_S = 0.1  # how often a stop or a cancel is looked for while the server is silent
TOKEN_ID_PREFIX = "token_id:"  # how vLLM names a token under `return_tokens_as_token_ids`


# ---- the request ---------------------------------------------------------------------------------
ATTENTION_REFUSAL = ("Where it looked (attention) needs the transformers backend; this app serves the model "
                     "through vLLM.")


def frames_data_url(video: SampledVideo) -> str:
    """The sampled frames as vLLM's frame-list video URL: each frame a base64 PNG, comma-separated
    (the media type says jpeg whatever the images are: it selects vLLM's frame-list reader)."""
    encoded = []
    for frame in video.frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="PNG", compress_level=1)  # lossless; 1 = fast
        encoded.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return "data:video/jpeg;base64," + ",".join(encoded)


def told_metadata(video: SampledVideo, fps: float) -> dict:
    """Frame metadata that makes Qwen's processor tell the model `fps` (see the module's docstring):
    n consecutive frames of an n-frame video at `fps`, so len(indices) / total * fps is `fps` exactly."""
    count = video.count
    return {"num_frames": -1, "fps": fps, "total_num_frames": count, "frames_indices": list(range(count)),
            "duration": count / fps}


def chat_messages(video_url: str, prompt: str, template: str) -> list[dict]:
    """`prompts.build_messages` in the OpenAI form: the same turn, the video as a URL."""
    messages = build_messages(prompt, template)
    for message in messages:
        message["content"] = [{"type": "video_url", "video_url": {"url": video_url}} if part["type"] == "video" else part
                              for part in message["content"]]
    return messages


def chat_request(video: SampledVideo, prompt: str, options: ScoreOptions, model: str, digit_ids: list[int],
                 video_url: str | None = None) -> dict:
    """The streamed chat completion asking for one answer (or `options.samples` of them)."""
    request = {
        "model": model,
        "messages": chat_messages(video_url or frames_data_url(video), prompt, options.template),
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": options.max_new_tokens,
        # Greedy is temperature 0 in vLLM. Top-k, top-p and penalties are left to the checkpoint's
        # generation config, which the server applies by default as transformers does in-process.
        "temperature": options.temperature if options.do_sample else 0.0,
        "n": options.samples,
        "logprobs": True,
        "logprob_token_ids": list(digit_ids),
        "return_tokens_as_token_ids": True,
        "skip_special_tokens": True,
        "media_io_kwargs": {"video": told_metadata(video, options.fps)},
        "mm_processor_kwargs": {"do_resize": False},
    }
    if options.do_sample and options.seed is not None:
        request["seed"] = options.seed
    return request


# ---- reading the stream --------------------------------------------------------------------------

def token_id(name: str) -> int:
    if not name.startswith(TOKEN_ID_PREFIX):
        raise RuntimeError(f"the vLLM server named a token {name!r}, not by its id: is it older than 0.32?")
    return int(name[len(TOKEN_ID_PREFIX):])


class AnswerReader:
    """One sample's answer as its chunks arrive: the text, each token's piece of it, the chosen
    tokens' log p, and p("1".."5") at every step.

    A chunk holds one token unless the server fell behind (a busy server sends several at once).
    Each token's piece is found by laying the tokens' own bytes along the text the server sent, so
    a chunk of several tokens gives the pieces of one token a chunk: a token whose bytes are not
    there adds no text (the end of turn, whose bytes read `<|im_end|>` while the text skips it), and
    a character split over tokens goes to the token that completes it, as in process."""

    def __init__(self, digit_ids: list[int]):
        self.digit_ids = list(digit_ids)
        self.pieces: list[str] = []
        self.tokens: list[int] = []
        self.chosen_logprob: list[float] = []
        self.digit_logprobs: list[tuple[float, ...]] = []
        self.ended = False  # finished, or stopped alone (its loop): later chunks are not its answer
        self.stopped = False
        self._sent = bytearray()  # the text the server sent, in UTF-8
        self._laid = bytearray()  # the tokens' bytes laid along it (past its end: a character held back)
        self._given = 0  # bytes of the text given to pieces so far

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def add(self, content: str, entries: list[dict]) -> None:
        """A chunk: its text and its tokens' log-probability entries (none when the chunk is the role
        or the usage)."""
        if self.ended:
            return
        self._sent += content.encode("utf-8")
        if not entries:
            # Text with no token (not seen from vLLM): kept all the same, beside a token.
            self._account_for_the_rest()
            return
        for entry in entries:
            raw = bytes(entry.get("bytes") or b"")
            if self._continues(raw):
                self._laid += raw
            chosen = token_id(entry["token"])
            listed = {token_id(item["token"]): item["logprob"] for item in entry.get("top_logprobs") or ()}
            self.tokens.append(chosen)
            self.chosen_logprob.append(float(entry.get("logprob", listed.get(chosen, -math.inf))))
            self.digit_logprobs.append(tuple(float(listed.get(digit, -math.inf)) for digit in self.digit_ids))
            self.pieces.append(self._take(len(self._laid)))
        # Text the chunk's tokens do not account for (tokens sent without their bytes): the last has it.
        self._account_for_the_rest()

    def _continues(self, raw: bytes) -> bool:
        """Whether a token's bytes continue the text where the tokens so far end: as far as the
        server sent it, and beyond only by a character not yet whole (the server holds it back)."""
        at, sent = len(self._laid), len(self._sent)
        if bytes(self._sent[at:at + len(raw)]) != raw[:max(0, sent - at)]:
            return False
        if at + len(raw) <= sent:
            return True
        beyond = bytes(self._laid[sent:]) + raw[max(0, sent - at):]
        try:
            beyond.decode("utf-8")
        except UnicodeDecodeError as exc:
            return exc.reason == "unexpected end of data"
        return False  # whole text the server did not send: not this token's

    def _take(self, end: int) -> str:
        """The text from the last piece's end to `end`, if the server sent it and it ends on a
        whole character; else "" (the token that completes the character gets it)."""
        if end > len(self._sent):
            return ""
        try:
            piece = bytes(self._sent[self._given:end]).decode("utf-8")
        except UnicodeDecodeError:
            return ""
        self._given = end
        return piece

    def _account_for_the_rest(self) -> None:
        if len(self._laid) < len(self._sent):
            self._laid = bytearray(self._sent)
            if self.pieces:  # else it waits for the next token
                self.pieces[-1] += self._take(len(self._sent))

    def digit_steps(self) -> list[DigitStep]:
        steps, start, digits = [], 0, set(self.digit_ids)
        for token, piece, logprobs in zip(self.tokens, self.pieces, self.digit_logprobs):
            if is_digit_step(piece, token in digits):
                steps.append(DigitStep(start, tuple(math.exp(value) for value in logprobs), token in digits, len(piece)))
            start += len(piece)
        return steps

    def confidence(self) -> TokenConfidence:
        return TokenConfidence.build(self.pieces, [math.exp(value) for value in self.chosen_logprob])


def server_message(response: httpx.Response) -> str:
    """What a vLLM server said went wrong (its JSON error's message, else the body)."""
    try:
        body = response.read().decode("utf-8", "replace")
    except httpx.HTTPError:
        return f"HTTP {response.status_code}"
    try:
        error = json.loads(body).get("error") or {}
        return error.get("message") or body if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        return body.strip()[:500] or f"HTTP {response.status_code}"


def stream_error(error) -> Exception:
    """The exception for an error the server sent (as an HTTP status, or inside the stream): a 400
    means the input does not fit the server (too many frames for its context or encoder cache), which
    the user can change; anything else is the server's failure."""
    error = error if isinstance(error, dict) else {"message": str(error)}
    message, code = error.get("message") or str(error), error.get("code")
    if code == 400 or error.get("type") == "BadRequestError":
        return UserInputError(f"The vLLM server refused this video: {message} Try fewer frames (max frames), or "
                              "start the server with a longer --max-model-len.")
    return RuntimeError(f"the vLLM server failed while answering (HTTP {code}): {message}")


# ---- the backend -----------------------------------------------------------------------------------

def served_config(model: str) -> dict | None:
    """The config of the model a server serves, where this machine can read it (a folder, the hub
    cache); None when it cannot."""
    try:
        return read_config(model)
    except ModelLoadError:
        return None


def refuse_unservable(options: ScoreOptions) -> None:
    """A UserInputError for what a vLLM server cannot give these options."""
    if options.do_sample and options.reading == "authors":
        # Which side of them a server reads is its --logprobs-mode, which a client cannot see.
        raise UserInputError("The authors' reading takes p(1..5) after temperature and top-k, as their sampler "
                             "saw them, and this app cannot tell which a vLLM server reads. Use the in-process "
                             "backend for it, or the default reading.")
    if options.attention:
        # A server sends text and log-probabilities, never the attention inside the model.
        raise UserInputError(ATTENTION_REFUSAL)


def read_chunk(chunk: dict, readers: list, sample_events: list[threading.Event]) -> bool:
    """One streamed chunk into its samples' readers; whether any answer's text grew. A sample stopped
    alone (its loop was seen) ends there: what the server sends after is not its answer."""
    grew = False
    for choice in chunk.get("choices") or ():
        sample = choice.get("index", 0)
        if not 0 <= sample < len(readers):
            continue
        reader = readers[sample]
        if sample_events and sample_events[sample].is_set() and not reader.ended:
            reader.ended = reader.stopped = True
        before = len(reader.pieces)
        reader.add((choice.get("delta") or {}).get("content") or "", (choice.get("logprobs") or {}).get("content") or [])
        grew |= len(reader.pieces) != before
        if choice.get("finish_reason"):
            reader.ended = True
    return grew


class VllmBackend:
    """Scores through a vLLM server: `generate` streams one answer (or K) for frames already
    sampled, with p("1".."5") wherever a digit was written; `stop` ends them (closing a stream
    makes vLLM abort the request)."""

    name = "vllm"

    def __init__(self, client: httpx.Client, served_model: str, digit_ids: list[int], info: LoadInfo,
                 visual_geometry: tuple[int, int, int] = (14, 2, 2)):
        self.client = client
        self.served_model = served_model
        self.digit_ids = digit_ids
        self.info = info
        self.patch_size, self.merge_size, self.temporal_patch_size = visual_geometry
        self.active = ActiveGenerations()

    @classmethod
    def load(cls, settings: Settings) -> "VllmBackend":
        """Connects to the server at `settings.vllm_url`, finds the model it serves and its digit
        tokens. ModelLoadError says what is wrong (no server there, another model)."""
        started = time.perf_counter()
        url = settings.vllm_url.rstrip("/")  # Settings requires it with backend "vllm"
        client = httpx.Client(base_url=url, timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))
        try:
            served = client.get("/v1/models")
            served.raise_for_status()
            models = served.json().get("data") or []
        except (httpx.HTTPError, ValueError) as exc:
            client.close()
            raise ModelLoadError(f"No vLLM server answers at {url} ({exc}). Start one (README, \"Scoring through "
                                 "vLLM\") or check --vllm-url.") from exc
        wanted = model_source(settings.model)
        ids = [model.get("id") for model in models]
        if wanted in ids:
            chosen = next(model for model in models if model.get("id") == wanted)
        elif len(models) == 1:
            chosen = models[0]  # a server serves one model: whatever name it was given
        else:
            client.close()
            raise ModelLoadError(f"The vLLM server at {url} serves {', '.join(map(str, ids)) or 'no model'}, "
                                 f"not {wanted}: pass --model with one of those names.")
        served_model = chosen["id"]
        root = chosen.get("root") or served_model
        # The record names the model asked for when the server serves it (by name or from the same
        # folder), else the one it does serve.
        asked = wanted == served_model or wanted == root or (
            Path(wanted).expanduser().is_dir() and Path(root).expanduser().is_dir()
            and Path(wanted).expanduser().resolve() == Path(root).expanduser().resolve())
        model_name = settings.model if asked else root
        digit_ids = []
        for digit in SCORE_DIGITS:
            answer = client.post("/tokenize", json={"model": served_model, "prompt": digit, "add_special_tokens": False})
            tokens = answer.json().get("tokens") if answer.status_code == 200 else None
            if not tokens or len(tokens) != 1:
                client.close()
                raise ModelLoadError(f"The vLLM server at {url} tokenizes the digit {digit!r} as {tokens}: "
                                     "scores cannot be traced.")
            digit_ids.append(tokens[0])
        # The frame budget and the visual geometry are the checkpoint's when its config can be read
        # here (the toy's are tiny), else the reference's; the server has the model, this machine may not.
        config = served_config(root)
        min_pixels, max_pixels = frame_pixels(settings, config)
        try:
            revision = model_revision(root)
        except OSError:
            revision = "unknown"
        info = LoadInfo(
            backend=cls.name, model=model_name, revision=revision,
            # How the server runs the model is its own business (flags this client cannot read).
            quant="served", device="server", dtype="served",
            is_toy=is_toy(config),
            load_s=time.perf_counter() - started, parameters=0, memory_bytes=0,
            min_pixels=min_pixels, max_pixels=max_pixels, total_pixels=settings.total_pixels,
            served_as=settings.vllm_label,
        )
        log.info("Scoring through the vLLM server at %s (model %s)", url, served_model)
        return cls(client, served_model, digit_ids, info, vision_geometry(config))

    def visual_tokens(self, video: SampledVideo) -> int:
        steps = math.ceil(video.count / self.temporal_patch_size)
        cell = self.patch_size * self.merge_size
        return steps * (video.height // cell) * (video.width // cell)

    def stop(self, sample: int | None = None) -> None:
        """Ends every generation in progress; with `sample`, only that sample of each."""
        self.active.stop(sample)

    def read_stream(self, request: dict, stop_event: threading.Event, chunks: queue.Queue, state: dict) -> None:
        """The server's chunks into `chunks` (parsed), then None; an error ends it too (in `state`,
        re-raised in the caller's thread, unless this side closed the stream)."""
        try:
            with self.client.stream("POST", "/v1/chat/completions", json=request) as response:
                state["response"] = response
                if response.status_code != 200:
                    state["refused"] = {"code": response.status_code, "message": server_message(response)}
                    return
                for line in response.iter_lines():
                    if stop_event.is_set():
                        return
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    chunks.put(json.loads(data))
        except BaseException as exc:
            if not stop_event.is_set():
                state["error"] = exc
        finally:
            chunks.put(None)

    def generate(self, video: SampledVideo, prompt: str, options: ScoreOptions,
                 cancel: CancelToken | None = None, attention_steps=None) -> Iterator[TextUpdate | Generation | Generations]:
        """As `TransformersBackend.generate`: TextUpdates, then the Generation (or the K samples'
        Generations). A stop, a cancel or closing the generator closes the stream, which ends the
        request on the server. Where it looked (options.attention) is refused: a server sends no attention."""
        cancel = cancel or CancelToken()
        refuse_unservable(options)
        samples = options.samples
        started = time.perf_counter()
        request = chat_request(video, prompt, options, self.served_model, self.digit_ids)
        visual_tokens = self.visual_tokens(video)
        preprocessed = time.perf_counter()
        yield TextUpdate(text="", new_tokens=0, visual_tokens=visual_tokens)

        readers = [AnswerReader(self.digit_ids) for _ in range(samples)]
        stop_event, sample_events = self.active.new_events(samples)
        chunks: queue.Queue = queue.Queue()
        state: dict = {}

        self.active.add(stop_event, sample_events)
        thread = threading.Thread(target=self.read_stream, args=(request, stop_event, chunks, state),
                                  name="vs2demo-vllm-stream", daemon=True)
        first_token_at = None
        try:
            thread.start()
            while True:
                try:
                    chunk = chunks.get(timeout=POLL_S)
                except queue.Empty:
                    if stop_event.is_set() or cancel.cancelled:
                        break
                    continue
                if chunk is None:
                    break
                if "error" in chunk and not chunk.get("choices"):  # a refusal can come inside the stream
                    raise stream_error(chunk["error"])
                if read_chunk(chunk, readers, sample_events):
                    if first_token_at is None:
                        first_token_at = time.perf_counter()
                    texts = tuple(reader.text for reader in readers)
                    yield TextUpdate(text=texts[0], new_tokens=max(len(r.tokens) for r in readers),
                                     visual_tokens=visual_tokens, samples=texts if samples > 1 else ())
                if stop_event.is_set() or cancel.cancelled:
                    break
                if all(reader.ended for reader in readers):
                    # Every answer is finished or was stopped alone (a loop): closing the stream ends a
                    # stopped sample on the server too, which would otherwise write on to the token limit.
                    break
            stopped_early = stop_event.is_set() or cancel.cancelled
        finally:
            # Also reached when the consumer closes the generator (Stop, a closed tab): closing the
            # connection makes vLLM abort the request, so the server's slot frees at once.
            stop_event.set()
            response = state.get("response")
            if response is not None:
                response.close()
            thread.join(timeout=CONNECT_TIMEOUT_S)
            self.active.discard(stop_event)
        cancel.check()
        if "refused" in state:
            raise stream_error(state["refused"])
        if "error" in state and not stopped_early:
            error = state["error"]
            if isinstance(error, httpx.HTTPError):
                raise RuntimeError(f"the vLLM server stopped answering ({error})") from error
            raise error
        finished = time.perf_counter()
        first_token_at = first_token_at or finished
        answers = tuple(Generation(text=reader.text, digit_steps=reader.digit_steps(), new_tokens=len(reader.tokens),
                                   visual_tokens=visual_tokens, preprocess_s=preprocessed - started,
                                   first_token_s=first_token_at - preprocessed, generate_s=finished - preprocessed,
                                   stopped_early=stopped_early or reader.stopped, tokens=reader.confidence())
                        for reader in readers)
        yield answers[0] if samples == 1 else Generations(answers)
