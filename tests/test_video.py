"""Frame sampling: the reference's arithmetic, every container and codec a user may upload, the
files that must be refused with a clear message, and the guards around decord."""

from __future__ import annotations

import threading
import time

import av
import decord
import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as reference_tvf

from vs2demo import video
from vs2demo.clips import write_audio_only, write_clip
from vs2demo.errors import UserInputError
from vs2demo.settings import VIDEO_MAX_PIXELS, VIDEO_MIN_PIXELS, VIDEO_TOTAL_PIXELS
from vs2demo.video import frame_count, frame_indices, frame_size, sample_frames

# The standard clip: 40 frames at 8 fps (5 s, so 10 sampled frames), frame i of brightness
# 10 + 6 i, so each sampled frame's mean tells which source frame it is.
CLIP_FRAMES, CLIP_FPS = 40, 8.0
CLIP_INDICES = (0, 4, 9, 13, 17, 22, 26, 30, 35, 39)


def brightness(index: int) -> int:
    return 10 + 6 * index


def indexed_frames(n: int = CLIP_FRAMES, height: int = 64, width: int = 96, noise: int = 0) -> np.ndarray:
    frames = np.stack([np.full((height, width, 3), brightness(i), np.int16) for i in range(n)])
    if noise:  # zero-mean noise makes frames big, so a file cut in half keeps only part of them
        frames += np.random.default_rng(0).integers(-noise, noise + 1, frames.shape, dtype=np.int16)
    return np.clip(frames, 0, 255).astype(np.uint8)


def assert_frames_are(sampled, indices, tolerance=4.0):
    means = sampled.frames.reshape(sampled.count, -1).mean(axis=1)
    expected = np.array([brightness(i) for i in indices])
    assert np.abs(means - expected).max() <= tolerance, (means.round(1).tolist(), expected.tolist())


def assert_model_sized(sampled, min_pixels=VIDEO_MIN_PIXELS, max_pixels=VIDEO_MAX_PIXELS,
                       total_pixels=VIDEO_TOTAL_PIXELS):
    assert sampled.frames.dtype == np.uint8 and sampled.frames.ndim == 4 and sampled.frames.shape[3] == 3
    assert sampled.height % 28 == 0 and sampled.width % 28 == 0
    area = sampled.height * sampled.width
    assert min_pixels <= area <= max(min(max_pixels, total_pixels / sampled.count * 2), int(min_pixels * 1.05))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", indexed_frames(), fps=CLIP_FPS)


# ---- the reference's arithmetic -----------------------------------------------------------------

@pytest.mark.parametrize("total, source_fps, kwargs, expected", [
    (120, 24, {}, 10),  # 5 s at 2 fps
    (87, 24, {}, 6),  # 7.25 -> rounded down to even (qwen-vl-utils >= 0.0.10; 0.0.8 gave 8)
    (10, 30, {}, 4),  # short: at least min_frames
    (3000, 30, {}, 64),  # long: at most max_frames
    (3000, 30, {"max_frames": 768}, 200),
    (3000, 30, {"max_frames": 65}, 64),  # max_frames rounded down to even
    (12, 30, {"min_frames": 5}, 6),  # min_frames rounded up to even
    (3, 30, {}, 2),  # fewer frames than min_frames: all there are, rounded down to even
    (2, 30, {}, 2),
    (300, 30, {"fps": 0.5}, 4),
    (1200, 10, {}, 64),
])
def test_frame_count_matches_reference(total, source_fps, kwargs, expected):
    assert frame_count(total, source_fps, **kwargs) == expected


@pytest.mark.parametrize("total", [0, 1])
def test_frame_count_refuses_a_still_image(total):
    with pytest.raises(UserInputError, match="at least 2 frames.*still image"):
        frame_count(total, 24)


def test_frame_indices_match_reference():
    assert frame_indices(120, 10) == [0, 13, 26, 40, 53, 66, 79, 93, 106, 119]
    assert frame_indices(40, 10) == list(CLIP_INDICES)
    assert frame_indices(2, 2) == [0, 1]
    long = frame_indices(1200, 64)
    assert long[:4] == [0, 19, 38, 57] and long[-1] == 1199 and len(set(long)) == 64


