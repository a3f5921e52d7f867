"""Where it looked: the attention of the step that wrote each score's digit, over the video's frames
and over the generation prompt's words (issue #26).

What is measured. For each dimension, the query is the position whose logits gave that score's
p(1..5) (the token just before the digit). Its attention row (softmax over every earlier token) is
taken in every layer of the language model, averaged over the heads, then averaged over the layers
(`LAYER_CHOICES`: all of them by default, or the later half). The row sums to 1; the record keeps the
share on all visual tokens, the share on the prompt's words, and within each, how it divides among the
video's temporal patches and the prompt's words (`attention_block`; the format is checked by
`record_schema.check_attention`). Qwen2.5-VL merges two consecutive frames into one temporal patch
before the language model sees them, so attention can only be given per patch (a pair of frames),
never per frame.

What it cannot say. Attention is where the row put its weight at one step, not why the score is what
it is: a token may be attended to and not matter, or matter through earlier layers' mixing without
being attended to here (a visual token's hidden state already carries its neighbours'). Averaging over
heads and layers hides heads that disagree. "Do those frames matter?" (options.replace_frames) is the
check that asks the model itself: score again with the most attended frames replaced.

Why mean over heads and all layers: it is the plain summary with no parameter to tune (attention
rollout and per-layer picks need choices a reader cannot check). The choice of layers matters: on the
toy, all layers and the later half agree on the most attended patch for 17 of 18 scores but on the
most attended word for only 1 of 18 (BENCHMARKS.md), so `Settings.attention_layers` (VS2_ATTENTION_LAYERS,
`--attention-layers`) offers the later half, and the record says which layers were averaged.

How it is measured without giving up the fast kernel. An attention function registered with
transformers' `AttentionInterface` computes each layer's output with the usual kernel (sdpa) and, while
a probe is active in this thread (a contextvar, so requests served at the same time in other threads
are untouched), also the softmax rows of the few query positions: q_sel @ k^T * scaling plus the
causal mask, keys shared by grouped heads without copying them, reduced over heads at once and summed
over layers into one (queries x keys) buffer; never a full attention matrix. The pass runs right after
generation, on generation's own cache cropped before the first query: only the answer's tokens from the
first score's digit step to the last (a few dozen) are run again, with the positions generation gave
them (vs2demo.positions), so it costs about one decoding step over those tokens, far less than a prefill.
"""

from __future__ import annotations

import contextvars
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .positions import TEXT, VIDEO, mrope_position_ids
from .prompts import PLACEHOLDER, load_template, render_prompt
from .record_schema import ATTENTION_VERSION as VERSION
from .record_schema import MAX_ATTENTION_WORDS as MAX_WORDS  # a longer prompt's last words share the last entry
from .record_schema import MAX_WORD_CHARS
from .settings import ATTENTION_LAYERS as LAYER_CHOICES

QUERY = "the position that predicts the score's digit"
DIGITS = 4  # the record keeps shares to 4 decimals

# The attention implementations a probe can wrap: the name this app registers for each.
WRAPPED = {"sdpa": "vs2demo_probe_sdpa", "eager": "vs2demo_probe_eager"}

_ACTIVE: contextvars.ContextVar["RowCollector | None"] = contextvars.ContextVar("vs2demo_attention_probe", default=None)
_INSTALL_LOCK = threading.Lock()


