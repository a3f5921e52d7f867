"""A toy VideoScore2: a tiny Qwen2.5-VL (0.5 M parameters) built and trained offline in under a
minute on two CPU cores.

It has the real classes, files and input format of the hub checkpoint, so the app, the tests and
the command line run without downloading 16 GB; `config.vs2demo_toy` makes the app say so ("toy
model: its scores mean nothing"), and `config.vs2demo_frame_pixels` gives the small per-frame pixel
budget the engine must sample with. Trained on synthetic clips of a coloured ball
(`tools.clips.render_scene`), it writes VideoScore2's trained answer format:

    <think>Heavy noise covers every frame. The prompt asks for red, but the video shows blue. It
    rolls and bounces smoothly under gravity.</think>

    (1) visual quality: 2
    (2) text-to-video alignment: 1
    (3) physical/common-sense consistency: 4

and its scores follow what it sees: visual quality 4 sharp and bright, 2 grainy, 1 dark (blur is
not among what it measures); alignment 4 when the ball has the colour the prompt names, 1 when not,
3 when too dark to tell; physical consistency 4 for a ball that rolls and bounces, 1 for one that
jumps about and changes size, 3 when too dark to tell.

How, in a CPU half-minute: the vision tower is hand-set (no training) to measure what the scenes
vary in (brightness, grain, how much of each colour, how much the ball's size changes between
frames); in the language model, two attention heads of layer 0 start wired, one to average those
measurements into every text position, one to remember the colour words of the prompt, and one MLP
unit to compare the two colours; the rest of the language model (embeddings, other heads, layer 1,
the output layer) is trained to write the rationale and the scores. See `design_vision`,
`prime_video_attention` and `prime_colour_attention`.

    python -m tools.toy OUT_DIR
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tools.clips import BACKGROUNDS, BALL_COLOURS, MOTIONS, SceneSpec, render_scene
from vs2demo.prompts import TEMPLATES, load_template

# The per-frame pixel budget the engine must use for this model (instead of the reference's
# 128*28*28 .. 768*28*28): a 4:3 frame becomes 84x112 pixels, 3x4 = 12 visual tokens per pair of
# frames; a 16:9 frame 84x140, 15 tokens.
TOY_FRAME_PIXELS = {"min_pixels": 56 * 56, "max_pixels": 112 * 112}

# Qwen2.5-VL's special tokens, in the hub tokenizer's order (there ids 151643..151656; here they
# follow the small BPE vocabulary in the same order).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2-VL's chat template as the hub checkpoints ship it (the default system turn included).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# --------------------------------------------------------------------------------------------------
# What the toy is taught to say.
# --------------------------------------------------------------------------------------------------

QUALITY_SENTENCES = {
    "clean": "The frames are sharp and well lit.",
    "noisy": "Heavy noise covers every frame.",
    "dark": "Everything is very dark and hard to see.",
    "blurry": "The frames are blurry and lack detail.",
}
QUALITY_SCORES = {"clean": 4, "blurry": 3, "noisy": 2, "dark": 1}
MOTION_SENTENCES = {
    "smooth": "It rolls and bounces smoothly under gravity.",
    "teleport": "It jumps between places and changes size.",
    "unseen": "Its motion is hidden in the dark.",
}
MOTION_SCORES = {"smooth": 4, "teleport": 1, "unseen": 3}
ALIGNMENT_SCORES = {"match": 4, "mismatch": 1, "unseen": 3}

# Generation prompts; {c} is the colour the prompt asks for.
PROMPT_PATTERNS = (
    "A {c} ball rolls and bounces across a grey studio floor.",
    "A {c} ball bouncing on the floor.",
    "A small {c} ball rolling from left to right.",
    "Slow motion shot of a {c} ball bouncing in a studio.",
    "A shiny {c} ball hopping along the ground.",
    "A {c} rubber ball bounces across the room.",
    "Close-up of a {c} ball rolling on a sandy floor.",
    "A {c} ball falls and bounces twice.",
    "A {c} ball bouncing on a sandy floor.",
    "A bouncing {c} ball in front of a plain wall.",
    "Cinematic shot: a {c} ball rolls across a slate floor.",
    "a {c} ball",
)
COLOURS = tuple(BALL_COLOURS)


def _alignment(spec: SceneSpec, asked: str) -> str:
    if spec.quality == "dark":
        return "unseen"
    return "match" if spec.colour == asked else "mismatch"


def colour_sentence(spec: SceneSpec, asked: str) -> str:
    """The prompt's colour first (copied from the prompt), then whether the ball has it."""
    alignment = _alignment(spec, asked)
    if alignment == "unseen":
        return f"The prompt asks for {asked}, but no colour can be made out."
    if alignment == "match":
        return f"The prompt asks for {asked}, and the video shows {spec.colour}."
    return f"The prompt asks for {asked}, but the video shows {spec.colour}."


