"""Turn a video file into the frames VideoScore2 sees, exactly as its authors prepared them.

The reference is qwen-vl-utils' `fetch_video` (0.0.10 and later, what `pip install qwen-vl-utils`
gave the authors): sample at `fps` frames per second, an even count between `min_frames` and
`max_frames`, indices spread evenly from the first frame to the last; resize every frame (bicubic,
antialiased, aspect kept) so both sides are multiples of 28 and the pixel budgets hold.

Decoding: PyAV with an index of the file's packets first. It decodes only what the sampled frames
need: from the keyframe before each one (seeking over the stretches in between), and not the frames
that nothing refers to. decord next (the reference's own reader: the same frames bit for bit), then
PyAV from the start for files whose index is missing or wrong (damaged, cut off, odd). Only the
sampled frames are kept, resized on a worker thread as they arrive, so a long or 4K video costs
memory for the frames the model gets and no more.

Every problem with the file itself is raised as `UserInputError`, with what to do instead.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
import math
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

from .errors import UserInputError
from .jobs import CancelToken
from .settings import DEFAULT_FPS, DEFAULT_MAX_FRAMES, MIN_FRAMES, VIDEO_MAX_PIXELS, VIDEO_MIN_PIXELS, VIDEO_TOTAL_PIXELS

if TYPE_CHECKING:
    from transformers.video_utils import VideoMetadata
# torch, torchvision and transformers are imported where first used: the app's page comes up while
# they load (seconds on two cores), with the model, behind its status line.

log = logging.getLogger(__name__)

FRAME_FACTOR = 2  # frames go to the model in pairs (temporal patch size 2): counts are even
SIZE_FACTOR = 28  # patch 14 x spatial merge 2: frame sides are multiples of this
MAX_ASPECT_RATIO = 200  # smart_resize refuses anything longer and thinner

# decord's get_batch runs in a worker thread and is given up on after this long (see
# _decord_batch_with_timeout). Module-level so tests can shorten them.
DECORD_TIMEOUT_S = 15.0
DECORD_TIMEOUT_PER_FRAME_S = 0.5

# Source pixels resized in one go (a chunk; a larger frame goes alone). The float copy the bicubic
# resize makes is 4 bytes a channel, so this bounds that scratch memory to about 25 MB (2 frames at
# 720p). Small chunks also let the resize worker start sooner and finish sooner after the decoder:
# on the 10 s 720p benchmark clip 2M pixels measured 1.11x of transformers' loader, 4M 1.24x.
RESIZE_CHUNK_PIXELS = 2_000_000


@dataclass(frozen=True)
class SampledVideo:
    """The frames the model sees, and where they came from."""

    frames: np.ndarray  # uint8 (n, h, w, 3) RGB, already at the size the model sees
    indices: tuple[int, ...]  # source frame indices that were sampled
    source_frames: int  # frames in the source (after the over-report guard)
    source_fps: float
    source_width: int
    source_height: int
    duration: float  # seconds
    backend: str  # "decord" or "pyav"
    decode_s: float  # seconds spent probing, decoding and resizing
    path: str = ""  # the file it was sampled from

    @property
    def count(self) -> int:
        return int(self.frames.shape[0])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def timestamps(self) -> tuple[float, ...]:
        return tuple(index / self.source_fps for index in self.indices)

    def metadata(self) -> "VideoMetadata":
        """What the processor needs to place the frames in time (its `sampled_fps` is the
        reference's `n / total * fps`); without it the processor assumes 24 fps."""
        from transformers.video_utils import VideoMetadata

        return VideoMetadata(total_num_frames=self.source_frames, fps=self.source_fps, width=self.source_width,
                             height=self.source_height, duration=self.duration, video_backend=self.backend,
                             frames_indices=list(self.indices))


# ---- the reference's arithmetic -----------------------------------------------------------------

def _floor_by_factor(number: float, factor: int) -> int:
    return math.floor(number / factor) * factor


def frame_count(total_frames: int, source_fps: float, fps: float = DEFAULT_FPS, min_frames: int = MIN_FRAMES,
                max_frames: int = DEFAULT_MAX_FRAMES) -> int:
    """How many frames to sample: qwen-vl-utils' `smart_nframes` (0.0.10 and later).

    That version clamps to the frames there are and rounds *down* to an even count; the original
    0.0.8 rounded to the nearest even count (87 frames at 24 fps: 6 here, 8 there). The authors'
    unpinned `pip install qwen-vl-utils` (mid-2025) gave 0.0.11, so we follow it.
    """
    if max_frames < FRAME_FACTOR:
        raise ValueError(f"max_frames must be at least {FRAME_FACTOR}, not {max_frames}")
    if total_frames < FRAME_FACTOR:
        raise UserInputError(f"A video needs at least {FRAME_FACTOR} frames, but this one has {total_frames}: "
                             "this looks like a still image. Upload a video clip instead.")
    wanted = total_frames / source_fps * fps
    lowest = math.ceil(min_frames / FRAME_FACTOR) * FRAME_FACTOR
    highest = _floor_by_factor(max_frames, FRAME_FACTOR)
    count = _floor_by_factor(min(max(wanted, lowest), highest, total_frames), FRAME_FACTOR)
    # Cannot fail once total_frames >= 2; kept as the reference's own guard.
    if not FRAME_FACTOR <= count <= total_frames:
        raise UserInputError(f"Cannot sample {count} frames from a video of {total_frames} frames.")
    return count


def frame_indices(total_frames: int, n: int) -> list[int]:
    """`n` indices spread evenly from the first frame to the last, as the reference picks them
    (torch's float32 linspace, rounded half to even: the same integers, not just close ones)."""
    import torch

    return torch.linspace(0, total_frames - 1, n).round().long().tolist()


def frame_size(height: int, width: int, n_frames: int, min_pixels: int = VIDEO_MIN_PIXELS,
               max_pixels: int = VIDEO_MAX_PIXELS, total_pixels: int = VIDEO_TOTAL_PIXELS) -> tuple[int, int]:
    """(height, width) each frame is resized to: sides multiples of 28, area in the budgets.

    A frame may have at most `max_pixels`, and the video `total_pixels` per pair of frames (the
    model merges frames two by two), but never less than 5% over `min_pixels`.
    """
    if min(height, width) < 1:
        raise UserInputError(f"The video reports a frame size of {width}x{height}: it looks damaged.")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise UserInputError(f"The video is {width}x{height} pixels: longer than {MAX_ASPECT_RATIO}:1, which the "
                             "model cannot take. Crop or pad it to a usual shape.")
    frame_max_pixels = max(min(max_pixels, total_pixels / n_frames * FRAME_FACTOR), int(min_pixels * 1.05))
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    return smart_resize(height, width, factor=SIZE_FACTOR, min_pixels=min_pixels, max_pixels=frame_max_pixels)


@dataclass(frozen=True)
class _Budgets:
    """The sampling options of one `sample_frames` call."""

    fps: float
    min_frames: int
    max_frames: int
    min_pixels: int
    max_pixels: int
    total_pixels: int

    def indices(self, total_frames: int, source_fps: float) -> list[int]:
        n = frame_count(total_frames, source_fps, self.fps, self.min_frames, self.max_frames)
        return frame_indices(total_frames, n)

    def size(self, height: int, width: int, n_frames: int) -> tuple[int, int]:
        return frame_size(height, width, n_frames, self.min_pixels, self.max_pixels, self.total_pixels)


class _ResizedFrames:
    """Collects the sampled frames, resized to the model's size, each into its slot.

    Frames arrive at source size and are resized a chunk at a time on a worker thread while the
    decoder goes on (torch and the decoders release the GIL, so the two overlap on two cores).
    At most one chunk is being resized and one filling, so memory holds the kept frames at the
    model's size and two chunks at source size, never the whole source video.

    The target size comes from the first frame actually decoded (what the reference measures), and
    every later frame goes to that size, even if the stream changes resolution midway.
    """

    def __init__(self, n_frames: int, budgets: _Budgets):
        self.n_frames = n_frames
        self.budgets = budgets
        self.source_size: tuple[int, int] | None = None  # (height, width)
        self.target_size: tuple[int, int] | None = None
        self._kept: np.ndarray | None = None  # (n_frames, h, w, 3), allocated at the first frame
        self._filled = np.zeros(n_frames, dtype=bool)
        self._pending: list[tuple[int, np.ndarray]] = []  # (slot, frame at source size)
        self._pending_pixels = 0
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vs2demo-resize")
        self._resizing: Future | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> _ResizedFrames:
        return self

    def __exit__(self, *exc_info) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)

    @property
    def count(self) -> int:
        """Slots filled so far, or about to be (pending resize)."""
        return int(self._filled.sum())

    def has(self, slot: int) -> bool:
        return bool(self._filled[slot])

    def add(self, frames: np.ndarray, slots: list[int]) -> None:
        """frames: uint8 (k, h, w, 3) RGB at source size, for these k slots. Several decoders may
        call this at once; a slot already filled keeps its frame."""
        with self._lock:
            if self.target_size is None:
                self.source_size = (int(frames.shape[1]), int(frames.shape[2]))
                self.target_size = self.budgets.size(*self.source_size, self.n_frames)
                self._kept = np.empty((self.n_frames, *self.target_size, 3), dtype=np.uint8)
            for slot, frame in zip(slots, frames):
                if self._filled[slot]:
                    continue
                self._filled[slot] = True
                pixels = frame.shape[0] * frame.shape[1]
                if self._pending and self._pending_pixels + pixels > RESIZE_CHUNK_PIXELS:
                    self._submit()  # a chunk holds at most RESIZE_CHUNK_PIXELS, or one larger frame
                self._pending.append((slot, frame))
                self._pending_pixels += pixels
            if self._pending_pixels >= RESIZE_CHUNK_PIXELS:
                self._submit()

    def _submit(self) -> None:
        if not self._pending:
            return
        if self._resizing is not None:
            self._resizing.result()  # one chunk at a time: bounded memory, and errors surface here
        chunk, self._pending, self._pending_pixels = self._pending, [], 0
        self._resizing = self._worker.submit(self._resize_chunk, chunk)

    def _resize_chunk(self, chunk: list[tuple[int, np.ndarray]]) -> None:
        # Frames of one size go through in one call (the stream may change size midway).
        for _, run in itertools.groupby(chunk, key=lambda item: item[1].shape):
            slots, batch = zip(*run)
            self._kept[list(slots)] = _resize(np.stack(batch), self.target_size)

    def array(self) -> np.ndarray:
        """The kept frames, once every slot is filled and resized."""
        with self._lock:
            self._submit()
        if self._resizing is not None:
            self._resizing.result()
        if not self._filled.all():
            raise RuntimeError(f"{int((~self._filled).sum())} sampled frames are missing")
        return self._kept