@pytest.mark.parametrize("height, width, n, budgets, expected", [
    (720, 1280, 20, {}, (560, 1008)),  # 10 s of 720p: down to the 768-token frame budget
    (2160, 3840, 64, {}, (560, 1008)),  # 4K: same aspect, same budget
    (720, 1280, 768, {}, (336, 644)),  # many frames: the total budget binds (235,200 px a frame)
    (64, 96, 10, {}, (280, 392)),  # small: up to the 128-token minimum
    (23, 37, 4, {}, (252, 420)),  # odd and tiny
    (720, 1280, 16, {"min_pixels": 56 * 56, "max_pixels": 112 * 112}, (84, 140)),  # the toy's budgets
])
def test_frame_size_matches_reference(height, width, n, budgets, expected):
    budgets = {"min_pixels": VIDEO_MIN_PIXELS, "max_pixels": VIDEO_MAX_PIXELS,
               "total_pixels": VIDEO_TOTAL_PIXELS, **budgets}
    assert frame_size(height, width, n, **budgets) == expected


def test_frame_size_refuses_absurd_aspect_ratio():
    with pytest.raises(UserInputError, match="200:1"):
        frame_size(2, 404, 4, VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS, VIDEO_TOTAL_PIXELS)


def test_resize_is_bit_identical_to_reference():
    # The reference: torchvision's v1 resize on the uint8 (n, 3, h, w) tensor decord gives.
    frames = np.random.default_rng(1).integers(0, 256, (3, 50, 70, 3), dtype=np.uint8)
    reference = reference_tvf.resize(torch.from_numpy(frames).permute(0, 3, 1, 2), [56, 84],
                                     interpolation=InterpolationMode.BICUBIC, antialias=True)
    assert np.array_equal(video._resize(frames, (56, 84)), reference.permute(0, 2, 3, 1).numpy())


# ---- containers and codecs ----------------------------------------------------------------------

@pytest.mark.parametrize("name, codec, pix_fmt, backend", [
    ("h264.mp4", None, None, "decord"),
    ("h264.mkv", None, None, "decord"),
    ("h264.mov", None, None, "decord"),
    ("mpeg4.avi", None, None, "decord"),
    ("vp9.webm", None, None, "decord"),
    ("vp8.webm", "libvpx", None, "decord"),
    ("mjpeg.avi", "mjpeg", "yuvj420p", "decord"),
    ("av1.mkv", "libsvtav1", None, "pyav"),  # decord cannot open AV1
    ("av1.mp4", "libsvtav1", None, "pyav"),
])
def test_formats_sample_the_right_frames(tmp_path, name, codec, pix_fmt, backend):
    path = write_clip(tmp_path / name, indexed_frames(), fps=CLIP_FPS, codec=codec, pix_fmt=pix_fmt)
    sampled = sample_frames(path)
    assert sampled.backend == backend
    assert sampled.indices == CLIP_INDICES
    assert (sampled.source_frames, sampled.source_fps) == (CLIP_FRAMES, CLIP_FPS)
    assert (sampled.source_width, sampled.source_height) == (96, 64)
    assert sampled.duration == pytest.approx(5.0)
    assert (sampled.height, sampled.width) == (280, 392)
    assert_model_sized(sampled)
    assert_frames_are(sampled, CLIP_INDICES)


def test_pyav_gives_the_same_frames_as_decord(clip, monkeypatch):
    by_decord = sample_frames(clip)

    def cannot_open(path):
        raise decord.DECORDError("simulated")

    monkeypatch.setattr(video, "_open_decord", cannot_open)
    by_pyav = sample_frames(clip)
    assert (by_decord.backend, by_pyav.backend) == ("decord", "pyav")
    assert by_pyav.indices == by_decord.indices
    assert np.abs(by_pyav.frames.astype(int) - by_decord.frames).max() <= 2


def test_metadata_tells_the_processor_when_frames_are(clip):
    sampled = sample_frames(clip)
    meta = sampled.metadata()
    assert meta.total_num_frames == CLIP_FRAMES and meta.fps == CLIP_FPS
    assert (meta.width, meta.height) == (96, 64) and meta.video_backend == "decord"
    assert meta.frames_indices == list(CLIP_INDICES) and meta.duration == pytest.approx(5.0)
    assert meta.sampled_fps == pytest.approx(10 / 40 * 8)  # the reference's sample_fps
    assert sampled.timestamps == tuple(i / 8 for i in CLIP_INDICES)
    assert sampled.count == 10 and sampled.decode_s > 0


