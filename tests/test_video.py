"""Frame sampling: the reference's arithmetic, every container and codec a user may upload, the
files that must be refused with a clear message, and the guards around decord."""

from __future__ import annotations

import os
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
from tools.clips import write_audio_only, write_clip
from vs2demo.errors import UserInputError
from vs2demo.jobs import Cancelled, CancelToken
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


READERS = dict(video.BACKENDS)


def use_readers(monkeypatch, *names):
    """Make sample_frames try only these readers, in this order."""
    monkeypatch.setattr(video, "BACKENDS", tuple((name, READERS[name]) for name in names))


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


@pytest.mark.parametrize("shape, size", [
    ((3, 50, 70), (56, 84)),  # up
    ((2, 180, 320), (252, 448)),  # up, 16:9
    ((2, 360, 640), (196, 364)),  # down
    ((1, 33, 47), (28, 28)),  # odd sizes
])
def test_resize_is_bit_identical_to_reference(shape, size):
    # The reference: torchvision's v1 resize on the uint8 (n, 3, h, w) tensor decord gives (a
    # channels-last view: the project resizes a planar copy, which must give the same sums).
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    smooth = np.clip(np.cumsum(rng.normal(0, 3, (*shape, 3)), axis=2) + 128, 0, 255).astype(np.uint8)
    for frames in (noise, smooth):
        reference = reference_tvf.resize(torch.from_numpy(frames).permute(0, 3, 1, 2), list(size),
                                         interpolation=InterpolationMode.BICUBIC, antialias=True)
        assert np.array_equal(video._resize(frames, size), reference.permute(0, 2, 3, 1).numpy())


# ---- containers and codecs ----------------------------------------------------------------------

@pytest.mark.parametrize("name, codec, pix_fmt, decord_reads_it", [
    ("h264.mp4", None, None, True),
    ("h264.mkv", None, None, True),
    ("h264.mov", None, None, True),
    ("mpeg4.avi", None, None, True),
    ("vp9.webm", None, None, True),
    ("vp8.webm", "libvpx", None, True),
    ("mjpeg.avi", "mjpeg", "yuvj420p", True),
    ("av1.mkv", "libsvtav1", None, False),  # decord cannot open AV1
    ("av1.mp4", "libsvtav1", None, False),
])
def test_formats_sample_the_right_frames(tmp_path, name, codec, pix_fmt, decord_reads_it):
    path = write_clip(tmp_path / name, indexed_frames(noise=8), fps=CLIP_FPS, codec=codec, pix_fmt=pix_fmt)
    sampled = sample_frames(path)
    assert sampled.backend == "pyav"  # the indexed reader reads them all
    if decord_reads_it:  # the same frames as the reference's reader, bit for bit
        reference = decord.VideoReader(str(path), num_threads=1).get_batch(list(CLIP_INDICES)).asnumpy()
        assert np.array_equal(sampled.frames, video._resize(reference, (sampled.height, sampled.width)))
    assert sampled.indices == CLIP_INDICES
    assert (sampled.source_frames, sampled.source_fps) == (CLIP_FRAMES, CLIP_FPS)
    assert (sampled.source_width, sampled.source_height) == (96, 64)
    assert sampled.duration == pytest.approx(5.0)
    assert (sampled.height, sampled.width) == (280, 392)
    assert_model_sized(sampled)
    assert_frames_are(sampled, CLIP_INDICES)


def test_every_reader_gives_the_same_frames(clip, monkeypatch):
    sampled = {}
    for name in READERS:
        use_readers(monkeypatch, name)
        sampled[name] = sample_frames(clip)
        assert sampled[name].backend == name
    first, *others = sampled.values()
    for other in others:
        assert other.indices == first.indices == CLIP_INDICES
        assert np.array_equal(other.frames, first.frames)


def test_when_the_index_cannot_be_used_decord_reads_the_file(clip, monkeypatch):
    def no_index(path, cancel):
        raise video._BackendFailed("simulated: packets without timestamps")

    monkeypatch.setattr(video, "_index_packets", no_index)
    sampled = sample_frames(clip)
    assert sampled.backend == "decord"
    assert_frames_are(sampled, CLIP_INDICES)


