"""Turn a video file into the frames VideoScore2 sees, exactly as its authors prepared them.

The reference is qwen-vl-utils' `fetch_video` (0.0.10 and later, what `pip install qwen-vl-utils`
gave the authors): sample at `fps` frames per second, an even count between `min_frames` and
`max_frames`, indices spread evenly from the first frame to the last; resize every frame (bicubic,
antialiased, aspect kept) so both sides are multiples of 28 and the pixel budgets hold.

Decoding: decord first (fast random access), PyAV when decord cannot open or decode the file (AV1,
some VP8/webm, damaged or odd files) or hangs. Only the sampled frames are ever kept, resized as
they arrive, so a long or 4K video costs memory for the frames the model gets and no more.

Every problem with the file itself is raised as `UserInputError`, with what to do instead.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av
import decord
import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as tvf
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
from transformers.video_utils import VideoMetadata

from .errors import UserInputError
from .settings import VIDEO_MAX_PIXELS, VIDEO_MIN_PIXELS, VIDEO_TOTAL_PIXELS

log = logging.getLogger(__name__)

FRAME_FACTOR = 2  # frames go to the model in pairs (temporal patch size 2): counts are even
SIZE_FACTOR = 28  # patch 14 x spatial merge 2: frame sides are multiples of this
MAX_ASPECT_RATIO = 200  # smart_resize refuses anything longer and thinner

# decord's get_batch runs in a worker thread and is given up on after this long (see
# _decord_batch_with_timeout). Module-level so tests can shorten them.
DECORD_TIMEOUT_S = 15.0
DECORD_TIMEOUT_PER_FRAME_S = 0.5

# Source pixels decoded and resized in one go: the float copy the bicubic resize makes is 4 bytes a
# channel, so this bounds that scratch memory to about 50 MB (one 4K frame, or ~4 at 720p). The
# benchmark measured the same speed as with 8x larger chunks and half the peak memory.
RESIZE_CHUNK_PIXELS = 4_000_000


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

    def metadata(self) -> VideoMetadata:
        """What the processor needs to place the frames in time (its `sampled_fps` is the
        reference's `n / total * fps`); without it the processor assumes 24 fps."""
        return VideoMetadata(
            total_num_frames=self.source_frames,
            fps=self.source_fps,
            width=self.source_width,
            height=self.source_height,
            duration=self.duration,
            video_backend=self.backend,
            frames_indices=list(self.indices),
        )


# ---- the reference's arithmetic -----------------------------------------------------------------

def _ceil_by_factor(number: float, factor: int) -> int:
    return math.ceil(number / factor) * factor


def _floor_by_factor(number: float, factor: int) -> int:
    return math.floor(number / factor) * factor


def frame_count(total_frames: int, source_fps: float, fps: float = 2.0, min_frames: int = 4,
                max_frames: int = 64) -> int:
    """How many frames to sample: qwen-vl-utils' `smart_nframes` (0.0.10 and later).

    That version clamps to the frames there are and rounds *down* to an even count; the original
    0.0.8 rounded to the nearest even count (87 frames at 24 fps: 6 here, 8 there). The authors'
    unpinned `pip install qwen-vl-utils` (mid-2025) gave 0.0.11, so we follow it.
    """
    if max_frames < FRAME_FACTOR:
        raise ValueError(f"max_frames must be at least {FRAME_FACTOR}, not {max_frames}")
    if total_frames < FRAME_FACTOR:
        raise UserInputError(
            f"A video needs at least {FRAME_FACTOR} frames, but this one has {total_frames}: "
            "this looks like a still image. Upload a video clip instead."
        )
    wanted = total_frames / source_fps * fps
    lowest = _ceil_by_factor(min_frames, FRAME_FACTOR)
    highest = _floor_by_factor(max_frames, FRAME_FACTOR)
    count = _floor_by_factor(min(max(wanted, lowest), highest, total_frames), FRAME_FACTOR)
    # Cannot fail once total_frames >= 2; kept as the reference's own guard.
    if not FRAME_FACTOR <= count <= total_frames:
        raise UserInputError(f"Cannot sample {count} frames from a video of {total_frames} frames.")
    return count


def frame_indices(total_frames: int, n: int) -> list[int]:
    """`n` indices spread evenly from the first frame to the last, as the reference picks them
    (torch's float32 linspace, rounded half to even: the same integers, not just close ones)."""
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
        raise UserInputError(
            f"The video is {width}x{height} pixels: longer than {MAX_ASPECT_RATIO}:1, which the model "
            "cannot take. Crop or pad it to a usual shape."
        )
    frame_max_pixels = max(min(max_pixels, total_pixels / n_frames * FRAME_FACTOR), int(min_pixels * 1.05))
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
    """Collects sampled frames, resizing each batch as it arrives, so memory holds the kept,
    resized frames and one batch at source size, never the whole source video.

    The target size comes from the first frames actually decoded (what the reference measures),
    and every later frame goes to that size, even if the stream changes resolution midway.
    """

    def __init__(self, n_frames: int, budgets: _Budgets):
        self.n_frames = n_frames
        self.budgets = budgets
        self.source_size: tuple[int, int] | None = None  # (height, width)
        self.target_size: tuple[int, int] | None = None
        self._resized: list[np.ndarray] = []
        self.count = 0

    def add(self, frames: np.ndarray) -> None:
        """frames: uint8 (k, h, w, 3) RGB at source size."""
        if self.target_size is None:
            self.source_size = (int(frames.shape[1]), int(frames.shape[2]))
            self.target_size = self.budgets.size(*self.source_size, self.n_frames)
        self._resized.append(_resize(frames, self.target_size))
        self.count += len(frames)

    def array(self) -> np.ndarray:
        return np.concatenate(self._resized)


def _resize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic, antialiased resize of uint8 NHWC frames; bit-identical to the reference.

    The reference calls torchvision's v1 `resize` on uint8 tensors, which works in float32 and
    clamps and rounds back. v2 on uint8 takes a native uint8 kernel instead: several times faster,
    but a few levels off on many pixels (up to 3 on smooth pictures, 13 on noise). So v2 gets
    float32 here and rounds the same way.
    """
    if tuple(frames.shape[1:3]) == size:  # the reference returns these untouched too
        return np.ascontiguousarray(frames)
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    resized = tvf.resize(tensor.float(), list(size), interpolation=InterpolationMode.BICUBIC, antialias=True)
    resized = resized.clamp_(0, 255).round_().to(torch.uint8)
    return resized.permute(0, 2, 3, 1).contiguous().numpy()


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
        raise UserInputError(f"Video file not found: {path}. Check the path, or upload the file again.")
    if path.is_dir():
        raise UserInputError(f"{path} is a folder, not a video file: give the path of one video file.")
    if path.stat().st_size == 0:
        raise UserInputError(
            f"The video file {path.name} is empty (0 bytes): the upload or copy did not finish. Try again."
        )
    return path


def _not_a_video(path: Path, error: Exception) -> UserInputError:
    reason = getattr(error, "strerror", None) or str(error)
    return UserInputError(
        f"{path.name} could not be read as a video ({reason}). It is not a video file, or it is damaged "
        "or incomplete: upload a video such as .mp4, .webm, .mov, .mkv or .avi."
    )


def _open_container(path: Path):
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise _not_a_video(path, error) from None
    if not container.streams.video:
        container.close()
        raise UserInputError(
            f"{path.name} has no video stream (it looks like an audio-only file). Upload a video file."
        )
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
        return _Probe(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=fps,
            reported_frames=int(reported),
            longest_duration_s=max(durations) if durations else None,
        )


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


def _open_decord(path: Path):
    # A reader per call, never shared: decord readers are not thread-safe.
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


def _decord_batch_with_timeout(reader, indices: list[int]) -> np.ndarray:
    """get_batch in a daemon thread, given up on after a timeout.

    A hang is in native code, so nothing can interrupt it: the thread is abandoned (daemon, so it
    does not keep the process alive at exit) with its reader, which nobody else uses, and the caller
    falls back to PyAV. decord calls into its library through ctypes, which releases the GIL, so a
    stuck thread does not stall the rest of the app.
    """
    outcome: dict = {}

    def run():
        try:
            outcome["frames"] = _decord_get_batch(reader, indices)
        except decord.DECORDError as error:  # decode failures
            outcome["error"] = error

    worker = threading.Thread(target=run, name="decord-get-batch", daemon=True)
    worker.start()
    timeout_s = DECORD_TIMEOUT_S + DECORD_TIMEOUT_PER_FRAME_S * len(indices)
    worker.join(timeout_s)
    if worker.is_alive():
        raise _BackendFailed(f"decord did not return {len(indices)} frames within {timeout_s:.0f} s")
    if "error" in outcome:
        raise _BackendFailed(f"decord could not decode: {str(outcome['error']).splitlines()[0][:200]}")
    if "frames" not in outcome:  # the thread died of something unexpected; it was logged there
        raise _BackendFailed("decord's worker thread failed")
    return outcome["frames"]


def _sample_with_decord(path: Path, probe: _Probe, budgets: _Budgets) -> _Decoded:
    try:
        reader = _open_decord(path)
        reported, fps = len(reader), float(reader.get_avg_fps())
    except (decord.DECORDError, RuntimeError) as error:  # decord raises RuntimeError when it cannot open
        raise _BackendFailed(f"decord could not open it: {str(error).splitlines()[0][:200]}") from None
    if not fps > 0:
        raise _BackendFailed(f"decord reports {fps} fps")
    total = _guard_over_report(reported, fps, probe)
    if total < FRAME_FACTOR:
        raise _BackendFailed(f"decord counts {total} frames")  # let PyAV count them for real
    indices = budgets.indices(total, fps)
    frames = _ResizedFrames(len(indices), budgets)
    for chunk in _chunks(indices, probe.width * probe.height):
        frames.add(_decord_batch_with_timeout(reader, chunk))
    return _Decoded(frames.array(), indices, total, fps, frames.source_size)


# ---- PyAV -----------------------------------------------------------------------------------------

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


def _pyav_frames(path: Path, indices: list[int], frames: _ResizedFrames) -> int:
    """Decode from the start, keeping only the frames at `indices` (sorted); stop after the last.
    Returns how many frames were decoded: all there are, when fewer than the indices need."""
    decoded = 0
    wanted = 0  # position in indices of the next frame to keep
    with _open_container(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads: several times faster, same frames
        for frame in _decoded_frames(container, stream):
            if indices[wanted] == decoded:
                image = frame.to_ndarray(format="rgb24")[None]
                while wanted < len(indices) and indices[wanted] == decoded:
                    frames.add(image)
                    wanted += 1
                if wanted == len(indices):
                    return decoded + 1
            decoded += 1
    return decoded


def _count_frames(path: Path) -> int:
    """Frames that actually decode, for a file whose header does not say."""
    with _open_container(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in _decoded_frames(container, stream))


def _sample_with_pyav(path: Path, probe: _Probe, budgets: _Budgets) -> _Decoded:
    fps = probe.fps
    if not fps:
        raise UserInputError(
            f"{path.name} does not say its frame rate, so it cannot be sampled in time. Re-encode it "
            "(e.g. ffmpeg -i input -r 24 output.mp4) and upload that."
        )
    total = probe.reported_frames
    if total < FRAME_FACTOR:  # no count in the header, or a still image: count by decoding
        total = _count_frames(path)
    # At most two passes: the second picks from the frames the first found to exist.
    for _ in range(2):
        indices = budgets.indices(total, fps)
        frames = _ResizedFrames(len(indices), budgets)
        decoded = _pyav_frames(path, indices, frames)
        if frames.count == len(indices):
            return _Decoded(frames.array(), indices, total, fps, frames.source_size)
        log.info("%s: %d frames reported, %d decodable; sampling again", path.name, total, decoded)
        if decoded < FRAME_FACTOR:
            break
        total = decoded
    raise UserInputError(
        f"Only {decoded} frame(s) of {path.name} could be decoded: the file looks damaged or cut off. "
        "Export or download it again."
    )


# ---- the entry point ------------------------------------------------------------------------------

def sample_frames(path, fps: float = 2.0, max_frames: int = 64, min_frames: int = 4,
                  min_pixels: int = VIDEO_MIN_PIXELS, max_pixels: int = VIDEO_MAX_PIXELS,
                  total_pixels: int = VIDEO_TOTAL_PIXELS) -> SampledVideo:
    """Decode and resize the frames of the video at `path` that the model sees.

    Raises UserInputError for anything wrong with the file (missing, empty, not a video, no video
    stream, a single frame, damaged beyond two frames, an absurd shape).
    """
    started = time.perf_counter()
    path = _check_file(path)
    budgets = _Budgets(fps, min_frames, max_frames, min_pixels, max_pixels, total_pixels)
    probe = _probe(path)
    if probe.width and probe.height:
        # Refuse an absurd shape before decoding anything (checked again on the decoded frames).
        budgets.size(probe.height, probe.width, max_frames)
    try:
        decoded, backend = _sample_with_decord(path, probe, budgets), "decord"
    except _BackendFailed as failure:
        log.info("%s: %s; decoding with PyAV", path.name, failure)
        decoded, backend = _sample_with_pyav(path, probe, budgets), "pyav"
    height, width = decoded.source_size
    return SampledVideo(
        frames=decoded.frames,
        indices=tuple(decoded.indices),
        source_frames=decoded.total_frames,
        source_fps=decoded.fps,
        source_width=width,
        source_height=height,
        duration=decoded.total_frames / decoded.fps,
        backend=backend,
        decode_s=time.perf_counter() - started,
        path=str(path),
    )
