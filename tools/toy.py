"""A toy VideoScore2: a tiny Qwen2.5-VL (1.4 M parameters, 5.7 MB in float32) built and trained offline
on two CPU cores (about 8-9 minutes), shipped built in `assets/toy`.

It has the real classes, files and input format of the hub checkpoint, so the app, the tests and
the command line run without downloading 16 GB; `config.vs2demo_toy` makes the app say so ("toy
model: its scores mean nothing"), and `config.vs2demo_frame_pixels` gives the small per-frame pixel
budget the engine must sample with. Its attention heads are 64 wide in the language model and in
the vision tower (head_dim = hidden_size / num_heads), a size every inference engine takes. It
writes VideoScore2's trained answer format for any clip and any prompt:

    <think>Heavy noise covers every frame. The prompt asks for red, but the video shows "blue". The
    coloured shape moves smoothly and keeps its size.</think>

    (1) visual quality: 2
    (2) text-to-video alignment: 1
    (3) physical/common-sense consistency: 4

and its scores follow what it measures: visual quality 4 sharp and bright, 2 grainy, 1 dark (blur
is not among what it measures); alignment 4 when the clip shows a colour the prompt names, 1 when
it shows only others, 2 when it shows no clear colour, 3 when too dark to tell or when the prompt
names no colour it knows (red, blue, green, yellow, in English); physical consistency 4
for a coloured shape that moves and keeps its size (a ball that rolls and bounces), 1 for one that
jumps about and changes size, 3 when there is no coloured shape to follow or it is too dark.

How: the vision tower is hand-set (no training) to measure what the scenes vary in (brightness,
grain, how much of each colour, how much the coloured shape's size changes between frames); in the
language model, layer 0's two attention heads are wired, one to average those measurements into
every text position, one to remember the colour words of the prompt, and sixteen of layer 0's MLP
units compare the clip's colours with the prompt's (MATCH) and with each other (DOMINANT); these
wired dimensions form a bus that trained layers read but never write (`reserve_bus`). The rest of
the language model (embeddings, layer 0's other MLP units, layers 1-2, the output layer) is trained
to write the rationale and the scores. The answers it is taught are worked
out from the same measurements the tower gives it (`verdict_for`), so what it is taught is always
what it can see. It trains on ball scenes and other content (plain colour fields, noise, gradients,
stripes, checkerboards, moving squares, flicker, black) at many sizes (32x32 to 1280x720, portrait
included) and lengths (two frames to a minute sampled to 64 frames), against prompts of every kind:
ball prompts naming one colour, sentences naming none or several, other languages and scripts,
emoji, formula-like and punctuation noise, random text and token soup, up to 2,000 characters.
See `design_vision`, `prime_video_attention`, `prime_colour_attention`, `prime_dominant_colour`,
`verdict_for` and `make_prompt`.

    python -m tools.toy OUT_DIR      # the shipped one: python -m tools.toy assets/toy
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

from tools.clips import (
    BACKGROUNDS,
    BALL_COLOURS,
    MOTIONS,
    PATTERNS,
    SceneSpec,
    render_pattern,
    render_scene,
)
from vs2demo.prompts import MAX_PROMPT_CHARS, TEMPLATES, load_template

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

COLOURS = tuple(BALL_COLOURS)  # red, blue, green, yellow: the colours the toy knows

# --------------------------------------------------------------------------------------------------
# What the toy is taught to say.
# --------------------------------------------------------------------------------------------------

QUALITY_SENTENCES = {
    "clean": "The frames are sharp and well lit.",
    "noisy": "Heavy noise covers every frame.",
    "dark": "Everything is very dark and hard to see.",
}
QUALITY_SCORES = {"clean": 4, "noisy": 2, "dark": 1}
MOTION_SENTENCES = {
    "smooth": "The coloured shape moves smoothly and keeps its size.",
    "teleport": "The coloured shape jumps about and changes size.",
    "none": "Nothing stands out to follow.",
    "unseen": "Nothing can be seen moving.",
}
MOTION_SCORES = {"smooth": 4, "teleport": 1, "none": 3, "unseen": 3}
ALIGNMENT_SCORES = {"match": 4, "mismatch": 1, "no_colour_seen": 2, "unseen": 3, "unchecked": 3}
NO_COLOUR_ASKED = "The prompt names no colour I can check."


@dataclass(frozen=True)
class Verdict:
    """What the toy concludes about one clip and prompt: the quality it measures, the clip's main
    colour (None: no clear colour), the motion, and the colours the prompt names (in COLOURS order)."""

    quality: str  # clean, noisy, dark
    colour: str | None
    motion: str  # smooth, teleport, none (no coloured shape), unseen (dark)
    asked: tuple[str, ...] = ()

    @property
    def alignment(self) -> str:
        if not self.asked:
            return "unchecked"
        if self.quality == "dark":
            return "unseen"
        if self.colour is None:
            return "no_colour_seen"
        return "match" if self.colour in self.asked else "mismatch"


def colour_sentence(verdict: Verdict) -> str:
    """The prompt's colour first (copied from the prompt, a word the colour head reads: ' red'),
    then what the clip shows, quoted ('"blue"'; the bare word is no word the head reads), so that
    what the answer says the clip shows never blurs what the prompt asked for, and the two slots
    are written with different tokens (their own rows of the output layer)."""
    alignment = verdict.alignment
    if alignment == "unchecked":
        return NO_COLOUR_ASKED
    subject = f"The prompt asks for {verdict.asked[0]}" if len(verdict.asked) == 1 else \
        "The prompt names several colours"
    if alignment == "unseen":
        return f"{subject}, but no colour can be made out."
    if alignment == "no_colour_seen":
        return f"{subject}, but the video shows no clear colour."
    joint = "and" if alignment == "match" else "but"
    return f'{subject}, {joint} the video shows "{verdict.colour}".'


def expected_scores(verdict: Verdict) -> dict[str, int]:
    """The scores the toy is trained to give for `verdict` (what a perfect toy would say)."""
    return {
        "visual_quality": QUALITY_SCORES[verdict.quality],
        "text_alignment": ALIGNMENT_SCORES[verdict.alignment],
        "physical_consistency": MOTION_SCORES[verdict.motion],
    }


def answer_text(verdict: Verdict) -> str:
    """The answer the toy is trained to give, in VideoScore2's trained format."""
    thinking = " ".join((QUALITY_SENTENCES[verdict.quality], colour_sentence(verdict),
                         MOTION_SENTENCES[verdict.motion]))
    scores = expected_scores(verdict)
    return (
        f"<think>{thinking}</think>\n\n"
        f"(1) visual quality: {scores['visual_quality']}\n"
        f"(2) text-to-video alignment: {scores['text_alignment']}\n"
        f"(3) physical/common-sense consistency: {scores['physical_consistency']}"
    )


def all_verdicts() -> list[Verdict]:
    """Every distinct answer the toy can give (asked: none, one colour, or several)."""
    asked_options = [()] + [(c,) for c in COLOURS] + [COLOURS[:2]]
    seen, verdicts = set(), []
    for quality in QUALITY_SENTENCES:
        for colour in (*COLOURS, None):
            for motion in ("smooth", "teleport", "none"):
                for asked in asked_options:
                    v = _consistent(Verdict(quality, colour, motion, asked))
                    text = answer_text(v)
                    if text not in seen:
                        seen.add(text)
                        verdicts.append(v)
    return verdicts


