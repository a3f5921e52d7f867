"""Where it looked (issue #26): frames replaced by their neighbours, the attention probe against
eager attention, its record block and what refuses a bad one."""

import numpy as np
import pytest

from vs2demo import scoring
from vs2demo.errors import UserInputError
from vs2demo.settings import ScoreOptions

PROMPT = "A red ball rolls and bounces across a grey studio floor."


# ---- frames replaced by their neighbours ---------------------------------------------------------

def constructed_video(count: int = 6):
    """A SampledVideo whose frame i is filled with the value 10 * i (every frame different)."""
    from vs2demo.video import SampledVideo

    frames = np.stack([np.full((28, 28, 3), 10 * i, dtype=np.uint8) for i in range(count)])
    return SampledVideo(frames=frames, indices=tuple(range(0, 3 * count, 3)), source_frames=3 * count, source_fps=6.0,
                        source_width=28, source_height=28, duration=count / 2, backend="pyav", decode_s=0.0)


def test_replaced_frames_hold_their_nearest_kept_neighbours_pixels_and_the_others_are_untouched(monkeypatch):
    plain = constructed_video(6)
    monkeypatch.setattr(scoring, "sample_frames", lambda *args, **kwargs: plain)
    options = ScoreOptions(replace_frames=[5, 2, 3, 0]).validated()
    replaced = scoring.sample_video("clip.mp4", options, 3136, 12544, 90_316_800)  # the Scorer's own call
    expected = {0: 1, 2: 1, 3: 4, 5: 4}  # kept: 1 and 4
    for position in range(6):
        assert (replaced.frames[position] == 10 * expected.get(position, position)).all(), position
    assert replaced.indices == plain.indices and replaced.timestamps == plain.timestamps
    assert [int(frame[0, 0, 0]) for frame in plain.frames] == [0, 10, 20, 30, 40, 50]  # the original untouched


def test_frame_neighbours_prefers_the_earlier_one_on_a_tie():
    assert scoring.frame_neighbours(5, (2,)) == {2: 1}
    assert scoring.frame_neighbours(5, (1, 2, 3)) == {1: 0, 2: 0, 3: 4}


def test_replace_frames_is_checked_and_kept_in_the_key_only_when_given():
    assert ScoreOptions(replace_frames=[3, 1, 3]).validated().replace_frames == (1, 3)
    assert ScoreOptions(replace_frames=(2.0,)).validated().replace_frames == (2,)
    for bad in ([1.5], ["2"], [-1], [True], 3, [768]):
        with pytest.raises(UserInputError, match="replace_frames|frame position"):
            ScoreOptions(replace_frames=bad).validated()
    with pytest.raises(UserInputError, match="8 frames"):
        scoring.frame_neighbours(8, (8,))
    with pytest.raises(UserInputError, match="at least one must stay"):
        scoring.frame_neighbours(4, (0, 1, 2, 3))
    from vs2demo.backends import LoadInfo

    info = LoadInfo("transformers", "m", "r", "none", "cpu", "float32", True, 0, 0, 0, 1, 2, 3)
    plain = scoring.record_key("sha", PROMPT, ScoreOptions(), info)
    assert scoring.record_key("sha", PROMPT, ScoreOptions(attention=False), info) == plain
    assert scoring.record_key("sha", PROMPT, ScoreOptions(replace_frames=(1,)), info) != plain
    assert scoring.record_key("sha", PROMPT, ScoreOptions(attention=True), info) != plain
    assert scoring.record_settings(ScoreOptions(replace_frames=(1, 2)), None)["replace_frames"] == [1, 2]


def test_attention_through_vllm_is_refused_with_what_it_needs():
    from vs2demo.backends.vllm import VllmBackend

    backend = VllmBackend.__new__(VllmBackend)  # refused before any request: no server needed
    with pytest.raises(UserInputError, match=r"^Where it looked \(attention\) needs the transformers backend; "
                                             r"this app serves the model through vLLM\.$"):
        next(backend.generate(constructed_video(), PROMPT, ScoreOptions(attention=True).validated()))


# ---- the record's block --------------------------------------------------------------------------

