"""Load VideoScore2 (or the toy model) once, and score videos with it, streaming the text."""

from __future__ import annotations

import torch

from .prompts import DEFAULT_TEMPLATE, build_messages


def build_inputs(processor, video, prompt: str, template: str = DEFAULT_TEMPLATE):
    """The model's input for one video (a `vs2demo.video.SampledVideo`) and its generation prompt.

    Frames arrive already sampled and resized the reference way, so the processor neither samples
    nor resizes again; the metadata tells it the real frame rate, which sets the temporal position
    scale (`second_per_grid_ts`).
    """
    text = processor.apply_chat_template(build_messages(prompt, template), tokenize=False, add_generation_prompt=True)
    frames = torch.from_numpy(video.frames).permute(0, 3, 1, 2)  # (n, 3, h, w) uint8
    return processor(
        text=[text],
        videos=[frames],
        video_metadata=[video.metadata()],
        do_sample_frames=False,
        do_resize=False,
        return_tensors="pt",
    )