def answer_text(spec: SceneSpec, asked_colour: str) -> str:
    """The answer the toy is trained to give, in VideoScore2's trained format."""
    motion = "unseen" if spec.quality == "dark" else spec.motion
    thinking = " ".join((QUALITY_SENTENCES[spec.quality], colour_sentence(spec, asked_colour), MOTION_SENTENCES[motion]))
    scores = expected_scores(spec, asked_colour)
    return (
        f"<think>{thinking}</think>\n\n"
        f"(1) visual quality: {scores['visual_quality']}\n"
        f"(2) text-to-video alignment: {scores['text_alignment']}\n"
        f"(3) physical/common-sense consistency: {scores['physical_consistency']}"
    )


def expected_scores(spec: SceneSpec, asked_colour: str) -> dict[str, int]:
    """The scores the toy was trained to give a clip of `spec` against a prompt asking for
    `asked_colour` (what a perfect toy would say)."""
    motion = "unseen" if spec.quality == "dark" else spec.motion
    return {
        "visual_quality": QUALITY_SCORES[spec.quality],
        "text_alignment": ALIGNMENT_SCORES[_alignment(spec, asked_colour)],
        "physical_consistency": MOTION_SCORES[motion],
    }


# --------------------------------------------------------------------------------------------------
# Tokenizer, processor, config.
# --------------------------------------------------------------------------------------------------