def example_attention() -> dict:
    """A block as the probe writes it: 6 frames in 3 patches, a 4-word prompt, two dimensions scored."""
    return {
        "version": 1,
        "aggregation": {"heads": "mean", "layers": [0, 2], "of_layers": 3,
                        "query": "the position that predicts the score's digit", "backend": "transformers"},
        "patches": [[0, 1], [2, 3], [4, 5]],
        "words": ["A", "red", "ball", "rolls."],
        "dimensions": {
            "visual_quality": {"visual": 0.61, "prompt": 0.05, "patches": [0.2, 0.3, 0.5],
                               "words": [0.1, 0.4, 0.4, 0.1]},
            "physical_consistency": {"visual": 0.7, "prompt": 0.01, "patches": [0.5, 0.25, 0.25],
                                     "words": [0.0, 0.0, 1.0, 0.0]},
        },
    }


def scored_record(**changes) -> dict:
    from vs2demo.results import ScoreResult

    return {**ScoreResult(video="v.mp4", prompt="A red ball rolls.", model="toy").to_dict(), **changes}


def test_the_attention_block_round_trips_through_a_record_and_passes_the_check():
    from vs2demo.record_schema import check_record
    from vs2demo.results import ScoreResult

    data = scored_record(attention=example_attention())
    record = ScoreResult.from_dict(check_record(data))
    assert record.attention == example_attention()
    assert record.to_dict()["attention"] == example_attention()
    assert "attention" not in ScoreResult(video="v", prompt="p", model="m").to_dict()  # absent unless asked for


def broken(path: str, value):
    """The example block with the field at `path` (dotted; list positions as numbers) set to `value`."""
    block = example_attention()
    *parents, last = path.split(".")
    holder = block
    for name in parents:
        holder = holder[int(name)] if isinstance(holder, list) else holder[name]
    holder[int(last) if isinstance(holder, list) else last] = value
    return block


@pytest.mark.parametrize("path, value, said", [
    ("version", 2, "version"),
    ("patches", [[0, 1], [2, 3]], "patches"),  # 3 shares for 2 patches
    ("patches.0", [0, 1, 2], "patches"),
    ("patches.0", ["0"], "patches"),
    ("words.1", 3, "words"),
    ("words.1", "x" * 201, "words"),
    ("words", ["w"] * 513, "words"),
    ("dimensions.visual_quality.patches", [0.2, 0.3, 0.6], "sum to 1"),
    ("dimensions.visual_quality.patches", [0.2, 0.3, float("nan")], "patches"),
    ("dimensions.visual_quality.words", [0.1, 0.4, 0.5], "words"),
    ("dimensions.visual_quality.words", [-0.1, 0.6, 0.4, 0.1], "words"),
    ("dimensions.visual_quality.visual", 1.2, "visual"),
    ("dimensions.visual_quality.prompt", "0.1", "prompt"),
    ("dimensions.overall", {}, "dimensions"),
    ("aggregation", "mean", "aggregation"),
])
def test_a_bad_attention_block_is_refused_naming_the_field(path, value, said):
    from vs2demo.record_schema import RecordError, check_record

    with pytest.raises(RecordError, match=said):
        check_record(scored_record(attention=broken(path, value)))
    with pytest.raises(RecordError, match="attention"):
        check_record(scored_record(attention=[1, 2]))


# ---- keys to patches and words, on constructed examples ------------------------------------------

def test_visual_tokens_go_to_their_temporal_patch_and_an_odd_last_frame_has_a_patch_of_its_own():
    import torch

    from vs2demo.attention import patch_map

    types = torch.tensor([[0, 0, 2, 2, 2, 2, 2, 2, 0]])
    # t=3 temporal patches of (2 x 4) / 2^2 = 2 tokens each; 5 frames: the last patch merges frame 4 alone
    patch_of_key, patches = patch_map(types, torch.tensor([[3, 2, 4]]), merge_size=2, temporal_patch_size=2, frames=5)
    assert patch_of_key.tolist() == [-1, -1, 0, 0, 1, 1, 2, 2, -1]
    assert patches == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError, match="visual tokens"):
        patch_map(types, torch.tensor([[2, 2, 4]]), merge_size=2, temporal_patch_size=2, frames=4)


def test_prompt_tokens_go_to_the_whitespace_words_they_overlap():
    from vs2demo.attention import prompt_start, word_map

    pieces = ["", "Video prompt:", " A", " re", "d", " ball", ",", "\n", "", "Score:"]
    pairs, words = word_map(pieces, prompt_at=14, prompt="A red ball,")  # after "Video prompt: "
    assert words == ["A", "red", "ball,"]
    assert pairs == [(2, 0, 1.0), (3, 1, 1.0), (4, 1, 1.0), (5, 2, 1.0), (6, 2, 1.0)]
    # a token over two words gives each half
    assert word_map(["A re", "d"], prompt_at=0, prompt="A red")[0] == [(0, 0, 0.5), (0, 1, 0.5), (1, 1, 1.0)]
    # found inside the rendered template (the card's text before its placeholder)
    from vs2demo.prompts import load_template, render_prompt

    message = render_prompt("A red ball,", "card")
    before = "system text user "
    at = prompt_start([before[:6], before[6:], message[:9], message[9:], "tail"], "A red ball,", "card")
    assert at == len(before) + load_template("card").index("$t2v_prompt")