def _resize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic, antialiased resize of uint8 NHWC frames; bit-identical to the reference.

    The reference calls torchvision's v1 `resize` on uint8 tensors, which works in float32 and
    clamps and rounds back. v2 on uint8 takes a native uint8 kernel instead: several times faster,
    but a few levels off on many pixels (up to 3 on smooth pictures, 13 on noise). So v2 gets
    float32 here and rounds the same way.
    """
    if tuple(frames.shape[1:3]) == size:  # the reference returns these untouched too
        return np.ascontiguousarray(frames)
    import torch
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    # Planar (n, 3, h, w) float32 in one copy: torch's antialiased kernel runs about 1.5x faster on
    # it than on the channels-last layout the reference's permuted tensor has, with the same sums.
    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
    resized = tvf.resize(tensor, list(size), interpolation=InterpolationMode.BICUBIC, antialias=True)
    resized = resized.clamp_(0, 255).round_()
    kept = torch.empty((len(frames), *size, 3), dtype=torch.uint8)
    kept.permute(0, 3, 1, 2).copy_(resized)  # to uint8 and back to (n, h, w, 3) in one copy
    return kept.numpy()


def _chunks(indices: list[int], frame_pixels: int) -> list[list[int]]:
    size = max(1, RESIZE_CHUNK_PIXELS // max(frame_pixels, 1))
    return [indices[start:start + size] for start in range(0, len(indices), size)]


# ---- what the container says ---------------------------------------------------------------------

@dataclass(frozen=True)
class _Probe:
    """The video stream's header, read by PyAV without decoding a frame."""

    width: int
    height: int
    fps: float | None
    reported_frames: int  # the container's frame count, else duration x fps; 0 when unknown
    longest_duration_s: float | None  # the longest duration the stream or the container claims