def layer_range(choice: str, layers: int) -> tuple[int, int]:
    """(first, last), inclusive and 0-based, of the layers `choice` (LAYER_CHOICES) averages over:
    "all", or "later", the later half (14-27 of VideoScore2's 28)."""
    if choice not in LAYER_CHOICES:
        raise ValueError(f"attention layers must be one of {', '.join(LAYER_CHOICES)}, not {choice!r}")
    return (0, layers - 1) if choice == "all" else (layers // 2, layers - 1)


# ---- the rows ------------------------------------------------------------------------------------

class RowCollector:
    """Sums, over the chosen layers, the head-averaged softmax rows of the query positions."""

    def __init__(self, queries: torch.Tensor, layers: tuple[int, int]):
        self.queries = queries  # (Q,) positions in the sequence
        self.first, self.last = layers
        self.total: torch.Tensor | None = None  # (Q, keys), float32
        self.layers_seen = 0

    def add(self, module, query: torch.Tensor, key: torch.Tensor, attention_mask, scaling: float) -> None:
        if not self.first <= module.layer_idx <= self.last:
            return
        rows = softmax_rows(query, key, attention_mask, scaling, self.queries.to(query.device))
        self.total = rows if self.total is None else self.total + rows
        self.layers_seen += 1

    def mean(self) -> torch.Tensor:
        if self.total is None:
            raise RuntimeError("the attention probe saw no layer of the language model")
        return self.total / self.layers_seen


def softmax_rows(query: torch.Tensor, key: torch.Tensor, attention_mask, scaling: float,
                 queries: torch.Tensor) -> torch.Tensor:
    """The attention rows of `queries` (indices into this pass's queries), averaged over heads: (Q,
    keys), float32. `query` (1, heads, length, d), `key` (1, kv_heads, keys, d): the last `length`
    keys are this pass's own, those before come from the cache. Heads h*g..h*g+g-1 share key head h
    (GQA), read without repeating the keys. `attention_mask`: None (causal), boolean (True attends)
    or additive, of shape (1, 1, length, keys)."""
    _, heads, length, dim = query.shape
    kv_heads, keys = key.shape[1], key.shape[2]
    groups = heads // kv_heads
    selected = query[0, :, queries, :].float().reshape(kv_heads, groups * len(queries), dim)
    scores = torch.matmul(selected, key[0].float().transpose(-1, -2)) * scaling  # (kv, g*Q, keys)
    scores = scores.reshape(heads, len(queries), keys)
    if attention_mask is None:
        allowed = torch.arange(keys, device=query.device)[None, :] <= (queries + keys - length)[:, None]
        scores = scores.masked_fill(~allowed, float("-inf"))
    else:
        mask = attention_mask[0, 0, queries, :keys]
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.float()
    return torch.softmax(scores, dim=-1).mean(dim=0)


def _probed(base):
    """An attention function: `base` (the model's usual kernel) for the output, and the rows for an
    active probe of this thread's language-model layers (the vision tower's blocks have no layer_idx)."""

    def attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
        collector = _ACTIVE.get()
        if collector is not None and getattr(module, "layer_idx", None) is not None:
            collector.add(module, query, key, attention_mask,
                          scaling if scaling is not None else query.shape[-1] ** -0.5)
        return base(module, query, key, value, attention_mask, scaling=scaling, **kwargs)

    return attention


def install(model) -> None:
    """Make the language model's attention the probing wrapper of its own kernel (sdpa or eager).
    Without an active probe the wrapper is that kernel, so answers are unchanged; it is set once, on
    the text config only (the vision tower keeps its kernel)."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, eager_mask, sdpa_mask
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import eager_attention_forward

    with _INSTALL_LOCK:
        current = model.config.text_config._attn_implementation
        if current in WRAPPED.values():
            return
        if current not in WRAPPED:
            raise ValueError(f"the attention probe wraps sdpa or eager attention, not {current!r}")
        bases = {"sdpa": (sdpa_attention_forward, sdpa_mask), "eager": (eager_attention_forward, eager_mask)}
        for name, wrapped in WRAPPED.items():
            kernel, mask = bases[name]
            AttentionInterface.register(wrapped, _probed(kernel))
            AttentionMaskInterface.register(wrapped, mask)  # the same masks as the kernel's own
        model.set_attn_implementation({"text_config": WRAPPED[current]})


@contextmanager
def probing(collector: RowCollector):
    token = _ACTIVE.set(collector)
    try:
        yield collector
    finally:
        _ACTIVE.reset(token)


def extended_inputs(model, inputs, answer_ids: list[int]) -> dict:
    """The model's input for the prompt followed by `answer_ids`, with the positions generation gave
    them (the original M-RoPE rule: text goes on one position a token after the prompt)."""
    device = inputs["input_ids"].device
    answer = torch.tensor([answer_ids], dtype=inputs["input_ids"].dtype, device=device)
    ids = torch.cat([inputs["input_ids"], answer], dim=1)
    types = torch.cat([inputs["mm_token_type_ids"], torch.full_like(answer, TEXT).to(inputs["mm_token_type_ids"].dtype)],
                      dim=1)
    mask = torch.ones_like(ids)
    vision = model.config.vision_config
    positions = mrope_position_ids(ids, types, spatial_merge_size=vision.spatial_merge_size,
                                   tokens_per_second=vision.tokens_per_second,
                                   video_grid_thw=inputs["video_grid_thw"],
                                   second_per_grid_ts=inputs["second_per_grid_ts"], attention_mask=mask)
    return {**inputs, "input_ids": ids, "mm_token_type_ids": types, "attention_mask": mask, "position_ids": positions}


def probe_rows(model, inputs, answer_ids: list[int], steps: list[int], layers: tuple[int, int], cache):
    """(rows, logits): for each answer step in `steps` (0-based: the step that wrote the digit), the
    head- and layer-averaged attention row of the position that predicts it over every position up
    to the last of them, (Q, keys), and that position's logits, (Q, vocabulary).

    `cache` holds the keys and values of at least every position before the first query (generation's
    own cache of the prompt and the answer): it is cropped there, and only the answer's tokens from
    the first query to the last run again, in one pass, with the positions generation gave them. So the
    vision encoder and the prompt are not run again; the logits of other positions are never computed."""
    install(model)
    prompt_length = inputs["input_ids"].shape[1]
    positions = [prompt_length + step - 1 for step in steps]
    first, last = min(positions), max(positions)
    full = extended_inputs(model, inputs, answer_ids[:max(steps)])
    cache.crop(first - cache.get_seq_length())
    device = full["input_ids"].device
    queries = torch.tensor(positions, device=device) - first
    with torch.inference_mode(), probing(RowCollector(queries, layers)) as collector:
        output = model(input_ids=full["input_ids"][:, first:last + 1],
                       attention_mask=torch.ones(1, last + 1, dtype=torch.long, device=device),
                       position_ids=full["position_ids"][:, :, first:last + 1], cache=cache, use_cache=True,
                       logits_to_keep=queries)
    return collector.mean(), output.logits[0].float()


# ---- keys to patches and words -------------------------------------------------------------------

@dataclass(frozen=True)
class KeyMap:
    """Which key positions belong to which temporal patch and which prompt word."""

    patch_of_key: torch.Tensor  # (keys,) long: the patch of each visual token, -1 elsewhere
    patches: list[list[int]]  # per patch, the positions of the frames it merges
    word_tokens: list[tuple[int, int, float]]  # (key position, word, weight): a token split over words shares
    words: list[str]


def patch_map(mm_token_type_ids: torch.Tensor, video_grid_thw: torch.Tensor, merge_size: int,
              temporal_patch_size: int, frames: int) -> tuple[torch.Tensor, list[list[int]]]:
    """(the patch of each key, -1 if not visual; the frames each patch merges). Visual tokens come
    in time order, (h * w) / merge^2 of them a temporal patch (video_grid_thw's t, h, w)."""
    t, h, w = (int(n) for n in video_grid_thw[0])
    per_patch = h * w // merge_size ** 2
    visual = (mm_token_type_ids[0] == VIDEO).nonzero().flatten()
    if len(visual) != t * per_patch:
        raise ValueError(f"{len(visual)} visual tokens, not the {t} x {per_patch} the grid says")
    patch_of_key = torch.full(mm_token_type_ids.shape[1:], -1, dtype=torch.long)
    patch_of_key[visual.cpu()] = torch.arange(len(visual)) // per_patch
    patches = [[frame for frame in range(p * temporal_patch_size, (p + 1) * temporal_patch_size) if frame < frames]
               for p in range(t)]
    return patch_of_key, patches


def prompt_words(prompt: str) -> list[tuple[str, int, int]]:
    """The prompt's words as `prompt.split()` gives them, each with its (start, end) characters."""
    words, at = [], 0
    for word in prompt.split():
        start = prompt.index(word, at)
        at = start + len(word)
        words.append((word, start, at))
    return words


def word_map(pieces: list[str], prompt_at: int, prompt: str) -> tuple[list[tuple[int, int, float]], list[str]]:
    """((token position, word, weight) for every token overlapping a word of the prompt, the words).
    `pieces`: each input token's text (special tokens ""); `prompt_at`: where the prompt starts in
    their joined text. A token over several words gives each an equal part; words past MAX_WORDS
    share the last entry, which then reads "… (N more)"."""
    words = prompt_words(prompt)
    labels = [word if len(word) <= MAX_WORD_CHARS else word[:MAX_WORD_CHARS - 1] + "…" for word, _, _ in words]
    if len(words) > MAX_WORDS:
        labels = labels[:MAX_WORDS - 1] + [f"… ({len(words) - MAX_WORDS + 1} more)"]
    entry = [min(number, MAX_WORDS - 1) for number in range(len(words))]
    pairs, start = [], 0
    for position, piece in enumerate(pieces):
        end = start + len(piece)
        if start < prompt_at + len(prompt) and prompt_at < end:  # the prompt's tokens only
            over = [number for number, (_, first, last) in enumerate(words)
                    if start < prompt_at + last and prompt_at + first < end]
            pairs.extend((position, entry[number], 1 / len(over)) for number in over)
        start = end
    return pairs, labels


def prompt_start(pieces: list[str], prompt: str, template: str) -> int:
    """Where the generation prompt starts in the joined text of the input's tokens: after the
    template's text before its placeholder, inside the rendered message."""
    message = render_prompt(prompt, template)
    found = "".join(pieces).find(message)
    if found < 0:
        raise ValueError("the prompt's message was not found in the model's input")
    return found + len(load_template(template).split(PLACEHOLDER)[0])


# ---- the record's block --------------------------------------------------------------------------

def rounded_shares(values: list[float]) -> list[float]:
    """Shares that sum to 1, to DIGITS decimals, that sum to 1 exactly in those units (largest
    remainders get the units rounding down left over): 768 shares rounded one by one can miss 1 by
    0.04. Empty stays empty; all zeros stay zeros."""
    total = sum(values)
    if not values or total <= 0:
        return [0.0 for _ in values]
    unit = 10 ** DIGITS
    exact = [value / total * unit for value in values]
    floors = [int(share) for share in exact]
    for index in sorted(range(len(exact)), key=lambda i: floors[i] - exact[i])[:unit - sum(floors)]:
        floors[index] += 1
    return [count / unit for count in floors]


def dimension_shares(row: torch.Tensor, keys: KeyMap) -> dict:
    """One score's row (over the keys, summing to 1) as the record keeps it."""
    row = row.double().cpu()[:len(keys.patch_of_key)]  # the prompt's keys (the answer's get the rest)
    visual = row[keys.patch_of_key >= 0]
    per_patch = torch.zeros(len(keys.patches), dtype=torch.double).index_add_(
        0, keys.patch_of_key[keys.patch_of_key >= 0], visual)
    per_word = [0.0] * len(keys.words)
    for position, word, weight in keys.word_tokens:
        per_word[word] += float(row[position]) * weight
    return {"visual": round(float(visual.sum()), DIGITS), "prompt": round(sum(per_word), DIGITS),
            "patches": rounded_shares(per_patch.tolist()), "words": rounded_shares(per_word)}


def attention_block(rows: torch.Tensor, dimensions: list[str], keys: KeyMap, layers: tuple[int, int],
                    of_layers: int) -> dict:
    """The record's `attention`: how it was aggregated, the patches and words, and per dimension
    (in `dimensions`' order, one row each) the shares."""
    return {
        "version": VERSION,
        "aggregation": {"heads": "mean", "layers": list(layers), "of_layers": of_layers, "query": QUERY,
                        "backend": "transformers"},
        "patches": keys.patches,
        "words": keys.words,
        "dimensions": {dim: dimension_shares(row, keys) for dim, row in zip(dimensions, rows)},
    }


# ---- reading a block -----------------------------------------------------------------------------

def top_patches(block: dict, dimension: str, count: int = 3) -> list[tuple[int, list[int], float]]:
    """The `count` patches `dimension`'s score attended to most, most first: (patch, its frame
    positions, its share of the visual attention)."""
    shares = block["dimensions"][dimension]["patches"]
    order = sorted(range(len(shares)), key=lambda i: (-shares[i], i))[:count]
    return [(i, block["patches"][i], shares[i]) for i in order]


def top_words(block: dict, dimension: str, count: int = 5) -> list[tuple[str, float]]:
    """The `count` prompt words `dimension`'s score attended to most, most first, with their share
    of the prompt's attention (a word said twice is two entries)."""
    shares = block["dimensions"][dimension]["words"]
    order = sorted(range(len(shares)), key=lambda i: (-shares[i], i))[:count]
    return [(block["words"][i], shares[i]) for i in order]


def summary_lines(block: dict, timestamps: list[float], labels: dict[str, str]) -> list[str]:
    """Where each score looked, in words for a terminal: per dimension, its shares on the video and
    the prompt, its top 3 patches with their frames' times and its top 5 words."""
    aggregation = block["aggregation"]
    first, last = aggregation["layers"]
    lines = [f"where it looked (attention of the step before each score's digit; mean over heads and layers "
             f"{first}-{last} of {aggregation['of_layers']}; a patch is the pair of frames the model merges):"]
    for dim, shares in block["dimensions"].items():
        lines.append(f"  {labels.get(dim, dim)}: {shares['visual']:.0%} on the video, {shares['prompt']:.0%} on the prompt")
        patches = []
        for number, frames, share in top_patches(block, dim):
            times = "-".join(f"{timestamps[f]:.1f}" for f in frames) if all(f < len(timestamps) for f in frames) else "?"
            patches.append(f"{number + 1} (frames {'+'.join(str(f) for f in frames)}, {times} s) {share:.0%}")
        lines.append("    patches: " + ("; ".join(patches) or "none"))
        words = [f"{word!r} {share:.0%}" for word, share in top_words(block, dim)]
        lines.append("    words: " + (", ".join(words) or "none (no prompt)"))
    return lines