def test_a_long_prompt_keeps_512_entries_and_long_words_are_cut():
    from vs2demo.attention import MAX_WORDS, word_map

    prompt = " ".join(["w"] * 600 + ["x" * 300])
    pairs, words = word_map([prompt], prompt_at=0, prompt=prompt)
    assert len(words) == MAX_WORDS and words[-1] == "… (90 more)" and words[0] == "w"
    assert {word for _, word, _ in pairs} == set(range(MAX_WORDS))
    assert word_map(["x" * 300], 0, "x" * 300)[1] == ["x" * 199 + "…"]


def test_a_row_becomes_shares_checked_by_hand():
    import torch

    from vs2demo.attention import KeyMap, dimension_shares

    keys = KeyMap(patch_of_key=torch.tensor([-1, -1, 0, 0, 1, 1, 2, 2, -1]), patches=[[0, 1], [2, 3], [4, 5]],
                  word_tokens=[(0, 0, 1.0), (1, 0, 0.5), (1, 1, 0.5), (8, 1, 1.0)], words=["A", "ball"])
    # the row runs on past the prompt's 9 keys (the answer's tokens): those are neither visual nor prompt
    row = torch.tensor([0.1, 0.04, 0.1, 0.1, 0.05, 0.05, 0.2, 0.1, 0.16, 0.1])
    shares = dimension_shares(row, keys)
    assert shares["visual"] == 0.6 and shares["prompt"] == 0.3  # 0.1 + 0.04 + 0.16
    assert shares["patches"] == [0.3333, 0.1667, 0.5]  # 0.2, 0.1, 0.3 of 0.6
    assert shares["words"] == [0.4, 0.6]  # A: 0.1 + 0.02; ball: 0.02 + 0.16


def test_shares_are_rounded_to_sum_to_one_where_rounding_each_would_not():
    from vs2demo.attention import rounded_shares

    equal = rounded_shares([1.0] * 768)
    assert abs(sum(equal) - 1) < 1e-9 and set(equal) == {0.0013, 0.0014}
    assert abs(sum(round(1 / 768, 4) for _ in range(768)) - 1) > 1e-3  # why: each rounded alone misses by 0.0016
    assert rounded_shares([]) == [] and rounded_shares([0.0, 0.0]) == [0.0, 0.0]
    assert rounded_shares([2, 1, 1]) == [0.5, 0.25, 0.25]


# ---- the probe on the toy ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def backend(toy_model_dir):
    from vs2demo.backends.transformers import TransformersBackend
    from vs2demo.settings import Settings

    return TransformersBackend.load(Settings(model=str(toy_model_dir), quant="none", device="cpu"))


@pytest.fixture(scope="module")
def video():
    """Six 56x56 frames (the toy's smallest), each a different noise: three temporal patches."""
    from vs2demo.video import SampledVideo

    frames = np.random.default_rng(0).integers(0, 256, (6, 56, 56, 3), dtype=np.uint8)
    return SampledVideo(frames=frames, indices=(0, 3, 6, 9, 12, 15), source_frames=18, source_fps=6.0,
                        source_width=56, source_height=56, duration=3.0, backend="pyav", decode_s=0.0)


@pytest.fixture(scope="module")
def answered(backend, video):
    """(the greedy answer to the video, the step of each score's digit)."""
    from vs2demo.backends import Generation

    options = ScoreOptions(max_new_tokens=400).validated()
    generation = next(item for item in backend.generate(video, PROMPT, options) if isinstance(item, Generation))
    readings = scoring.score_readings(generation, scoring.parsed_answer(generation)[0], options)
    steps = {dim: step.step for dim, (_, step) in readings.items() if step is not None}
    assert len(steps) == 3, generation.text  # the toy writes all three scores
    return generation, steps


