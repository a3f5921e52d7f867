"""The positions the language model gives each input token (M-RoPE: time, height, width), the way
VideoScore2 was trained: as Qwen's original code, transformers 4.53 (the authors' pin) and vLLM
compute them.

Why this exists: transformers 5.x (5.24 here) starts the text that follows a video at
`video_start + max(grid_h, grid_w) // spatial_merge_size`, ignoring how far the video's time
positions reach, where the original code continues after the video's largest position (over time,
height and width) plus one. For any clip whose time positions reach further than its spatial grid
(at 480p, clips longer than about 15 s) the prompt and the whole answer would sit inside the video's
time range. `engine.build_inputs` passes these positions to `generate`, which then extends them by
one a token, so the prefill and every decoding step follow the original rule.

When to delete it: tests/test_positions.py has a test that transformers' own positions still differ
from the original rule; the day it fails, transformers computes them right, and this module and the
`position_ids` in `build_inputs` can go.
"""

from __future__ import annotations

import itertools

import torch

TEXT, IMAGE, VIDEO = 0, 1, 2  # mm_token_type_ids, as the processor marks each token


def mrope_position_ids(input_ids: torch.Tensor, mm_token_type_ids: torch.Tensor, *, spatial_merge_size: int,
                       tokens_per_second: float, image_grid_thw: torch.Tensor | None = None,
                       video_grid_thw: torch.Tensor | None = None, second_per_grid_ts: torch.Tensor | None = None,
                       attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Position ids of shape (4, batch, length), the layout transformers 5.x's `generate` uses:
    row 0 the plain text positions (for the attention mask), rows 1-3 the M-RoPE positions (time,
    height, width). Padding (attention_mask 0) gets position 0, as in transformers."""
    batch, length = input_ids.shape
    mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    positions = torch.zeros(4, batch, length, dtype=torch.long, device=input_ids.device)
    positions[0] = (mask.long().cumsum(-1) - 1).clamp(min=0).masked_fill(~mask, 0)
    grids = {IMAGE: iter(image_grid_thw if image_grid_thw is not None else []),
             VIDEO: iter(video_grid_thw if video_grid_thw is not None else [])}
    seconds = iter(second_per_grid_ts.tolist() if second_per_grid_ts is not None else [])
    for row in range(batch):
        types = mm_token_type_ids[row][mask[row]].tolist()
        pieces, start = [], 0
        for kind, run in itertools.groupby(types):
            count = len(list(run))
            if kind == TEXT:
                pieces.append(torch.arange(count).expand(3, count) + start)
            else:
                t, h, w = (int(n) for n in next(grids[kind]))
                h, w = h // spatial_merge_size, w // spatial_merge_size
                # An image has one time step; a video's grid steps are second_per_grid_ts seconds apart,
                # tokens_per_second positions a second, truncated as the original code does.
                step = tokens_per_second * next(seconds) if kind == VIDEO else 0
                time = (torch.arange(t) * step).long()
                grid = torch.stack(torch.meshgrid(time, torch.arange(h), torch.arange(w), indexing="ij"))
                pieces.append(grid.reshape(3, -1) + start)
            start = int(pieces[-1].max()) + 1  # the original rule: what follows comes after the largest
        positions[1:, row, mask[row]] = torch.cat(pieces, dim=1).to(positions.device)
    return positions