def _check_file(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"Video file not found: {path}. Check the path.")
    if path.is_dir():
        raise UserInputError(f"{path} is a folder, not a video file: give the path of one video file.")
    if not path.is_file():
        # A device (/dev/zero), a pipe or a socket: opening it could block or read forever.
        raise UserInputError(f"{path} is not a regular file (a device, a pipe or a socket): give the path of a video file.")
    if path.stat().st_size == 0:
        raise UserInputError(f"The video file {path.name} is empty (0 bytes): the upload or copy did not finish. "
                             "Try again.")
    return path


def file_sha256(path, cancel: CancelToken | None = None) -> str:
    """The SHA-256 of a video file's bytes (what a record is of, whatever the file is called), read
    in blocks that a cancel can stop between. The file is checked as `sample_frames` checks it."""
    path = _check_file(path)
    cancel = cancel or CancelToken()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(4 << 20), b""):
            cancel.check()
            digest.update(block)
    return digest.hexdigest()


def _not_a_video(path: Path, error: Exception) -> UserInputError:
    reason = getattr(error, "strerror", None) or str(error)
    return UserInputError(f"{path.name} could not be read as a video ({reason}). It is not a video file, or it is "
                          "damaged or incomplete: upload a video such as .mp4, .webm, .mov, .mkv or .avi.")


