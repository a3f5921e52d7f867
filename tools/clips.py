"""Synthetic video clips the project makes itself: for the example assets, the tests and the toy
model's training. Written with PyAV, so no ffmpeg binary is needed."""

from __future__ import annotations

from dataclasses import dataclass
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
               pix_fmt: str | None = None, audio: bool = False, crf: int = 20,
               keyframe_every: int | None = None) -> Path:
    """Encode frames (n, h, w, 3) uint8 RGB to `path`; the container follows the suffix.

    Width and height must be even for yuv420p; callers pick even sizes. `crf` applies to libx264
    only (higher: smaller files; noisy clips need it to stay small). x264 output for grainy
    frames is not always the same bytes from run to run (the decoded frames differ slightly).
    `keyframe_every` sets the largest distance between keyframes (the encoder's GOP size).
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
        if keyframe_every:
            stream.codec_context.gop_size = keyframe_every
        if codec in ("libx264",):
            stream.options = {"crf": str(int(crf)), "preset": "veryfast"}
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


# --------------------------------------------------------------------------------------------------
# Synthetic scenes: a coloured ball over a plain background, rendered with numpy.
#
# Each scene varies along the three dimensions the judge scores:
#   quality  -> visual quality           ("clean" sharp and bright, "noisy", "dark", "blurry")
#   colour   -> text-to-video alignment  (against a prompt that names a colour)
#   motion   -> physical consistency     ("smooth": rolls and bounces under gravity;
#                                         "teleport": jumps between places, shrinks and grows,
#                                         sometimes falls upward)
# Rendering is deterministic given the spec, the size, the frame count and the seed.
# --------------------------------------------------------------------------------------------------

BALL_COLOURS = {
    "red": (215, 38, 38),
    "blue": (38, 82, 215),
    "green": (40, 165, 60),
    "yellow": (240, 205, 40),
}
# (wall colour, floor colour): neutral, so the ball's colour is the only strong hue in the frame.
BACKGROUNDS = {
    "studio": ((206, 206, 210), (150, 148, 146)),
    "sand": ((226, 214, 188), (184, 160, 120)),
    "slate": ((168, 176, 186), (104, 110, 120)),
}
QUALITIES = ("clean", "noisy", "dark", "blurry")
MOTIONS = ("smooth", "teleport")
FLOOR_LEVEL = 0.70  # where the wall meets the floor, as a fraction of the height from the top
CONTACT_LEVEL = 0.90  # where the ball touches the floor (the floor is seen in perspective)


@dataclass(frozen=True)
class SceneSpec:
    colour: str = "red"
    background: str = "studio"
    quality: str = "clean"
    motion: str = "smooth"

    def __post_init__(self):
        for value, allowed, what in (
            (self.colour, BALL_COLOURS, "colour"),
            (self.background, BACKGROUNDS, "background"),
            (self.quality, QUALITIES, "quality"),
            (self.motion, MOTIONS, "motion"),
        ):
            if value not in allowed:
                raise ValueError(f"Unknown {what} {value!r}: choose one of {', '.join(allowed)}.")


def _smooth_track(n_frames: int, fps: float, rng: np.random.Generator):
    """Ball centre (x, y) and radius per frame, in units of the frame height, for a ball that rolls
    along the floor and bounces under gravity, losing a little height at every bounce."""
    radius = rng.uniform(0.10, 0.14)
    floor_y = CONTACT_LEVEL - radius
    g = 2.4  # heights per second squared
    x, vx = rng.uniform(0.3, 1.0), rng.choice([-1.0, 1.0]) * rng.uniform(0.35, 0.6)
    y, vy = floor_y - rng.uniform(0.3, 0.5), rng.uniform(-0.8, 0.2)
    xs, ys = [], []
    steps = 8
    dt = 1.0 / (fps * steps)
    for _ in range(n_frames):
        xs.append(x)
        ys.append(y)
        for _ in range(steps):
            vy += g * dt
            y += vy * dt
            x += vx * dt
            if y > floor_y:  # bounce, with restitution
                y, vy = floor_y, -abs(vy) * 0.85
            # width in height units is unknown here: walls are applied by the renderer's aspect.
    return np.array(xs), np.array(ys), np.full(n_frames, radius)


def _teleport_track(n_frames: int, rng: np.random.Generator):
    """A ball that jumps to random places every few frames, changes size at every jump, and in some
    stretches drifts upward faster and faster: motion no physical ball makes."""
    xs, ys, rs = [], [], []
    r = rng.uniform(0.06, 0.26)
    while len(xs) < n_frames:
        hold = int(rng.integers(1, 4))
        x, y = rng.uniform(0.15, 1.2), rng.uniform(0.15, 0.8)
        # Each jump makes the ball at least 1.6 times bigger or smaller.
        factor = rng.uniform(1.6, 2.5)
        if r * factor <= 0.26 and (r / factor < 0.06 or rng.random() < 0.5):
            r *= factor
        else:
            r /= factor
        r = float(np.clip(r, 0.06, 0.26))
        upward = rng.random() < 0.35
        for k in range(hold):
            xs.append(x)
            ys.append(y - (0.05 * k * k if upward else 0.0))
            rs.append(r * (1.0 + 0.25 * k * (1 if rng.random() < 0.5 else -1)))
    return np.array(xs[:n_frames]), np.array(ys[:n_frames]), np.clip(np.array(rs[:n_frames]), 0.03, 0.3)


def _blur(frames: np.ndarray, radius: int) -> np.ndarray:
    """Blur (n, h, w, c) float32 frames by about `radius` pixels: average over blocks of
    2*radius pixels, then scale back up smoothly (much cheaper than a wide kernel)."""
    import torch
    import torch.nn.functional as F

    n, h, w, _ = frames.shape
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    small = F.adaptive_avg_pool2d(x, (max(1, h // (2 * radius)), max(1, w // (2 * radius))))
    x = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def _box(cx: float, cy: float, rx: float, ry: float, height: int, width: int):
    """Slices of the pixels within (rx, ry) of (cx, cy), coordinates in units of the height."""
    y0, y1 = max(0, int((cy - ry) * height) - 1), min(height, int((cy + ry) * height) + 2)
    x0, x1 = max(0, int((cx - rx) * height) - 1), min(width, int((cx + rx) * height) + 2)
    if y0 >= y1 or x0 >= x1:
        return None
    return slice(y0, y1), slice(x0, x1)


def render_scene(spec: SceneSpec, n_frames: int = 28, height: int = 240, width: int = 320,
                 seed: int = 0, fps: float = 8.0) -> np.ndarray:
    """Render a scene as (n_frames, height, width, 3) uint8 RGB frames; deterministic given the
    arguments. `fps` only sets the physics time step of smooth motion."""
    rng = np.random.default_rng(seed)
    aspect = width / height
    if spec.motion == "smooth":
        xs, ys, rs = _smooth_track(n_frames, fps, rng)
        # Bounce off the side walls by folding x into [r, aspect - r].
        span = aspect - 2 * rs[0]
        folded = np.mod(xs - rs[0], 2 * span)
        xs = rs[0] + np.where(folded > span, 2 * span - folded, folded)
    else:
        xs, ys, rs = _teleport_track(n_frames, rng)
        xs = np.clip(xs * aspect / 1.33, rs, aspect - rs)

    wall, floor = (np.array(c, dtype=np.float32) for c in BACKGROUNDS[spec.background])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) / height
    # Wall with a gentle vertical gradient, floor darkening towards the camera.
    background = np.where(
        (yy < FLOOR_LEVEL)[..., None],
        wall * (0.92 + 0.08 * (yy / FLOOR_LEVEL))[..., None],
        floor * (1.0 - 0.25 * ((yy - FLOOR_LEVEL) / (1 - FLOOR_LEVEL + 1e-6)))[..., None],
    ).astype(np.float32)
    colour = np.array(BALL_COLOURS[spec.colour], dtype=np.float32)

    frames = np.repeat(background[None], n_frames, axis=0)
    for i in range(n_frames):
        img = frames[i]
        x, y, r = xs[i], ys[i], rs[i]
        if spec.motion == "smooth":
            # A soft shadow on the floor under the ball, smaller when the ball is high.
            lift = max(0.0, CONTACT_LEVEL - r - y)
            sr = r * (1.0 - 0.5 * min(lift / 0.5, 1.0))
            box = _box(x, CONTACT_LEVEL, sr, 0.25 * sr, height, width)
            if box is not None:
                sy, sx = box
                d = ((xx[sy, sx] - x) / sr) ** 2 + ((yy[sy, sx] - CONTACT_LEVEL) / (0.25 * sr)) ** 2
                img[sy, sx] *= (1.0 - 0.35 * np.clip(1.0 - d, 0.0, 1.0))[..., None]
        box = _box(x, y, r, r, height, width)
        if box is None:
            continue
        by, bx = box
        px, py = xx[by, bx], yy[by, bx]
        dist = np.sqrt((px - x) ** 2 + (py - y) ** 2)
        # Shading: a highlight up and to the left, darker towards the rim.
        hl = np.sqrt((px - (x - 0.35 * r)) ** 2 + (py - (y - 0.35 * r)) ** 2) / (1.6 * r)
        ball = np.clip(colour * np.clip(1.25 - hl, 0.55, 1.25)[..., None], 0, 255)
        cover = np.clip((r - dist) * height + 0.5, 0.0, 1.0)[..., None]  # anti-aliased rim
        img[by, bx] = img[by, bx] * (1 - cover) + ball * cover

    if spec.quality == "noisy":
        # Heavy grain, a little coarser than one pixel (as sensor noise looks after demosaicing):
        # a strong fixed pattern plus a weaker part that changes every frame. (All-changing grain
        # this strong makes files of megabytes.)
        hh, hw = (height + 1) // 2, (width + 1) // 2
        grain = rng.normal(0.0, 55.0, size=(1, hh, hw, 3)) + rng.normal(0.0, 25.0, size=(n_frames, hh, hw, 1))
        frames += np.repeat(np.repeat(grain.astype(np.float32), 2, axis=1), 2, axis=2)[:, :height, :width]
    elif spec.quality == "dark":
        frames = frames * 0.11
    elif spec.quality == "blurry":
        radius = max(1, round(0.025 * min(height, width)))
        frames = _blur(frames, radius)
    return np.clip(frames + 0.5, 0, 255).astype(np.uint8)



# --------------------------------------------------------------------------------------------------
# Other content: what users upload is rarely a ball. Plain colour fields, noise, gradients, stripes,
# checkerboards, moving squares, flicker and black clips, for the toy's training and the tests of
# inputs unlike its training scenes. Deterministic given the arguments.
# --------------------------------------------------------------------------------------------------

PATTERNS = ("plain", "noise", "gradient", "stripes", "checker", "squares", "flicker", "black")


def render_pattern(kind: str, n_frames: int = 16, height: int = 240, width: int = 320, seed: int = 0,
                   colour=None) -> np.ndarray:
    """(n_frames, height, width, 3) uint8 RGB frames of a non-ball clip of `kind` (one of PATTERNS).

    `colour` (an RGB triple, or a name in BALL_COLOURS) sets the main colour of plain, gradient,
    stripes, checker and flicker clips; by default one is drawn from the seed. Patterns drift or
    change a little over time (stripes scroll, squares move, noise is new every frame)."""
    if kind not in PATTERNS:
        raise ValueError(f"Unknown pattern {kind!r}: choose one of {', '.join(PATTERNS)}.")
    rng = np.random.default_rng(seed)
    if isinstance(colour, str):
        colour = BALL_COLOURS[colour]
    main = np.array(colour if colour is not None else rng.integers(0, 256, 3), dtype=np.float32)
    other = np.array(rng.integers(0, 256, 3), dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = np.arange(n_frames, dtype=np.float32)[:, None, None, None]
    if kind == "plain":
        frames = np.broadcast_to(main, (n_frames, height, width, 3)).copy()
    elif kind == "black":
        frames = np.full((n_frames, height, width, 3), float(rng.integers(0, 6)), dtype=np.float32)
    elif kind == "noise":
        if rng.random() < 0.5:  # colour noise
            frames = rng.integers(0, 256, size=(n_frames, height, width, 3)).astype(np.float32)
        else:  # grey noise around a level
            level = rng.uniform(60, 200)
            grey = rng.normal(level, rng.uniform(30, 80), size=(n_frames, height, width, 1))
            frames = np.repeat(grey, 3, axis=-1).astype(np.float32)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / max(height, width)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
        shift = rng.uniform(-0.02, 0.02)
        ramp = np.clip(ramp[None] + shift * t[..., 0], 0, 1)[..., None]
        frames = main * ramp + other * (1 - ramp)
    elif kind == "stripes":
        period = rng.uniform(4, max(5.0, min(height, width) / 2))
        angle = rng.choice([0.0, np.pi / 2, rng.uniform(0, np.pi)])
        phase = (np.cos(angle) * xx + np.sin(angle) * yy)[None] / period + rng.uniform(0.02, 0.2) * t[..., 0]
        on = (np.mod(phase, 1.0) < 0.5)[..., None]
        frames = np.where(on, main, other)
    elif kind == "checker":
        cell = int(rng.integers(2, max(3, min(height, width) // 4)))
        on = ((yy // cell + xx // cell) % 2 == 0)[None, ..., None]
        frames = np.broadcast_to(np.where(on, main, other), (n_frames, height, width, 3)).copy()
    elif kind == "squares":
        frames = np.broadcast_to(other * 0.6 + 40, (n_frames, height, width, 3)).copy()
        for _ in range(int(rng.integers(1, 5))):
            size = rng.uniform(0.1, 0.4) * min(height, width)
            fill = rng.integers(0, 256, 3).astype(np.float32)
            x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
            vx, vy = rng.uniform(-0.05, 0.05) * width, rng.uniform(-0.05, 0.05) * height
            for i in range(n_frames):
                x, y = (x0 + vx * i) % width, (y0 + vy * i) % height
                sy = slice(int(y), int(min(height, y + size)))
                sx = slice(int(x), int(min(width, x + size)))
                frames[i, sy, sx] = fill
    else:  # flicker: a plain field whose brightness jumps from frame to frame
        levels = rng.uniform(0.1, 1.0, size=(n_frames, 1, 1, 1)).astype(np.float32)
        frames = np.broadcast_to(main * levels, (n_frames, height, width, 3)).copy()
    return np.clip(frames + 0.5, 0, 255).astype(np.uint8)


# The example clips shipped in assets/: pairs that differ in one dimension only.
EXAMPLE_PROMPT = "A red ball rolls and bounces across a grey studio floor."
EXAMPLES = (
    ("red_ball_clean.mp4", SceneSpec("red", "studio", "clean", "smooth"), EXAMPLE_PROMPT,
     "reference: clean, matching prompt, plausible motion"),
    ("red_ball_noisy.mp4", SceneSpec("red", "studio", "noisy", "smooth"), EXAMPLE_PROMPT,
     "heavy noise: the reference scene and prompt, lower visual quality"),
    ("red_ball_dark.mp4", SceneSpec("red", "studio", "dark", "smooth"), EXAMPLE_PROMPT,
     "very dark: the reference scene and prompt, lower visual quality"),
    ("blue_ball_clean.mp4", SceneSpec("blue", "studio", "clean", "smooth"), EXAMPLE_PROMPT,
     "a blue ball for a red-ball prompt: lower text alignment"),
    ("red_ball_teleport.mp4", SceneSpec("red", "studio", "clean", "teleport"), EXAMPLE_PROMPT,
     "a ball that jumps, shrinks and grows: lower physical consistency"),
    ("green_ball_sand.mp4", SceneSpec("green", "sand", "clean", "smooth"),
     "A green ball bouncing on a sandy floor.", "another matching, clean, plausible clip"),
)


def make_example_clips(out_dir, n_frames: int = 28, fps: float = 8.0, height: int = 252,
                       width: int = 448, seed: int = 7, max_bytes: int = 280_000) -> list[dict]:
    """Write the example clips and `examples.csv` (columns video, prompt, shows) into `out_dir`.

    Clips in a pair share the seed, so they differ only in the one property they illustrate.
    Returns the rows of the CSV (video is the file name, relative to out_dir).
    """
    import csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, spec, prompt, shows in EXAMPLES:
        frames = render_scene(spec, n_frames=n_frames, height=height, width=width, seed=seed, fps=fps)
        # Grainy clips compress badly: raise the CRF until the file is small enough to ship.
        for crf in (20, 26, 30, 33, 36, 40):
            write_clip(out / name, frames, fps=fps, crf=crf)
            if (out / name).stat().st_size <= max_bytes:
                break
        rows.append({"video": name, "prompt": prompt, "shows": shows})
    with open(out / "examples.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["video", "prompt", "shows"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(argv=None) -> None:
    """`python -m tools.clips [DIR]`: write the example clips and their prompts (default: assets)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tools.clips", description="Write the example clips and examples.csv.")
    parser.add_argument("dir", nargs="?", default="assets")
    for example in make_example_clips(parser.parse_args(argv).dir):
        print(f"{example['video']}: {example['prompt']}")


if __name__ == "__main__":
    main()