def _corpus() -> list[str]:
    texts = [load_template(name) for name in TEMPLATES]
    texts.append("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    texts.append("<|im_start|>assistant\n")
    for pattern in PROMPT_PATTERNS:
        texts.extend(pattern.format(c=c) for c in COLOURS)
    for quality in QUALITY_SENTENCES:
        for motion in MOTIONS:
            for ball in COLOURS:
                for asked in COLOURS:
                    texts.append(answer_text(SceneSpec(ball, "studio", quality, motion), asked))
    # Words people type into video prompts, so that a user's own prompt is not all single bytes.
    texts.append(
        "A cat playing with a dog in the park at sunset, a car driving on a road in the city, "
        "people walking on the beach near the ocean waves, a bird flying over the mountains, "
        "a man and a woman dancing, a child running through a field of flowers, rain falling, "
        "snow, fire, water, trees, sky, clouds, camera pans slowly, realistic, 4k, high quality."
    )
    return texts


def build_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE with Qwen2's normalizer, pre-tokenizer (digits one per token) and decoder,
    trained on the toy's corpus, with Qwen's special tokens after the BPE vocabulary."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    corpus = _corpus()
    for special in SPECIAL_TOKENS:  # special tokens are never split: keep them out of the merges
        corpus = [t.replace(special, "\n") for t in corpus]
    bpe.train_from_iterator(corpus, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab = dict(sorted(model["vocab"].items(), key=lambda kv: kv[1]))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    for special in SPECIAL_TOKENS:
        vocab[special] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        errors="replace",
        split_special_tokens=False,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_processor(tokenizer):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    size = {"shortest_edge": TOY_FRAME_PIXELS["min_pixels"], "longest_edge": TOY_FRAME_PIXELS["max_pixels"]}
    image_processor = Qwen2VLImageProcessor(size=size, patch_size=14, temporal_patch_size=2, merge_size=2)
    video_processor = Qwen2VLVideoProcessor(size=size, patch_size=14, temporal_patch_size=2, merge_size=2)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


@dataclass(frozen=True)
class ToySizes:
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 4  # one key per head: layer 0's first heads are wired (see below)
    text_intermediate: int = 192
    vision_hidden: int = 64
    vision_depth: int = 2
    vision_heads: int = 4
    vision_intermediate: int = 128
    init_std: float = 0.02


def build_config(tokenizer, sizes: ToySizes = ToySizes()):
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = sizes.text_hidden // sizes.text_heads
    half = head_dim // 2
    # Qwen2.5-VL splits the rotary frequencies between time, height and width as 16:24:24 of 64.
    t_part = half // 4
    h_part = (half - t_part) // 2
    mrope_section = [t_part, h_part, half - t_part - h_part]
    vocab_size = int(math.ceil(len(tokenizer) / 64) * 64)
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=sizes.text_hidden,
            intermediate_size=sizes.text_intermediate,
            num_hidden_layers=sizes.text_layers,
            num_attention_heads=sizes.text_heads,
            num_key_value_heads=sizes.text_kv_heads,
            max_position_embeddings=4096,
            max_window_layers=sizes.text_layers,
            use_sliding_window=False,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "mrope_section": mrope_section, "rope_theta": 10000.0},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            hidden_act="silu",
            initializer_range=sizes.init_std,
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=sizes.vision_depth,
            hidden_size=sizes.vision_hidden,
            intermediate_size=sizes.vision_intermediate,
            num_heads=sizes.vision_heads,
            in_channels=3,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            tokens_per_second=2,
            window_size=112,
            out_hidden_size=sizes.text_hidden,
            fullatt_block_indexes=[sizes.vision_depth - 1],
            hidden_act="silu",
            initializer_range=sizes.init_std,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    config.vs2demo_toy = True
    config.vs2demo_frame_pixels = dict(TOY_FRAME_PIXELS)
    return config


# --------------------------------------------------------------------------------------------------
# The starting point. A 0.5 M-parameter model trained from random weights on a CPU for half a minute
# learns the answer's format but not to look at the video: its random vision tower averages noise,
# colour and motion away, and its language model never finds the video tokens in time. So the toy
# starts from a hand-set vision tower that measures what the scenes vary in, and one attention head
# that reads those measurements into every text position; training (the language model) learns to
# turn them into the rationale and the scores.
# --------------------------------------------------------------------------------------------------

# Vision channels (vision hidden size 64) the hand-set tower computes, per 14x14x2 patch.
V_CONST = 0  # a constant, so that the RMSNorms downstream scale everything alike
V_MEAN = (1, 2, 3, 4, 5, 6)  # mean R, G, B of frame 0, then of frame 1 (normalised pixels)
V_HF = (7, 8, 9, 10)  # 2 checkerboard patterns x 2 frames: grain shows up here, edges barely
V_GRAIN = 16  # energy of the high-frequency responses
V_CHROMA = (17, 18, 19, 20)  # how much of the patch is strongly red, green, blue, yellow
V_AMOUNT = (21, 22)  # how much of the patch is ball, in frame 0 and in frame 1
V_GROUP_AMOUNT = (23, 24)  # the same, averaged over the frame pair's patches (ball size)
V_SIZE = 25  # |size in frame 0 - size in frame 1|, clipped: balls that grow or shrink
V_GRAIN_SAT = 26  # the grain energy, clipped: any heavy grain counts the same at any resolution
CONST = 64.0
# Text-side feature dimensions (text hidden size 64) the merger writes and head 0 copies.
FEATURES = ("brightness", "grain", "red", "green", "blue", "yellow", "size_change", "ball")
# How strongly head 0 writes each feature into the residual stream: about 0.1-0.3 for the values the
# scenes give, the scale of the (trained) token embeddings, so that the text processing is not
# swamped.
FEATURE_GAIN = (0.1, 0.1, 0.3, 0.3, 0.3, 0.3, 0.05, 0.3)
MARKER = 63  # the video marker dimension (see prime_video_attention)
COLOUR_MARKER = 62  # marks the colour words (see prime_colour_attention)
COLOUR_ID = (8, 9, 10, 11)  # which colour word it is, in COLOURS order
PROMPT_COLOUR = (12, 13, 14, 15)  # head 2 writes the average of the colour words seen so far here
MATCH = 16  # layer 0's MLP writes here how well the video's colour matches PROMPT_COLOUR
MARKER_SIZE = 30.0

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def design_vision(model, scale_rest: float = 0.0) -> None:
    """Hand-set the vision tower (see the channel constants above); other weights are scaled by
    `scale_rest` (0: the tower computes exactly the designed features)."""
    vis = model.model.visual
    hidden = vis.config.hidden_size
    with torch.no_grad():
        for p in vis.parameters():
            p.mul_(scale_rest)
        for block in vis.blocks:
            block.norm1.weight.fill_(1.0)
            block.norm2.weight.fill_(1.0)
        # Patch embedding: Conv3d weight (hidden, 3 channels, 2 frames, 14, 14).
        w = vis.patch_embed.proj.weight
        n = w.shape[-1] * w.shape[-2]
        for t in range(2):
            for c in range(3):
                w[V_MEAN[3 * t + c], c, t] = 1.0 / n
        i, j = torch.meshgrid(torch.arange(w.shape[-2]), torch.arange(w.shape[-1]), indexing="ij")
        # Zero-sum checkerboards (the 2x2 one over the 12x12 top-left, an even number of blocks), so
        # that flat or smoothly shaded patches give nothing and only fine texture (grain) counts.
        inner = ((i < 12) & (j < 12)).float()
        patterns = [(-1.0) ** (i + j), inner * (-1.0) ** (i // 2 + j // 2)]
        for t in range(2):
            for k, pattern in enumerate(patterns):
                for c in range(3):
                    w[V_HF[2 * t + k], c, t] = 40.0 * pattern / (3 * n)

        # Block 0: attention adds the constant; the MLP measures grain and colour.
        b0 = vis.blocks[0]
        b0.attn.proj.bias[V_CONST] = CONST
        # After norm2, y ~= r / rms(r), rms ~= CONST / sqrt(hidden) (the constant dominates).
        unscale = CONST / math.sqrt(hidden)
        gate, up, down = b0.mlp.gate_proj, b0.mlp.up_proj, b0.mlp.down_proj
        unit = 0
        for ch in V_HF:  # silu(z) * z ~= z^2 / 2: the energy of each high-frequency response
            gate.weight[unit, ch] = 2.0 * unscale
            up.weight[unit, ch] = 2.0 * unscale
            down.weight[V_GRAIN, unit] = 0.5
            unit += 1

        def pixel(t: int, colour: int, coef: float, row: torch.Tensor, bias: torch.Tensor, idx: int):
            # coef * (pixel value in [0, 1]) = coef * (x * std + mean), x = y * unscale.
            row[idx, V_MEAN[3 * t + colour]] += coef * CLIP_STD[colour] * unscale
            bias[idx] += coef * CLIP_MEAN[colour]

        R, G, B = 0, 1, 2
        # (gate: chroma that must exceed the threshold, up: a second chroma that must be positive)
        chroma_units = {
            0: ({R: 1, G: -1}, None),  # red: R - G
            1: ({G: 1, R: -1}, {G: 1, B: -1}),  # green: G - R, times G - B
            2: ({B: 1, G: -1}, {B: 1, R: -1}),  # blue: B - G, times B - R
            3: ({G: 1, B: -1}, {R: 1, B: -1}),  # yellow: G - B, times R - B
        }
        gain, threshold = 30.0, 0.15
        for t in range(2):
            for k, (gate_coefs, up_coefs) in chroma_units.items():
                for colour, coef in gate_coefs.items():
                    pixel(t, colour, gain * coef, gate.weight, gate.bias, unit)
                gate.bias[unit] -= gain * threshold
                if up_coefs is None:
                    up.bias[unit] = 1.0
                else:
                    for colour, coef in up_coefs.items():
                        pixel(t, colour, 2.0 * coef, up.weight, up.bias, unit)
                down.weight[V_CHROMA[k], unit] = 1.0
                down.weight[V_AMOUNT[t], unit] = 1.0
                unit += 1

        # Block 1 (full attention within each frame pair): uniform attention averages the ball
        # amounts over the pair's patches; the MLP squares their difference.
        b1 = vis.blocks[1]
        for t in range(2):
            b1.attn.qkv.weight[2 * hidden + t, V_AMOUNT[t]] = unscale  # value dims 0, 1 of head 0
            b1.attn.proj.weight[V_GROUP_AMOUNT[t], t] = 1.0
        gate, up, down = b1.mlp.gate_proj, b1.mlp.up_proj, b1.mlp.down_proj
        # |difference| clipped at 4: silu(z) - silu(z - 4) for z = +-8 * difference.
        unit = 0
        for sign in (1.0, -1.0):
            for offset, out in ((0.0, 1.0), (-4.0, -1.0)):
                gate.weight[unit, V_GROUP_AMOUNT[0]] = sign * 8.0 * unscale
                gate.weight[unit, V_GROUP_AMOUNT[1]] = -sign * 8.0 * unscale
                gate.bias[unit] = offset
                up.bias[unit] = 1.0
                down.weight[V_SIZE, unit] = out
                unit += 1
        # Grain, clipped at 2: silu(z) - silu(z - 2) for z = 4 * grain.
        for offset, out in ((0.0, 1.0), (-2.0, -1.0)):
            gate.weight[unit, V_GRAIN] = 4.0 * unscale
            gate.bias[unit] = offset
            up.bias[unit] = 1.0
            down.weight[V_GRAIN_SAT, unit] = out
            unit += 1

        # Merger: RMSNorm (the constant dominates) -> Linear -> GELU -> Linear, set to pass the
        # mean over the 4 merged patches of each feature: GELU(x) - GELU(-x) == x exactly.
        ln_weight = vis.merger.ln_q.weight
        ln_weight.fill_(1.0)
        first, second = vis.merger.mlp[0], vis.merger.mlp[2]
        sources = {
            "brightness": {c: 1.0 / 6 for c in V_MEAN},
            "grain": {V_GRAIN_SAT: 1.0},
            "red": {V_CHROMA[0]: 1.0},
            "green": {V_CHROMA[1]: 1.0},
            "blue": {V_CHROMA[2]: 1.0},
            "yellow": {V_CHROMA[3]: 1.0},
            "size_change": {V_SIZE: 1.0},
            "ball": {V_AMOUNT[0]: 0.5, V_AMOUNT[1]: 0.5},
        }
        for f, name in enumerate(FEATURES):
            for patch in range(4):
                for ch, coef in sources[name].items():
                    first.weight[2 * f, patch * hidden + ch] = coef * unscale / 4
                    first.weight[2 * f + 1, patch * hidden + ch] = -coef * unscale / 4
            second.weight[f, 2 * f] = 1.0
            second.weight[f, 2 * f + 1] = -1.0
        second.bias[MARKER] = MARKER_SIZE


def prime_video_attention(model, strength: float = 16.0) -> list:
    """Start one attention head (layer 0, head 0) out reading the video, and keep it reading.

    The merger's output carries a marker dimension that text embeddings lack; head 0's query (a
    constant, from its bias) and key meet on that dimension in the lowest rotary frequency (nearly
    position-independent), so every text position averages the video tokens; its values and output
    copy the feature dimensions (FEATURES) into the same dimensions of the residual stream, which
    text embeddings leave empty. Returns the (parameter, mask) pairs whose gradient `train` zeroes,
    so that this wiring survives training.
    """
    text = model.config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    slow = head_dim // 2 - 1  # the rotary pair (slow, slow + head_dim/2) turns slowest
    layer = model.model.language_model.layers[0]
    attn = layer.self_attn
    embed = model.model.language_model.embed_tokens
    n_feat = len(FEATURES)
    frozen = []

    def freeze(param, index):
        mask = torch.zeros_like(param, dtype=torch.bool)
        mask[index] = True
        frozen.append((param, mask))

    # After layer 0's input RMSNorm a video token is dominated by the marker: ~sqrt(hidden) * 0.9.
    marker_normed = 0.9 * math.sqrt(text.hidden_size)
    with torch.no_grad():
        embed.weight[:, :n_feat] = 0.0
        embed.weight[:, MARKER] = 0.0
        layer.input_layernorm.weight.fill_(1.0)
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            proj.weight[:head_dim].zero_()
            proj.bias[:head_dim].zero_()
        attn.k_proj.weight[slow, MARKER] = 1.0
        attn.q_proj.bias[slow] = strength * math.sqrt(head_dim) / marker_normed
        # Values: the features, undoing the RMSNorm's scale (~ sqrt(hidden) * 0.9 / MARKER_SIZE).
        for f in range(n_feat):
            attn.v_proj.weight[f, f] = MARKER_SIZE / marker_normed
        attn.o_proj.weight[:, :head_dim].zero_()
        for f in range(n_feat):
            attn.o_proj.weight[f, f] = FEATURE_GAIN[f]
    freeze(embed.weight, (slice(None), list(range(n_feat)) + [MARKER]))
    freeze(layer.input_layernorm.weight, slice(None))
    for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
        freeze(proj.weight, slice(0, head_dim))
        freeze(proj.bias, slice(0, head_dim))
    freeze(attn.o_proj.weight, (slice(None), slice(0, head_dim)))
    return frozen


def colour_token_ids(tokenizer) -> dict[str, list[int]]:
    """The single tokens that spell each colour word (" red", "red", " Red", "Red", ...)."""
    ids: dict[str, list[int]] = {}
    for colour in COLOURS:
        for spelling in (f" {colour}", colour, f" {colour.capitalize()}", colour.capitalize()):
            tokens = tokenizer(spelling, add_special_tokens=False)["input_ids"]
            if len(tokens) == 1:
                ids.setdefault(colour, []).append(tokens[0])
    return ids


def prime_colour_attention(model, tokenizer, head: int = 2, strength: float = 12.0) -> list:
    """Start layer 0's head `head` out averaging the colour words seen so far (in a training
    prompt there is one, so at "asks for a" it holds the prompt's colour), and keep it so.

    Colour-word embeddings carry a marker dimension and a one-hot of their colour; the head's
    constant query meets the marker in the slowest rotary pair, its values copy the one-hot, its
    output writes it into PROMPT_COLOUR. Returns (parameter, mask) pairs to keep out of training.
    """
    text = model.config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    kv_head = head * text.num_key_value_heads // text.num_attention_heads
    q_rows = slice(head * head_dim, (head + 1) * head_dim)
    kv_rows = slice(kv_head * head_dim, (kv_head + 1) * head_dim)
    slow = head_dim // 2 - 1
    layer = model.model.language_model.layers[0]
    attn = layer.self_attn
    embed = model.model.language_model.embed_tokens
    frozen = []

    def freeze(param, index):
        mask = torch.zeros_like(param, dtype=torch.bool)
        mask[index] = True
        frozen.append((param, mask))

    with torch.no_grad():
        columns = list(COLOUR_ID) + list(PROMPT_COLOUR) + [COLOUR_MARKER]
        embed.weight[:, columns] = 0.0
        for k, colour in enumerate(COLOURS):
            for token in colour_token_ids(tokenizer).get(colour, []):
                embed.weight[token, COLOUR_MARKER] = 1.0
                embed.weight[token, COLOUR_ID[k]] = 1.0
        # A colour word's embedding has norm ~1.4 (the two ones and small random rest): after the
        # RMSNorm its marker and one-hot entries are ~sqrt(hidden) / 1.45.
        normed = math.sqrt(text.hidden_size) / 1.45
        for proj, rows in ((attn.q_proj, q_rows), (attn.k_proj, kv_rows), (attn.v_proj, kv_rows)):
            proj.weight[rows].zero_()
            proj.bias[rows].zero_()
        attn.k_proj.weight[kv_rows.start + slow, COLOUR_MARKER] = 1.0
        attn.q_proj.bias[q_rows.start + slow] = strength * math.sqrt(head_dim) / normed
        for k in range(len(COLOURS)):
            attn.v_proj.weight[kv_rows.start + k, COLOUR_ID[k]] = 1.0 / normed
        attn.o_proj.weight[:, q_rows].zero_()
        for k in range(len(COLOURS)):
            attn.o_proj.weight[PROMPT_COLOUR[k], q_rows.start + k] = 0.3
    # Layer 0's MLP: unit k computes silu(video colour k) * prompt colour k (a gated unit is a
    # product), summed into MATCH: large when the ball has the colour the prompt asks for.
    mlp = layer.mlp
    units = list(range(len(COLOURS)))
    with torch.no_grad():
        embed.weight[:, MATCH] = 0.0
        mlp.gate_proj.weight[units] = 0.0
        mlp.up_proj.weight[units] = 0.0
        mlp.down_proj.weight[:, units] = 0.0
        for k, colour in enumerate(COLOURS):
            mlp.gate_proj.weight[k, FEATURES.index(colour)] = 2.0
            mlp.up_proj.weight[k, PROMPT_COLOUR[k]] = 1.0
            mlp.down_proj.weight[MATCH, k] = 0.02
    freeze(embed.weight, (slice(None), columns + [MATCH]))
    for proj, rows in ((attn.q_proj, q_rows), (attn.k_proj, kv_rows), (attn.v_proj, kv_rows)):
        freeze(proj.weight, rows)
        freeze(proj.bias, rows)
    freeze(attn.o_proj.weight, (slice(None), q_rows))
    freeze(mlp.gate_proj.weight, units)
    freeze(mlp.up_proj.weight, units)
    freeze(mlp.down_proj.weight, (slice(None), units))
    return frozen


# --------------------------------------------------------------------------------------------------
# Training data: clips rendered, written and sampled exactly as the app samples an upload.
# --------------------------------------------------------------------------------------------------

# Source sizes (width, height): 4:3, 16:9 and square, smallish so that writing them is quick; the
# sampler resizes them to the toy's frame budget like any upload (84x112, 84x140, 112x112). The
# larger ones matter: downscaling smooths grain, so the toy must see it at several scales.
CLIP_SIZES = ((224, 168), (320, 240), (384, 216), (168, 168))
QUALITY_WEIGHTS = {"clean": 0.4, "noisy": 0.3, "dark": 0.3}
EVAL_TEMPLATE_SHARE = 0.2  # the long template costs 3x the tokens of the card one


@dataclass
class Example:
    spec: SceneSpec
    asked: str
    prompt: str
    template: str
    answer: str
    inputs: dict  # build_inputs(...) output plus labels


def sample_in_memory(frames: np.ndarray, fps: float):
    """What `vs2demo.video.sample_frames` returns for a clip of these frames at `fps` (the app's
    defaults: 2 fps, 4..64 frames, the toy's pixel budget), computed without the file: the same
    frame count, indices, frame size and resize. (Written through the encoder, the clips would differ
    from run to run: multi-threaded and even single-threaded x264 output is not always the same
    bytes, and the build must be deterministic.)"""
    from vs2demo import video

    total = len(frames)
    n = video.frame_count(total, fps, fps=2.0, min_frames=4, max_frames=64)
    indices = video.frame_indices(total, n)
    height, width = int(frames.shape[1]), int(frames.shape[2])
    size = video.frame_size(height, width, n, **TOY_FRAME_PIXELS)
    return video.SampledVideo(
        frames=video._resize(frames[indices], size),
        indices=tuple(indices),
        source_frames=total,
        source_fps=float(fps),
        source_width=width,
        source_height=height,
        duration=total / fps,
        backend="memory",
        decode_s=0.0,
    )


def make_clips(n_clips: int, seed: int, fps: float = 8.0):
    """(spec, SampledVideo) pairs: balanced colours and motions, qualities by QUALITY_WEIGHTS."""
    rng = random.Random(seed)
    pool = [q for q, w in QUALITY_WEIGHTS.items() for _ in range(round(w * 10))]
    qualities = (pool * (n_clips // len(pool) + 1))[:n_clips]
    rng.shuffle(qualities)
    clips = []
    for i in range(n_clips):
        spec = SceneSpec(
            colour=COLOURS[i % len(COLOURS)],
            background=rng.choice(tuple(BACKGROUNDS)),
            quality=qualities[i],
            motion=MOTIONS[(i // len(COLOURS)) % len(MOTIONS)],
        )
        width, height = CLIP_SIZES[(i + i // len(COLOURS)) % len(CLIP_SIZES)]
        n_frames = rng.choice((24, 28, 32))
        frames = render_scene(spec, n_frames=n_frames, height=height, width=width, seed=seed * 1000 + i, fps=fps)
        clips.append((spec, sample_in_memory(frames, fps)))
    return clips


DECISION_WEIGHT = 5.0  # loss weight of the tokens where the answer depends on the clip or prompt


def decision_mask(tokenizer, answer_ids: list[int]) -> list[bool]:
    """True where the answer token depends on the clip or the prompt: where, given the tokens
    before it, more than one continuation occurs among all possible answers (the quality
    sentence, the ball's colour, "as"/"but", the asked colour, the motion sentence), and the
    score digits."""
    trie = _answer_trie(tokenizer)
    digits = {tokenizer.convert_tokens_to_ids(d) for d in "12345"}
    space = tokenizer.convert_tokens_to_ids("Ġ")
    mask, prefix = [], ()
    for token in answer_ids:
        mask.append(len(trie.get(prefix, ())) > 1 or (token in digits and prefix[-1:] == (space,)))
        prefix += (token,)
    return mask


_TRIES: dict[int, dict] = {}


def _answer_trie(tokenizer) -> dict[tuple, set]:
    key = id(tokenizer)
    if key not in _TRIES:
        trie: dict[tuple, set] = {}
        for quality in QUALITY_SENTENCES:
            for motion in MOTIONS:
                for ball in COLOURS:
                    for asked in COLOURS:
                        ids = tokenizer(answer_text(SceneSpec(ball, "studio", quality, motion), asked),
                                        add_special_tokens=False)["input_ids"]
                        for i in range(len(ids)):
                            trie.setdefault(tuple(ids[:i]), set()).add(ids[i])
        _TRIES[key] = trie
    return _TRIES[key]


def make_examples(processor, config, clips, prompts_per_clip: int, seed: int) -> list[Example]:
    from vs2demo.backends.transformers import build_inputs

    rng = random.Random(seed + 1)
    tokenizer = processor.tokenizer
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    examples = []
    for spec, video in clips:
        for k in range(prompts_per_clip):
            # Half the prompts ask for the ball's own colour, half for another one.
            asked = spec.colour if k % 2 == 0 else rng.choice([c for c in COLOURS if c != spec.colour])
            prompt = rng.choice(PROMPT_PATTERNS).format(c=asked)
            template = "eval" if rng.random() < EVAL_TEMPLATE_SHARE else "card"
            answer = answer_text(spec, asked)
            inputs = dict(build_inputs(processor, video, prompt, template, config=config))
            answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [im_end]
            n_prompt = inputs["input_ids"].shape[1]
            answer_t = torch.tensor([answer_ids], dtype=inputs["input_ids"].dtype)
            inputs["input_ids"] = torch.cat([inputs["input_ids"], answer_t], dim=1)
            inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
            if "mm_token_type_ids" in inputs:
                inputs["mm_token_type_ids"] = torch.cat(
                    [inputs["mm_token_type_ids"], torch.zeros_like(answer_t)], dim=1)
            # The answer's positions go on one a token from the prompt's last, as generate() extends them.
            positions = inputs["position_ids"]
            answer_positions = positions[..., -1:] + torch.arange(1, len(answer_ids) + 1)
            inputs["position_ids"] = torch.cat([positions, answer_positions], dim=-1)
            labels = torch.full_like(inputs["input_ids"], -100)
            labels[0, n_prompt:] = answer_t[0]
            inputs["labels"] = labels
            weights = torch.zeros(labels.shape, dtype=torch.float32)
            weights[0, n_prompt:] = 1.0
            mask = decision_mask(tokenizer, answer_ids[:-1]) + [False]
            weights[0, n_prompt:][torch.tensor(mask)] = DECISION_WEIGHT
            inputs["weights"] = weights
            examples.append(Example(spec, asked, prompt, template, answer, inputs))
    return examples


def collate(examples: list[Example], pad_id: int) -> dict:
    """Left-padded batch (every answer ends in the last column, so logits are needed for the last
    few columns only); videos concatenated in order, as the model expects them."""
    length = max(e.inputs["input_ids"].shape[1] for e in examples)
    batch: dict[str, torch.Tensor] = {}
    for key, fill in (("input_ids", pad_id), ("attention_mask", 0), ("labels", -100), ("weights", 0.0),
                      ("mm_token_type_ids", 0)):
        if key not in examples[0].inputs:
            continue
        rows = []
        for e in examples:
            t = e.inputs[key]
            rows.append(torch.cat([torch.full((1, length - t.shape[1]), fill, dtype=t.dtype), t], dim=1))
        batch[key] = torch.cat(rows)
    # Positions (4, 1, length) are padded on the left with 0, as transformers gives padding.
    batch["position_ids"] = torch.cat([torch.nn.functional.pad(e.inputs["position_ids"],
                                                               (length - e.inputs["position_ids"].shape[-1], 0))
                                       for e in examples], dim=1)
    batch["pixel_values_videos"] = torch.cat([e.inputs["pixel_values_videos"] for e in examples])
    batch["video_grid_thw"] = torch.cat([e.inputs["video_grid_thw"] for e in examples])
    if "second_per_grid_ts" in examples[0].inputs:
        batch["second_per_grid_ts"] = torch.cat(
            [torch.as_tensor(e.inputs["second_per_grid_ts"]).reshape(-1) for e in examples])
    return batch


def answer_loss(model, batch: dict) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens, computing logits only where they are needed."""
    labels = batch.pop("labels")
    weights = batch.pop("weights")
    answer_cols = int((labels != -100).any(dim=0).nonzero().min())
    keep = labels.shape[1] - answer_cols + 1  # the column before the first answer token onwards
    logits = model(**batch, logits_to_keep=keep, use_cache=False).logits[:, :-1]
    targets, weights = labels[:, -(keep - 1):], weights[:, -(keep - 1):]
    losses = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                               ignore_index=-100, reduction="none")
    return (losses * weights.reshape(-1)).sum() / weights.sum()


# --------------------------------------------------------------------------------------------------
# Build.
# --------------------------------------------------------------------------------------------------


TOY_VERSION = 2  # bump when the build changes, so that a reused VS2DEMO_TOY_DIR is rebuilt
BUILD_INFO = "toy_build.json"


def is_toy_model_dir(folder) -> bool:
    """Whether `folder` holds a toy model built by this version of the builder."""
    folder = Path(folder)
    try:
        info = json.loads((folder / BUILD_INFO).read_text())
    except (OSError, ValueError):
        return False
    return info.get("toy_version") == TOY_VERSION and (folder / "config.json").is_file() and any(
        folder.glob("*.safetensors"))


def build_toy_model(out_dir, seed: int = 0, steps: int = 300, batch_size: int = 8, lr: float = 3e-3,
                    n_clips: int = 48, prompts_per_clip: int = 4, jitter: float = 0.15,
                    verbose: bool = True) -> Path:
    """Build, train and save the toy model into `out_dir`; returns the folder.

    Loads like the hub checkpoint: `Qwen2_5_VLForConditionalGeneration.from_pretrained(out_dir)`
    and `AutoProcessor.from_pretrained(out_dir)`. Deterministic given `seed` (on one machine and
    thread count). No network; about half a minute on two CPU cores.
    """
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = print if verbose else (lambda *a, **k: None)

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    config = build_config(tokenizer)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=[config.eos_token_id, config.pad_token_id],
        pad_token_id=config.pad_token_id,
    )
    design_vision(model)
    frozen = prime_video_attention(model) + prime_colour_attention(model, tokenizer)
    # The vision tower stays as designed (and training skips its backward pass).
    for param in model.model.visual.parameters():
        param.requires_grad_(False)
    log(f"[toy] vocab {len(tokenizer)}, {sum(p.numel() for p in model.parameters()):,} parameters "
        f"({time.perf_counter() - started:.1f} s)")

    clips = make_clips(n_clips, seed)
    log(f"[toy] {len(clips)} clips rendered and sampled ({time.perf_counter() - started:.1f} s)")
    examples = make_examples(processor, config, clips, prompts_per_clip, seed)
    n_tokens = [e.inputs["input_ids"].shape[1] for e in examples]
    log(f"[toy] {len(examples)} examples, {min(n_tokens)}-{max(n_tokens)} tokens "
        f"({time.perf_counter() - started:.1f} s)")

    final_loss = train(model, examples, tokenizer.pad_token_id, frozen, steps=steps, batch_size=batch_size, lr=lr,
                       seed=seed, jitter=jitter, log=log, started=started)

    for param in model.parameters():
        param.requires_grad_(True)
    model.eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    seconds = time.perf_counter() - started
    (out / BUILD_INFO).write_text(json.dumps({
        "toy_version": TOY_VERSION, "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr,
        "clips": n_clips, "examples": len(examples), "final_loss": round(final_loss, 4),
        "build_seconds": round(seconds, 1), "torch_threads": torch.get_num_threads(),
    }, indent=2))
    log(f"[toy] saved to {out} ({seconds:.1f} s)")
    return out


def train(model, examples, pad_id, frozen, steps, batch_size, lr, seed, jitter=0.15, log=print,
          started=None) -> float:
    """AdamW on the answer tokens. Each batch comes from one prompt template (the eval template
    is 3x longer than the card one: mixing them would pad every batch to the long one)."""
    started = started or time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.05, 1 - s / steps))
    model.train()
    hook = model.model.visual.register_forward_hook(_jitter_features(gen, jitter, jitter / 5), with_kwargs=True)
    buckets = {t: [i for i, e in enumerate(examples) if e.template == t] for t in TEMPLATES}
    buckets = {t: b for t, b in buckets.items() if b}
    names = sorted(buckets)
    weights = torch.tensor([len(buckets[t]) for t in names], dtype=torch.float)
    orders: dict[str, list[int]] = {t: [] for t in names}
    loss_value = float("nan")
    for step in range(steps):
        name = names[int(torch.multinomial(weights, 1, generator=gen))]
        order = orders[name]
        if len(order) < batch_size:
            order += [buckets[name][i] for i in torch.randperm(len(buckets[name]), generator=gen).tolist()]
        idx, orders[name] = order[:batch_size], order[batch_size:]
        loss = answer_loss(model, collate([examples[i] for i in idx], pad_id))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for param, mask in frozen:
            if param.grad is not None:
                param.grad[mask] = 0
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        loss_value = loss.item()
        if step % 20 == 0 or step == steps - 1:
            log(f"[toy] step {step:4d} loss {loss_value:.4f} ({time.perf_counter() - started:.1f} s)")
    hook.remove()
    return loss_value


def _jitter_features(gen: torch.Generator, scale: float = 0.15, shift: float = 0.03):
    """A forward hook for the vision tower, in training only: scales each clip's feature
    dimensions by random factors around 1 (and shifts them a little), so that the 48 training
    clips look like many more, and the language model learns the answer's format without leaning
    on the exact feature values it saw."""
    n_feat = len(FEATURES)

    def hook(module, args, kwargs, output):
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        merge = module.spatial_merge_size ** 2
        sizes = (grid.prod(-1) // merge).tolist()
        parts = []
        for part in torch.split(output.pooler_output, sizes):
            factor = 1.0 + scale * torch.randn(n_feat, generator=gen)
            offset = shift * torch.randn(n_feat, generator=gen)
            part = part.clone()
            part[:, :n_feat] = part[:, :n_feat] * factor + offset
            parts.append(part)
        output.pooler_output = torch.cat(parts)
        return output

    return hook


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Build the toy VideoScore2 model (no network, CPU).")
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build_toy_model(args.out_dir, seed=args.seed)


if __name__ == "__main__":
    main()