def _open_container(path: Path):
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise _not_a_video(path, error) from None
    if not container.streams.video:
        container.close()
        raise UserInputError(f"{path.name} has no video stream (it looks like an audio-only file). Upload a video "
                             "file.")
    return container


def _probe(path: Path) -> _Probe:
    with _open_container(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        stream_s = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        container_s = container.duration / av.time_base if container.duration else None
        # The stream's own duration is the better estimate; the container's may include a longer
        # audio track. Both are only estimates: the PyAV path finds the real count if they are off.
        estimate_s = stream_s or container_s
        reported = stream.frames or (round(estimate_s * fps) if estimate_s and fps else 0)
        durations = [d for d in (stream_s, container_s) if d]
        return _Probe(stream.codec_context.width, stream.codec_context.height, fps, int(reported),
                      max(durations) if durations else None)


# ---- decord ---------------------------------------------------------------------------------------

class _BackendFailed(Exception):
    """This decoder cannot read the file; the next one may."""


@dataclass(frozen=True)
class _Decoded:
    frames: np.ndarray
    indices: list[int]
    total_frames: int
    fps: float
    source_size: tuple[int, int]  # (height, width)


def _decord():
    """decord, where it is installed: its wheels exist for x86-64 only (not for a Mac or an ARM
    server), and PyAV reads every video without it, as qwen-vl-utils falls back to torchvision."""
    try:
        import decord
    except ImportError:
        raise _BackendFailed("decord is not installed here (it has wheels for x86-64 only)") from None
    return decord


def _open_decord(path: Path):
    # A reader per call, never shared: decord readers are not thread-safe.
    decord = _decord()
    return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)


def _decord_get_batch(reader, indices: list[int]) -> np.ndarray:
    return reader.get_batch(indices).asnumpy()


def _guard_over_report(decord_frames: int, fps: float, probe: _Probe) -> int:
    """decord's frame count, clamped to what the file's duration can hold.

    decord believes the container's frame count. When that count is more than the stream has,
    get_batch can hang in native code once the indices reach the last frames, and even linspace's
    last index is the last frame. A frame or two over duration x fps is rounding; more is a lie.
    """
    if not probe.longest_duration_s:
        return decord_frames
    can_hold = probe.longest_duration_s * fps
    if decord_frames > math.ceil(can_hold) + 2:
        log.warning("decord counts %d frames, the duration holds %.1f: using %d", decord_frames, can_hold,
                    int(can_hold))
        return int(can_hold)
    return decord_frames


