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