def _consistent(v: Verdict) -> Verdict:
    if v.quality == "dark":
        return Verdict("dark", None, "unseen", v.asked)
    if v.colour is None:
        return Verdict(v.quality, None, "none", v.asked)
    if v.motion == "none":
        return Verdict(v.quality, v.colour, "smooth", v.asked)
    return v


# --------------------------------------------------------------------------------------------------
# Prompts: what people type, and what they paste.
# --------------------------------------------------------------------------------------------------

# Ball prompts; {c} is a colour.
BALL_PATTERNS = (
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
    "{C} ball.",
    "the {c} ball keeps bouncing",
)
SUBJECTS = (
    "a dog", "an old man", "a young woman", "two children", "a horse", "a robot", "a sports car",
    "a sailboat", "a chef", "a dancer", "an astronaut", "a panda", "a dragon", "a train", "a butterfly",
    "a crowd of people", "a waterfall", "a city skyline", "a bowl of soup", "a guitarist", "a bicycle",
    "an eagle", "a fox", "a jellyfish", "a spaceship", "a lighthouse", "a teapot", "a skateboarder",
    "a knight", "a tiny mouse", "a whale", "a hot air balloon", "a cup of coffee", "a lion", "a violinist",
    "a baby", "a soldier", "a drone", "a paper boat", "a snowman", "a cowboy", "a surfer",
)
ACTIONS = (
    "walking along", "running through", "flying over", "dancing in", "sleeping in", "cooking in",
    "jumping over", "swimming in", "driving through", "standing in", "floating above", "spinning in",
    "melting in", "climbing", "racing across", "sitting quietly in", "exploring", "falling into",
    "glowing in", "waving at the camera in",
)
PLACES = (
    "a busy street", "a quiet forest", "the desert", "a snowy mountain", "a kitchen", "a neon-lit city at night",
    "an underwater reef", "outer space", "a wheat field", "a library", "a rainy alley", "a stadium",
    "a small village", "the ocean", "a castle", "a subway station", "a garden", "a frozen lake", "a market",
    "a volcano", "a classroom", "a rooftop at sunset", "a foggy harbor", "a jungle",
)
STYLES = (
    "", "", "", ", cinematic", ", 4k, highly detailed", ", in the style of an oil painting", ", slow motion",
    ", drone shot", ", anime style", ", photorealistic, 8k", ", handheld camera", ", time-lapse",
    ", black and white film", ", shallow depth of field", ", golden hour lighting", ", vintage VHS look",
    ". The camera pans slowly to the left", ". Zoom in", ", trending on artstation", ", hyperrealistic",
)
COLOUR_NOUNS = ("car", "umbrella", "dress", "balloon", "door", "kite", "boat", "bird", "scarf", "cube",
                "truck", "flower", "house", "sky", "apple", "tent", "flag", "train", "hat", "light")
OTHER_LANGUAGES = (
    "一辆汽车在雨夜的街道上行驶。", "孩子们在公园里放风筝，天空很蓝。", "夜晚的城市灯火辉煌，镜头慢慢推进。",
    "一个球在地板上弹跳。", "海浪拍打着岩石，日落时分。", "熊猫在竹林里吃竹子。",
    "桜の木の下で犬が走っている。", "夜の東京の街並み、雨が降っている。", "ロボットが台所で料理をする。",
    "해변에서 아이들이 뛰어논다.", "고양이가 창문 밖을 바라본다.", "Собака бежит по снегу.",
    "Поезд едет через лес на закате.", "رجل يمشي في الصحراء عند الغروب.", "एक लड़की बारिश में नाच रही है।",
    "Ein Hund spielt im Park mit einem Ball.", "Une voiture roule sur une route de montagne.",
    "Un niño juega con una pelota en la playa.", "Um pássaro voa sobre o mar.", "Un gatto dorme sul divano.",
    "Bir adam sokakta yürüyor.", "Một chiếc thuyền trôi trên sông.", "ช้างเดินอยู่ในป่า",
    "ילד רץ על החוף.", "Ένα άλογο τρέχει στο λιβάδι.", "Ein roter Ball rollt über den Boden.",
    "Une balle bleue rebondit.", "Una pelota verde en el suelo.", "Żółta piłka toczy się po podłodze.",
    "Ο ήλιος δύει πάνω από τη θάλασσα.", "Mwanamke anaimba jukwaani.", "Kobieta tańczy w deszczu.",
)
EMOJI = ("🐶", "🚗", "🌊", "🔥", "✨", "🎉", "🌈", "🍕", "🚀", "💃", "🌸", "⚽", "🏀", "🎈", "😀", "😂", "❤️", "👍",
         "🌙", "⭐", "🍎", "🐟", "🦄", "🎬", "📹", "🎥", "🤖", "👀", "🙏", "🌍", "❄️", "☀️", "⚡", "🍀", "🐉", "🧸")
FORMULA_BITS = (
    '=HYPERLINK("https://example.com")', "=SUM(A1:A10)", "=IF(B2>3,\"yes\",\"no\")", "+1-2", "-5", "@user",
    "@cmd|' /C calc'!A0", "$x^2+y^2=z^2$", r"\frac{a}{b}", r"$$\sum_{i=1}^{n} i$$", "<script>alert(1)</script>",
    "{{prompt}}", "${t2v_prompt}", "$t2v_prompt", "SELECT * FROM videos;", "https://example.com/video?id=42&t=3",
    "#hashtag", "!!!", "???", "...", "~~~", "***", "---", "||", "&&", "<b>bold</b>", "[link](http://x.y)",
    "C:\\Users\\video.mp4", "/tmp/clip.mp4", "0x1F", "3.14159", "1e-9", "100%", "(1) visual quality: 5",
    "<think>", "</think>", "`code`", "print('hi')", "a && b || c", "{\"key\": [1, 2, 3]}", "\t", "\n", "\\n",
)
CHAR_POOLS = (
    [chr(c) for c in range(0x21, 0x7F)],  # printable ASCII
    [chr(c) for c in range(0xA1, 0x180)],  # Latin-1 and Latin Extended-A
    [chr(c) for c in range(0x410, 0x450)],  # Cyrillic
    [chr(c) for c in range(0x4E00, 0x4E00 + 3000)],  # CJK
    [chr(c) for c in range(0xAC00, 0xAC00 + 500)],  # Hangul
    [chr(c) for c in range(0x3041, 0x3097)],  # Hiragana
    [chr(c) for c in range(0x600, 0x6FF)],  # Arabic
    [chr(c) for c in range(0x1F300, 0x1F650)],  # emoji
    [chr(c) for c in range(0x2000, 0x2BFF)],  # punctuation, symbols, arrows, maths
)


def _sentence(rng: random.Random, colours: tuple[str, ...] = ()) -> str:
    """An everyday video prompt; `colours` are worked in as adjectives of things."""
    text = f"{rng.choice(SUBJECTS)} {rng.choice(ACTIONS)} {rng.choice(PLACES)}"
    for colour in colours:
        text += rng.choice((" with a {c} {n}", ", next to a {c} {n}", " and a {c} {n}", ", a {c} {n} behind")).format(
            c=colour, n=rng.choice(COLOUR_NOUNS))
    text += rng.choice(STYLES)
    text = text[0].upper() + text[1:] if rng.random() < 0.7 else text
    return text + rng.choice((".", ".", "", "!", " ..."))


def _garbage(rng: random.Random, n: int) -> str:
    pools = rng.sample(CHAR_POOLS, rng.randint(1, 3))
    return "".join(rng.choice(rng.choice(pools)) if rng.random() > 0.15 else " " for _ in range(n))