def test_metadata_tells_the_processor_when_frames_are(clip):
    sampled = sample_frames(clip)
    meta = sampled.metadata()
    assert meta.total_num_frames == CLIP_FRAMES and meta.fps == CLIP_FPS
    assert (meta.width, meta.height) == (96, 64) and meta.video_backend == "pyav"
    assert meta.frames_indices == list(CLIP_INDICES) and meta.duration == pytest.approx(5.0)
    assert meta.sampled_fps == pytest.approx(10 / 40 * 8)  # the reference's sample_fps
    assert sampled.timestamps == tuple(i / 8 for i in CLIP_INDICES)
    assert sampled.count == 10


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
    # A 4K frame is over the chunk budget on its own: each frame is resized alone, none is skipped.
    assert sum(n for n, *_ in resized_inputs) == sampled.count == 2
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


@pytest.mark.parametrize("backend", list(READERS))
def test_long_video_keeps_only_the_sampled_frames(long_clip, monkeypatch, backend):
    use_readers(monkeypatch, backend)
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


# ---- the indexed reader: decode only what the sampled frames need ---------------------------------

def test_spans_run_from_each_frames_keyframe_and_merge_where_they_meet():
    # 100 packets, keyframes every 20, no reordering (pts = 10 x decode position).
    index = video._PacketIndex(pts=tuple(range(0, 1000, 10)), keyframe=tuple(i % 20 == 0 for i in range(100)),
                               display=tuple(range(0, 1000, 10)))
    assert index.start_of(450) == 40 and index.start_of(400) == 40 and index.start_of(390) == 20
    # Frames 5 and 8 share a keyframe; 45 needs 40..45; 47 extends that span; 99 needs 80..99.
    assert index.spans([50, 80, 450, 470, 990]) == [(0, 8), (40, 47), (80, 99)]
    assert index.spans([190, 200]) == [(0, 20)]  # 19 needs 0..19, 20 (a keyframe) meets it


def test_spans_are_shared_out_in_runs_of_about_equal_work():
    spans = [(0, 9), (20, 29), (40, 79), (100, 109), (120, 129)]
    assert video._share_out(spans, 1) == [spans]
    assert video._share_out(spans, 2) == [spans[:3], spans[3:]]
    assert video._share_out(spans[:2], 4) == [[spans[0]], [spans[1]]]
    assert sum(video._share_out(spans, 3), []) == spans


def test_reordered_frames_start_from_the_keyframe_before_them_in_time():
    # B-frames: decode order I0 P3 B1 B2 P6 B4 B5 | I7 ... (pts in frame units), keyframes at 0 and 7.
    pts = (0, 3, 1, 2, 6, 4, 5, 7, 9, 8)
    index = video._PacketIndex(pts=pts, keyframe=tuple(p in (0, 7) for p in pts), display=tuple(sorted(pts)))
    assert index.spans([5]) == [(0, 6)]  # B5 is the 7th packet
    assert index.spans([8]) == [(7, 9)]


@pytest.fixture(scope="module")
def short_gop_clip(tmp_path_factory):
    """30 s at 8 fps, a keyframe every 16 frames and B-frames (some of them references): a moving
    textured picture with grain, its brightness 10 + i % 200 at frame i."""
    n, height, width = 240, 48, 64
    rng = np.random.default_rng(3)
    texture = rng.integers(-20, 21, (height, 2 * width, 1), dtype=np.int16)
    path = tmp_path_factory.mktemp("gop") / "gop.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20", "x264-params": "keyint=16:bframes=3:b-adapt=0:b-pyramid=normal"}
        for i in range(n):
            frame = 10 + i % 200 + texture[:, i % width:i % width + width] + rng.integers(-3, 4, (height, width, 1))
            image = np.repeat(np.clip(frame, 0, 255).astype(np.uint8), 3, axis=2)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("max_frames, threads", [(4, 1), (16, 1), (16, 3), (64, 2)])