def _decord_batch_with_timeout(reader, indices: list[int], cancel: CancelToken) -> np.ndarray:
    """get_batch in a daemon thread, given up on after a timeout.

    A hang is in native code, so nothing can interrupt it: the thread is abandoned (daemon, so it
    does not keep the process alive at exit) with its reader, which nobody else uses, and the caller
    falls back to PyAV. decord calls into its library through ctypes, which releases the GIL, so a
    stuck thread does not stall the rest of the app. A cancel is answered the same way, at once: the
    thread ends by itself after this one chunk, and holds nothing but its own reader.
    """
    outcome: dict = {}

    def run():
        try:
            outcome["frames"] = _decord_get_batch(reader, indices)
        except _decord().DECORDError as error:  # decode failures
            outcome["error"] = error

    worker = threading.Thread(target=run, name="decord-get-batch", daemon=True)
    worker.start()
    timeout_s = DECORD_TIMEOUT_S + DECORD_TIMEOUT_PER_FRAME_S * len(indices)
    deadline = time.monotonic() + timeout_s
    while worker.is_alive() and time.monotonic() < deadline:
        worker.join(0.05)
        cancel.check()
    if worker.is_alive():
        raise _BackendFailed(f"decord did not return {len(indices)} frames within {timeout_s:.0f} s")
    if "error" in outcome:
        raise _BackendFailed(f"decord could not decode: {str(outcome['error']).splitlines()[0][:200]}")
    if "frames" not in outcome:  # the thread died of something unexpected; it was logged there
        raise _BackendFailed("decord's worker thread failed")
    return outcome["frames"]


def _sample_with_decord(path: Path, probe: _Probe, budgets: _Budgets, cancel: CancelToken) -> _Decoded:
    try:
        reader = _open_decord(path)
        reported, fps = len(reader), float(reader.get_avg_fps())
    except (_decord().DECORDError, RuntimeError) as error:  # decord raises RuntimeError when it cannot open
        raise _BackendFailed(f"decord could not open it: {str(error).splitlines()[0][:200]}") from None
    if not fps > 0:
        raise _BackendFailed(f"decord reports {fps} fps")
    total = _guard_over_report(reported, fps, probe)
    if total < FRAME_FACTOR:
        raise _BackendFailed(f"decord counts {total} frames")  # let PyAV count them for real
    indices = budgets.indices(total, fps)
    with _ResizedFrames(len(indices), budgets) as frames:
        first = 0
        for chunk in _chunks(indices, probe.width * probe.height):
            cancel.check()
            frames.add(_decord_batch_with_timeout(reader, chunk, cancel), list(range(first, first + len(chunk))))
            first += len(chunk)
        return _Decoded(frames.array(), indices, total, fps, frames.source_size)


# ---- PyAV, with an index: the fast path -----------------------------------------------------------

# Between two stretches of packets to decode, a gap of at most this many packets is decoded through
# (its reference frames only) rather than skipped with a seek: a seek drains the frames the decoder
# holds back for reordering and re-reads from a keyframe, about as much as decoding a few frames.
SEEK_GAP_PACKETS = 12
# Decoders working at once on the stretches of a long video (each on its own thread).
DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))