def eager_rows(model, full: dict, queries: list[int], layers: tuple[int, int]):
    """The same rows from eager attention's full matrices (output_attentions=True)."""
    import torch

    with torch.inference_mode():
        attentions = model(**full, use_cache=False, output_attentions=True).attentions
    chosen = torch.stack([attentions[layer][0, :, queries, :] for layer in range(layers[0], layers[1] + 1)])
    return chosen.float().mean(dim=(0, 1))  # over layers and heads


def prefilled_cache(model, full: dict):
    """A cache of the whole sequence, as generation leaves one."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(**full, cache=cache, use_cache=True, logits_to_keep=1)
    return cache


@pytest.fixture(scope="module")
def eager_model(toy_model_dir):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration.from_pretrained(toy_model_dir, attn_implementation="eager",
                                                              dtype=torch.float32).eval()


@pytest.mark.parametrize("layers", [(0, 2), (1, 2)])
def test_the_probes_rows_are_eager_attentions_within_1e_5(backend, video, answered, eager_model, layers):
    import torch

    from vs2demo import attention
    from vs2demo.backends.transformers import build_inputs

    generation, steps = answered
    answer = list(generation.token_ids)[:max(steps.values())]
    inputs = build_inputs(backend.processor, video, PROMPT, config=backend.model.config)
    full = attention.extended_inputs(backend.model, inputs, answer)
    rows, logits = attention.probe_rows(backend.model, inputs, answer, list(steps.values()), layers,
                                        prefilled_cache(backend.model, full))
    prompt_length = inputs["input_ids"].shape[1]
    expected = eager_rows(eager_model, full, [prompt_length + step - 1 for step in steps.values()], layers)
    assert rows.shape == expected.shape == (3, prompt_length + max(steps.values()))
    assert (rows - expected).abs().max() < 1e-5
    assert torch.allclose(rows.sum(-1), torch.ones(3), atol=1e-5)
    # the pass reads the answer with the positions generation used: each query's logits give the card's p(1..5)
    digit_probs = torch.softmax(logits, -1)[:, backend.digit_ids]
    for row, dim in enumerate(steps):
        step = next(s for s in generation.digit_steps if s.step == steps[dim])
        assert torch.allclose(digit_probs[row].double(), torch.tensor(step.probs, dtype=torch.double), atol=1e-5)


@pytest.mark.parametrize("samples", [1, 2])
def test_the_recorded_block_is_read_off_generations_own_cache(backend, video, eager_model, samples):
    """The probe as scoring runs it: right after the answer, on the cache generation leaves (of K
    samples, the shown one's row), its shares those of eager attention's rows."""
    from vs2demo import attention
    from vs2demo.backends import Generation, Generations
    from vs2demo.backends.transformers import build_inputs

    options = ScoreOptions(max_new_tokens=400, attention=True, do_sample=samples > 1, temperature=1.0, seed=3,
                           samples=samples).validated()
    asked = {}
    final = next(item for item in backend.generate(video, PROMPT, options,
                                                   attention_steps=lambda a: asked.setdefault("q", scoring.attention_queries(a, options)))
                 if isinstance(item, (Generation, Generations)))
    answers = list(final.samples) if samples > 1 else [final]
    shown, steps = asked["q"]
    assert [answer.attention is not None for answer in answers] == [number == shown for number in range(samples)]
    block = answers[shown].attention
    inputs = build_inputs(backend.processor, video, PROMPT, config=backend.model.config)
    answer = list(answers[shown].token_ids)[:max(steps.values())]
    prompt_length = inputs["input_ids"].shape[1]
    rows = eager_rows(eager_model, attention.extended_inputs(eager_model, inputs, answer),
                      [prompt_length + step - 1 for step in steps.values()], (0, 2))
    keys = attention.KeyMap(*attention.patch_map(inputs["mm_token_type_ids"], inputs["video_grid_thw"], 2, 2, 6),
                            *attention.word_map(*token_pieces_and_start(backend, inputs), PROMPT))
    for row, dim in zip(rows, steps):
        expected = attention.dimension_shares(row, keys)
        for name in ("visual", "prompt"):
            assert abs(block["dimensions"][dim][name] - expected[name]) <= 2e-4
        for name in ("patches", "words"):
            assert np.allclose(block["dimensions"][dim][name], expected[name], atol=2e-4)


def token_pieces_and_start(backend, inputs) -> tuple[list[str], int]:
    from vs2demo import attention
    from vs2demo.backends.transformers import token_pieces

    pieces, _ = token_pieces(backend.processor.tokenizer, inputs["input_ids"][0].tolist())  # every token decoded
    return pieces, attention.prompt_start(pieces, PROMPT, "card")


def test_grouped_query_heads_read_their_shared_key_head(backend, video, toy_model_dir):
    """VideoScore2 has 28 heads over 4 key heads; a toy of 2 heads over 1 checks the grouping."""
    import copy

    import torch
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    from vs2demo import attention
    from vs2demo.backends.transformers import build_inputs

    config = AutoConfig.from_pretrained(toy_model_dir)
    config.text_config.num_key_value_heads = 1
    torch.manual_seed(0)
    grouped = Qwen2_5_VLForConditionalGeneration(config).eval()
    eager = copy.deepcopy(grouped)
    eager.set_attn_implementation("eager")
    inputs = build_inputs(backend.processor, video, PROMPT, config=grouped.config)
    answer = list(range(100, 120))
    full = attention.extended_inputs(grouped, inputs, answer)
    rows, _ = attention.probe_rows(grouped, inputs, answer, [3, 20], (0, 2), prefilled_cache(grouped, full))
    length = inputs["input_ids"].shape[1]
    expected = eager_rows(eager, full, [length + 2, length + 19], (0, 2))
    assert (rows - expected).abs().max() < 1e-5


def test_with_the_probe_on_the_text_scores_and_every_probability_are_unchanged(backend, tmp_path):
    from vs2demo.record_schema import check_record
    from vs2demo.results import ScoreResult
    from vs2demo.scoring import Scorer

    clip = "assets/red_ball_clean.mp4"
    scorer = Scorer(backend.settings, backend=backend)
    plain = scorer.score_to_result(clip, PROMPT, ScoreOptions(max_new_tokens=400))
    probed = scorer.score_to_result(clip, PROMPT, ScoreOptions(max_new_tokens=400, attention=True))
    assert plain.error is None and probed.error is None
    assert probed.text == plain.text
    assert probed.scores == plain.scores  # score, expected, confidence and p(1..5), exactly
    assert probed.tokens.to_dict() == plain.tokens.to_dict()
    assert plain.attention is None and probed.key != plain.key
    block = probed.attention
    assert set(block["dimensions"]) == set(probed.scores) and block["words"] == PROMPT.split()
    assert block["patches"] == [[i, i + 1] for i in range(0, probed.frames["count"], 2)]
    assert ScoreResult.from_dict(check_record(probed.to_dict())).attention == block


def test_a_probe_in_one_thread_leaves_another_threads_forward_alone(backend, video):
    import threading

    import torch

    from vs2demo import attention
    from vs2demo.backends.transformers import build_inputs

    attention.install(backend.model)
    inputs = build_inputs(backend.processor, video, PROMPT, config=backend.model.config)
    collector = attention.RowCollector(torch.tensor([5]), (0, 2))
    outputs = {}

    def other_request():
        with torch.inference_mode():
            outputs["logits"] = backend.model(**inputs, use_cache=False, logits_to_keep=1).logits

    with attention.probing(collector):
        thread = threading.Thread(target=other_request)
        thread.start()
        thread.join()
    assert "logits" in outputs and collector.layers_seen == 0


# ---- the CLI and the API -------------------------------------------------------------------------

def test_the_cli_asks_for_attention_and_the_layers_averaged(toy_model_dir, capsys):
    import json

    from vs2demo.__main__ import main

    assert main(["score", "assets/red_ball_clean.mp4", "--prompt", PROMPT, "--model", str(toy_model_dir), "--device",
                 "cpu", "--quant", "none", "--no-store", "--max-new-tokens", "400", "--attention",
                 "--attention-layers", "later", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["settings"]["attention"] is True
    assert record["attention"]["aggregation"]["layers"] == [1, 2] and record["attention"]["aggregation"]["of_layers"] == 3


def test_the_cli_table_is_followed_by_each_scores_top_patches_with_times_and_top_words():
    from vs2demo.__main__ import format_table
    from vs2demo.results import ScoreResult

    record = ScoreResult.from_dict(scored_record(attention=example_attention(),
                                                 frames={"timestamps": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]}))
    lines = format_table([record]).splitlines()
    at = lines.index("v.mp4:")
    assert lines[at + 1].startswith("where it looked (attention of the step before each score's digit; mean over "
                                    "heads and layers 0-2 of 3;")
    assert lines[at + 2:at + 5] == [
        "  visual: 61% on the video, 5% on the prompt",
        "    patches: 3 (frames 4+5, 2.0-2.5 s) 50%; 2 (frames 2+3, 1.0-1.5 s) 30%; 1 (frames 0+1, 0.0-0.5 s) 20%",
        "    words: 'red' 40%, 'ball' 40%, 'A' 10%, 'rolls.' 10%",
    ]
    assert lines[at + 5] == "  physical: 70% on the video, 1% on the prompt"
    assert lines[at + 6].startswith("    patches: 1 (frames 0+1, 0.0-0.5 s) 50%; 2 (frames 2+3")


def test_the_cli_refuses_attention_through_vllm_before_loading_anything(capsys):
    from vs2demo.__main__ import main

    code = main(["score", "clip.mp4", "--prompt", PROMPT, "--backend", "vllm", "--vllm-url", "http://127.0.0.1:9",
                 "--attention"])
    assert code == 2
    assert "Where it looked (attention) needs the transformers backend" in capsys.readouterr().err


def test_the_score_endpoint_asks_for_attention(app_url, clean_clip):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    record = client.predict(handle_file(str(clean_clip)), PROMPT, max_new_tokens=400, attention=True,
                            api_name="/score")
    assert record["settings"]["attention"] is True and record["attention"]["version"] == 1
    assert set(record["attention"]["dimensions"]) <= set(record["scores"])
    assert "attention" not in client.predict(handle_file(str(clean_clip)), PROMPT, max_new_tokens=400,
                                             api_name="/score")


# ---- the benchmark's part ------------------------------------------------------------------------

def fabricated_bench_report() -> dict:
    return {"device": "cpu", "clips": 1, "repeats": 3, "score_off_s": 0.5, "score_on_s": 0.55,
            "score_off_cpu_s": 0.4, "score_on_cpu_s": 0.42, "score_off_best_s": 0.3, "score_on_best_s": 0.33,
            "passes": [{"clip": "a.mp4", "prompt_tokens": 179, "answer_tokens": 63, "rerun_tokens": 23,
                        "prefill_s": 0.2, "probe_s": 0.05, "whole_s": 0.08, "prefill_bytes": 2 * 2**20,
                        "probe_bytes": 2**20, "runs": 15, "prefill_best_s": 0.1, "probe_best_s": 0.04}],
            "layers": [{"dimensions": 3, "same_patch": 2, "same_word": 3}]}


def test_the_benchmark_section_says_the_ratios_and_is_kept_by_a_run_that_does_not_measure_it():
    from tools import bench

    lines = bench.render_attention(fabricated_bench_report())
    text = "\n".join(lines)
    assert text.count("**1.10x**") == 2 and "**1.05x**" in text  # 0.55 / 0.5, 0.33 / 0.3, 0.42 / 0.4
    assert "| a.mp4 | 179 + 63 (23) | 200 ms (100 ms) | 50 ms (40 ms) | 0.25 (0.40) **met** | 80 ms | 2 MiB / 1 MiB |" in text
    assert "same for 2 of 3 scores, the most attended word for 3 of 3" in text
    section = "\n".join(["<!-- measured -->", "## Where it looked"] + lines)
    first = bench.render_report("## CPU part", None, attention_section=section)
    assert section.strip() in bench.render_report("## CPU part", None, old_text=first)


@pytest.mark.slow  # about 10 s on 2 cores: the toy scores one clip five times, then the probe and prefills
def test_the_benchmark_measures_the_probe_against_a_prefill(toy_model_dir):
    from tools import bench

    report = bench.measure_attention(toy_model_dir, bench.example_clips()[:1], repeats=1)
    assert report["device"] == "cpu" and report["score_on_s"] > 0 and report["score_off_s"] > 0
    [row] = report["passes"]
    assert row["prefill_s"] > 0 and row["probe_s"] > 0 and 0 < row["rerun_tokens"] <= row["answer_tokens"]
    assert report["layers"][0]["dimensions"] == 3


def test_a_probe_that_fails_costs_the_attention_never_the_answer(backend, video, monkeypatch, caplog):
    from vs2demo.backends import Generation

    def broken(*args, **kwargs):
        raise ValueError("the prompt's message was not found in the model's input")

    monkeypatch.setattr(backend, "attention", broken)
    options = ScoreOptions(max_new_tokens=400, attention=True).validated()
    final = next(item for item in backend.generate(video, PROMPT, options,
                                                   attention_steps=lambda a: scoring.attention_queries(a, options))
                 if isinstance(item, Generation))
    assert final.attention is None and "(3) physical" in final.text
    assert "the attention probe failed" in caplog.text