def test_indexed_reader_seeks_over_what_it_does_not_need(short_gop_clip, max_frames, threads):
    index = video._index_packets(short_gop_clip, CancelToken())
    assert len(index.display) == 240 and sum(index.keyframe) >= 240 // 16
    assert list(index.pts) != sorted(index.pts)  # the clip has B-frames: decode order is not display order
    budgets = video._Budgets(2.0, 4, max_frames, VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS, VIDEO_TOTAL_PIXELS)
    indices = budgets.indices(240, 8.0)
    with video._ResizedFrames(len(indices), budgets) as frames:
        sent = video._decode_indexed(short_gop_clip, index, [index.display[i] for i in indices], frames,
                                     CancelToken(), threads)
        kept = frames.array()
    if max_frames < 64:
        assert sent < 240 * 0.8  # whole stretches were seeked over
        last_wanted = max(index.position(index.display[i]) for i in indices)
        with video._ResizedFrames(len(indices), budgets) as frames, pytest.MonkeyPatch.context() as patch:
            patch.setattr(video, "SEEK_GAP_PACKETS", 10_000)  # every gap decoded through: no seeks
            assert video._decode_indexed(short_gop_clip, index, [index.display[i] for i in indices],
                                         frames, CancelToken(), threads=1) == last_wanted + 1
            assert np.array_equal(frames.array(), kept)
    reference = decord.VideoReader(str(short_gop_clip), num_threads=1).get_batch(indices).asnumpy()
    assert np.array_equal(kept, video._resize(reference, kept.shape[1:3]))


def test_a_container_that_cannot_seek_exactly_is_decoded_through(tmp_path, caplog):
    # MPEG-TS has no index: a seek lands near the keyframe asked for, not on it. The indexed reader
    # sees that and decodes through the gaps instead (decord, next in line, gives wrong frames here).
    rng = np.random.default_rng(5)
    frames = np.clip(indexed_frames(240).astype(np.int16) + rng.integers(-6, 7, (240, 64, 96, 3)), 0, 255)
    path = write_clip(tmp_path / "clip.ts", frames.astype(np.uint8), fps=8, keyframe_every=16)
    with av.open(str(path)) as container:
        every_frame = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    with caplog.at_level("INFO", logger="vs2demo.video"):
        sampled = sample_frames(path, max_frames=4)
    assert sampled.backend == "pyav" and sampled.source_frames == len(every_frame) == 240
    assert "decoding through instead of seeking" in caplog.text
    assert np.array_equal(sampled.frames, video._resize(every_frame[list(sampled.indices)], (sampled.height, sampled.width)))


def test_a_seek_that_lands_off_the_index_is_not_trusted(short_gop_clip, monkeypatch, caplog):
    # An index that has the keyframes wrong (as a damaged or odd file can): seeks land on packets
    # it does not call keyframes. The indexed reader must not hand over frames decoded from there:
    # it decodes through from the start instead.
    index = video._index_packets(short_gop_clip, CancelToken())
    wrong = video._PacketIndex(index.pts, tuple(not key for key in index.keyframe), index.display)
    monkeypatch.setattr(video, "_index_packets", lambda path, cancel: wrong)
    with caplog.at_level("INFO", logger="vs2demo.video"):
        sampled = sample_frames(short_gop_clip, max_frames=4)
    assert sampled.backend == "pyav" and "decoding through instead of seeking" in caplog.text
    reference = decord.VideoReader(str(short_gop_clip), num_threads=1).get_batch(list(sampled.indices)).asnumpy()
    assert np.array_equal(sampled.frames, video._resize(reference, (sampled.height, sampled.width)))


def test_frames_an_edit_list_hides_are_neither_counted_nor_shown(clip, tmp_path):
    # A clip cut without re-encoding (ffmpeg -ss ... -c copy) starts at a keyframe before the cut and
    # says, in an edit list, to hide the frames before it: players show the rest, and so must we.
    # (decord counts the hidden frames too: 40 here.)
    edited = tmp_path / "edited.mp4"
    with av.open(str(clip)) as source, av.open(str(edited), mode="w") as out:
        stream = source.streams.video[0]
        copy = out.add_stream_from_template(stream)
        hidden = round(5 / (CLIP_FPS * stream.time_base))  # 5 frames
        for packet in source.demux(stream):
            if packet.dts is not None:
                packet.pts, packet.dts, packet.stream = packet.pts - hidden, packet.dts - hidden, copy
                out.mux(packet)
    sampled = sample_frames(edited)
    assert sampled.backend == "pyav" and sampled.source_frames == CLIP_FRAMES - 5
    assert sampled.indices == tuple(frame_indices(CLIP_FRAMES - 5, sampled.count))
    assert_frames_are(sampled, [5 + i for i in sampled.indices])


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