@dataclass
class _PacketIndex:
    """Every packet of the video stream, read by demuxing alone (no decoding, a few ms a minute).

    A frame's index is its place in presentation order, what decord (the reference's reader) counts.
    """

    pts: tuple[int, ...]  # presentation timestamps, in decode (file) order
    keyframe: tuple[bool, ...]
    display: tuple[int, ...]  # the timestamps of the frames the decoder outputs, in presentation order
    _positions: dict[int, int] = field(init=False, repr=False)
    _keyframe_pts: list[int] = field(init=False, repr=False)  # ascending

    def __post_init__(self):
        self._positions = {value: position for position, value in enumerate(self.pts)}
        self._keyframe_pts = sorted(value for value, key in zip(self.pts, self.keyframe) if key)

    def position(self, pts: int) -> int:
        return self._positions[pts]

    def start_of(self, pts: int) -> int:
        """Decode position of the last keyframe at or before the frame shown at `pts`: decoding
        from there gives that frame exactly as decoding from the start does."""
        before = bisect.bisect_right(self._keyframe_pts, pts) - 1
        return self.position(self._keyframe_pts[before]) if before >= 0 else 0

    def spans(self, wanted_pts: list[int]) -> list[tuple[int, int]]:
        """The stretches of decode positions to decode, first to last, for these frames: each from
        its keyframe to the frame itself, merged where they overlap or meet. Each starts at a
        keyframe and needs nothing decoded before it."""
        spans: list[list[int]] = []
        for first, last in sorted((self.start_of(pts), self.position(pts)) for pts in wanted_pts):
            if spans and first <= spans[-1][1] + 1:
                spans[-1][1] = max(spans[-1][1], last)
            else:
                spans.append([first, last])
        return [(first, last) for first, last in spans]


def _index_packets(path: Path, cancel: CancelToken) -> _PacketIndex:
    pts: list[int] = []
    keyframe: list[bool] = []
    shown: list[int] = []
    with _open_container(path) as container:
        stream = container.streams.video[0]
        try:
            for packet in container.demux(stream):
                cancel.check()
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                if packet.pts is None:
                    raise _BackendFailed("packets without timestamps")
                pts.append(packet.pts)
                keyframe.append(packet.is_keyframe)
                if not packet.is_discard:  # an edit list hides it: decoded, never shown
                    shown.append(packet.pts)
        except av.FFmpegError as error:
            raise _BackendFailed(f"the file cannot be read to its end ({error})") from None
    if len(set(pts)) != len(pts):
        raise _BackendFailed("repeated timestamps")
    if not any(keyframe):
        raise _BackendFailed("no keyframe in the index")
    return _PacketIndex(tuple(pts), tuple(keyframe), tuple(sorted(shown)))


class _SeekMissed(_BackendFailed):
    """A seek did not land on the keyframe the index named."""


def _decode_indexed(path: Path, index: _PacketIndex, wanted_pts: list[int], frames: _ResizedFrames,
                    cancel: CancelToken, threads: int | None = None) -> int:
    """Decode just enough of the file to get the frames shown at `wanted_pts` into their slots.

    Stretches between the frames that need no decoding are skipped with a seek to the next
    keyframe; frames that nothing refers to and nobody wants are not decoded at all (the decoder's
    skip_frame, set packet by packet). What is decoded is decoded as from the start, so the frames
    are bit for bit those of a full decode (tested against decord). Stretches start at keyframes,
    so they are independent: a long video's are shared out between decoders on their own threads
    (PyAV lets go of the GIL while decoding).

    Returns how many packets went to the decoder (the rest were seeked over).
    """
    slots = {pts: slot for slot, pts in enumerate(wanted_pts)}
    spans = index.spans(wanted_pts)
    groups = _share_out(spans, threads or DECODE_THREADS)
    try:
        if len(groups) == 1:
            return _decode_spans(path, index, groups[0], slots, frames, cancel)
        with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="vs2demo-decode") as pool:
            # Each decoder checks the same token, so on a cancel they all stop, not just the first.
            return sum(pool.map(lambda group: _decode_spans(path, index, group, slots, frames, cancel), groups))
    except _SeekMissed as missed:
        # The container cannot seek exactly (MPEG-TS, say). The frames kept so far were decoded
        # before the miss and are right; the rest come from one pass that never seeks.
        log.info("%s: %s; decoding through instead of seeking", path.name, missed)
        return _decode_spans(path, index, spans, slots, frames, cancel, seek=False)


def _share_out(spans: list[tuple[int, int]], workers: int) -> list[list[tuple[int, int]]]:
    """Consecutive runs of spans, one per worker, with about the same number of packets each."""
    workers = max(1, min(workers, len(spans)))
    total = sum(last - first + 1 for first, last in spans)
    groups: list[list[tuple[int, int]]] = [[]]
    done = 0
    for first, last in spans:
        if groups[-1] and len(groups) < workers and done >= total * len(groups) / workers:
            groups.append([])
        groups[-1].append((first, last))
        done += last - first + 1
    return groups