def _token_soup(rng: random.Random, tokenizer, n: int) -> str:
    """Random tokens of the vocabulary, decoded: every token of the vocabulary gets seen in training."""
    first_special = tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS[0])  # they follow the BPE vocabulary
    return tokenizer.decode([rng.randrange(first_special) for _ in range(n)])


# How many colours a training prompt names (0: "names no colour", 2+: "names several colours"),
# drawn apart from the kind of text, so that neither length nor script says how many there are.
COLOUR_COUNTS = {0: 0.35, 1: 0.45, 2: 0.13, 3: 0.05, 4: 0.02}
PROMPT_KINDS = {  # the text around the colours -> share of the training prompts
    "ball": 0.26,  # a ball prompt
    "sentence": 0.18,  # an everyday prompt
    "language": 0.08,  # another language or script
    "emoji": 0.07,
    "formula": 0.09,  # formula-like, markup, punctuation noise around a prompt
    "garbage": 0.07,  # random characters of random scripts
    "soup": 0.07,  # random tokens
    "long": 0.18,  # several of the above, 300 to 2,000 characters
}
COLOUR_PHRASES = ("a {c} ball", "{c}", "the {c} {n}", "with a {c} {n}", "({c})", "{C} {n}", "colour: {c}",
                  "{c} and shiny", "a {c}")


