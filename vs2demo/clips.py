"""Synthetic video clips the project makes itself: for the example assets, the tests and the toy
model's training. Written with PyAV, so no ffmpeg binary is needed."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

# Container suffix -> a codec PyAV's wheels can encode, and the pixel format it wants.
DEFAULT_CODECS = {
    ".mp4": ("libx264", "yuv420p"),
    ".mkv": ("libx264", "yuv420p"),
    ".mov": ("libx264", "yuv420p"),
    ".avi": ("mpeg4", "yuv420p"),
    ".webm": ("libvpx-vp9", "yuv420p"),
}


def write_clip(path, frames: np.ndarray, fps: float = 8.0, codec: str | None = None,
               pix_fmt: str | None = None, audio: bool = False) -> Path:
    """Encode frames (n, h, w, 3) uint8 RGB to `path`; the container follows the suffix.

    Width and height must be even for yuv420p; callers pick even sizes.
    """
    path = Path(path)
    default_codec, default_fmt = DEFAULT_CODECS.get(path.suffix.lower(), ("libx264", "yuv420p"))
    codec = codec or default_codec
    pix_fmt = pix_fmt or default_fmt
    import av  # imported here: only clip making needs it at import time

    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width = int(frames.shape[2])
        stream.height = int(frames.shape[1])
        stream.pix_fmt = pix_fmt
        if codec in ("libx264",):
            stream.options = {"crf": "20", "preset": "veryfast"}
        audio_stream = container.add_stream("aac", rate=16000) if audio else None
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio_stream is not None:
            _write_silence(container, audio_stream, seconds=len(frames) / fps)
    return path


def write_audio_only(path, seconds: float = 1.0) -> Path:
    """An audio-only file (a sine tone) with a video suffix: a bad input users do upload."""
    import av

    path = Path(path)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        _write_silence(container, stream, seconds=seconds)
    return path


def _write_silence(container, stream, seconds: float) -> None:
    import av

    samples = int(16000 * seconds)
    t = np.arange(samples) / 16000
    tone = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
    frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
    frame.sample_rate = 16000
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