def test_devices_and_pipes_are_refused_without_reading_them(tmp_path):
    # /dev/zero would be read forever and a FIFO would block the open; all have a size of 0, but
    # none is an upload that did not finish.
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    for path in ("/dev/zero", "/dev/null", fifo):
        started = time.perf_counter()
        with pytest.raises(UserInputError, match="not a regular file") as info:
            sample_frames(path)
        assert "empty" not in str(info.value) and time.perf_counter() - started < 1


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
    # The index lists frames the file no longer has, and decord refuses it: read from the start.
    assert sampled.backend == "pyav-sequential"
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
    use_readers(monkeypatch, "decord", "pyav-sequential")
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
    use_readers(monkeypatch, "decord", "pyav-sequential")
    started = time.perf_counter()
    try:
        sampled = sample_frames(clip)
    finally:
        release.set()
    assert sampled.backend == "pyav-sequential"
    assert time.perf_counter() - started < 10
    assert sampled.indices == CLIP_INDICES
    assert_frames_are(sampled, CLIP_INDICES)


# ---- cancelling -----------------------------------------------------------------------------------

class CancelAfter(CancelToken):
    """A token that cancels itself at its n-th check: a Stop pressed in the middle of decoding."""

    def __init__(self, checks: int):
        super().__init__()
        self.left = checks

    def check(self):
        self.left -= 1
        if self.left == 0:
            self.cancel()
        super().check()


def decoding_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("vs2demo-decode", "vs2demo-resize")) and t.is_alive()]


# The PyAV readers check at every packet or frame; decord between chunks of frames, and every
# 50 ms while a chunk decodes (this clip's 64 frames are one chunk).
@pytest.mark.parametrize("backend, checks", [("pyav", 50), ("decord", 1), ("pyav-sequential", 50)])
def test_a_cancel_stops_every_reader_in_the_middle_and_leaves_no_thread(long_clip, monkeypatch, backend, checks):
    use_readers(monkeypatch, backend)
    with pytest.raises(Cancelled):
        sample_frames(long_clip, max_frames=64, cancel=CancelAfter(checks))
    assert not decoding_threads()
    sample_frames(long_clip, max_frames=64, cancel=CancelToken())  # a fresh request is not affected


def test_a_cancel_does_not_wait_for_a_stuck_decord(clip, monkeypatch):
    release = threading.Event()

    def hang(reader, indices):
        release.wait(60)
        raise decord.DECORDError("released")

    monkeypatch.setattr(video, "_decord_get_batch", hang)
    use_readers(monkeypatch, "decord", "pyav-sequential")
    token = CancelToken()
    threading.Timer(0.3, token.cancel).start()
    started = time.perf_counter()
    try:
        with pytest.raises(Cancelled):
            sample_frames(clip, cancel=token)
    finally:
        release.set()
    assert time.perf_counter() - started < 1.3  # not DECORD_TIMEOUT_S, and no fallback decode after it


def test_without_decord_every_video_is_read_by_pyav(clean_clip, monkeypatch):
    """decord has wheels for x86-64 only: where it cannot be imported (a Mac, an ARM server) the
    package still imports and reads the same frames with PyAV."""
    import builtins
    import sys

    from vs2demo import video

    real_import = builtins.__import__

    def no_decord(name, *args, **kwargs):
        if name == "decord":
            raise ImportError("No module named 'decord'")
        return real_import(name, *args, **kwargs)

    with_decord = video.sample_frames(clean_clip, max_frames=8)
    monkeypatch.delitem(sys.modules, "decord", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_decord)
    monkeypatch.setattr(video, "BACKENDS", (("decord", video._sample_with_decord), *video.BACKENDS[-1:]))
    without = video.sample_frames(clean_clip, max_frames=8)
    assert without.backend == "pyav-sequential" and (without.frames == with_decord.frames).all()