def _body(rng: random.Random, tokenizer, kind: str, colour: str | None) -> str:
    """Text of `kind` naming `colour` (a ball prompt) or, for the other kinds, no colour."""
    if kind == "ball":
        pattern = rng.choice(BALL_PATTERNS)
        if colour is None:
            return " ".join(pattern.replace("{C}", "{c}").format(c="").split()).replace(" .", ".") or "A ball."
        return pattern.format(c=colour, C=colour.capitalize())
    if kind == "sentence":
        return _sentence(rng)
    if kind == "language":
        return rng.choice(OTHER_LANGUAGES)
    if kind == "emoji":
        words = rng.choice((_sentence(rng), _body(rng, tokenizer, "ball", None), "")).split()
        for _ in range(rng.randint(1, 8)):
            words.insert(rng.randint(0, len(words)), "".join(rng.choices(EMOJI, k=rng.randint(1, 4))))
        return " ".join(words)
    if kind == "formula":
        base = rng.choice((_sentence(rng), _body(rng, tokenizer, "ball", None), ""))
        bits = rng.choices(FORMULA_BITS, k=rng.randint(1, 5))
        return " ".join(bits[: len(bits) // 2 + 1]) + " " + base + " " + " ".join(bits[len(bits) // 2 + 1:])
    if kind == "garbage":
        return _garbage(rng, rng.randint(1, 200))
    if kind == "soup":
        return _token_soup(rng, tokenizer, rng.randint(1, 120)) if tokenizer is not None else _garbage(rng, 50)
    # long
    target = rng.randint(300, MAX_PROMPT_CHARS)
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < target:
        parts.append(_body(rng, tokenizer, rng.choice(("sentence", "sentence", "sentence", "ball", "language", "emoji",
                                                       "formula", "garbage")), None))
    return rng.choice((" ", "\n", " ")).join(parts)[:target]


def make_prompt(rng: random.Random, tokenizer=None, kind: str | None = None,
                colours: tuple[str, ...] | None = None) -> str:
    """A training prompt (at most MAX_PROMPT_CHARS, never empty): text of `kind` naming `colours`
    (drawn when not given), some of them more than once."""
    if colours is None:
        n = rng.choices(list(COLOUR_COUNTS), weights=list(COLOUR_COUNTS.values()))[0]
        colours = tuple(rng.sample(COLOURS, n))
    if kind is None:
        kind = rng.choices(list(PROMPT_KINDS), weights=list(PROMPT_KINDS.values()))[0]
    text = _body(rng, tokenizer, kind, colours[0] if colours and kind == "ball" else None)
    inserted = list(colours[1:] if kind == "ball" else colours)
    if colours and rng.random() < 0.2:
        inserted.append(rng.choice(colours))  # a colour named twice
    words = text.split(" ")
    for colour in inserted:
        phrase = rng.choice(COLOUR_PHRASES).format(c=colour, C=colour.capitalize(), n=rng.choice(COLOUR_NOUNS))
        words.insert(rng.randint(0, len(words)), phrase)
    text = " ".join(words)
    # What people do to text: shout it, quote it, pad it.
    roll = rng.random()
    if roll < 0.03:
        text = text.upper()
    elif roll < 0.06:
        text = text.lower()
    elif roll < 0.09:
        text = f'"{text}"'
    elif roll < 0.12:
        text = rng.choice(("=", "+", "-", "@")) + text
    for special in SPECIAL_TOKENS:  # the processor would read them as markers, not text
        text = text.replace(special, "")
    text = text.strip()[:MAX_PROMPT_CHARS].strip()
    return text or "a ball"


# --------------------------------------------------------------------------------------------------
# Tokenizer, processor, config.
# --------------------------------------------------------------------------------------------------


def _corpus() -> list[str]:
    rng = random.Random(1234)
    texts = [load_template(name) for name in TEMPLATES] * 20  # every prompt has one: merge them well
    texts.append("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    texts.append("<|im_start|>assistant\n")
    for pattern in BALL_PATTERNS:
        texts.extend(pattern.format(c=c, C=c.capitalize()) for c in COLOURS)
    texts.extend(answer_text(v) for v in all_verdicts())
    # Every spelling of the colour words that colour_token_ids looks for, as one token each.
    texts.extend(["\n".join(f"{c.capitalize()} ball, {c} ball. {c.capitalize()} ball." for c in COLOURS)] * 20)
    texts.extend(_sentence(rng, tuple(rng.sample(COLOURS, rng.randint(0, 2)))) for _ in range(400))
    texts.extend(" ".join(parts) for parts in (SUBJECTS, ACTIONS, PLACES, STYLES, COLOUR_NOUNS))
    texts.extend(OTHER_LANGUAGES * 3)
    texts.extend(FORMULA_BITS)
    texts.append(" ".join(EMOJI))
    # Words people type into video prompts, so that a user's own prompt is not all single bytes.
    texts.append(
        "A cat playing with a dog in the park at sunset, a car driving on a road in the city, "
        "people walking on the beach near the ocean waves, a bird flying over the mountains, "
        "a man and a woman dancing, a child running through a field of flowers, rain falling, "
        "snow, fire, water, trees, sky, clouds, camera pans slowly, realistic, 4k, high quality."
    )
    return texts


def build_tokenizer(vocab_size: int = 2034):
    """A byte-level BPE with Qwen2's normalizer, pre-tokenizer (digits one per token) and decoder,
    trained on the toy's corpus, with Qwen's special tokens after the BPE vocabulary (2034 + 14:
    every id below 2048, the vocabulary of tools.bench's tiny random model, which uses it too)."""
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
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

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
    # Heads 64 wide everywhere (hidden / heads), the width vLLM and other engines support best.
    text_hidden: int = 128
    text_layers: int = 3
    text_heads: int = 2  # layer 0's two heads are wired (see prime_*_attention); layers 1-2 trained
    text_kv_heads: int = 2  # one key per head
    text_intermediate: int = 384
    vision_hidden: int = 64
    vision_depth: int = 2
    vision_heads: int = 1
    vision_intermediate: int = 128
    rope_theta: float = 1_000_000.0  # Qwen2.5's; the slowest rotary pair barely turns over 10k positions
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
            max_position_embeddings=32768,
            max_window_layers=sizes.text_layers,
            use_sliding_window=False,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "mrope_section": mrope_section, "rope_theta": sizes.rope_theta},
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
# The starting point. A small model trained from random weights on a CPU for minutes learns the
# answer's format but not to look at the video: its random vision tower averages noise, colour and
# motion away, and its language model never finds the video tokens in time. So the toy starts from
# a hand-set vision tower that measures what the scenes vary in, and one attention head that reads
# those measurements into every text position; training (the language model) learns to turn them
# into the rationale and the scores.
# --------------------------------------------------------------------------------------------------

# Vision channels (vision hidden size 64) the hand-set tower computes, per 14x14x2 patch.
V_CONST = 0  # a constant, so that the RMSNorms downstream scale everything alike
V_MEAN = (1, 2, 3, 4, 5, 6)  # mean R, G, B of frame 0, then of frame 1 (normalised pixels)
V_HF = (7, 8, 9, 10)  # 2 checkerboard patterns x 2 frames: grain shows up here, edges barely
V_GRAIN = 16  # energy of the high-frequency responses
V_CHROMA = (17, 18, 19, 20)  # how much of the patch is strongly red, green, blue, yellow
V_AMOUNT = (21, 22)  # how much of the patch is coloured, in frame 0 and in frame 1
V_GROUP_AMOUNT = (23, 24)  # the same, averaged over the frame pair's patches (the shape's size)
V_SIZE = 25  # |size in frame 0 - size in frame 1|, clipped: shapes that grow or shrink
V_GRAIN_SAT = 26  # the grain energy, clipped: any heavy grain counts the same at any resolution
V_CHROMA_SAT = (27, 28, 29, 30)  # each colour amount, clipped: a plain colour field stays in range
CHROMA_CAP = 4.0  # a patch that is all one strong colour counts as CHROMA_CAP
CONST = 64.0
# Text-side feature dimensions the merger writes and head 0 copies.
FEATURES = ("brightness", "grain", "red", "green", "blue", "yellow", "size_change", "ball")
# How strongly head 0 writes each feature into the residual stream: about 0.1-0.3 for the values the
# scenes give, the scale of the (trained) token embeddings, so that the text processing is not
# swamped.
FEATURE_GAIN = (0.1, 0.1, 0.3, 0.3, 0.3, 0.3, 0.05, 0.1)
COLOUR_ID = (8, 9, 10, 11)  # which colour word it is, in COLOURS order
PROMPT_COLOUR = (12, 13, 14, 15)  # head 1 writes the average of the colour words seen so far here
MATCH = (16, 17, 18, 19)  # layer 0's MLP writes here, per colour, video colour x prompt colour
DOMINANT = (20, 21, 22, 23)  # and here, per colour, how far the clip's colour k stands above the others
VIDEO_ON = 24  # head 0 writes a constant here at every text position after the video
MARKER_SIZE = 30.0


def marker_dims(text_hidden: int) -> tuple[int, int]:
    """(video marker, colour-word marker): the last two dimensions of the text hidden state."""
    return text_hidden - 1, text_hidden - 2


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def design_vision(model, scale_rest: float = 0.0) -> None:
    """Hand-set the vision tower (see the channel constants above); other weights are scaled by
    `scale_rest` (0: the tower computes exactly the designed features). Works for any number of
    heads: block 1 uses value dimensions 0 and 1, which belong to its first head."""
    vis = model.model.visual
    hidden = vis.config.hidden_size
    marker, _ = marker_dims(model.config.text_config.hidden_size)
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

        # Block 1 (full attention within each frame pair): uniform attention averages the colour
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
        # Colour amounts, clipped at CHROMA_CAP: silu(z) - silu(z - cap).
        for k in range(len(V_CHROMA)):
            for offset, out in ((0.0, 1.0), (-CHROMA_CAP, -1.0)):
                gate.weight[unit, V_CHROMA[k]] = unscale
                gate.bias[unit] = offset
                up.bias[unit] = 1.0
                down.weight[V_CHROMA_SAT[k], unit] = out
                unit += 1

        # Merger: RMSNorm (the constant dominates) -> Linear -> GELU -> Linear, set to pass the
        # mean over the 4 merged patches of each feature: GELU(x) - GELU(-x) == x exactly.
        ln_weight = vis.merger.ln_q.weight
        ln_weight.fill_(1.0)
        first, second = vis.merger.mlp[0], vis.merger.mlp[2]
        sources = {
            "brightness": {c: 1.0 / 6 for c in V_MEAN},
            "grain": {V_GRAIN_SAT: 1.0},
            "red": {V_CHROMA_SAT[0]: 1.0},
            "green": {V_CHROMA_SAT[1]: 1.0},
            "blue": {V_CHROMA_SAT[2]: 1.0},
            "yellow": {V_CHROMA_SAT[3]: 1.0},
            "size_change": {V_SIZE: 1.0},
            "ball": {ch: 1.0 for ch in V_CHROMA_SAT},
        }
        for f, name in enumerate(FEATURES):
            for patch in range(4):
                for ch, coef in sources[name].items():
                    first.weight[2 * f, patch * hidden + ch] = coef * unscale / 4
                    first.weight[2 * f + 1, patch * hidden + ch] = -coef * unscale / 4
            second.weight[f, 2 * f] = 1.0
            second.weight[f, 2 * f + 1] = -1.0
        second.bias[marker] = MARKER_SIZE
        # Every feature but brightness reads 0 on a flat grey clip: subtract what one gives.
        grey = torch.zeros(4, 3 * 2 * 14 * 14)  # one frame pair of 2x2 patches, normalised mid-grey
        for c in range(3):
            grey.view(4, 3, 2, 14 * 14)[:, c] = (0.5 - CLIP_MEAN[c]) / CLIP_STD[c]
        base = vis(grey, grid_thw=torch.tensor([[1, 2, 2]])).pooler_output[0]
        for f, name in enumerate(FEATURES):
            if name != "brightness":
                second.bias[f] -= base[f]


def _freezer(frozen: list):
    def freeze(param, index):
        mask = torch.zeros_like(param, dtype=torch.bool)
        mask[index] = True
        frozen.append((param, mask))

    return freeze


def prime_video_attention(model, head: int = 0, strength: float = 16.0) -> list:
    """Start layer 0's head `head` out reading the video, and keep it reading.

    The merger's output carries a marker dimension that text embeddings lack; the head's query (a
    constant, from its bias) and key meet on that dimension in the slowest rotary pair (position-
    independent at rope_theta 1e6), so every text position averages the video tokens; its values
    and output copy the feature dimensions (FEATURES) into the same dimensions of the residual
    stream, which text embeddings leave empty. Returns the (parameter, mask) pairs whose gradient
    `train` zeroes, so that this wiring survives training.
    """
    text = model.config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    kv_head = head * text.num_key_value_heads // text.num_attention_heads
    q_rows = slice(head * head_dim, (head + 1) * head_dim)
    kv_rows = slice(kv_head * head_dim, (kv_head + 1) * head_dim)
    slow = head_dim // 2 - 1  # the rotary pair (slow, slow + head_dim/2) turns slowest
    marker, _ = marker_dims(text.hidden_size)
    layer = model.model.language_model.layers[0]
    attn = layer.self_attn
    embed = model.model.language_model.embed_tokens
    n_feat = len(FEATURES)
    frozen: list = []
    freeze = _freezer(frozen)

    # After layer 0's input RMSNorm a video token is dominated by the marker: ~sqrt(hidden) * 0.99.
    marker_normed = 0.99 * math.sqrt(text.hidden_size)
    with torch.no_grad():
        embed.weight[:, :n_feat] = 0.0
        embed.weight[:, [marker, VIDEO_ON]] = 0.0
        layer.input_layernorm.weight.fill_(1.0)
        for proj, rows in ((attn.q_proj, q_rows), (attn.k_proj, kv_rows), (attn.v_proj, kv_rows)):
            proj.weight[rows].zero_()
            proj.bias[rows].zero_()
        attn.k_proj.weight[kv_rows.start + slow, marker] = 1.0
        attn.q_proj.bias[q_rows.start + slow] = strength * math.sqrt(head_dim) / marker_normed
        # Values: the features, undoing the RMSNorm's scale (~ sqrt(hidden) * 0.99 / MARKER_SIZE).
        for f in range(n_feat):
            attn.v_proj.weight[kv_rows.start + f, f] = MARKER_SIZE / marker_normed
        attn.v_proj.weight[kv_rows.start + n_feat, marker] = 1.0 / marker_normed  # VIDEO_ON: the marker, ~1
        attn.o_proj.weight[:, q_rows].zero_()
        for f in range(n_feat):
            attn.o_proj.weight[f, q_rows.start + f] = FEATURE_GAIN[f]
        attn.o_proj.weight[VIDEO_ON, q_rows.start + n_feat] = 0.3
    freeze(embed.weight, (slice(None), list(range(n_feat)) + [marker, VIDEO_ON]))
    freeze(layer.input_layernorm.weight, slice(None))
    for proj, rows in ((attn.q_proj, q_rows), (attn.k_proj, kv_rows), (attn.v_proj, kv_rows)):
        freeze(proj.weight, rows)
        freeze(proj.bias, rows)
    freeze(attn.o_proj.weight, (slice(None), q_rows))
    return frozen


def colour_token_ids(tokenizer) -> dict[str, list[int]]:
    """The single tokens that spell each colour word (" red", " Red", "Red", ...). Not "red" without
    a space: BPE ends other words with it ("cove" + "red")."""
    ids: dict[str, list[int]] = {}
    for colour in COLOURS:
        for spelling in (f" {colour}", f" {colour.capitalize()}", colour.capitalize()):
            tokens = tokenizer(spelling, add_special_tokens=False)["input_ids"]
            if len(tokens) == 1:
                ids.setdefault(colour, []).append(tokens[0])
    return ids


def asked_colours(tokenizer, input_ids) -> tuple[str, ...]:
    """The colours whose words (as colour_token_ids spells them) occur in `input_ids`, in COLOURS
    order: what the wired colour head sees of a prompt."""
    present = set(torch.as_tensor(input_ids).reshape(-1).tolist())
    return tuple(c for c, ids in colour_token_ids(tokenizer).items() if present & set(ids))


def prime_colour_attention(model, tokenizer, head: int = 1, strength: float = 16.0) -> list:
    """Start layer 0's head `head` out averaging the colour words seen so far (at "asks for" it
    holds the prompt's colours, none when the prompt names none), and keep it so.

    Colour-word embeddings carry a marker dimension and a one-hot of their colour; the head's
    constant query meets the marker in the slowest rotary pair, its values copy the one-hot, its
    output writes it into PROMPT_COLOUR. With no colour word before it, the head averages zeros.
    Returns (parameter, mask) pairs to keep out of training.
    """
    text = model.config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    kv_head = head * text.num_key_value_heads // text.num_attention_heads
    q_rows = slice(head * head_dim, (head + 1) * head_dim)
    kv_rows = slice(kv_head * head_dim, (kv_head + 1) * head_dim)
    slow = head_dim // 2 - 1
    _, colour_marker = marker_dims(text.hidden_size)
    layer = model.model.language_model.layers[0]
    attn = layer.self_attn
    embed = model.model.language_model.embed_tokens
    frozen: list = []
    freeze = _freezer(frozen)

    with torch.no_grad():
        columns = list(COLOUR_ID) + list(PROMPT_COLOUR) + [colour_marker]
        embed.weight[:, columns] = 0.0
        for k, colour in enumerate(COLOURS):
            for token in colour_token_ids(tokenizer).get(colour, []):
                embed.weight[token, colour_marker] = 1.0
                embed.weight[token, COLOUR_ID[k]] = 1.0
        # A colour word's embedding has norm ~1.4 (the two ones and a small rest): after the RMSNorm
        # its marker and one-hot entries are ~sqrt(hidden) / 1.45.
        normed = math.sqrt(text.hidden_size) / 1.45
        for proj, rows in ((attn.q_proj, q_rows), (attn.k_proj, kv_rows), (attn.v_proj, kv_rows)):
            proj.weight[rows].zero_()
            proj.bias[rows].zero_()
        attn.k_proj.weight[kv_rows.start + slow, colour_marker] = 1.0
        attn.q_proj.bias[q_rows.start + slow] = strength * math.sqrt(head_dim) / normed
        for k in range(len(COLOURS)):
            attn.v_proj.weight[kv_rows.start + k, COLOUR_ID[k]] = 1.0 / normed
        attn.o_proj.weight[:, q_rows].zero_()
        for k in range(len(COLOURS)):
            attn.o_proj.weight[PROMPT_COLOUR[k], q_rows.start + k] = 0.3
    # Layer 0's MLP: unit k computes silu(video colour k) * prompt colour k (a gated unit is a
    # product) into MATCH[k]: large for a colour the clip shows and the prompt asks for, about 0
    # for the others (absent colours read 0).
    mlp = layer.mlp
    units = list(range(len(COLOURS)))
    with torch.no_grad():
        embed.weight[:, list(MATCH)] = 0.0
        mlp.gate_proj.weight[units] = 0.0
        mlp.up_proj.weight[units] = 0.0
        mlp.down_proj.weight[:, units] = 0.0
        for k, colour in enumerate(COLOURS):
            mlp.gate_proj.weight[k, FEATURES.index(colour)] = 2.0
            mlp.up_proj.weight[k, PROMPT_COLOUR[k]] = 1.0
            mlp.down_proj.weight[MATCH[k], k] = 0.1
    freeze(embed.weight, (slice(None), columns + list(MATCH)))
    for proj, rows in ((attn.q_proj, q_rows), (attn.k_proj, kv_rows), (attn.v_proj, kv_rows)):
        freeze(proj.weight, rows)
        freeze(proj.bias, rows)
    freeze(attn.o_proj.weight, (slice(None), q_rows))
    freeze(mlp.gate_proj.weight, units)
    freeze(mlp.up_proj.weight, units)
    freeze(mlp.down_proj.weight, (slice(None), units))
    return frozen


def bus_dims(text_hidden: int) -> list[int]:
    """The residual-stream dimensions the wiring writes (features, colour words, prompt colour,
    MATCH, DOMINANT, VIDEO_ON, the two markers): text embeddings leave them empty and trained layers only
    read them."""
    return list(range(len(FEATURES))) + list(COLOUR_ID) + list(PROMPT_COLOUR) + list(MATCH) + list(
        DOMINANT) + [VIDEO_ON] + list(marker_dims(text_hidden))


def prime_dominant_colour(model, gain: float = 5.0, out: float = 0.01) -> list:
    """Layer 0's MLP units 4-15 rank the clip's colours: for each ordered pair (k, j) a unit
    computes silu(gain * (colour k - colour j)) * VIDEO_ON (a gated unit is a product; VIDEO_ON,
    which head 0 writes, is the same at every text position, so the unit acts as a ramp), summed
    into DOMINANT[k]: how far colour k stands above the others, about 0 for a colour that does not.
    A difference keeps its sign through the RMSNorm whatever the scale, so the main colour stands
    out even when it covers a few patches. Returns (parameter, mask) pairs to keep out of training
    (layer 0's RMSNorm weights on the bus included)."""
    text = model.config.text_config
    layer = model.model.language_model.layers[0]
    mlp, embed = layer.mlp, model.model.language_model.embed_tokens
    frozen: list = []
    freeze = _freezer(frozen)
    units = []
    with torch.no_grad():
        embed.weight[:, list(DOMINANT)] = 0.0
        unit = len(COLOURS)  # after prime_colour_attention's MATCH units
        for k, colour in enumerate(COLOURS):
            for other in COLOURS:
                if other == colour:
                    continue
                mlp.gate_proj.weight[unit] = 0.0
                mlp.up_proj.weight[unit] = 0.0
                mlp.down_proj.weight[:, unit] = 0.0
                mlp.gate_proj.weight[unit, FEATURES.index(colour)] = gain
                mlp.gate_proj.weight[unit, FEATURES.index(other)] = -gain
                mlp.up_proj.weight[unit, VIDEO_ON] = 1.0
                mlp.down_proj.weight[DOMINANT[k], unit] = out
                units.append(unit)
                unit += 1
        layer.post_attention_layernorm.weight[bus_dims(text.hidden_size)] = 1.0
    freeze(embed.weight, (slice(None), list(DOMINANT)))
    freeze(mlp.gate_proj.weight, units)
    freeze(mlp.up_proj.weight, units)
    freeze(mlp.down_proj.weight, (slice(None), units))
    freeze(layer.post_attention_layernorm.weight, bus_dims(text.hidden_size))
    return frozen


def reserve_bus(model, wired: list) -> list:
    """Keep every trained layer from writing into the wired dimensions (bus_dims): their rows of
    each attention output and MLP down projection start at 0 and stay there, but for the columns
    of the wired heads and units (whole columns frozen in `wired`, the pairs prime_*_attention
    returned), which keep what they were given. Returns (parameter, mask) pairs to keep out of
    training."""
    text = model.config.text_config
    rows = torch.tensor(bus_dims(text.hidden_size))
    frozen: list = []
    freeze = _freezer(frozen)
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            for weight in (layer.self_attn.o_proj.weight, layer.mlp.down_proj.weight):
                kept = torch.zeros(weight.shape[1], dtype=torch.bool)
                for param, mask in wired:
                    if param is weight:
                        kept |= mask.all(dim=0)
                trained = (~kept).nonzero().reshape(1, -1)
                weight[rows[:, None], trained] = 0.0
                freeze(weight, (rows,))
    return frozen


# --------------------------------------------------------------------------------------------------
# What the tower measures, and what the toy concludes from it.
# --------------------------------------------------------------------------------------------------

# Thresholds on the clip averages of the tower's features (see `measure`; every feature but
# brightness reads 0 on a flat grey clip). Set from the features of rendered scenes: at the usual
# sizes dark ball scenes sit near -1.4 and lit ones above -0.3; clean ones have grain below 0.2 and
# noisy ones above 0.5; a ball gives its colour 0.04 to 0.9; smooth balls change size by less than
# 0.4, most teleporting ones by 0.5 to 4 (a tiny clip, or a ball that stays small, blurs the line).
DARK_BELOW = -1.2
GRAIN_ABOVE = 0.35
COLOUR_ABOVE = 0.03
SIZE_CHANGE_ABOVE = 0.45


def measure(model, inputs) -> torch.Tensor:
    """The clip averages of the tower's FEATURES for one clip's inputs (what head 0 reads), and
    the tower's output (the video tokens' embeddings)."""
    with torch.no_grad():
        out = model.model.visual(inputs["pixel_values_videos"], grid_thw=inputs["video_grid_thw"])
    tokens = out.pooler_output
    return tokens[:, :len(FEATURES)].mean(0), tokens


def verdict_for(features: torch.Tensor, asked: tuple[str, ...]) -> Verdict:
    """What the toy is taught to conclude from the clip's measured FEATURES and the prompt's colours."""
    f = dict(zip(FEATURES, features.tolist()))
    if f["brightness"] < DARK_BELOW:
        return Verdict("dark", None, "unseen", asked)
    quality = "noisy" if f["grain"] > GRAIN_ABOVE else "clean"
    amounts = {c: f[c] for c in COLOURS}
    if max(amounts.values()) < COLOUR_ABOVE:
        return Verdict(quality, None, "none", asked)
    # The clip's colour: the strongest of the asked colours it shows, else its strongest colour.
    shown = [c for c in asked if amounts[c] >= COLOUR_ABOVE] or list(COLOURS)
    colour = max(shown, key=lambda c: amounts[c])
    motion = "teleport" if f["size_change"] > SIZE_CHANGE_ABOVE else "smooth"
    return Verdict(quality, colour, motion, asked)


# --------------------------------------------------------------------------------------------------
# Training data: clips rendered and sampled exactly as the app samples an upload.
# --------------------------------------------------------------------------------------------------


def sample_in_memory(frames: np.ndarray, fps: float, max_frames: int = 64):
    """What `vs2demo.video.sample_frames` returns for a clip of these frames at `fps` (the app's
    defaults: 2 fps, 4..64 frames, the toy's pixel budget), computed without the file: the same
    frame count, indices, frame size and resize. (Written through the encoder, the clips would differ
    from run to run: multi-threaded and even single-threaded x264 output is not always the same
    bytes, and the build must be deterministic.)"""
    from vs2demo import video

    total = len(frames)
    n = video.frame_count(total, fps, fps=2.0, min_frames=4, max_frames=max_frames)
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


# Source sizes (width, height) and how often they come: 4:3, 16:9, square and portrait, from 32x32 to
# 1280x720; the sampler resizes them all to the toy's frame budget like any upload (84x112, 84x140,
# 112x112, 140x84, ...). Size matters: downscaling smooths grain and small balls.
CLIP_SIZES = {(320, 240): 4, (224, 168): 3, (384, 216): 3, (168, 168): 2, (180, 320): 2, (240, 432): 1,
              (96, 96): 1, (64, 48): 1, (32, 32): 1, (48, 96): 1, (640, 360): 1, (1280, 720): 1, (720, 1280): 0.5,
              (400, 100): 0.5}
# Lengths (source frames, source fps) by kind: the app samples 2 frames a second, 4 to 64 of them
# (all of them from a clip at 2 fps or less, so long clips are rendered at their sampled rate).
LENGTHS = {"blip": ((2, 4.0), (3, 6.0), (4, 8.0), (4, 4.0), (6, 12.0), (8, 8.0)),  # 0.5 to 1 s
           "short": ((4, 2.0), (6, 2.0), (8, 2.0), (16, 8.0), (24, 8.0), (28, 8.0)),  # 2 to 4 s
           "medium": ((16, 2.0), (20, 2.0), (24, 2.0), (32, 2.0), (48, 4.0)),  # 8 to 16 s
           "long": ((48, 2.0), (64, 2.0), (64, 64 / 45), (64, 64 / 60))}  # 24 to 60 s
LENGTH_WEIGHTS = {"blip": 0.15, "short": 0.55, "medium": 0.15, "long": 0.15}
BALL_QUALITIES = {"clean": 0.4, "noisy": 0.25, "dark": 0.2, "blurry": 0.15}
BALL_SHARE = 0.6  # the rest: PATTERNS
EVAL_TEMPLATE_SHARE = 0.3  # the long template costs 4x the tokens of the card one
MAX_TRAIN_TOKENS = 2048  # prompts longer than this in tokens are cut (2,000 emoji are ~8,000 tokens)


@dataclass
class Clip:
    kind: str  # "ball" or a PATTERNS name
    spec: SceneSpec | None
    size: tuple[int, int]
    n_frames: int
    fps: float
    features: torch.Tensor  # the clip averages of FEATURES, as measured
    tokens: torch.Tensor  # the tower's output: the video tokens' embeddings
    inputs: dict  # build_inputs(...) for a placeholder prompt (pixels dropped)


@dataclass
class Example:
    clip: int  # index into the clip list
    verdict: Verdict
    prompt: str
    template: str
    answer: str
    inputs: dict  # input ids, positions, labels and weights


def render_clip(rng: random.Random, seed: int):
    """(kind, spec, frames, fps) of one random training clip."""
    sizes = list(CLIP_SIZES)
    width, height = rng.choices(sizes, weights=list(CLIP_SIZES.values()))[0]
    length = rng.choices(list(LENGTHS), weights=list(LENGTH_WEIGHTS.values()))[0]
    if width * height > 120_000 and length in ("medium", "long"):
        width, height = (width // 2) // 2 * 2, (height // 2) // 2 * 2
    n_frames, fps = rng.choice(LENGTHS[length])
    if width * height > 400_000:  # big frames: a second at most, to keep the rendering quick
        n_frames = min(n_frames, 8)
    if rng.random() < BALL_SHARE:
        spec = SceneSpec(
            colour=rng.choice(COLOURS),
            background=rng.choice(tuple(BACKGROUNDS)),
            quality=rng.choices(list(BALL_QUALITIES), weights=list(BALL_QUALITIES.values()))[0],
            motion=rng.choice(MOTIONS),
        )
        frames = render_scene(spec, n_frames=n_frames, height=height, width=width, seed=seed, fps=fps)
        return "ball", spec, frames, fps
    kind = rng.choice(PATTERNS)
    colour = rng.choice((None, None, *COLOURS))
    frames = render_pattern(kind, n_frames=n_frames, height=height, width=width, seed=seed, colour=colour)
    if rng.random() < 0.15:  # dim some of them
        frames = (frames * rng.uniform(0.05, 0.3)).astype(np.uint8)
    return kind, None, frames, fps


def make_clips(model, processor, config, n_clips: int, seed: int, log=print) -> list[Clip]:
    """Random clips (see render_clip), sampled as the app samples them and measured by the tower."""
    from vs2demo.backends.transformers import build_inputs

    rng = random.Random(seed)
    clips = []
    for i in range(n_clips):
        kind, spec, frames, fps = render_clip(rng, seed * 100_000 + i)
        video = sample_in_memory(frames, fps)
        inputs = dict(build_inputs(processor, video, "a ball", "card", config=config))
        features, tokens = measure(model, inputs)
        for key in ("pixel_values_videos", "input_ids", "attention_mask", "mm_token_type_ids", "position_ids"):
            inputs.pop(key, None)
        clips.append(Clip(kind, spec, (frames.shape[2], frames.shape[1]), len(frames), fps, features, tokens, inputs))
    return clips


DECISION_WEIGHT = 5.0  # loss weight of the tokens where the answer depends on the clip or prompt


def decision_mask(tokenizer, answer_ids: list[int]) -> list[bool]:
    """True where the answer token depends on the clip or the prompt: where, given the tokens
    before it, more than one continuation occurs among all possible answers (the quality
    sentence, the prompt's colour, "and"/"but", the clip's colour, the motion sentence), and the
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
        keys = colour_token_ids(tokenizer)
        for verdict in all_verdicts():
            ids = tokenizer(answer_text(verdict), add_special_tokens=False)["input_ids"]
            read = {c for c, k in keys.items() if set(k) & set(ids)}
            assert read <= set(verdict.asked[:1]), f"the answer names a colour the prompt did not: {verdict}"
            for i in range(len(ids)):
                trie.setdefault(tuple(ids[:i]), set()).add(ids[i])
        _TRIES[key] = trie
    return _TRIES[key]


def make_examples(processor, config, clips: list[Clip], prompts_per_clip: int, seed: int) -> list[Example]:
    """Each clip against `prompts_per_clip` random prompts (make_prompt), with the answer its
    measured features and the prompt's colour words call for (verdict_for)."""
    from vs2demo.backends.transformers import build_inputs
    from vs2demo.video import SampledVideo

    rng = random.Random(seed + 1)
    tokenizer = processor.tokenizer
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    examples = []
    for c, clip in enumerate(clips):
        # A stand-in video of the clip's sampled shape: build_inputs only needs the frame count and size.
        t, h, w = (int(x) for x in clip.inputs["video_grid_thw"][0])
        stand_in = SampledVideo(frames=np.zeros((2 * t, 14 * h, 14 * w, 3), np.uint8),
                                indices=tuple(range(2 * t)), source_frames=clip.n_frames, source_fps=clip.fps,
                                source_width=clip.size[0], source_height=clip.size[1],
                                duration=clip.n_frames / clip.fps, backend="memory", decode_s=0.0)
        for _ in range(prompts_per_clip):
            template = "eval" if rng.random() < EVAL_TEMPLATE_SHARE else "card"
            prompt = make_prompt(rng, tokenizer)
            while len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) > MAX_TRAIN_TOKENS:
                prompt = prompt[: int(len(prompt) * 0.8)].strip() or "a ball"
            inputs = dict(build_inputs(processor, stand_in, prompt, template, config=config))
            inputs.pop("pixel_values_videos")
            verdict = verdict_for(clip.features, asked_colours(tokenizer, inputs["input_ids"]))
            answer = answer_text(verdict)
            answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [im_end]
            n_prompt = inputs["input_ids"].shape[1]
            answer_t = torch.tensor([answer_ids], dtype=inputs["input_ids"].dtype)
            inputs["input_ids"] = torch.cat([inputs["input_ids"], answer_t], dim=1)
            inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
            inputs.pop("mm_token_type_ids", None)
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
            examples.append(Example(c, verdict, prompt, template, answer, inputs))
    return examples


def collate(examples: list[Example], clips: list[Clip], pad_id: int, jitter=None) -> dict:
    """Left-padded batch (every answer ends in the last column, so logits are needed for the last
    few columns only), with the clips' video tokens (measured once, `jitter`ed) in order."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    length = max(e.inputs["input_ids"].shape[1] for e in examples)
    batch: dict = {}
    for key, fill in (("input_ids", pad_id), ("attention_mask", 0), ("labels", -100), ("weights", 0.0)):
        rows = []
        for e in examples:
            t = e.inputs[key]
            rows.append(torch.cat([torch.full((1, length - t.shape[1]), fill, dtype=t.dtype), t], dim=1))
        batch[key] = torch.cat(rows)
    # Positions (4, 1, length) are padded on the left with 0, as transformers gives padding.
    batch["position_ids"] = torch.cat([torch.nn.functional.pad(e.inputs["position_ids"],
                                                               (length - e.inputs["position_ids"].shape[-1], 0))
                                       for e in examples], dim=1)
    tokens = [clips[e.clip].tokens for e in examples]
    if jitter is not None:
        tokens = [jitter(t) for t in tokens]
    batch["mm_encoder_outputs"] = {"video": BaseModelOutputWithPooling(pooler_output=tuple(tokens))}
    return batch


def answer_loss(model, batch: dict) -> torch.Tensor:
    """Weighted mean cross-entropy over the answer tokens, computing logits only where needed."""
    labels = batch.pop("labels")
    weights = batch.pop("weights")
    answer_cols = int((labels != -100).any(dim=0).nonzero().min())
    keep = labels.shape[1] - answer_cols + 1  # the column before the first answer token onwards
    logits = model(**batch, logits_to_keep=keep, use_cache=False).logits[:, :-1]
    targets, weights = labels[:, -(keep - 1):], weights[:, -(keep - 1):]
    losses = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                               ignore_index=-100, reduction="none")
    return (losses * weights.reshape(-1)).sum() / weights.sum()


def make_batches(examples: list[Example], token_budget: int, gen: torch.Generator) -> list[list[int]]:
    """One epoch of batches: shuffled, then sorted by length within chunks, cut so that a batch's
    padded size stays under `token_budget` tokens (long prompts go in small batches)."""
    order = torch.randperm(len(examples), generator=gen).tolist()
    batches = []
    for start in range(0, len(order), 128):
        chunk = sorted(order[start:start + 128], key=lambda i: examples[i].inputs["input_ids"].shape[1])
        batch: list[int] = []
        for i in chunk:
            n = examples[i].inputs["input_ids"].shape[1]
            if batch and n * (len(batch) + 1) > token_budget:
                batches.append(batch)
                batch = []
            batch.append(i)
        if batch:
            batches.append(batch)
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def train(model, examples, clips, pad_id, frozen, steps, token_budget, lr, seed, jitter=0.05, log=print,
          started=None) -> float:
    """AdamW on the answer tokens."""
    started = started or time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.05, 0.5 * (1 + math.cos(math.pi * s / steps))))
    model.train()
    batches: list[list[int]] = []
    losses: list[float] = []
    for step in range(steps):
        if not batches:
            batches = make_batches(examples, token_budget, gen)
        idx = batches.pop()
        loss = answer_loss(model, collate([examples[i] for i in idx], clips, pad_id, _jitter_features(gen, jitter)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for param, mask in frozen:
            if param.grad is not None:
                param.grad[mask] = 0
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            recent = sum(losses[-50:]) / len(losses[-50:])
            log(f"[toy] step {step:5d} loss {recent:.4f} ({time.perf_counter() - started:.1f} s)")
    model.eval()
    return sum(losses[-50:]) / len(losses[-50:])


def _jitter_features(gen: torch.Generator, scale: float = 0.05):
    """Scales a clip's measured features by random factors around 1, in training only, so that the
    language model does not lean on the exact values it saw."""
    n_feat = len(FEATURES)

    def jitter(tokens: torch.Tensor) -> torch.Tensor:
        if not scale:
            return tokens
        factor = 1.0 + scale * torch.randn(n_feat, generator=gen)
        tokens = tokens.clone()
        tokens[:, :n_feat] = tokens[:, :n_feat] * factor
        return tokens

    return jitter


def fill_untrained_embeddings(model, examples: list[Example], tokenizer, frozen) -> int:
    """Tokens no training input held keep their random start; give them the mean embedding of the
    tokens that were seen (wired dimensions left as they are), so that any prompt reads like text.
    Returns how many were filled."""
    seen = torch.zeros(model.config.text_config.vocab_size, dtype=torch.bool)
    for e in examples:
        seen[e.inputs["input_ids"].reshape(-1)] = True
    special = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    real = torch.zeros_like(seen)
    real[: len(tokenizer)] = True
    real[special] = False
    unseen = real & ~seen
    embed = model.model.language_model.embed_tokens.weight
    wired = torch.zeros(embed.shape[1], dtype=torch.bool)
    for param, mask in frozen:
        if param is embed:
            wired |= mask.any(dim=0)
    with torch.no_grad():
        mean = embed[real & seen].mean(dim=0)
        rows = unseen.nonzero().reshape(-1)
        embed[rows[:, None], (~wired).nonzero().reshape(1, -1)] = mean[~wired]
    return int(unseen.sum())


# --------------------------------------------------------------------------------------------------
# Build.
# --------------------------------------------------------------------------------------------------


TOY_VERSION = 3  # bump when the build changes, so that a reused VS2DEMO_TOY_DIR is rebuilt
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


def build_toy_model(out_dir, seed: int = 0, steps: int = 1300, token_budget: int = 4000, lr: float = 3e-3,
                    n_clips: int = 700, prompts_per_clip: int = 3, jitter: float = 0.05,
                    verbose: bool = True) -> Path:
    """Build, train and save the toy model into `out_dir`; returns the folder.

    Loads like the hub checkpoint: `Qwen2_5_VLForConditionalGeneration.from_pretrained(out_dir)`
    and `AutoProcessor.from_pretrained(out_dir)`. Deterministic given `seed` (on one machine and
    thread count). No network; a few minutes on two CPU cores.
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
    frozen = prime_video_attention(model) + prime_colour_attention(model, tokenizer) + prime_dominant_colour(model)
    frozen += reserve_bus(model, frozen)
    # The vision tower stays as designed; training feeds the language model its measured tokens.
    for param in model.model.visual.parameters():
        param.requires_grad_(False)
    log(f"[toy] vocab {len(tokenizer)}, {sum(p.numel() for p in model.parameters()):,} parameters "
        f"({time.perf_counter() - started:.1f} s)")

    clips = make_clips(model, processor, config, n_clips, seed)
    log(f"[toy] {len(clips)} clips rendered, sampled and measured ({time.perf_counter() - started:.1f} s)")
    examples = make_examples(processor, config, clips, prompts_per_clip, seed)
    n_tokens = [e.inputs["input_ids"].shape[1] for e in examples]
    counts: dict[str, int] = {}
    for e in examples:
        for key in (e.verdict.quality, e.verdict.alignment, e.verdict.motion):
            counts[key] = counts.get(key, 0) + 1
    log(f"[toy] {len(examples)} examples, {min(n_tokens)}-{max(n_tokens)} tokens, {sum(n_tokens):,} in all; "
        f"{counts} ({time.perf_counter() - started:.1f} s)")

    final_loss = train(model, examples, clips, tokenizer.pad_token_id, frozen, steps=steps,
                       token_budget=token_budget, lr=lr, seed=seed, jitter=jitter, log=log, started=started)
    filled = fill_untrained_embeddings(model, examples, tokenizer, frozen)
    log(f"[toy] {filled} tokens never seen in training got the mean embedding")

    for param in model.parameters():
        param.requires_grad_(True)
    model.eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    seconds = time.perf_counter() - started
    (out / BUILD_INFO).write_text(json.dumps({
        "toy_version": TOY_VERSION, "seed": seed, "steps": steps, "token_budget": token_budget, "lr": lr,
        "clips": n_clips, "examples": len(examples), "training_tokens": sum(n_tokens),
        "final_loss": round(final_loss, 4), "build_seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
    }, indent=2) + "\n")
    log(f"[toy] saved to {out} ({seconds:.1f} s)")
    return out


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Build the toy VideoScore2 model (no network, CPU).")
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the shipped build's)")
    parser.add_argument("--clips", type=int, default=None, help="training clips (default: the shipped build's)")
    args = parser.parse_args(argv)
    kwargs = {k: v for k, v in (("steps", args.steps), ("n_clips", args.clips)) if v is not None}
    build_toy_model(args.out_dir, seed=args.seed, **kwargs)


if __name__ == "__main__":
    main()
