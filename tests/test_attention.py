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
    assert scoring.record_settings(ScoreOptions(replace_frames=(1, 2)), None)["replace_frames"] == (1, 2)


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
