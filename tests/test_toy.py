"""The toy model: built offline, loads like the hub checkpoint, writes VideoScore2's trained format,
and its scores depend on the clip (visual quality required; alignment and physics as trained)."""

import re

import pytest
import torch
from transformers import AutoConfig, AutoProcessor, Qwen2_5_VLForConditionalGeneration

from tools.clips import SceneSpec, render_scene, write_clip
from vs2demo.backends.transformers import build_inputs
from tools.toy import SPECIAL_TOKENS, TOY_FRAME_PIXELS
from vs2demo.video import sample_frames

# The trained shape, exactly: rationale in <think>, a blank line, three numbered score lines.
TRAINED_FORMAT = re.compile(
    r"^<think>(?P<rationale>[^<]+)</think>\n\n"
    r"\(1\) visual quality: (?P<visual_quality>[1-5])\n"
    r"\(2\) text-to-video alignment: (?P<text_alignment>[1-5])\n"
    r"\(3\) physical/common-sense consistency: (?P<physical_consistency>[1-5])$"
)
RED_PROMPT = "A red ball rolls and bounces across a grey studio floor."


@pytest.fixture(scope="module")
def toy(toy_model_dir):
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(toy_model_dir).eval()
    processor = AutoProcessor.from_pretrained(toy_model_dir)
    return model, processor


def judge(toy, clip, prompt=RED_PROMPT, template="card") -> str:
    model, processor = toy
    pixels = model.config.vs2demo_frame_pixels
    video = sample_frames(clip, min_pixels=pixels["min_pixels"], max_pixels=pixels["max_pixels"])
    inputs = build_inputs(processor, video, prompt, template, config=model.config)
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=120)
    return processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def scores(text: str) -> dict[str, int]:
    match = TRAINED_FORMAT.match(text)
    assert match, f"not in the trained format: {text!r}"
    found = {key: int(match[key]) for key in ("visual_quality", "text_alignment", "physical_consistency")}
    try:
        from vs2demo.parsing import parse
    except ImportError:  # the parser is optional here; the regex above is the contract
        return found
    assert parse(text).scores == found
    return found


def test_build_time_is_reported(toy_model_dir, request):
    import json

    info = json.loads((toy_model_dir / "toy_build.json").read_text())
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write_line(f"toy model: {info['build_seconds']} s to build, {info['steps']} steps, "
                            f"final loss {info['final_loss']}")
    assert info["build_seconds"] > 0


def test_loads_like_the_hub_checkpoint(toy_model_dir, toy):
    model, processor = toy
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert type(processor.video_processor).__name__ == "Qwen2VLVideoProcessor"
    assert type(processor.image_processor).__name__.startswith("Qwen2VLImageProcessor")
    assert type(processor.tokenizer).__name__.startswith("Qwen2Tokenizer")
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    # The Qwen2-VL chat template, default system turn included.
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "hi"}]}],
        tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                    "<|vision_start|><|video_pad|><|vision_end|>hi<|im_end|>\n<|im_start|>assistant\n")


def test_config_sizes_ids_and_toy_attributes_survive_loading(toy_model_dir, toy):
    model, processor = toy
    for config in (model.config, AutoConfig.from_pretrained(toy_model_dir)):
        assert config.vs2demo_toy is True
        assert config.vs2demo_frame_pixels == TOY_FRAME_PIXELS
    text, vision = model.config.text_config, model.config.vision_config
    assert text.hidden_size <= 128 and text.num_hidden_layers <= 4 and vision.depth <= 4
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) * 2 == head_dim
    assert vision.out_hidden_size == text.hidden_size
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (14, 2, 2)
    tokenizer = processor.tokenizer
    assert text.vocab_size >= len(tokenizer)
    assert model.config.video_token_id == tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert model.config.vision_end_token_id == tokenizer.convert_tokens_to_ids("<|vision_end|>")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token == "<|im_end|>" and text.eos_token_id == im_end
    assert im_end in model.generation_config.eos_token_id


def test_special_tokens_and_digits_are_single_tokens(toy):
    tokenizer = toy[1].tokenizer
    ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert len(set(ids)) == len(SPECIAL_TOKENS)
    for token, token_id in zip(SPECIAL_TOKENS, ids):
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [token_id]
    digits = []
    for digit in "12345":
        alone = tokenizer(digit, add_special_tokens=False)["input_ids"]
        assert len(alone) == 1, digit
        in_context = tokenizer(f"visual quality: {digit}\n", add_special_tokens=False)["input_ids"]
        assert alone[0] in in_context
        assert tokenizer.decode(alone) == digit
        digits.append(alone[0])
    assert len(set(digits)) == 5


def test_greedy_output_is_in_the_trained_format_and_noise_or_darkness_lowers_visual_quality(
        toy, clean_clip, noisy_clip, dark_clip):
    clean, noisy, dark = (scores(judge(toy, clip)) for clip in (clean_clip, noisy_clip, dark_clip))
    assert noisy["visual_quality"] < clean["visual_quality"]
    assert dark["visual_quality"] < clean["visual_quality"]


def test_the_eval_template_gets_the_trained_format_too(toy, noisy_clip):
    assert scores(judge(toy, noisy_clip, template="eval"))["visual_quality"] <= 2


def test_same_input_twice_gives_the_same_text(toy, clean_clip):
    assert judge(toy, clean_clip) == judge(toy, clean_clip)


def test_alignment_follows_the_colour_the_prompt_asks_for(toy, clean_clip, blue_clip):
    matching = scores(judge(toy, clean_clip, RED_PROMPT))
    mismatched = scores(judge(toy, blue_clip, RED_PROMPT))
    assert mismatched["text_alignment"] < matching["text_alignment"]


def test_implausible_motion_lowers_physical_consistency(toy, clean_clip, teleport_clip):
    smooth = scores(judge(toy, clean_clip))
    teleport = scores(judge(toy, teleport_clip))
    assert teleport["physical_consistency"] < smooth["physical_consistency"]


def test_unseen_scenes_keep_the_format(toy, tmp_path):
    """Fresh seeds, sizes and prompts the build never used."""
    cases = [
        (SceneSpec("green", "sand", "clean", "teleport"), 252, 448, "A green ball bouncing on the floor."),
        (SceneSpec("yellow", "slate", "noisy", "smooth"), 240, 240, "a blue ball"),
        (SceneSpec("blue", "studio", "dark", "smooth"), 180, 320, "A blue rubber ball bounces across the room."),
    ]
    for i, (spec, height, width, prompt) in enumerate(cases):
        frames = render_scene(spec, n_frames=30, height=height, width=width, seed=4242 + i)
        clip = write_clip(tmp_path / f"unseen{i}.mp4", frames, fps=8.0)
        scores(judge(toy, clip, prompt))