def _decode_spans(path: Path, index: _PacketIndex, spans: list[tuple[int, int]], slots: dict[int, int],
                  frames: _ResizedFrames, cancel: CancelToken, seek: bool = True) -> int:
    """One decoder, through these spans of decode positions in order; see `_decode_indexed`.
    Without `seek` it decodes through every gap, from the first packet."""
    sent = 0

    def take(decoded) -> None:
        for frame in decoded:
            slot = slots.get(frame.pts)
            if slot is not None and not frames.has(slot):
                frames.add(frame.to_ndarray(format="rgb24")[None], [slot])

    with _open_container(path) as container:
        stream = container.streams.video[0]
        # Slice threads, not frame threads: frame threads restart at every seek and compete with the
        # resize worker and the other decoders; measured slower on 2 cores (BENCHMARKS.md).
        stream.thread_type = "SLICE"
        codec = stream.codec_context
        position = -1  # decode position of the last packet sent to the decoder
        for first, last in spans:
            # A short gap is decoded through (reference frames only); a longer one is seeked over.
            if seek and first > position + 1 + SEEK_GAP_PACKETS:
                if position >= 0:
                    take(codec.decode(None))  # drain the frames the decoder holds back for reordering
                container.seek(index.pts[first], stream=stream, backward=True)  # also resets the decoder
                position = None
            for packet in container.demux(stream):
                cancel.check()
                if packet.size == 0:
                    break
                landed = index.position(packet.pts)  # KeyError: not a packet the index saw
                if position is None and (landed > first or not index.keyframe[landed]):
                    raise _SeekMissed(f"seeking to {index.pts[first]} landed on the packet at {packet.pts}")
                position = landed
                codec.skip_frame = "DEFAULT" if packet.pts in slots else "NONREF"
                take(packet.decode())
                sent += 1
                if position >= last:
                    break
        take(codec.decode(None))
    return sent


def _sample_with_pyav_index(path: Path, probe: _Probe, budgets: _Budgets, cancel: CancelToken) -> _Decoded:
    if not probe.fps:
        raise _BackendFailed("no frame rate in the header")
    index = _index_packets(path, cancel)
    total = len(index.display)
    if total < FRAME_FACTOR:
        raise _BackendFailed(f"{total} frames in the index")  # let the others count and explain
    indices = budgets.indices(total, probe.fps)
    wanted_pts = [index.display[i] for i in indices]
    with _ResizedFrames(len(indices), budgets) as frames:
        try:
            sent = _decode_indexed(path, index, wanted_pts, frames, cancel)
        except (av.FFmpegError, KeyError) as error:
            raise _BackendFailed(f"indexed decoding failed ({type(error).__name__}: {error})") from None
        if frames.count < len(indices):
            raise _BackendFailed(f"{len(indices) - frames.count} of the sampled frames did not decode")
        log.debug("%s: %d of %d packets decoded for %d frames", path.name, sent, len(index.pts), len(indices))
        return _Decoded(frames.array(), indices, total, probe.fps, frames.source_size)


# ---- PyAV, from the start: for files the others cannot read --------------------------------------

def _decoded_frames(container, stream):
    """The stream's frames in order, until the end or until the file cannot be read further.

    A packet that does not decode (a damaged or cut-off one) is skipped; a demuxing error ends
    the stream: a truncated file gives the frames before the cut.
    """
    try:
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.FFmpegError:
                continue  # a damaged packet: later ones may still decode
            yield from decoded
    except av.FFmpegError:
        # The file cannot be read further. The frames the decoder still holds (reordering,
        # frame threads) are good ones: flush them out.
        try:
            decoded = stream.codec_context.decode(None)
        except av.FFmpegError:
            return
        yield from decoded