def test_pixel_budgets_are_honoured(clip):
    budgets = {"min_pixels": 56 * 56, "max_pixels": 112 * 112, "total_pixels": 10 * 84 * 84 // 2}
    sampled = sample_frames(clip, **budgets)
    assert sampled.count == 10
    assert_model_sized(sampled, **budgets)
    assert sampled.count * sampled.height * sampled.width / 2 <= budgets["total_pixels"]


def test_4k_is_resized_down_in_bounded_chunks(tmp_path, monkeypatch):
    frames = np.zeros((2, 2160, 3840, 3), np.uint8)
    frames[:, :1080] = 200  # top half bright: the resize keeps the picture, not just the size
    path = write_clip(tmp_path / "4k.mp4", frames, fps=8)
    resized_inputs = []
    real_resize = video._resize
    monkeypatch.setattr(video, "_resize", lambda f, size: resized_inputs.append(f.shape) or real_resize(f, size))
    sampled = sample_frames(path)
    assert (sampled.source_width, sampled.source_height) == (3840, 2160)
    assert (sampled.height, sampled.width) == (560, 1008)
    assert_model_sized(sampled)
    assert sampled.frames[:, :270].mean() == pytest.approx(200, abs=3)
    assert sampled.frames[:, 290:].mean() == pytest.approx(0, abs=3)
    assert all(n * h * w <= max(video.RESIZE_CHUNK_PIXELS, h * w) for n, h, w, _ in resized_inputs)


def test_odd_frame_size(tmp_path):
    path = write_clip(tmp_path / "odd.avi", indexed_frames(height=23, width=37), fps=CLIP_FPS, codec="mpeg4")
    sampled = sample_frames(path)
    assert (sampled.source_width, sampled.source_height) == (37, 23)
    assert (sampled.height, sampled.width) == (252, 420)
    assert_frames_are(sampled, CLIP_INDICES)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """Two minutes at 10 fps, 64x64: frame i has brightness i % 256."""
    n = 1200
    frames = np.broadcast_to((np.arange(n) % 256).astype(np.uint8)[:, None, None, None], (n, 64, 64, 3))
    return write_clip(tmp_path_factory.mktemp("long") / "long.mp4", np.ascontiguousarray(frames), fps=10)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_long_video_keeps_only_the_sampled_frames(long_clip, monkeypatch, backend):
    if backend == "pyav":
        monkeypatch.setattr(video, "_open_decord", lambda path: (_ for _ in ()).throw(RuntimeError("simulated")))
    resized = []
    real_resize = video._resize
    monkeypatch.setattr(video, "_resize", lambda f, size: resized.append(len(f)) or real_resize(f, size))
    sampled = sample_frames(long_clip)
    assert sampled.backend == backend
    assert sampled.count == 64 and sampled.source_frames == 1200 and sampled.duration == pytest.approx(120)
    assert sampled.indices == tuple(frame_indices(1200, 64))
    assert sum(resized) == 64  # only the kept frames were ever converted and resized
    means = sampled.frames.reshape(64, -1).mean(axis=1)
    assert np.abs(means - np.array(sampled.indices) % 256).max() <= 3
    assert sample_frames(long_clip, max_frames=16).count == 16


# ---- files a user should be told about ----------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        sample_frames(tmp_path / "nope.mp4")


def test_directory(tmp_path):
    with pytest.raises(UserInputError, match="folder, not a video file"):
        sample_frames(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(UserInputError, match="empty"):
        sample_frames(tmp_path / "empty.mp4")


@pytest.mark.parametrize("content", [
    np.random.default_rng(2).integers(0, 256, 20_000, dtype=np.uint8).tobytes(),
    b"This is a text file, not a video.\n" * 50,
], ids=["random-bytes", "text"])
def test_not_a_video(tmp_path, content):
    (tmp_path / "fake.mp4").write_bytes(content)
    with pytest.raises(UserInputError, match="could not be read as a video.*upload a video"):
        sample_frames(tmp_path / "fake.mp4")


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_image_renamed_to_mp4(tmp_path, image_format):
    from PIL import Image

    path = tmp_path / "photo.mp4"
    Image.fromarray(indexed_frames(1)[0]).save(path, format=image_format)
    with pytest.raises(UserInputError, match="still image"):
        sample_frames(path)


def test_audio_only(tmp_path):
    path = write_audio_only(tmp_path / "song.mp4")
    with pytest.raises(UserInputError, match="no video stream"):
        sample_frames(path)


def test_one_frame_video(tmp_path):
    path = write_clip(tmp_path / "one.mp4", indexed_frames(1), fps=8)
    with pytest.raises(UserInputError, match="at least 2 frames.*still image"):
        sample_frames(path)


def test_two_frame_video(tmp_path):
    sampled = sample_frames(write_clip(tmp_path / "two.mp4", indexed_frames(2), fps=8))
    assert sampled.indices == (0, 1)


def test_absurd_aspect_ratio(tmp_path):
    path = write_clip(tmp_path / "thin.avi", np.zeros((4, 2, 404, 3), np.uint8), codec="mpeg4")
    with pytest.raises(UserInputError, match="200:1"):
        sample_frames(path)


def cut(path, fraction: float):
    data = path.read_bytes()
    cut_path = path.with_name("cut_" + path.name)
    cut_path.write_bytes(data[: int(len(data) * fraction)])
    return cut_path


def faststart_copy(path):
    """The same mp4 with its index (moov) first, as web exports do: a cut file still opens, and
    claims more frames than it holds."""
    out_path = path.with_name("faststart_" + path.name)
    with av.open(str(path)) as source, av.open(str(out_path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    data = out_path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")
    return out_path


def test_truncated_mkv_samples_what_is_there(tmp_path):
    path = write_clip(tmp_path / "clip.mkv", indexed_frames(noise=20), fps=CLIP_FPS)
    sampled = sample_frames(cut(path, 0.5))
    assert 2 <= sampled.source_frames < CLIP_FRAMES
    assert sampled.indices == tuple(frame_indices(sampled.source_frames, sampled.count))
    assert_frames_are(sampled, sampled.indices, tolerance=6)


def test_truncated_mp4_with_index_at_the_end_is_refused(tmp_path):
    path = write_clip(tmp_path / "clip.mp4", indexed_frames(noise=20), fps=CLIP_FPS)
    with pytest.raises(UserInputError, match="damaged or incomplete"):
        sample_frames(cut(path, 0.5))


def test_truncated_faststart_mp4_resamples_from_the_frames_that_decode(tmp_path):
    path = faststart_copy(write_clip(tmp_path / "clip.mp4", indexed_frames(noise=20), fps=CLIP_FPS))
    sampled = sample_frames(cut(path, 0.7))
    assert sampled.backend == "pyav"  # decord refuses the file
    assert 2 <= sampled.source_frames < CLIP_FRAMES  # the header said 40
    assert sampled.indices == tuple(frame_indices(sampled.source_frames, sampled.count))
    assert_frames_are(sampled, sampled.indices, tolerance=6)


def test_file_cut_before_its_first_frame(tmp_path):
    path = faststart_copy(write_clip(tmp_path / "clip.mp4", indexed_frames(), fps=CLIP_FPS))
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"mdat") + 60])  # the header, and the start of frame 0
    with pytest.raises(UserInputError, match="damaged or cut off"):
        sample_frames(path)


# ---- the guards around decord -------------------------------------------------------------------

class OverReportingReader:
    """A decord reader whose container claims three times the frames it has."""

    def __init__(self, reader):
        self.reader = reader
        self.requested: list[int] = []

    def __len__(self):
        return 3 * len(self.reader)

    def get_avg_fps(self):
        return self.reader.get_avg_fps()

    def get_batch(self, indices):
        self.requested.extend(indices)
        return self.reader.get_batch(indices)


def test_over_reported_frame_count_is_clamped_to_the_duration(clip, monkeypatch):
    readers = []
    real_open = video._open_decord

    def open_over_reporting(path):
        readers.append(OverReportingReader(real_open(path)))
        return readers[-1]

    monkeypatch.setattr(video, "_open_decord", open_over_reporting)
    sampled = sample_frames(clip)
    assert sampled.backend == "decord"
    assert sampled.source_frames == CLIP_FRAMES  # 5 s x 8 fps, not the 120 claimed
    assert max(readers[0].requested) == CLIP_FRAMES - 1
    assert_frames_are(sampled, CLIP_INDICES)


def test_hanging_decord_falls_back_to_pyav(clip, monkeypatch):
    release = threading.Event()

    def hang(reader, indices):  # as decord does in native code on an over-reported last frame
        release.wait(60)
        raise decord.DECORDError("released")

    monkeypatch.setattr(video, "_decord_get_batch", hang)
    monkeypatch.setattr(video, "DECORD_TIMEOUT_S", 0.3)
    monkeypatch.setattr(video, "DECORD_TIMEOUT_PER_FRAME_S", 0.0)
    started = time.perf_counter()
    try:
        sampled = sample_frames(clip)
    finally:
        release.set()
    assert sampled.backend == "pyav"
    assert time.perf_counter() - started < 10
    assert sampled.indices == CLIP_INDICES
    assert_frames_are(sampled, CLIP_INDICES)
