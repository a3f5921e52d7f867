"""What the model is told about where each token is: M-RoPE positions and the time step, as the
authors' stack (transformers 4.53, Qwen's original code) gave them, checked on the real model
classes (the toy checkpoint) at the prefill and through decoding, for clips of many shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tools.clips import write_clip
from vs2demo.backends import Generation
from vs2demo.backends.transformers import TransformersBackend, build_inputs
from vs2demo.video import sample_frames
from vs2demo.scoring import frames_record
from vs2demo.settings import ScoreOptions, Settings

PROMPT = "A red ball rolls and bounces across a grey studio floor."


def original_rope_index(input_ids, video_grid_thw, second_per_grid_ts, *, video_token_id, vision_start_token_id,
                        spatial_merge_size, tokens_per_second):
    """Qwen2.5-VL's get_rope_index for one sequence of text and videos, written from Qwen's original
    code (transformers 4.53): videos are found by their tokens, each text run starts after the
    largest position so far. Returns (3, length)."""
    tokens = input_ids.tolist()
    pieces, start, video = [], 0, 0
    video_count = sum(1 for i, token in enumerate(tokens[:-1])
                      if token == vision_start_token_id and tokens[i + 1] == video_token_id)
    for _ in range(video_count):
        end = tokens.index(video_token_id, start)
        t, h, w = (int(n) for n in video_grid_thw[video])
        h, w = h // spatial_merge_size, w // spatial_merge_size
        first = pieces[-1].max() + 1 if pieces else 0
        text_len = end - start
        pieces.append(torch.arange(text_len).view(1, -1).expand(3, -1) + first)
        t_index = (torch.arange(t).view(-1, 1).expand(-1, h * w) * second_per_grid_ts[video] * tokens_per_second).long().flatten()
        h_index = torch.arange(h).view(1, -1, 1).expand(t, -1, w).flatten()
        w_index = torch.arange(w).view(1, 1, -1).expand(t, h, -1).flatten()
        pieces.append(torch.stack([t_index, h_index, w_index]) + text_len + first)
        start = end + t * h * w
        video += 1
    if start < len(tokens):
        first = pieces[-1].max() + 1 if pieces else 0
        pieces.append(torch.arange(len(tokens) - start).view(1, -1).expand(3, -1) + first)
    return torch.cat(pieces, dim=1)


def clip_frames(n: int, height: int, width: int) -> np.ndarray:
    """A bright square crossing a dark frame: a picture that changes, cheap to write."""
    frames = np.full((n, height, width, 3), 30, np.uint8)
    side = max(4, min(height, width) // 4)
    for i in range(n):
        x = (i * 7) % max(1, width - side)
        frames[i, height // 3:height // 3 + side, x:x + side] = 220
    return frames


CLIPS = {  # name: (seconds, fps, height, width)
    "4 s": (4, 8, 240, 320),
    "20 s": (20, 4, 240, 320),
    "60 s": (60, 2, 240, 320),
    "600 s": (600, 1, 120, 160),
    "portrait 10 s": (10, 4, 426, 240),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    return {name: write_clip(folder / f"{name.replace(' ', '_')}.mp4", clip_frames(s * fps, h, w), fps=fps)
            for name, (s, fps, h, w) in CLIPS.items()}


@pytest.fixture(scope="module")
def engine(toy_model_dir):
    return TransformersBackend.load(Settings(model=str(toy_model_dir), quant="none", device="cpu"))


def sample(engine, path):
    """The frames the app samples for this model at the default settings."""
    info = engine.info
    return sample_frames(path, min_pixels=info.min_pixels, max_pixels=info.max_pixels, total_pixels=info.total_pixels)


def reference_for(engine, input_ids, video_grid_thw, second_per_grid_ts):
    config = engine.model.config
    return original_rope_index(
        input_ids, video_grid_thw, second_per_grid_ts, video_token_id=config.video_token_id,
        vision_start_token_id=config.vision_start_token_id,
        spatial_merge_size=config.vision_config.spatial_merge_size,
        tokens_per_second=config.vision_config.tokens_per_second)


@pytest.mark.parametrize("name", list(CLIPS))
def test_the_language_model_gets_the_original_positions_at_the_prefill_and_after(engine, clips, name, monkeypatch):
    from vs2demo.backends import transformers as engine_module

    built = []  # the inputs the engine built
    real_build = engine_module.build_inputs
    monkeypatch.setattr(engine_module, "build_inputs", lambda *a, **k: built.append(real_build(*a, **k)) or built[-1])
    seen = []  # the positions each forward call of the language model was given

    def hook(module, args, kwargs):
        seen.append(kwargs["position_ids"].clone())

    handle = engine.model.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)
    sampled = sample(engine, clips[name])
    try:
        *_, generation = engine.generate(sampled, PROMPT, ScoreOptions(max_new_tokens=16))
    finally:
        handle.remove()
    assert isinstance(generation, Generation)
    [inputs] = built
    # Told the nominal rate the authors tell: a grid step (two frames) is 2 / 2.0 fps = 1 second.
    assert inputs["second_per_grid_ts"].tolist() == [1.0]
    expected = reference_for(engine, inputs["input_ids"][0], inputs["video_grid_thw"], inputs["second_per_grid_ts"])
    assert seen[0].shape[-1] == inputs["input_ids"].shape[1]  # the prefill
    assert torch.equal(seen[0][1:, 0], expected), name  # rows 1-3: time, height, width
    # Decoding goes on one a token after the prefill's last position, on all three axes.
    assert len(seen) > 1
    for step, positions in enumerate(seen[1:], start=1):
        assert positions[1:, 0, -1].tolist() == [int(expected[0, -1]) + step] * 3
    # The record keeps both rates: what the frames really have, what the model was told.
    frames = frames_record(sampled, ScoreOptions())
    assert frames["model_fps"] == 2.0
    assert frames["sampled_fps"] == pytest.approx(frames["count"] / frames["source_frames"] * frames["source_fps"], rel=1e-3)


def test_transformers_own_positions_still_differ_so_the_fix_is_needed(engine, clips):
    # When this fails, transformers computes the original positions itself: delete vs2demo/positions.py
    # and the position_ids in build_inputs.
    sampled = sample(engine, clips["600 s"])
    inputs = build_inputs(engine.processor, sampled, PROMPT, config=engine.model.config)
    library, _ = engine.model.model.get_rope_index(
        inputs["input_ids"], inputs["mm_token_type_ids"], video_grid_thw=inputs["video_grid_thw"],
        second_per_grid_ts=inputs["second_per_grid_ts"], attention_mask=inputs["attention_mask"])
    expected = reference_for(engine, inputs["input_ids"][0], inputs["video_grid_thw"], inputs["second_per_grid_ts"])
    assert torch.equal(inputs["position_ids"][1:, 0], expected)
    video_end = int((inputs["mm_token_type_ids"][0] == 2).nonzero().max()) + 1
    assert torch.equal(library[:, 0, :video_end], expected[:, :video_end])  # up to the video's end they agree
    assert not torch.equal(library[:, 0, video_end:], expected[:, video_end:])  # the text after it does not
    # The text after the video sits inside the video's time range in transformers' positions.
    assert int(library[0, 0, video_end]) <= int(library[0, 0, :video_end].max())


def test_a_padded_batch_gets_each_row_its_own_positions(engine, clips):
    # The toy is trained on left-padded batches: each row's positions are its own, padding gets 0.
    from vs2demo.positions import mrope_position_ids

    rows = [build_inputs(engine.processor, sample(engine, clips[name]), PROMPT,
                         config=engine.model.config) for name in ("4 s", "60 s")]
    length = max(row["input_ids"].shape[1] for row in rows)
    pad = [length - row["input_ids"].shape[1] for row in rows]

    def left_padded(key, fill=0):
        return torch.cat([torch.nn.functional.pad(row[key], (p, 0), value=fill) for row, p in zip(rows, pad)])

    config = engine.model.config
    positions = mrope_position_ids(
        left_padded("input_ids"), left_padded("mm_token_type_ids"), attention_mask=left_padded("attention_mask"),
        video_grid_thw=torch.cat([row["video_grid_thw"] for row in rows]),
        second_per_grid_ts=torch.cat([row["second_per_grid_ts"] for row in rows]),
        spatial_merge_size=config.vision_config.spatial_merge_size,
        tokens_per_second=config.vision_config.tokens_per_second)
    for index, (row, p) in enumerate(zip(rows, pad)):
        assert torch.equal(positions[:, index, p:], row["position_ids"][:, 0])
        assert not positions[:, index, :p].any()