def _pyav_frames(path: Path, cancel: CancelToken, indices=(), frames: _ResizedFrames | None = None) -> int:
    """Decode from the start, keeping only the frames at `indices` (sorted); stop after the last.
    Returns how many frames were decoded: all there are, when fewer than the indices need (with no
    indices: the frames that decode, for a file whose header does not say)."""
    decoded = 0
    wanted = 0  # position in indices of the next frame to keep
    with _open_container(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in _decoded_frames(container, stream):
            cancel.check()
            if wanted < len(indices) and indices[wanted] == decoded:
                image = frame.to_ndarray(format="rgb24")[None]
                while wanted < len(indices) and indices[wanted] == decoded:
                    frames.add(image, [wanted])
                    wanted += 1
                if wanted == len(indices):
                    return decoded + 1
            decoded += 1
    return decoded


def _sample_with_pyav(path: Path, probe: _Probe, budgets: _Budgets, cancel: CancelToken) -> _Decoded:
    fps = probe.fps
    if not fps:
        raise UserInputError(f"{path.name} does not say its frame rate, so it cannot be sampled in time. Re-encode "
                             "it (e.g. ffmpeg -i input -r 24 output.mp4) and upload that.")
    total = probe.reported_frames
    if total < FRAME_FACTOR:  # no count in the header, or a still image: count by decoding
        total = _pyav_frames(path, cancel)
    # At most two passes: the second picks from the frames the first found to exist.
    for _ in range(2):
        indices = budgets.indices(total, fps)
        with _ResizedFrames(len(indices), budgets) as frames:
            decoded = _pyav_frames(path, cancel, indices, frames)
            if frames.count == len(indices):
                return _Decoded(frames.array(), indices, total, fps, frames.source_size)
        log.info("%s: %d frames reported, %d decodable; sampling again", path.name, total, decoded)
        if decoded < FRAME_FACTOR:
            break
        total = decoded
    raise UserInputError(f"Only {decoded} frame(s) of {path.name} could be decoded: the file looks damaged or cut "
                         "off. Export or download it again.")


# ---- the entry point ------------------------------------------------------------------------------

# The readers, fastest first. Each gives the same frames where it can read the file at all: the
# indexed PyAV path decodes least (no frame nobody wants or refers to); decord is the reference's
# own reader; PyAV from the start copes with files whose index is missing or lies.
BACKENDS = (
    ("pyav", _sample_with_pyav_index),
    ("decord", _sample_with_decord),
    ("pyav-sequential", _sample_with_pyav),
)


def sample_frames(path, fps: float = DEFAULT_FPS, max_frames: int = DEFAULT_MAX_FRAMES, min_frames: int = MIN_FRAMES,
                  min_pixels: int = VIDEO_MIN_PIXELS, max_pixels: int = VIDEO_MAX_PIXELS,
                  total_pixels: int = VIDEO_TOTAL_PIXELS, cancel: CancelToken | None = None) -> SampledVideo:
    """Decode and resize the frames of the video at `path` that the model sees.

    Raises UserInputError for anything wrong with the file (missing, empty, not a video, no video
    stream, a single frame, damaged beyond two frames, an absurd shape), and `jobs.Cancelled`
    within a packet or a frame of `cancel` being set.
    """
    started = time.perf_counter()
    cancel = cancel or CancelToken()
    path = _check_file(path)
    budgets = _Budgets(fps, min_frames, max_frames, min_pixels, max_pixels, total_pixels)
    probe = _probe(path)
    if probe.width and probe.height:
        # Refuse an absurd shape before decoding anything (checked again on the decoded frames).
        budgets.size(probe.height, probe.width, max_frames)
    for backend, sample in BACKENDS[:-1]:
        try:
            decoded = sample(path, probe, budgets, cancel)
            break
        except _BackendFailed as failure:
            log.info("%s: %s with %s; trying the next reader", path.name, failure, backend)
    else:
        backend, sample = BACKENDS[-1]
        decoded = sample(path, probe, budgets, cancel)  # the last resort explains what is wrong with the file
    height, width = decoded.source_size
    return SampledVideo(decoded.frames, tuple(decoded.indices), decoded.total_frames, decoded.fps, width, height,
                        duration=decoded.total_frames / decoded.fps, backend=backend,
                        decode_s=time.perf_counter() - started, path=str(path))
